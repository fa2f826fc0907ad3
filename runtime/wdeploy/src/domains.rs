//! `domains`, `domains:add`, `domains:remove`: the custom domains an app is served at.

use crate::session::{self, AppArg};

#[derive(Debug, clap::Args)]
pub struct DomainArgs {
    /// The host name, e.g. www.example.com
    pub hostname: String,
    #[command(flatten)]
    pub app: AppArg,
}

pub fn list(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let domains = session::client()?.domains(&app)?;
    if domains.is_empty() {
        println!("{app} has no custom domains (it is served at its own URL: `wdeploy open`)");
        return Ok(());
    }
    let width = domains
        .iter()
        .map(|d| d.hostname.as_str().len())
        .max()
        .unwrap_or(0)
        .max("Domain".len());
    println!("{:<width$}  DNS target", "Domain");
    for d in domains {
        println!("{:<width$}  {}", d.hostname.as_str(), d.cname);
    }
    Ok(())
}

pub fn add(args: DomainArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let domain = session::client()?.add_domain(&app, &args.hostname)?;
    println!("Added {} to {app}", domain.hostname);
    println!(
        "Point its DNS at this host's router: a CNAME to {} (or an A record to the router's address)",
        domain.cname
    );
    Ok(())
}

pub fn remove(args: DomainArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.remove_domain(&app, &args.hostname)?;
    println!("Removed {} from {app}", args.hostname.trim());
    Ok(())
}
