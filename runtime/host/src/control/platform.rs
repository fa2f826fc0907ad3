//! The control API's [`Platform`], call by call: each checks its input, does its work
//! through the store and the app's runtime (or the modules beside this one), and turns
//! any failure into an API error at this one boundary.

use super::AppEntry;
use super::Host;
use super::errors::{ControlError, Result, invalid};
use crate::dyno::status::DynoSnapshot;
use async_trait::async_trait;
use std::collections::BTreeMap;
use wdeploy_api::ApiError;
use wdeploy_api::server::{
    BlobStream, Caller, LogQuery, OneOffRun, Platform, Progress, ReleasePage, TextStream,
};
use wdeploy_api::wire::*;
use wdeploy_core::{AppName, Digest, Formation, Person, ProcessType, TokenId, dyno};
use wdeploy_store::App;

/// Most dynos of one process type.
const MAX_DYNOS_PER_TYPE: u32 = 100;

impl Host {
    pub(super) async fn app_info(&self, app: &App) -> Result<AppInfo> {
        let head = self.store.control.release_head(&app.name).await?;
        Ok(AppInfo {
            web_url: format!(
                "http://{}.{}:{}",
                app.name, self.config.domain, self.config.router_port
            ),
            created_at: app.created_at,
            release: head.current.map(|r| r.version),
            formation: self.store.control.formation(&app.name).await?,
            name: app.name.clone(),
            maintenance: app.maintenance,
        })
    }

    async fn app_list(&self, caller: &Caller) -> Result<Vec<AppInfo>> {
        let mut infos = Vec::new();
        for app in self.apps_of(caller).await? {
            infos.push(self.app_info(&app).await?);
        }
        Ok(infos)
    }

