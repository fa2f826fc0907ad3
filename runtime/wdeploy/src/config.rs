//! `config` (`--shell`: a `.env` file), `config:get K`, `config:set K=V… [--env-file F]`,
//! `config:unset K…`, `config:edit`.

use crate::envfile;
use crate::session::{self, AppArg, ShowArgs};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
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

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    #[command(flatten)]
    pub app: AppArg,
}

/// `config:edit`, Heroku's: the config vars in `$VISUAL` or `$EDITOR` (`vi` without
/// either) as an env file; what changed when the editor exits is set and unset in one
/// release. The file is the caller's alone (0600) and goes when this ends.
pub fn edit(args: EditArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let app = args.app.resolve()?;
    let client = session::client()?;
    let before = client.config(&app)?;
    let mut file = tempfile::Builder::new()
        .prefix("wdeploy-config-")
        .suffix(".env")
        .tempfile()
        .context("making a file to edit the config vars in")?;
    writeln!(
        file,
        "# The config vars of {app}: save and quit to apply; a line removed unsets its var."
    )?;
    for (key, value) in &before {
        writeln!(file, "{key}={}", envfile::quote(value))?;
    }
    file.flush()?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    // Through the shell, as git runs it, so the editor may carry arguments (`code --wait`).
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .with_context(|| format!("running the editor `{editor}`"))?;
    if !status.success() {
        bail!("the editor `{editor}` ended with {status}: nothing changed on {app}");
    }
    let after = match envfile::load(file.path()) {
        Ok(after) => after,
        // The edit is not lost to a typo: the file stays, for another look.
        Err(e) => match file.into_temp_path().keep() {
            Ok(path) => bail!(
                "{e:#}; nothing changed on {app}, and the edit is kept in {}",
                path.display()
            ),
            Err(_) => bail!("{e:#}; nothing changed on {app}"),
        },
    };
    let patch = changes(&before, &after);
    if patch.is_empty() {
        println!("Nothing changed on {app}");
        return Ok(());
    }
    client.patch_config(&app, &patch, &mut |line| eprintln!("{line}"))?;
    let keys: Vec<String> = patch.keys().cloned().collect();
    println!("{}", outcome(&client, &app, "Changed", &keys));
    Ok(())
}

/// What turns `before` into `after`: a value for each var added or changed, `None` for
/// each one gone.
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> ConfigPatch {
    let changed = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())));
    let gone = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(|k| (k.clone(), None));
    changed.chain(gone).collect()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn an_edit_sets_what_changed_and_unsets_what_went() {
        let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let before = vars(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let after = vars(&[("A", "1"), ("B", "two"), ("D", "4")]);
        let patch = super::changes(&before, &after);
        let expected: BTreeMap<String, Option<String>> = [
            ("B".to_string(), Some("two".to_string())),
            ("C".to_string(), None),
            ("D".to_string(), Some("4".to_string())),
        ]
        .into_iter()
        .collect();
        assert_eq!(patch, expected);
        assert!(super::changes(&before, &before).is_empty());
    }
}
