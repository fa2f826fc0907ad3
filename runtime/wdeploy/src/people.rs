//! People and their access: `users`, `users:add EMAIL`, `users:remove EMAIL`, `tokens`,
//! `tokens:create [--user EMAIL]`, `tokens:revoke ID`, `access`, `access:add EMAIL`,
//! `access:remove EMAIL`.

use crate::session::{self, AppArg};
use wdeploy_api::wire::{CreateToken, CreateUser, NewToken};
use wdeploy_core::Person;
use wdeploy_core::counted::counted;

#[derive(Debug, clap::Args)]
pub struct AddUserArgs {
    /// The person's email address
    pub email: Person,
    /// What their first token is for
    #[arg(long)]
    pub description: Option<String>,
}

/// `users`: everyone the host knows (admin only).
pub fn users() -> anyhow::Result<()> {
    let users = session::client()?.users()?;
    println!("=== Users");
    let width = users
        .iter()
        .map(|u| u.email.as_str().len())
        .max()
        .unwrap_or(0);
    for user in users {
        let role = if user.admin { "admin" } else { "member" };
        println!(
            "{:<width$}  {role:<6}  {}",
            user.email.as_str(),
            crate::when::moment(user.created_at)
        );
    }
    Ok(())
}

/// `users:add EMAIL` (admin only): adds the person and prints their first token.
pub fn add_user(args: AddUserArgs) -> anyhow::Result<()> {
    let made = session::client()?.add_user(&CreateUser {
        email: args.email,
        description: args.description,
    })?;
    println!("Added {}.", made.info.user);
    show_token(&made);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RemoveUserArgs {
    /// The person's email address
    pub email: Person,
}

/// `users:remove EMAIL` (admin only): the person goes with their tokens and access;
/// what they did (releases, log lines) stays in each app's history.
pub fn remove_user(args: RemoveUserArgs) -> anyhow::Result<()> {
    let removed = session::client()?.remove_user(&args.email)?;
    let apps = match removed.apps.as_slice() {
        [] => "no app".to_string(),
        apps => {
            let names: Vec<&str> = apps.iter().map(|a| a.as_str()).collect();
            format!("{} ({})", counted(apps.len(), "app"), names.join(", "))
        }
    };
    println!(
        "Removed {}: {} revoked, access to {apps} taken away.",
        removed.email,
        counted(removed.tokens, "token")
    );
    Ok(())
}

fn show_token(made: &NewToken) {
    println!("Token (shown only now; id {}):", made.info.id);
    println!("{}", made.token);
    println!(
        "They log in with: wdeploy login --host URL --token {}",
        made.token
    );
}

#[derive(Debug, clap::Args)]
pub struct CreateTokenArgs {
    /// What the token is for
    #[arg(long)]
    pub description: Option<String>,
    /// Make it for this person, who lost theirs (admin only)
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<Person>,
}

/// `tokens`: the caller's tokens (an admin's: everyone's), never the tokens themselves.
pub fn tokens() -> anyhow::Result<()> {
    let tokens = session::client()?.tokens()?;
    println!("=== Tokens");
    let width = tokens
        .iter()
        .map(|t| t.user.as_str().len())
        .max()
        .unwrap_or(0);
    for t in tokens {
        println!(
            "{}  {:<width$}  {}  {}",
            t.id,
            t.user.as_str(),
            crate::when::moment(t.created_at),
            t.description
        );
    }
    Ok(())
}

/// `tokens:create`: another token for the caller (an admin's `--user EMAIL`: for them).
pub fn create_token(args: CreateTokenArgs) -> anyhow::Result<()> {
    let made = session::client()?.create_token(&CreateToken {
        description: args.description,
        user: args.user,
    })?;
    show_token(&made);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RevokeTokenArgs {
    /// The token's id, as `wdeploy tokens` lists it
    pub id: String,
}

/// `tokens:revoke ID`: the token stops working at once, open dashboard sessions too.
pub fn revoke_token(args: RevokeTokenArgs) -> anyhow::Result<()> {
    session::client()?.revoke_token(&args.id)?;
    println!("Revoked token {}.", args.id);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The person's email address
    pub email: Person,
}

/// `access`: who may act on the app.
pub fn list(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let people = session::client()?.collaborators(&app)?;
    println!("=== {app} Access");
    for person in people {
        println!("{}", person.email.as_str());
    }
    Ok(())
}

/// `access:add EMAIL`: lets a person act on the app.
pub fn add(args: AccessArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.add_collaborator(&app, &args.email)?;
    println!("Added {} to {app}.", args.email);
    Ok(())
}

/// `access:remove EMAIL`: takes that away.
pub fn remove(args: AccessArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.remove_collaborator(&app, &args.email)?;
    println!("Removed {} from {app}.", args.email);
    Ok(())
}