    async fn create(&self, by: &Caller, req: CreateApp) -> Result<AppInfo> {
        let name = match req.name {
            Some(name) => name,
            None => format!("app-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        };
        let name: AppName = name
            .parse()
            .map_err(|e: wdeploy_core::app_name::AppNameError| ApiError::invalid(e.to_string()))?;
        self.check_app_budget(by).await?;
        let app = self.store.control.create_app(&name).await?;
        // A fresh id, so no add-on data of an earlier app of this name can be reached.
        self.store.addons.create_app(&app.id).await?;
        // Its creator may act on it (an admin may anyway, and is listed like anyone).
        self.store.people.grant(&app.id, &by.person).await?;
        self.entry(&name)
            .runtime
            .logs
            .platform("api", format!("App created by {by}"));
        self.app_info(&app).await
    }

    async fn destroy(&self, app: &AppName) -> Result<()> {
        self.existing(app).await?;
        // An app is never left half destroyed.
        let (host, app) = (self.shared()?, app.clone());
        to_the_end(
            "destroying the app",
            async move { host.destroy_now(&app).await },
        )
        .await
    }

    async fn change_formation(
        &self,
        app: &AppName,
        by: &Caller,
        patch: Formation,
    ) -> Result<Formation> {
        let entry = self.existing(app).await?;
        let runtime = &entry.runtime;
        // Scaling waits for a release going live, so it applies to the new release.
        let _turn = entry.release_turn().await?;
        let release = runtime.current_release();
        for (process_type, quantity) in patch.iter() {
            if quantity > MAX_DYNOS_PER_TYPE {
                return Err(ApiError::invalid(format!(
                    "{process_type}={quantity}: at most {MAX_DYNOS_PER_TYPE} dynos per process type"
                ))
                .into());
            }
            if let Some(release) = &release {
                match release.procfile.get(process_type) {
                    None => {
                        return Err(ApiError::not_found(format!(
                            "no process type `{process_type}` in v{} (types: {})",
                            release.version,
                            release.procfile.type_names()
                        ))
                        .into());
                    }
                    Some(p) if p.is_release() => {
                        return Err(ApiError::invalid(
                            "the release process type runs once per deploy; it cannot be scaled",
                        )
                        .into());
                    }
                    Some(_) => {}
                }
            }
        }
        let formation = self.store.control.scale(app, &patch).await?;
        if let (Some(release), Some(id)) = (release, entry.id.get()) {
            let runnable = formation.runnable_in(&release.procfile);
            let share = self
                .membership
                .share_of(id, &runnable, release.settings.web.placement);
            runtime
                .scale(&share)
                .await
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
            self.nudge(app);
        }
        runtime
            .logs
            .platform("api", format!("Scaled to {} by {}", patch.summary(), by));
        Ok(formation)
    }

    async fn dyno_list(&self, app: &AppName) -> Result<Vec<DynoInfo>> {
        let record = self.store.control.app(app).await?;
        let entry = self.entry_for(&record);
        let mut dynos: Vec<DynoInfo> = self
            .cluster_dynos(&record, &entry)
            .await
            .into_iter()
            .map(|(node, d)| DynoInfo {
                node: Some(node),
                ..dyno_info(d)
            })
            .collect();
        dynos.sort_by(|a, b| {
            (&a.process_type, &a.name, &a.node).cmp(&(&b.process_type, &b.name, &b.node))
        });
        Ok(dynos)
    }

    /// Restarts the named dyno wherever it runs, every dyno of a process type (`web`) or
    /// every dyno of the app, on every node: this node's at once, the others' through a
    /// restart request they act on at their next look. Under the app's release turn, so
    /// this node's converge loop does not take its own request for another one.
    async fn restart_dynos(&self, app: &AppName, by: &Caller, dyno: Option<&str>) -> Result<()> {
        let record = self.store.control.app(app).await?;
        let entry = self.entry_for(&record);
        let runtime = &entry.runtime;
        let one = dyno.filter(|selector| !dyno::is_type_selector(selector));
        if let Some(selector) = dyno {
            let named = self.dynos_selected(&record, &entry, selector).await?;
            let Some((_, found)) = named.first() else {
                let what = match one {
                    Some(name) => format!("no dyno {name} is running"),
                    None => format!("no {selector} dynos are running"),
                };
                return Err(ApiError::invalid(what).into());
            };
            if one.is_some() && dyno::is_one_off(&found.name, &found.process_type) {
                return Err(ApiError::invalid(format!(
                    "{selector} is a one-off dyno, which is not restarted: `wdeploy ps:stop \
                     {selector}` stops it"
                ))
                .into());
            }
        }
        let _turn = entry.release_turn().await?;
        let here = |selector: &str| {
            runtime
                .dynos()
                .iter()
                .any(|d| dyno::restart_reaches(selector, &d.name, &d.process_type))
        };
        let local = dyno.is_none_or(here);
        if local {
            runtime.logs.platform(
                "api",
                format!("Restarting {} by {by}", dyno.unwrap_or("all dynos")),
            );
            if dyno.is_some() || runtime.current_release().is_some() {
                runtime.restart(dyno).await.map_err(invalid)?;
            }
            if one.is_some() {
                return Ok(());
            }
        }
        let request = self.store.nodes.request_restart(&record.id, dyno).await?;
        entry.node.lock().restarts_seen = Some(request.number);
        self.nudge(app);
        Ok(())
    }

    /// The dynos of the formation a restart of `selector` reaches on every node: the one
    /// it names (a one-off too, to refuse it by name), or those of the process type it
    /// names, which must be a type of the formation.
    async fn dynos_selected(
        &self,
        record: &App,
        entry: &AppEntry,
        selector: &str,
    ) -> Result<Vec<(String, DynoSnapshot)>> {
        if !dyno::is_type_selector(selector) {
            return Ok(self.dynos_named(record, entry, selector).await);
        }
        let process_type: ProcessType = selector.parse().map_err(|_| {
            ApiError::invalid(format!(
                "`{selector}` is not a dyno (web.1) or a process type (web)"
            ))
        })?;
        if process_type.is_release() {
            return Err(ApiError::invalid(
                "the release phase is not restarted: `wdeploy releases:cancel` stops it",
            )
            .into());
        }
        let mut all = self.cluster_dynos(record, entry).await;
        all.retain(|(_, d)| dyno::restart_reaches(selector, &d.name, &d.process_type));
        Ok(all)
    }
}

/// Runs a change in a task of its own and waits for it: a client that goes away mid-way
/// (which drops the request's future) cannot stop it half done, with a release left
/// pending until the next restart or an app half destroyed.
async fn to_the_end<T: Send + 'static>(
    what: &str,
    change: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(change)
        .await
        .map_err(|e| ApiError::internal(format!("{what} failed: {e}")))?
}

fn dyno_info(d: DynoSnapshot) -> DynoInfo {
    DynoInfo {
        name: d.name,
        process_type: d.process_type,
        state: d.state,
        since: d.since,
        next_start: d.next_start,
        release: d.release,
        command: d.command,
        node: None,
    }
}

#[async_trait]
impl Platform for Host {
    async fn authenticate(&self, token: &str) -> Result<Option<Caller>, ApiError> {
        let caller = self.caller(token).await?;
        if let Some(caller) = &caller {
            self.admit_call(caller).await?;
        }
        Ok(caller)
    }

