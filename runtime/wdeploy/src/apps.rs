//! `apps`, `apps:create`, `apps:rename`, `apps:info`, `apps:destroy`, `open`.

use crate::session::{self, AppArg, JsonArg, ShowArgs};
use anyhow::bail;

pub fn list(json: JsonArg) -> anyhow::Result<()> {
    let apps = session::client()?.apps()?;
    if json.printed(&apps)? {
        return Ok(());
    }
    if apps.is_empty() {
        println!("No apps yet: run `wdeploy apps:create` in an app's directory.");
    }
    for app in apps {
        let release = app.release.map_or("-".to_string(), |v| format!("v{v}"));
        println!("{:<30} {:<6} {}", app.name, release, app.web_url);
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Name of the app (default: generated)
    pub name: Option<String>,
    /// Do not link the current directory to the new app
    #[arg(long)]
    pub no_link: bool,
}

pub fn create(args: CreateArgs) -> anyhow::Result<()> {
    let app = session::client()?.create_app(args.name.as_deref())?;
    println!("Created {} | {}", app.name, app.web_url);
    if !args.no_link {
        session::link(&std::env::current_dir()?, &app.name)?;
    }
    Ok(())
}

pub fn info(args: ShowArgs) -> anyhow::Result<()> {
    let client = session::client()?;
    let app = client.app(&args.app.resolve()?)?;
    if args.json.printed(&app)? {
        return Ok(());
    }
    println!("=== {}", app.name);
    println!("Web URL:   {}", app.web_url);
    println!(
        "Release:   {}",
        app.release.map_or("none".into(), |v| format!("v{v}"))
    );
    println!(
        "Formation: {}",
        if app.formation.is_empty() {
            "-".into()
        } else {
            app.formation.summary()
        }
    );
    if app.maintenance {
        println!("Maintenance: on (the router answers 503 with a maintenance page)");
    }
    // The rest as Heroku's `apps:info` shows it, each line only where the host answers
    // (an older one may not know the route).
    let name = app.name.as_str();
    if let Ok(dynos) = client.dynos(name) {
        println!("Dynos:     {}", dyno_states(&dynos));
    }
    if let Ok(domains) = client.domains(name)
        && !domains.is_empty()
    {
        let names: Vec<String> = domains.iter().map(|d| d.hostname.to_string()).collect();
        println!("Domains:   {}", names.join(", "));
    }
    if let Ok(people) = client.collaborators(name)
        && !people.is_empty()
    {
        let emails: Vec<&str> = people.iter().map(|p| p.email.as_str()).collect();
        println!("Access:    {}", emails.join(", "));
    }
    if let Ok(usage) = client.addon_usage(name) {
        println!(
            "Add-ons:   {} of {} stored",
            crate::addons::bytes(usage.storage_bytes),
            crate::addons::bytes(usage.quota_bytes)
        );
    }
    println!("Created:   {}", crate::when::moment(app.created_at));
    Ok(())
}

/// `web: 2 up; worker: 1 up, 1 crashed; run: 1 up` (one-offs under `run`), or `none`.
fn dyno_states(dynos: &[wdeploy_api::wire::DynoInfo]) -> String {
    use std::collections::BTreeMap;
    let mut by_type: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for d in dynos {
        let group = match wdeploy_core::dyno::is_one_off(&d.name, &d.process_type) {
            true => d.name.split('.').next().unwrap_or("run").to_string(),
            false => d.process_type.to_string(),
        };
        *by_type
            .entry(group)
            .or_default()
            .entry(d.state.to_string())
            .or_default() += 1;
    }
    if by_type.is_empty() {
        return "none".to_string();
    }
    by_type
        .iter()
        .map(|(group, states)| {
            let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
            format!("{group}: {}", states.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `maintenance`: whether the app is in maintenance mode.
pub fn maintenance(args: AppArg) -> anyhow::Result<()> {
    let app = session::client()?.app(&args.resolve()?)?;
    println!("{}", if app.maintenance { "on" } else { "off" });
    Ok(())
}

/// `maintenance:on` and `maintenance:off`.
pub fn set_maintenance(args: AppArg, on: bool) -> anyhow::Result<()> {
    let name = args.resolve()?;
    let update = wdeploy_api::wire::AppUpdate {
        maintenance: Some(on),
        ..Default::default()
    };
    session::client()?.update_app(&name, &update)?;
    if on {
        println!("Maintenance mode on for {name}: its requests get a 503 maintenance page.");
    } else {
        println!("Maintenance mode off for {name}: its dynos serve its requests again.");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The app's new name
    pub new_name: wdeploy_core::AppName,
    #[command(flatten)]
    pub app: AppArg,
}

/// `apps:rename NEW`: the app keeps all it has under a new name and URL; the directory
/// linked to it is linked to the new name.
pub fn rename(args: RenameArgs) -> anyhow::Result<()> {
    let name = args.app.resolve()?;
    let update = wdeploy_api::wire::AppUpdate {
        name: Some(args.new_name.clone()),
        ..Default::default()
    };
    let app = session::client()?.update_app(&name, &update)?;
    if app.name != args.new_name {
        bail!("the host did not rename {name}: it is older than this CLI and cannot rename apps");
    }
    println!("Renamed {name} to {} | {}", app.name, app.web_url);
    let cwd = std::env::current_dir()?;
    if let Some((dir, linked)) = session::find_link(&cwd)
        && linked == name
    {
        session::link(&dir, app.name.as_str())?;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    /// The app to destroy
    pub name: String,
    /// The app's name again, to confirm
    #[arg(long)]
    pub confirm: Option<String>,
}

pub fn destroy(args: DestroyArgs) -> anyhow::Result<()> {
    if args.confirm.as_deref() != Some(args.name.as_str()) {
        bail!(
            "destroying {0} deletes its releases, config and add-on data: run `wdeploy apps:destroy {0} --confirm {0}`",
            args.name
        );
    }
    session::client()?.destroy_app(&args.name)?;
    println!("Destroyed {}", args.name);
    Ok(())
}

/// `wdeploy open`: prints the app's URL and, on a desktop, opens it in the browser.
pub fn open(args: AppArg) -> anyhow::Result<()> {
    let app = session::client()?.app(&args.resolve()?)?;
    show_url(&app.web_url);
    Ok(())
}

/// `wdeploy dashboard [-a APP]`: the host's dashboard (at the app's page when one is
/// named), printed and, on a desktop, opened. Logging in there takes the same token.
pub fn dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    let host = session::credentials()?.host;
    let mut url = format!("{}/", host.trim_end_matches('/'));
    if let Some(app) = &args.app {
        // Checked first, so a typo gets the usual "not found" rather than an empty page.
        session::client()?.app(app)?;
        url.push_str(&format!("#/apps/{app}"));
    }
    show_url(&url);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Open this app's page
    #[arg(short, long)]
    pub app: Option<String>,
}

/// Prints `url` and opens it on this machine's desktop, if it has one.
fn show_url(url: &str) {
    println!("{url}");
    if let Some(opener) = desktop_opener() {
        // The URL is printed: a browser that cannot start is worth a note, not a failure.
        let started = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = started {
            eprintln!("(could not open a browser with {opener}: {e})");
        }
    }
}

/// The program that opens a URL on this machine's desktop, if it has one: `open` on
/// macOS, `xdg-open` where an X11 or Wayland display is set (not over a bare SSH session).
fn desktop_opener() -> Option<&'static str> {
    if cfg!(target_os = "macos") {
        return Some("open");
    }
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    display.then_some("xdg-open")
}
