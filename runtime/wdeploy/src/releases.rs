//! `releases`, `releases:info [vN]`, `rollback [vN]`, `releases:retry`, `releases:cancel`.

use crate::session::{self, AppArg, JsonArg};
use anyhow::Context;
use wdeploy_api::server::MAX_RELEASES_PAGE;
use wdeploy_api::wire::Rollback;
use wdeploy_core::ReleaseStatus;

#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// How many releases to show, newest first (as Heroku, 15 unless told)
    #[arg(short = 'n', long = "num", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..=MAX_RELEASES_PAGE as i64))]
    pub num: u32,
    #[command(flatten)]
    pub json: JsonArg,
}

pub fn list(args: ReleasesArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let releases = session::client()?.releases(&app, Some(args.num), None)?;
    if args.json.printed(&releases)? {
        return Ok(());
    }
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
            r.version,
            r.description,
            r.user,
            crate::when::moment(r.created_at)
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The release to show, like v3 (default: the newest)
    pub version: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `releases:info [vN]`: one release as it was released (what `rollback vN` would bring
/// back): its status, who made it and why, its slug, Procfile, settings and config vars.
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let client = session::client()?;
    let version = version_or_newest(&client, &app, args.version)?;
    let detail = client.release(&app, &version)?;
    if args.json.printed(&detail)? {
        return Ok(());
    }
    let r = &detail.release;
    let mark = if r.current { " (current)" } else { "" };
    println!("=== {app} v{}{mark}", r.version);
    println!("Status:   {}", r.status);
    println!("Change:   {}", r.description);
    println!("By:       {}", r.user);
    println!("When:     {}", crate::when::moment(r.created_at));
    if let Some(slug) = &r.slug {
        println!("Slug:     {slug}");
    }
    let block = |title: &str, text: &str| {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            println!("\n=== {title}");
            for line in lines {
                println!("{line}");
            }
        }
    };
    if r.status == ReleaseStatus::Failed {
        println!("Why:      wdeploy releases:output v{} -a {app}", r.version);
    }
    block("Procfile", &detail.procfile);
    block("wdeploy.toml", &detail.settings);
    if !detail.config.is_empty() {
        println!("\n=== v{} Config Vars", r.version);
        let width = detail.config.keys().map(String::len).max().unwrap_or(0) + 1;
        for (key, value) in &detail.config {
            println!("{:<width$} {value}", format!("{key}:"));
        }
    }
    Ok(())
}

/// `version` as given, or the newest release's.
fn version_or_newest(
    client: &wdeploy_api::Client,
    app: &str,
    version: Option<String>,
) -> anyhow::Result<String> {
    if let Some(version) = version {
        return Ok(version);
    }
    match client.releases(app, Some(1), None)?.first() {
        Some(newest) => Ok(newest.version.to_string()),
        None => anyhow::bail!("{app} has no releases yet: `wdeploy push` makes the first"),
    }
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The release, like v3 (default: the newest)
    pub version: Option<String>,
}

/// `releases:output [vN]`: what going live printed for a release, as `push` showed it
/// (its release command, its boot, why it failed), for whoever looks later.
pub fn output(args: OutputArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let client = session::client()?;
    let version = version_or_newest(&client, &app, args.version)?;
    let kept = client.release_output(&app, &version)?;
    if kept.output.is_empty() {
        eprintln!(
            "v{} of {app} kept no output: it changed config before the first push, or an \
             older wdeploy made it",
            kept.version
        );
    }
    print!("{}", kept.output);
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
    let version = args.version.as_deref().map(version_of).transpose()?;
    let req = Rollback {
        version,
        ..Rollback::default()
    };
    let release = session::client()?.rollback(&app, req, &mut |line| eprintln!("{line}"))?;
    println!("{}: now v{}", release.description, release.version);
    Ok(())
}

/// `releases:retry`: the newest release released again, live or failed (its release
/// phase runs again), for a release phase that failed on something passing.
pub fn retry(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let req = Rollback {
        retry: true,
        ..Rollback::default()
    };
    let release = session::client()?.rollback(&app, req, &mut |line| eprintln!("{line}"))?;
    println!("{}: now v{}", release.description, release.version);
    Ok(())
}

/// `v3` or `3`: a release's version.
pub fn version_of(text: &str) -> anyhow::Result<u64> {
    text.trim_start_matches('v')
        .parse::<u64>()
        .with_context(|| format!("`{text}` is not a release version like v3"))
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