    async fn open_session(&self, token: &str) -> Result<Option<(Caller, String)>, ApiError> {
        Ok(self.open_dashboard_session(token).await?)
    }

    async fn session_caller(&self, cookie: &str) -> Result<Option<Caller>, ApiError> {
        let caller = self.dashboard_caller(cookie).await?;
        if let Some(caller) = &caller {
            self.admit_call(caller).await?;
        }
        Ok(caller)
    }

    async fn close_session(&self, cookie: &str) -> Result<(), ApiError> {
        Ok(self.close_dashboard_session(cookie).await?)
    }

    async fn may_act_on(&self, caller: &Caller, app: &AppName) -> Result<bool, ApiError> {
        Ok(self.may_act(caller, app).await?)
    }

    async fn apps(&self, caller: &Caller) -> Result<Vec<AppInfo>, ApiError> {
        Ok(self.app_list(caller).await?)
    }

    async fn create_app(&self, by: &Caller, req: CreateApp) -> Result<AppInfo, ApiError> {
        Ok(self.create(by, req).await?)
    }

    async fn app(&self, app: &AppName) -> Result<AppInfo, ApiError> {
        let stored = self.store.control.app(app).await;
        Ok(self.app_info(&stored.map_err(ControlError::from)?).await?)
    }

    async fn destroy_app(&self, app: &AppName) -> Result<(), ApiError> {
        Ok(self.destroy(app).await?)
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>, ApiError> {
        Ok(self.node_list().await?)
    }

    async fn rotate_cluster_key(
        &self,
        by: &Caller,
        req: KeyRotation,
    ) -> Result<RotatedKey, ApiError> {
        Ok(self.rotate_key(by, req).await?)
    }

    async fn update_app(
        &self,
        app: &AppName,
        by: &Caller,
        update: AppUpdate,
    ) -> Result<AppInfo, ApiError> {
        Ok(self.update(app, by, update).await?)
    }

    async fn missing_blobs(&self, digests: Vec<Digest>) -> Result<Vec<Digest>, ApiError> {
        Ok(self.missing(digests).await?)
    }

    async fn put_blob(&self, digest: &Digest, body: BlobStream) -> Result<(), ApiError> {
        Ok(self.store_blob(digest, body).await?)
    }

    async fn create_release(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateRelease,
        progress: Progress,
    ) -> Result<ReleaseInfo, ApiError> {
        Ok(self.deploy(app, by, req, progress).await?)
    }

    async fn releases(
        &self,
        app: &AppName,
        page: ReleasePage,
    ) -> Result<Vec<ReleaseInfo>, ApiError> {
        Ok(self.release_list(app, page).await?)
    }

    async fn release(&self, app: &AppName, version: u64) -> Result<ReleaseDetail, ApiError> {
        Ok(self.release_detail(app, version).await?)
    }

    async fn release_output(&self, app: &AppName, version: u64) -> Result<ReleaseOutput, ApiError> {
        let output = self.store.control.release_output(app, version).await;
        let output = output.map_err(super::errors::ControlError::from)?;
        Ok(ReleaseOutput { version, output })
    }

    async fn rollback(
        &self,
        app: &AppName,
        by: &Caller,
        req: Rollback,
        progress: Option<Progress>,
    ) -> Result<ReleaseInfo, ApiError> {
        let (host, app, by) = (self.shared()?, app.clone(), by.clone());
        Ok(to_the_end("rolling back", async move {
            host.rollback(&app, &by, req, progress).await
        })
        .await?)
    }

    async fn cancel_release(&self, app: &AppName, by: &Caller) -> Result<ReleaseInfo, ApiError> {
        Ok(Host::cancel_release(self, app, by).await?)
    }

    async fn config(&self, app: &AppName) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(Host::config(self, app).await?)
    }

