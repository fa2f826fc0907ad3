//! `login`, `apps`, `apps:create`, `apps:info`, `apps:destroy`.

use crate::session::{self, AppArg, Credentials};
use anyhow::bail;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The host's control API, like http://127.0.0.1:7070
    #[arg(long, env = "WDEPLOY_HOST")]
    pub host: String,
    /// The token the host printed on first start
    #[arg(long, env = "WDEPLOY_TOKEN")]
    pub token: String,
}

pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let client = wdeploy_api::Client::new(&args.host, &args.token);
    let apps = client.apps()?;
    let path = session::save_credentials(&Credentials {
        host: args.host.clone(),
        token: args.token,
    })?;
    println!(
        "Logged in to {} ({} apps); credentials saved in {}",
        args.host,
        apps.len(),
        path.display()
    );
    Ok(())
}

pub fn list() -> anyhow::Result<()> {
    let apps = session::client()?.apps()?;
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
        let dir = std::env::current_dir()?;
        session::write_link(&dir, &app.name)?;
        println!(
            "Linked {} to {} ({})",
            dir.display(),
            app.name,
            session::LINK_FILE
        );
    }
    Ok(())
}

pub fn info(args: AppArg) -> anyhow::Result<()> {
    let app = session::client()?.app(&args.resolve()?)?;
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
    println!("Created:   {}", app.created_at);
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
