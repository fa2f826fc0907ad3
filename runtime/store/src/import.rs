//! Moving a single host's state into a new store: what `wdeploy cluster:import` does when
//! one machine is no longer enough. The source is an embedded data directory, opened as
//! its host would open it (a release a stop left pending is failed, as at the host's
//! next start; nothing else in it changes); the target is any [`Store`], written through
//! the same facets the host uses, so it holds exactly what a host would have written.
//!
//! What is copied: people and their tokens (by hash, so every token in use keeps
//! working), every blob, and each app with when it was created, its releases (versions,
//! statuses, times, config vars, outputs), formation, maintenance mode, domains,
//! certificates, drains, collaborators, and add-on data (every key-value entry; the jobs
//! not yet done, ready again). An app gets a new id in the target, as its add-on data
//! and access are keyed by it there. Not copied: log history (the target starts a new
//! stream), ACME accounts (a new one is registered at the first order), dyno records
//! and restart requests (the nodes make their own). An import cut short leaves what it
//! copied: the target is then no longer new, and a second import refuses it.

use crate::embedded::export::AddonExport;
use crate::error::{Result, StoreError};
use crate::model::{App, NewRelease, Tenant};
use crate::{NodeInfo, Store};
use std::path::Path;
use wdeploy_core::ReleaseStatus;
use wdeploy_core::counted::counted;

/// What the target was given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub people: usize,
    pub tokens: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub apps: usize,
    pub releases: usize,
    pub entries: usize,
    pub jobs: usize,
}

impl Imported {
    /// `2 apps, 3 people and 4 tokens`.
    pub fn summary(&self) -> String {
        format!(
            "{}, {} and {}",
            counted(self.apps, "app"),
            counted(self.people, "person"),
            counted(self.tokens, "token")
        )
    }
}

/// Add-on data is copied as the source accepted it, under the source's quotas: the
/// target's own quota applies to the app's writes from then on.
const NO_QUOTA: u64 = 1 << 50;

