//! Who the CLI talks to and about which app: saved login, env overrides, the app link.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use wdeploy_api::Client;

/// The saved login (`wdeploy login`), overridable by `WDEPLOY_HOST` / `WDEPLOY_TOKEN`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub host: String,
    pub token: String,
}

/// The file an app directory is linked to its app by.
pub const LINK_FILE: &str = ".wdeploy";

fn credentials_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("wdeploy/credentials.json"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".config/wdeploy/credentials.json"))
}

pub fn save_credentials(creds: &Credentials) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = credentials_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(serde_json::to_string_pretty(creds)?.as_bytes())?;
    Ok(path)
}

/// Removes the saved login: the file it was in and what it held (`None` inside when it
/// was unreadable), or `None` when nothing was saved.
pub fn forget_credentials() -> anyhow::Result<Option<(PathBuf, Option<Credentials>)>> {
    let path = credentials_path()?;
    let saved = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Some((path, saved)))
}

pub fn credentials() -> anyhow::Result<Credentials> {
    let saved: Option<Credentials> = match std::fs::read_to_string(credentials_path()?) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .context("the saved login is unreadable; run `wdeploy login` again")?,
        ),
        Err(_) => None,
    };
    let host = std::env::var("WDEPLOY_HOST")
        .ok()
        .or_else(|| saved.as_ref().map(|c| c.host.clone()));
    let token = std::env::var("WDEPLOY_TOKEN")
        .ok()
        .or_else(|| saved.as_ref().map(|c| c.token.clone()));
    match (host, token) {
        (Some(host), Some(token)) => Ok(Credentials { host, token }),
        _ => bail!(
            "not logged in: run `wdeploy login --host URL --token TOKEN` (or set WDEPLOY_HOST and WDEPLOY_TOKEN)"
        ),
    }
}

/// The client of the host the user is logged in to. `SSL_CERT_FILE` (a PEM file of CA
/// certificates, as for curl and OpenSSL) replaces the public roots, for a host whose
/// API certificate comes from a private CA.
pub fn client() -> anyhow::Result<Client> {
    let creds = credentials()?;
    client_of(&creds.host, &creds.token)
}

/// A client of the host at `host` with `token` (see [`client`] for `SSL_CERT_FILE`).
pub fn client_of(host: &str, token: &str) -> anyhow::Result<Client> {
    match std::env::var_os("SSL_CERT_FILE") {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let pem = std::fs::read(&path)
                .with_context(|| format!("reading SSL_CERT_FILE {}", path.display()))?;
            Client::with_ca(host, token, &pem)
                .map_err(|e| anyhow::anyhow!("SSL_CERT_FILE {}: {e}", path.display()))
        }
        None => Ok(Client::new(host, token)),
    }
}

/// `-a APP`, else the app the current directory (or a parent) is linked to.
pub fn app(explicit: &Option<String>) -> anyhow::Result<String> {
    if let Some(app) = explicit {
        return Ok(app.clone());
    }
    let cwd = std::env::current_dir()?;
    match find_link(&cwd) {
        Some((_, app)) => Ok(app),
        None => bail!(
            "no app given: pass -a APP, or run `wdeploy apps:create` in the app's directory to link it"
        ),
    }
}

/// The nearest `.wdeploy` link at or above `dir`: (its directory, the app name).
pub fn find_link(dir: &Path) -> Option<(PathBuf, String)> {
    for d in dir.ancestors() {
        if let Ok(text) = std::fs::read_to_string(d.join(LINK_FILE)) {
            let app = text.lines().find_map(|l| {
                l.trim().strip_prefix("app").map(|r| {
                    r.trim_start()
                        .trim_start_matches('=')
                        .trim()
                        .trim_matches('"')
                        .to_string()
                })
            })?;
            return Some((d.to_path_buf(), app));
        }
    }
    None
}

/// Links `dir` to `app` and says so.
pub fn link(dir: &Path, app: &str) -> anyhow::Result<()> {
    write_link(dir, app)?;
    println!("Linked {} to {app} ({LINK_FILE})", dir.display());
    Ok(())
}

pub fn write_link(dir: &Path, app: &str) -> anyhow::Result<()> {
    std::fs::write(
        dir.join(LINK_FILE),
        format!("# wdeploy app this directory deploys to\napp = \"{app}\"\n"),
    )
    .with_context(|| format!("writing {}", dir.join(LINK_FILE).display()))
}

/// `-a APP` on every command that acts on one app.
#[derive(Debug, Clone, clap::Args)]
pub struct AppArg {
    /// The app (default: the one this directory is linked to)
    #[arg(short, long)]
    pub app: Option<String>,
}

impl AppArg {
    pub fn resolve(&self) -> anyhow::Result<String> {
        app(&self.app)
    }
}

/// `--json` on the commands that show something: the answer as the API gives it, one
/// JSON document on stdout, for scripts (`jq`) rather than eyes.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JsonArg {
    /// Print the answer as JSON, as the API gives it (for scripts)
    #[arg(long)]
    pub json: bool,
}

impl JsonArg {
    /// Prints `value` as JSON if `--json` was given; whether it did (then the command
    /// prints nothing else).
    pub fn printed<T: serde::Serialize>(self, value: &T) -> anyhow::Result<bool> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(self.json)
    }
}

/// `-a APP` and `--json`: a command that shows something of one app.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub app: AppArg,
    #[command(flatten)]
    pub json: JsonArg,
}

#[cfg(test)]
mod tests {
    #[test]
    fn link_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        super::write_link(dir.path(), "hello").unwrap();
        let sub = dir.path().join("src");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(super::find_link(&sub).unwrap().1, "hello");
    }
}