    async fn patch_config(
        &self,
        app: &AppName,
        by: &Caller,
        patch: ConfigPatch,
        progress: Option<Progress>,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let (host, app, by) = (self.shared()?, app.clone(), by.clone());
        let changing = async move { host.patch_config(&app, &by, patch, progress).await };
        Ok(to_the_end("changing the config", changing).await?)
    }

    /// The formation over every process type of the current release, 0 where it asks
    /// for none, as Heroku lists it (so a type never scaled can be, from a list).
    async fn formation(&self, app: &AppName) -> Result<Formation, ApiError> {
        let formation = self.store.control.formation(app).await;
        let formation = formation.map_err(ControlError::from)?;
        let head = self.store.control.release_head(app).await;
        let current = head.map_err(ControlError::from)?.current;
        let procfile = current.and_then(|r| wdeploy_core::Procfile::parse(&r.procfile).ok());
        Ok(match procfile {
            Some(procfile) => formation.every_type_in(&procfile),
            None => formation,
        })
    }

    async fn scale(
        &self,
        app: &AppName,
        by: &Caller,
        patch: Formation,
    ) -> Result<Formation, ApiError> {
        Ok(self.change_formation(app, by, patch).await?)
    }

    async fn dynos(&self, app: &AppName) -> Result<Vec<DynoInfo>, ApiError> {
        Ok(self.dyno_list(app).await?)
    }

    async fn restart(
        &self,
        app: &AppName,
        by: &Caller,
        dyno: Option<&str>,
    ) -> Result<(), ApiError> {
        Ok(self.restart_dynos(app, by, dyno).await?)
    }

    async fn run(
        &self,
        app: &AppName,
        by: &Caller,
        req: RunRequest,
    ) -> Result<OneOffRun, ApiError> {
        Ok(self.run_one_off(app, by, req).await?)
    }

    async fn send_input(
        &self,
        app: &AppName,
        by: &Caller,
        dyno: &str,
        input: BlobStream,
    ) -> Result<(), ApiError> {
        Ok(self.send_input(app, by, dyno, input).await?)
    }

    async fn stop_dyno(&self, app: &AppName, by: &Caller, dyno: &str) -> Result<(), ApiError> {
        Ok(self.stop_one(app, by, dyno).await?)
    }

    async fn logs(&self, app: &AppName, query: LogQuery) -> Result<TextStream, ApiError> {
        Ok(self.log_stream(app, query).await?)
    }

    async fn kv_keys(&self, app: &AppName, bucket: &str, prefix: &str) -> Result<KvKeys, ApiError> {
        Ok(self.kv_list(app, bucket, prefix).await?)
    }

    async fn kv_get(&self, app: &AppName, bucket: &str, key: &str) -> Result<KvEntry, ApiError> {
        Ok(self.kv_read(app, bucket, key).await?)
    }

    async fn kv_set(
        &self,
        app: &AppName,
        by: &Caller,
        bucket: &str,
        key: &str,
        value: String,
    ) -> Result<KvEntry, ApiError> {
        Ok(self.kv_write(app, by, bucket, key, value).await?)
    }