/// Copies the embedded store in `data_dir` into `target`, which must be new (no app and
/// no token: an import never merges into state in use). `say` hears a line per step.
pub async fn from_embedded(
    data_dir: &Path,
    target: &Store,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Imported> {
    if !target.control.apps().await?.is_empty() || target.people.has_tokens().await? {
        return Err(StoreError::Conflict(
            "the target already has apps or tokens: an import goes into a new cluster only, \
             before any node has run on it"
                .into(),
        ));
    }
    let source = open_source(data_dir).await?;
    let export = {
        let dir = data_dir.to_path_buf();
        blocking(move || AddonExport::open(&dir)).await??
    };
    let mut done = Imported::default();
    copy_all(&source, export, target, &mut done, say)
        .await
        .map_err(|e| {
            StoreError::Backend(format!(
                "{e}; the target holds what was copied before ({}), so it is no longer new: \
                 import again into an empty one",
                done.summary()
            ))
        })?;
    Ok(done)
}

/// Everything, in an order where each part finds what it needs copied already: people
/// before tokens and access, blobs before the releases that reference them.
async fn copy_all(
    source: &Store,
    export: AddonExport,
    target: &Store,
    done: &mut Imported,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    copy_people(source, target, done).await?;
    say(format!(
        "Copied {} and {}",
        counted(done.people, "person"),
        counted(done.tokens, "token")
    ));
    copy_blobs(source, target, done).await?;
    say(format!(
        "Copied {} ({} bytes)",
        counted(done.blobs, "blob"),
        done.blob_bytes
    ));
    let export = std::sync::Arc::new(parking_lot::Mutex::new(export));
    for app in source.control.apps().await? {
        let before = done.clone();
        copy_app(source, &export, target, &app, done).await?;
        say(format!(
            "Copied {}: {}, {}, {}",
            app.name,
            counted(done.releases - before.releases, "release"),
            counted(done.entries - before.entries, "add-on entry"),
            counted(done.jobs - before.jobs, "job")
        ));
        done.apps += 1;
    }
    Ok(())
}

async fn open_source(data_dir: &Path) -> Result<Store> {
    if !data_dir.join("state.db").is_file() {
        return Err(StoreError::Invalid(format!(
            "{}: not a host's data directory (no state.db in it)",
            data_dir.display()
        )));
    }
    let me = NodeInfo {
        name: "import".parse().map_err(StoreError::Invalid)?,
        advertise: String::new(),
        started_at: chrono::Utc::now(),
        version: String::new(),
        leaving: false,
    };
    let dir = data_dir.to_path_buf();
    blocking(move || crate::embedded::open(&dir, me)).await?
}

async fn copy_people(source: &Store, target: &Store, done: &mut Imported) -> Result<()> {
    for user in source.people.users().await? {
        let people = &target.people;
        match people
            .add_user_at(&user.email, user.admin, user.created_at)
            .await
        {
            // Made by a node that opened the target (the admin): it stays as it is.
            Ok(_) | Err(StoreError::Conflict(_)) => done.people += 1,
            Err(e) => return Err(e),
        }
    }
    for token in source.people.tokens().await? {
        target.people.add_token(&token).await?;
        done.tokens += 1;
    }
    Ok(())
}

async fn copy_blobs(source: &Store, target: &Store, done: &mut Imported) -> Result<()> {
    for (digest, _) in source.blobs.stored().await? {
        let path = source.blobs.local_path(&digest).await?;
        let file = tokio::fs::File::open(&path).await?;
        let content = Box::pin(tokio_util::io::ReaderStream::new(file));
        let (size, _) = target.blobs.put(&digest, content, u64::MAX).await?;
        done.blobs += 1;
        done.blob_bytes += size;
    }
    Ok(())
}

async fn copy_app(
    source: &Store,
    export: &std::sync::Arc<parking_lot::Mutex<AddonExport>>,
    target: &Store,
    app: &App,
    done: &mut Imported,
) -> Result<()> {
    let name = &app.name;
    let copy = target.control.create_app_at(name, app.created_at).await?;
    target
        .addons
        .create_app(&copy.id)
        .await
        .map_err(addon_error)?;
    let mut releases = source.control.releases(name).await?;
    releases.sort_by_key(|r| r.version);
    for release in releases {
        let version = release.version;
        let appended = target
            .control
            .append_release(
                name,
                version,
                NewRelease {
                    slug: release.slug,
                    procfile: release.procfile,
                    settings: release.settings,
                    config: release.config,
                    description: release.description,
                    author: release.author,
                    node: None,
                    created_at: Some(release.created_at),
                },
            )
            .await?;
        if appended.status == ReleaseStatus::Pending {
            // The source's own open failed any release a stop left pending.
            let status = match release.status {
                ReleaseStatus::Pending => ReleaseStatus::Failed,
                status => status,
            };
            target.control.finish_release(name, version, status).await?;
        }
        let output = source.control.release_output(name, version).await?;
        if !output.is_empty() {
            target
                .control
                .set_release_output(name, version, &output)
                .await?;
        }
        done.releases += 1;
    }
    target
        .control
        .scale(name, &source.control.formation(name).await?)
        .await?;
    if app.maintenance {
        target.control.set_maintenance(name, true).await?;
    }
    for domain in source.control.domains(name).await? {
        target.control.add_domain(name, &domain).await?;
    }
    for cert in source.certs.certs(name).await? {
        target.certs.put_cert(cert).await?;
    }
    for drain in source.control.drains(name).await? {
        target.control.add_drain(name, drain).await?;
    }
    for person in source.people.collaborators(&app.id).await? {
        target.people.grant(&copy.id, &person).await?;
    }
    copy_addons(export, target, app, &copy, done).await
}

async fn copy_addons(
    export: &std::sync::Arc<parking_lot::Mutex<AddonExport>>,
    target: &Store,
    app: &App,
    copy: &App,
    done: &mut Imported,
) -> Result<()> {
    let tenant = Tenant {
        app: copy.id.clone(),
        quota_bytes: NO_QUOTA,
    };
    let mut after: Option<(String, String)> = None;
    loop {
        let page = {
            let (export, id) = (export.clone(), app.id.clone());
            let after = after.clone();
            blocking(move || {
                let after = after.as_ref().map(|(b, k)| (b.as_str(), k.as_str()));
                export.lock().entries(&id, after)
            })
            .await??
        };
        let Some(last) = page.last() else { break };
        after = Some((last.bucket.clone(), last.key.clone()));
        for entry in page {
            target
                .addons
                .set(&tenant, &entry.bucket, &entry.key, entry.value)
                .await
                .map_err(addon_error)?;
            done.entries += 1;
        }
    }
    let mut after = 0;
    loop {
        let page = {
            let (export, id) = (export.clone(), app.id.clone());
            blocking(move || export.lock().jobs(&id, after)).await??
        };
        let Some(last) = page.last() else { break };
        after = last.id;
        for job in page {
            target
                .addons
                .enqueue(&tenant, &job.queue, job.payload)
                .await
                .map_err(addon_error)?;
            done.jobs += 1;
        }
    }
    Ok(())
}

fn addon_error(e: crate::AddonError) -> StoreError {
    StoreError::Backend(format!("copying add-on data: {e}"))
}

/// Runs blocking work (SQLite, files) off the async workers.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| StoreError::Backend(format!("import task failed: {e}")))
}
