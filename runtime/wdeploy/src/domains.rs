//! `domains`, `domains:add [--acme]`, `domains:remove`: the custom domains an app is served
//! at.

use crate::session::{self, AppArg};

#[derive(Debug, clap::Args)]
pub struct DomainArgs {
    /// The host name, e.g. www.example.com
    pub hostname: String,
    #[command(flatten)]
    pub app: AppArg,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The host name, e.g. www.example.com
    pub hostname: String,
    /// Have the host order a certificate for it over ACME (and renew it)
    #[arg(long)]
    pub acme: bool,
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

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let domain = session::client()?.add_domain(&app, &args.hostname, args.acme)?;
    println!("Added {} to {app}", domain.hostname);
    println!(
        "Point its DNS at this host's router: a CNAME to {} (or an A record to the router's address)",
        domain.cname
    );
    if args.acme {
        println!(
            "A certificate for it is being ordered over ACME once its DNS points here: `wdeploy certs -a {app}` shows when it is issued"
        );
    }
    Ok(())
}

pub fn remove(args: DomainArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.remove_domain(&app, &args.hostname)?;
    println!("Removed {} from {app}", args.hostname.trim());
    Ok(())
}
