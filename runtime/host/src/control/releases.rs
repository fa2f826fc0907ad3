//! The release pipeline: a release is appended to the app's log, loaded (every blob
//! verified), its release phase run, and its dynos started with preboot; its status then
//! records how that went. On any failure the previous release keeps serving.

use super::errors::{ControlError, Result};
use super::release_phase::release_phase;
pub(super) use super::reporter::Reporter;
use super::{AppEntry, Host};
use crate::addons::AddonBinding;
use crate::app::AppRuntime;
use crate::dyno::web::WebStart;
use crate::release::{Release, ReleaseSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wdeploy_api::ApiError;
use wdeploy_api::server::{Caller, Progress, ReleasePage};
use wdeploy_api::wire::{ConfigPatch, CreateRelease, ReleaseDetail, ReleaseInfo, Rollback};
use wdeploy_core::config_vars;
use wdeploy_core::egress::EgressChange;
use wdeploy_core::{AppName, AppSettings, Digest, Formation, ProcessType, Procfile, ReleaseStatus};
use wdeploy_store::{NewRelease, Release as StoredRelease, StoreError, Tenant};

/// How many times a read-modify-write of the release log is retried when a concurrent
/// change (another request, another node) took the version first.
const APPEND_ATTEMPTS: usize = 16;

/// How long a change waits for a release going live elsewhere to finish.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Host {
    /// Loads a stored release (verifying every blob) and runs it at the stored formation;
    /// no release phase (it ran when the release was made). `cancel` stops it until its
    /// web dynos are up.
    pub(super) async fn start(
        &self,
        runtime: &Arc<AppRuntime>,
        release: &StoredRelease,
        start: WebStart,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let loaded = until_cancelled(cancel, self.load(runtime, release)).await?;
        self.run_formation(runtime, loaded, start, cancel).await
    }

    /// Runs a loaded release at this node's share of the app's stored formation, with
    /// preboot.
    async fn run_formation(
        &self,
        runtime: &Arc<AppRuntime>,
        loaded: Arc<Release>,
        start: WebStart,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let formation = self.formation_for(&loaded).await?;
        let id = self.store.control.app(&loaded.app).await?.id;
        let share = self
            .membership
            .share_of(&id, &formation, loaded.settings.web.placement);
        runtime.deploy_until(loaded, &share, start, cancel).await?;
        Ok(())
    }

    async fn load(
        &self,
        runtime: &AppRuntime,
        release: &StoredRelease,
    ) -> anyhow::Result<Arc<Release>> {
        use anyhow::Context;
        let slug_id = release.slug.clone().context("the release has no slug")?;
        let manifest = self.store.manifest(&slug_id).await?;
        let mut components = BTreeMap::new();
        for (name, file) in &manifest.components {
            let path = self.store.blobs.local_path(&file.digest).await?;
            components.insert(name.clone(), (file.digest.clone(), path));
        }
        let procfile = Procfile::parse(&release.procfile)?;
        let settings = AppSettings::parse(&release.settings)?;
        let addons = self.addon_binding(&release.app, &settings, runtime).await?;
        Release::load(
            &self.engine,
            ReleaseSpec {
                app: release.app.clone(),
                version: release.version,
                slug_id,
                components,
                procfile,
                settings,
                config: release.config.clone(),
                addons,
            },
        )
        .await
    }

    /// The app's add-ons as a release of it sees them: keyed by the app's id (so a dyno
    /// that outlives its app never reaches a new app of the same name), with the quota
    /// the release asks for, capped by the host's ceiling (said in the app's log).
    async fn addon_binding(
        &self,
        app: &AppName,
        settings: &AppSettings,
        runtime: &crate::app::AppRuntime,
    ) -> anyhow::Result<AddonBinding> {
        let logs = &runtime.logs;
        let id = self.store.control.app(app).await?.id;
        let ceiling = self.config.max_addons_mb;
        if settings.limits.addons_mb > ceiling {
            logs.platform(
                "api",
                format!(
                    "limits.addons_mb = {} is over this host's ceiling; the app gets {ceiling} MB",
                    settings.limits.addons_mb
                ),
            );
        }
        Ok(AddonBinding {
            store: self.store.addons.clone(),
            tenant: Tenant {
                app: id,
                quota_bytes: settings.addons_quota_bytes(Some(ceiling)),
            },
            logs: logs.clone(),
            metrics: runtime.metrics.clone(),
        })
    }

    /// The stored formation, limited to what the release can run; a first deploy of an
    /// app with a `web` type gets `web=1` (as on Heroku).
    async fn formation_for(&self, release: &Release) -> Result<Formation, StoreError> {
        let mut formation = self.store.control.formation(&release.app).await?;
        if formation.is_empty() && release.procfile.get(ProcessType::WEB).is_some() {
            let web: Formation = [(ProcessType::web(), 1)].into_iter().collect();
            formation = self.store.control.scale(&release.app, &web).await?;
        }
        Ok(formation.runnable_in(&release.procfile))
    }

    /// Appends a release and, if it has a slug, makes it serve: load it (blobs verified),
    /// run its release phase, start its dynos with preboot. Records how that went.
    ///
    /// `make` builds the new release from the current one. Under the app's release lock
    /// the log head is read, `make` applied and the result appended as the next version
    /// with create-if-absent; if a concurrent change took that version, all three are
    /// done again, so two `config:set`s never lose each other's updates.
    async fn release(
        &self,
        entry: &AppEntry,
        app: &AppName,
        progress: &Reporter,
        pushed: Option<&Digest>,
        make: impl Fn(Option<StoredRelease>) -> Result<NewRelease>,
    ) -> Result<StoredRelease> {
        let runtime = &entry.runtime;
        let _turn = entry.release_turn().await?;
        if entry.is_destroying() {
            return Err(ApiError::conflict(format!("{app} is being destroyed")).into());
        }
        // A pushed slug is checked once its turn has come, as late as can be before the
        // release that references it is appended.
        if let Some(slug) = pushed {
            self.check_slug_whole(slug).await?;
        }
        let (mut record, previous) = self.append(app, make).await?;
        runtime.logs.platform(
            "api",
            format!(
                "Release v{}: {} by {}",
                record.version, record.description, record.author
            ),
        );
        if record.slug.is_none() {
            return Ok(record);
        }
        // A capability change is shown before the release goes live (to `push`, and in
        // the app's log when the list changes).
        let change = egress_change(previous.as_ref(), &record);
        if change.is_change() {
            runtime.logs.platform("api", change.to_string());
        }
        progress.say(format!("-----> {change}")).await;
        let going = entry.going_live(record.version);
        let outcome = self.go_live(entry, &record, progress, &going.cancel).await;
        let status = match &outcome {
            Ok(()) => ReleaseStatus::Succeeded,
            Err(e) => {
                progress.keep(&format!(
                    "error: release v{} failed: {e:#}\n",
                    record.version
                ));
                ReleaseStatus::Failed
            }
        };
        self.keep_output(app, record.version, &progress.output())
            .await;
        self.store
            .control
            .finish_release(app, record.version, status)
            .await?;
        // Recorded: whoever cancelled it may read its status now.
        drop(going);
        record.status = status;
        match outcome {
            Ok(()) => {
                runtime
                    .logs
                    .platform("api", format!("Deployed v{}", record.version));
                let has_web = Procfile::parse(&record.procfile)
                    .is_ok_and(|p| p.get(ProcessType::WEB).is_some());
                if has_web && runtime.web_dynos().is_empty() {
                    self.wait_served_elsewhere(app, record.version, progress)
                        .await;
                }
                Ok(record)
            }
            Err(e) => {
                runtime
                    .logs
                    .platform("api", format!("Release v{} failed: {e:#}", record.version));
                Err(ApiError::invalid(format!(
                    "release v{} failed, the previous release keeps serving: {e:#}",
                    record.version
                ))
                .into())
            }
        }
    }

    /// Keeps `output` as what going live printed for `version` (`releases:output`). A
    /// store that fails this fails nothing else: the release's outcome is what counts.
    async fn keep_output(&self, app: &AppName, version: u64, output: &str) {
        if let Err(e) = self
            .store
            .control
            .set_release_output(app, version, output)
            .await
        {
            tracing::warn!(app = %app, "the output of v{version} was not kept: {e}");
        }
    }

    /// The read-modify-write of the release log: head, `make`, create-if-absent. Returns
    /// the new release and the one current when it was made.
    async fn append(
        &self,
        app: &AppName,
        make: impl Fn(Option<StoredRelease>) -> Result<NewRelease>,
    ) -> Result<(StoredRelease, Option<StoredRelease>)> {
        for _ in 0..APPEND_ATTEMPTS {
            let head = self.settled_head(app).await?;
            let new = NewRelease {
                node: Some(self.membership.me().name.clone()),
                ..make(head.current.clone())?
            };
            match self
                .store
                .control
                .append_release(app, head.latest + 1, new)
                .await
            {
                Err(StoreError::VersionTaken { .. }) => continue,
                outcome => return Ok((outcome?, head.current)),
            }
        }
        Err(ApiError::conflict(format!(
            "{app} is being changed by many requests at once; try again"
        ))
        .into())
    }

    /// The head of the release log once no release is going live: a change made on top
    /// of the current release while another node takes a newer one live would leave that
    /// one's change out (two `config:set`s on two nodes). On one host the release turn
    /// already orders them; across nodes the log itself is what they wait on.
    async fn settled_head(&self, app: &AppName) -> Result<wdeploy_store::ReleaseHead> {
        let started = std::time::Instant::now();
        loop {
            let head = self.store.control.release_head(app).await?;
            let current = head.current.as_ref().map_or(0, |r| r.version);
            if head.latest == current {
                return Ok(head);
            }
            let newest = self.store.control.release(app, head.latest).await?;
            if newest.status != ReleaseStatus::Pending {
                // It finished after `head` was read, so `head` may still name the one
                // before it as current (two `config:set`s on two nodes lost the first's
                // vars so): the head is read again, and taken unless a newer release
                // came meanwhile. A release's status changes once.
                let again = self.store.control.release_head(app).await?;
                if again.latest == head.latest {
                    return Ok(again);
                }
                continue;
            }
            // Made by a node that is gone (killed mid-release): it never will finish.
            if let Some(node) = newest.node.as_ref().filter(|n| !self.membership.is_live(n)) {
                let failed = ReleaseStatus::Failed;
                if let Err(e) = self
                    .store
                    .control
                    .finish_release(app, newest.version, failed)
                    .await
                {
                    // Another node marked it first; the next look sees it finished.
                    tracing::debug!(app = %app, "marking v{} failed: {e}", newest.version);
                }
                tracing::warn!(app = %app, "v{} was left pending by node {node}, which is gone: marked failed", newest.version);
                let why = format!(
                    "error: release v{} failed: node {node}, which was taking it live, is gone\n",
                    newest.version
                );
                self.keep_output(app, newest.version, &why).await;
                if let Some(entry) = self.apps.lock().get(app).cloned() {
                    entry.runtime.logs.platform(
                        "api",
                        format!(
                            "Release v{} failed: node {node}, which was taking it live, is gone",
                            newest.version
                        ),
                    );
                }
                continue;
            }
            if started.elapsed() > SETTLE_WAIT {
                return Err(ApiError::conflict(format!(
                    "v{} of {app} is still going live (on another node); try again once it has \
                     finished",
                    head.latest
                ))
                .into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to the boot deadline) until another node serves `version`, when
    /// placement gave this node none of the app's web dynos: a push then ends with the
    /// release answering, through this node's router too.
    async fn wait_served_elsewhere(&self, app: &AppName, version: u64, progress: &Reporter) {
        let Ok(record) = self.store.control.app(app).await else {
            return;
        };
        progress
            .say(format!(
                "-----> Waiting for v{version}'s web dynos on the other nodes"
            ))
            .await;
        self.nudge(app);
        let deadline = std::time::Instant::now() + self.config.deadlines.boot;
        while std::time::Instant::now() < deadline {
            let read_at = std::time::Instant::now();
            if let Ok(records) = self.store.nodes.dynos(&record.id).await {
                let serving = records.iter().any(|r| {
                    self.membership.is_live(&r.node)
                        && r.dynos.iter().any(|d| {
                            d.process_type.is_web() && d.release == version && d.state.serves()
                        })
                });
                if serving {
                    self.learn_peers(&record, &records, read_at);
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        progress
            .say(format!(
                "       v{version} is live; its web dynos are still starting"
            ))
            .await;
    }

    async fn go_live(
        &self,
        entry: &AppEntry,
        record: &StoredRelease,
        progress: &Reporter,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let runtime = &entry.runtime;
        let loaded = until_cancelled(cancel, self.load(runtime, record)).await?;
        let taken = self.names_elsewhere(entry).await;
        release_phase(runtime, &loaded, progress, cancel, &taken).await?;
        progress
            .say(format!(
                "-----> Starting v{} (the old dynos stop once it is up)",
                record.version
            ))
            .await;
        let app = loaded.app.clone();
        self.run_formation(runtime, loaded, WebStart::Boot, cancel)
            .await?;
        // Other nodes learn at once what runs here now.
        self.nudge(&app);
        Ok(())
    }

    /// One release in full, and whether it serves now.
    pub(super) async fn release_detail(
        &self,
        app: &AppName,
        version: u64,
    ) -> Result<ReleaseDetail> {
        let release = self.store.control.release(app, version).await?;
        let head = self.store.control.release_head(app).await?;
        let current = head.current.map(|r| r.version);
        Ok(ReleaseDetail {
            release: release_info(&release, current),
            procfile: release.procfile,
            settings: release.settings,
            config: release.config,
        })
    }

    /// A page of the release log as the API shows it, newest first: one indexed range
    /// read, whatever the log's length.
    pub(super) async fn release_list(
        &self,
        app: &AppName,
        page: ReleasePage,
    ) -> Result<Vec<ReleaseInfo>> {
        let releases = self
            .store
            .control
            .releases_page(app, page.before, page.limit)
            .await?;
        // The current release (the newest succeeded) may be on another page: asked once.
        let head = self.store.control.release_head(app).await?;
        let current = head.current.map(|r| r.version);
        Ok(releases.iter().map(|r| release_info(r, current)).collect())
    }

    pub(super) async fn deploy(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateRelease,
        progress: Progress,
    ) -> Result<ReleaseInfo> {
        let entry = self.existing(app).await?;
        Procfile::parse(&req.procfile).map_err(|e| ApiError::invalid(e.to_string()))?;
        let settings =
            AppSettings::parse(&req.settings).map_err(|e| ApiError::invalid(e.to_string()))?;
        self.engine
            .check_settings(&settings)
            .map_err(ApiError::invalid)?;
        let record = self
            .release(
                &entry,
                app,
                &Reporter::new(Some(progress)),
                Some(&req.slug),
                |current| {
                    Ok(NewRelease {
                        slug: Some(req.slug.clone()),
                        procfile: req.procfile.clone(),
                        settings: req.settings.clone(),
                        config: current.map(|r| r.config).unwrap_or_default(),
                        description: req.description.clone(),
                        author: by.to_string(),
                        node: None, // set by `append`
                        created_at: None,
                    })
                },
            )
            .await?;
        Ok(release_info(&record, Some(record.version)))
    }

    pub(super) async fn rollback(
        &self,
        app: &AppName,
        by: &Caller,
        req: Rollback,
        progress: Option<Progress>,
    ) -> Result<ReleaseInfo> {
        let entry = self.existing(app).await?;
        // Releases never change but for their status, so the log read now holds every
        // possible target.
        let log = self.store.control.releases(app).await?;
        let record = self
            .release(&entry, app, &Reporter::new(progress), None, |current| {
                let newest = log.iter().map(|r| r.version).max();
                let target_version = match (req.retry, req.version) {
                    // Heroku's `releases:retry`: the newest release, live or failed.
                    (true, None) => newest.ok_or_else(|| {
                        ApiError::invalid(format!("{app} has no release to retry"))
                    })?,
                    (true, Some(v)) if Some(v) == newest => v,
                    (true, Some(v)) => {
                        return Err(ApiError::invalid(format!(
                            "only the newest release is retried: v{v} is not (`wdeploy \
                             rollback v{v}` releases it again)"
                        ))
                        .into());
                    }
                    (false, Some(v)) => v,
                    (false, None) => {
                        let current = current.ok_or_else(|| {
                            ApiError::invalid(format!("{app} has no release to roll back from"))
                        })?;
                        current
                            .version
                            .checked_sub(1)
                            .filter(|v| *v > 0)
                            .ok_or_else(|| {
                                ApiError::invalid(format!(
                                    "v{} is the first release: nothing to roll back to",
                                    current.version
                                ))
                            })?
                    }
                };
                let target = log
                    .iter()
                    .find(|r| r.version == target_version)
                    .ok_or_else(|| {
                        ControlError::from(StoreError::NotFound(format!(
                            "release v{target_version} of {app}"
                        )))
                    })?;
                if target.slug.is_none() {
                    return Err(
                        ApiError::invalid(format!("v{target_version} has no slug to run")).into(),
                    );
                }
                Ok(NewRelease {
                    slug: target.slug.clone(),
                    procfile: target.procfile.clone(),
                    settings: target.settings.clone(),
                    config: target.config.clone(),
                    description: match req.retry {
                        true => format!("Retry v{target_version}"),
                        false => format!("Rollback to v{target_version}"),
                    },
                    author: by.to_string(),
                    node: None, // set by `append`
                    created_at: None,
                })
            })
            .await?;
        Ok(release_info(&record, Some(record.version)))
    }

    pub(super) async fn config(&self, app: &AppName) -> Result<BTreeMap<String, String>> {
        self.existing(app).await?;
        let head = self.store.control.release_head(app).await?;
        Ok(head.current.map(|r| r.config).unwrap_or_default())
    }

    pub(super) async fn patch_config(
        &self,
        app: &AppName,
        by: &Caller,
        patch: ConfigPatch,
        progress: Option<Progress>,
    ) -> Result<BTreeMap<String, String>> {
        let entry = self.existing(app).await?;
        if patch.is_empty() {
            return Err(ApiError::invalid("no config vars given").into());
        }
        for key in patch.keys() {
            super::errors::check_config_key(key)?;
        }
        let record = self
            .release(&entry, app, &Reporter::new(progress), None, |current| {
                let (config, description) = apply_config(current.as_ref(), &patch);
                let before = current
                    .as_ref()
                    .map_or(0, |r| config_vars::bytes(&r.config));
                config_vars::check_size(before, &config).map_err(ApiError::invalid)?;
                let (slug, procfile, settings) = match current {
                    Some(r) => (r.slug, r.procfile, r.settings),
                    None => (None, String::new(), String::new()),
                };
                Ok(NewRelease {
                    slug,
                    procfile,
                    settings,
                    config,
                    description,
                    author: by.to_string(),
                    node: None, // set by `append`
                    created_at: None,
                })
            })
            .await?;
        Ok(record.config)
    }
}

/// The config vars after `patch` (a value sets, `None` unsets), and the release's
/// description: `Set A, B config vars`.
fn apply_config(
    current: Option<&StoredRelease>,
    patch: &ConfigPatch,
) -> (BTreeMap<String, String>, String) {
    let mut config = current.map(|r| r.config.clone()).unwrap_or_default();
    let (mut set, mut unset) = (Vec::new(), Vec::new());
    for (key, value) in patch {
        match value {
            Some(v) => {
                config.insert(key.clone(), v.clone());
                set.push(key.as_str());
            }
            None => {
                config.remove(key);
                unset.push(key.as_str());
            }
        }
    }
    let description = match (set.is_empty(), unset.is_empty()) {
        (false, true) => format!("Set {} config vars", set.join(", ")),
        (true, false) => format!("Unset {} config vars", unset.join(", ")),
        _ => format!(
            "Set {} and unset {} config vars",
            set.join(", "),
            unset.join(", ")
        ),
    };
    (config, description)
}

/// How `new`'s `[egress] allow` list differs from that of `current` (the release serving
/// when it was made; none before the first). A release whose settings no longer parse
/// (made under older rules) counts as having no list.
fn egress_change(current: Option<&StoredRelease>, new: &StoredRelease) -> EgressChange {
    let allow = |r: &StoredRelease| {
        AppSettings::parse(&r.settings)
            .ok()
            .and_then(|s| s.egress.allow)
    };
    let old = current.filter(|r| r.slug.is_some()).and_then(allow);
    EgressChange::between(old.as_ref(), allow(new).as_ref())
}

pub(super) fn release_info(r: &StoredRelease, current: Option<u64>) -> ReleaseInfo {
    ReleaseInfo {
        version: r.version,
        description: r.description.clone(),
        slug: r.slug.clone(),
        user: r.author.clone(),
        created_at: r.created_at,
        status: r.status,
        current: current == Some(r.version),
    }
}

/// `work`, or an error once `cancel` fires first (dropping `work`).
async fn until_cancelled<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        done = work => done,
        () = cancel.cancelled() => anyhow::bail!("the release was cancelled"),
    }
}
