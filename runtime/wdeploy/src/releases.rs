//! `releases`, `rollback [vN]`, `releases:cancel`.

use crate::session::{self, AppArg};
use anyhow::Context;
use wdeploy_api::server::MAX_RELEASES_PAGE;
use wdeploy_core::ReleaseStatus;

#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// How many releases to show, newest first (as Heroku, 15 unless told)
    #[arg(short = 'n', long = "num", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..=MAX_RELEASES_PAGE as i64))]
    pub num: u32,
}

pub fn list(args: ReleasesArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let releases = session::client()?.releases(&app, Some(args.num), None)?;
    println!("=== {app} Releases");
    for r in releases {
        let mark = if r.current {
            " (current)".to_string()
        } else if r.status != ReleaseStatus::Succeeded {
            format!(" ({})", r.status)
        } else {
            String::new()
        };
        println!(
            "v{:<4} {:<40} {:<10} {}{mark}",
            r.version, r.description, r.user, r.created_at
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The release to go back to (default: the one before the current)
    pub version: Option<String>,
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let version = args
        .version
        .map(|v| {
            v.trim_start_matches('v')
                .parse::<u64>()
                .with_context(|| format!("`{v}` is not a release version like v3"))
        })
        .transpose()?;
    let release = session::client()?.rollback(&app, version)?;
    println!("{}: now v{}", release.description, release.version);
    Ok(())
}

pub fn cancel(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let release = session::client()?.cancel_release(&app)?;
    println!(
        "Cancelled v{} ({}): {}",
        release.version, release.description, release.status
    );
    Ok(())
}
