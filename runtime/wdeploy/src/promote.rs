//! `promote --to APP`: the slug one app runs, released on another with that app's own
//! config vars, as Heroku's `pipelines:promote` takes staging's build to production:
//! the very build that was tried there, never a rebuild, and nothing to upload.

use crate::releases::version_of;
use crate::session::{self, AppArg};
use anyhow::{Context, bail};
use wdeploy_api::wire::CreateRelease;
use wdeploy_core::ReleaseStatus;

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The app whose release is promoted (default: the one this directory is linked to)
    #[command(flatten)]
    pub app: AppArg,
    /// The app to release it on; its config vars stay its own
    #[arg(long, value_name = "APP")]
    pub to: String,
    /// The release to promote (v7); default: the one serving now
    pub version: Option<String>,
}

pub fn run(args: PromoteArgs) -> anyhow::Result<()> {
    let source = args.app.resolve()?;
    let target = args.to;
    if target == source {
        bail!(
            "{source} is the app promoted from: `--to` names another (`wdeploy rollback` \
             releases an earlier build of {source} itself)"
        );
    }
    let client = session::client()?;
    let version = match args.version.as_deref() {
        Some(text) => version_of(text)?,
        None => client
            .app(&source)?
            .release
            .with_context(|| format!("{source} has no release to promote"))?,
    };
    let detail = client.release(&source, &format!("v{version}"))?;
    let Some(slug) = detail.release.slug.clone() else {
        bail!("v{version} of {source} has no slug (it set config vars before any push)");
    };
    // What is promoted is what was tried: a build that never went live was not.
    if detail.release.status != ReleaseStatus::Succeeded {
        bail!(
            "v{version} of {source} {}: only a release that went live is promoted",
            match detail.release.status {
                ReleaseStatus::Pending => "is still going live",
                _ => "failed",
            }
        );
    }
    println!(
        "-----> Promoting {source} v{version} (slug {}) to {target}",
        slug.abbreviated()
    );
    let release = client.create_release(
        &target,
        &CreateRelease {
            slug,
            procfile: detail.procfile,
            settings: detail.settings,
            description: format!("Promote {source} v{version}"),
            heartbeat: Some(wdeploy_api::live::HEARTBEAT.as_secs()),
        },
        &mut |line| println!("{line}"),
    )?;
    let info = client.app(&target)?;
    println!("-----> Released v{} on {target}", release.version);
    println!("       {} deployed", info.web_url);
    Ok(())
}