    async fn kv_delete(
        &self,
        app: &AppName,
        by: &Caller,
        bucket: &str,
        key: &str,
    ) -> Result<(), ApiError> {
        Ok(self.kv_remove(app, by, bucket, key).await?)
    }

    async fn queues(&self, app: &AppName) -> Result<Vec<QueueInfo>, ApiError> {
        Ok(self.queue_list(app).await?)
    }

    async fn addons(&self, app: &AppName) -> Result<AddonUsage, ApiError> {
        Ok(self.addon_usage(app).await?)
    }

    async fn domains(&self, app: &AppName) -> Result<Vec<DomainInfo>, ApiError> {
        Ok(self.domain_list(app).await?)
    }

    async fn add_domain(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateDomain,
    ) -> Result<DomainInfo, ApiError> {
        Ok(self.domain_add(app, by, req).await?)
    }

    async fn remove_domain(
        &self,
        app: &AppName,
        by: &Caller,
        hostname: &str,
    ) -> Result<(), ApiError> {
        Ok(self.domain_remove(app, by, hostname).await?)
    }

    async fn certs(&self, app: &AppName) -> Result<Vec<CertInfo>, ApiError> {
        Ok(self.cert_list(app).await?)
    }

    async fn add_cert(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateCert,
    ) -> Result<Vec<CertInfo>, ApiError> {
        Ok(self.cert_add(app, by, req).await?)
    }

    async fn remove_cert(
        &self,
        app: &AppName,
        by: &Caller,
        domain: &str,
    ) -> Result<CertInfo, ApiError> {
        Ok(self.cert_remove(app, by, domain).await?)
    }

    async fn metrics(&self) -> Result<String, ApiError> {
        Ok(self.metrics_text())
    }

    async fn app_metrics(&self, app: &AppName) -> Result<MetricsHistory, ApiError> {
        Ok(self.metrics_history(app).await?)
    }

    async fn users(&self) -> Result<Vec<UserInfo>, ApiError> {
        Ok(self.user_list().await?)
    }

    async fn add_user(&self, by: &Caller, req: CreateUser) -> Result<NewToken, ApiError> {
        Ok(self.add_person(by, req).await?)
    }

    async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>, ApiError> {
        Ok(self.token_list(caller).await?)
    }

    async fn remove_user(&self, by: &Caller, email: &Person) -> Result<UserRemoved, ApiError> {
        Ok(self.remove_person(by, email).await?)
    }

    async fn create_token(&self, caller: &Caller, req: CreateToken) -> Result<NewToken, ApiError> {
        let Some(user) = req.user.filter(|user| *user != caller.person) else {
            let description = req.description;
            let description = description.unwrap_or_else(|| "made by tokens:create".into());
            return Ok(self.make_token(&caller.person, &description).await?);
        };
        Ok(self.token_for(caller, &user, req.description).await?)
    }

    async fn revoke_token(&self, caller: &Caller, id: &TokenId) -> Result<(), ApiError> {
        Ok(self.revoke(caller, id).await?)
    }

    async fn collaborators(&self, app: &AppName) -> Result<Vec<Collaborator>, ApiError> {
        Ok(self.collaborator_list(app).await?)
    }

    async fn add_collaborator(
        &self,
        app: &AppName,
        by: &Caller,
        email: &Person,
    ) -> Result<(), ApiError> {
        Ok(self.grant(app, by, email).await?)
    }

    async fn remove_collaborator(
        &self,
        app: &AppName,
        by: &Caller,
        email: &Person,
    ) -> Result<(), ApiError> {
        Ok(self.take_away(app, by, email).await?)
    }

    async fn drains(&self, app: &AppName) -> Result<Vec<DrainInfo>, ApiError> {
        Ok(self.drain_list(app).await?)
    }

    async fn add_drain(&self, app: &AppName, req: CreateDrain) -> Result<DrainInfo, ApiError> {
        Ok(self.drain_add(app, req).await?)
    }

    async fn remove_drain(&self, app: &AppName, which: &str) -> Result<DrainInfo, ApiError> {
        Ok(self.drain_remove(app, which).await?)
    }
}
