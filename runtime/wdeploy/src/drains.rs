//! `drains`, `drains:add URL`, `drains:remove URL|ID`: the app's log drains, with
//! Heroku's verbs and output.

use crate::session::{self, AppArg};

pub fn list(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let drains = session::client()?.drains(&app)?;
    if drains.is_empty() {
        println!("{app} has no drains.");
        return Ok(());
    }
    println!("=== Drains");
    for drain in drains {
        println!("{} ({})", drain.url, drain.id);
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// syslog+tls://HOST:PORT, syslog://HOST:PORT, https://HOST/PATH or http://HOST/PATH
    pub url: String,
}

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let drain = session::client()?.add_drain(&app, &args.url)?;
    println!("Successfully added drain {}", drain.url);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The drain's URL (or its id, d.…)
    pub url: String,
}

pub fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let drain = session::client()?.remove_drain(&app, &args.url)?;
    println!("Successfully removed drain {}", drain.url);
    Ok(())
}
