//! `config`, `config:get K`, `config:set K=V…`, `config:unset K…`.

use crate::session::{self, AppArg};
use anyhow::bail;
use wdeploy_api::wire::ConfigPatch;

pub fn list(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let config = session::client()?.config(&app)?;
    println!("=== {app} Config Vars");
    let width = config.keys().map(|k| k.len() + 1).max().unwrap_or(0);
    for (k, v) in config {
        println!("{:<width$} {v}", format!("{k}:"));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub app: AppArg,
    pub key: String,
}

pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let config = session::client()?.config(&args.app.resolve()?)?;
    match config.get(&args.key) {
        Some(v) => println!("{v}"),
        None => bail!("config var {} is not set", args.key),
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// KEY=VALUE pairs
    #[arg(required = true)]
    pub pairs: Vec<String>,
}

pub fn set(args: SetArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let mut patch = ConfigPatch::new();
    for pair in &args.pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("`{pair}` is not KEY=VALUE");
        };
        patch.insert(k.to_string(), Some(v.to_string()));
    }
    let client = session::client()?;
    client.patch_config(&app, &patch)?;
    let keys: Vec<_> = patch.keys().cloned().collect();
    let version = client
        .app(&app)?
        .release
        .map_or(String::new(), |v| format!(", v{v}"));
    println!("Set {} and restarted {app}{version}", keys.join(", "));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct UnsetArgs {
    #[command(flatten)]
    pub app: AppArg,
    #[arg(required = true)]
    pub keys: Vec<String>,
}

pub fn unset(args: UnsetArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let patch: ConfigPatch = args.keys.iter().map(|k| (k.clone(), None)).collect();
    session::client()?.patch_config(&app, &patch)?;
    println!("Unset {} and restarted {app}", args.keys.join(", "));
    Ok(())
}
