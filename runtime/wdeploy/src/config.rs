//! `config` (`--shell`: a `.env` file), `config:get K`, `config:set K=V… [--env-file F]`,
//! `config:unset K…`.

use crate::envfile;
use crate::session::{self, AppArg, ShowArgs};
use anyhow::bail;
use wdeploy_api::Client;
use wdeploy_api::wire::ConfigPatch;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub show: ShowArgs,
    /// Print KEY=VALUE lines, each value quoted for a shell where it needs it: what
    /// `wdeploy dev` reads from `.env` (`wdeploy config --shell > .env`)
    #[arg(short, long, conflicts_with = "json")]
    pub shell: bool,
}

pub fn list(args: ListArgs) -> anyhow::Result<()> {
    let app = args.show.app.resolve()?;
    let config = session::client()?.config(&app)?;
    if args.show.json.printed(&config)? {
        return Ok(());
    }
    if args.shell {
        for (k, v) in config {
            println!("{k}={}", envfile::quote(&v));
        }
        return Ok(());
    }
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
    /// Print KEY=VALUE, the value quoted for a shell where it needs it
    /// (`wdeploy config:get DATABASE_URL --shell >> .env`)
    #[arg(short, long)]
    pub shell: bool,
}

pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let config = session::client()?.config(&args.app.resolve()?)?;
    match config.get(&args.key) {
        Some(v) if args.shell => println!("{}={}", args.key, envfile::quote(v)),
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
    #[arg(required_unless_present = "env_file")]
    pub pairs: Vec<String>,
    /// Set every variable of this env file too (as `wdeploy config --shell` writes it and
    /// `wdeploy dev` reads it: quoted values kept as they are, across lines too); the
    /// pairs given win over it
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<std::path::PathBuf>,
}

pub fn set(args: SetArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let mut patch = ConfigPatch::new();
    if let Some(path) = &args.env_file {
        let vars = envfile::load(path)?;
        if vars.is_empty() && args.pairs.is_empty() {
            bail!("{} sets no variable", path.display());
        }
        patch.extend(vars.into_iter().map(|(k, v)| (k, Some(v))));
    }
    for pair in &args.pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("`{pair}` is not KEY=VALUE");
        };
        patch.insert(k.to_string(), Some(v.to_string()));
    }
    let client = session::client()?;
    client.patch_config(&app, &patch, &mut |line| eprintln!("{line}"))?;
    let keys: Vec<_> = patch.keys().cloned().collect();
    println!("{}", outcome(&client, &app, "Set", &keys));
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
    let client = session::client()?;
    // Keys that are not set would make a release that changes nothing, and restart every
    // dyno for it.
    let config = client.config(&app)?;
    let (keys, absent): (Vec<String>, Vec<String>) = args
        .keys
        .iter()
        .cloned()
        .partition(|k| config.contains_key(k));
    if !absent.is_empty() {
        eprintln!("{} not set on {app}", names_are(&absent));
    }
    if keys.is_empty() {
        println!("Nothing changed on {app}");
        return Ok(());
    }
    let patch: ConfigPatch = keys.iter().map(|k| (k.clone(), None)).collect();
    client.patch_config(&app, &patch, &mut |line| eprintln!("{line}"))?;
    println!("{}", outcome(&client, &app, "Unset", &keys));
    Ok(())
}

/// `A is` or `A, B are`.
fn names_are(keys: &[String]) -> String {
    match keys {
        [one] => format!("{one} is"),
        many => format!("{} are", many.join(", ")),
    }
}

/// What a config change did, as the release it made says (asked for afterwards, as
/// Heroku's CLI does): dynos restarted with the new values (`Set A and restarted hello,
/// v3`), or, before the first push, nothing to restart (`… applies from the first push`).
fn outcome(client: &Client, app: &str, verb: &str, keys: &[String]) -> String {
    let keys = keys.join(", ");
    let newest = client
        .releases(app, Some(1), None)
        .ok()
        .and_then(|page| page.into_iter().next());
    match newest {
        Some(release) if release.slug.is_some() => {
            format!("{verb} {keys} and restarted {app}, v{}", release.version)
        }
        Some(release) => format!(
            "{verb} {keys} on {app}, v{} (nothing is deployed yet: it applies from the first push)",
            release.version
        ),
        None => format!("{verb} {keys} on {app}"),
    }
}
