//! Who the CLI acts as: `login`, `whoami`, `logout`, `auth:token`.

use crate::session::{self, Credentials, JsonArg};
use wdeploy_api::ClientError;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The host's control API, like http://127.0.0.1:7070
    #[arg(long, env = "WDEPLOY_HOST")]
    pub host: String,
    /// The token the host printed on first start
    #[arg(long, env = "WDEPLOY_TOKEN")]
    pub token: String,
}

/// `login`: checks the token against the host before saving anything, so a mistyped
/// token never replaces a working login.
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let client = session::client_of(&args.host, &args.token)?;
    let who = match client.account() {
        Ok(account) => Some(account),
        // A host older than this CLI has no `/account`: any call that needs the token
        // checks it.
        Err(ClientError::Api(e)) if e.status == 404 => {
            client.apps()?;
            None
        }
        Err(e) => return Err(e.into()),
    };
    let path = session::save_credentials(&Credentials {
        host: args.host.clone(),
        token: args.token,
    })?;
    match who {
        Some(account) => println!(
            "Logged in to {} as {}{}; credentials saved in {}",
            args.host,
            account.email,
            if account.admin { " (admin)" } else { "" },
            path.display()
        ),
        None => println!(
            "Logged in to {}; credentials saved in {}",
            args.host,
            path.display()
        ),
    }
    Ok(())
}

/// `whoami`: the person the token in use belongs to, as the host says.
pub fn whoami(json: JsonArg) -> anyhow::Result<()> {
    let account = session::client()?.account()?;
    if json.printed(&account)? {
        return Ok(());
    }
    println!("{}", account.email);
    Ok(())
}

/// `auth:token`: the token in use, alone on stdout (for `curl -H "Authorization: Bearer
/// $(wdeploy auth:token)"`).
pub fn token() -> anyhow::Result<()> {
    println!("{}", session::credentials()?.token);
    Ok(())
}

/// `logout`: forgets the saved login. The token stays valid on the host, as an API key
/// does: `tokens:revoke` is what ends it, and it may be in use elsewhere.
pub fn logout() -> anyhow::Result<()> {
    match session::forget_credentials()? {
        Some((path, saved)) => {
            let host = saved.map_or_else(|| "an unreadable login".to_string(), |c| c.host);
            println!("Logged out of {host}: removed {}", path.display());
            println!(
                "The token stays valid until `wdeploy tokens:revoke ID` (see `wdeploy tokens`)."
            );
        }
        None => println!("No saved login to remove."),
    }
    if std::env::var_os("WDEPLOY_TOKEN").is_some() {
        println!("WDEPLOY_TOKEN is still set in this environment: commands go on using it.");
    }
    Ok(())
}
