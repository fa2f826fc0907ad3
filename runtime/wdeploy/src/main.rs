//! `wdeploy`: Heroku's dyno model on WebAssembly components.

mod addons;
mod apps;
mod auth;
mod backup;
mod building;
mod certs;
mod cluster;
mod config;
mod dev;
mod domains;
mod drains;
mod envfile;
mod host;
mod kv;
mod paths;
mod people;
mod printer;
mod promote;
mod ps;
mod push;
mod queue;
mod releases;
mod session;
mod tail;
mod templates;
mod watch;
mod when;

use clap::{CommandFactory, Parser, Subcommand};
use session::AppArg;

#[derive(Debug, Parser)]
#[command(
    name = "wdeploy",
    version,
    about = "Deploy apps as WebAssembly components, Heroku-style"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the app in DIR and run it locally, rebuilding on every change
    Dev(dev::DevArgs),
    /// Start a new app in DIR from a template (rust, rust-counter, rust-jobs, python,
    /// javascript): `wdeploy new --list` lists them
    New(templates::NewArgs),
    /// Run a host: router, dynos, control API and store in one process
    Host(Box<host::HostArgs>),
    /// Save the host URL and token the other commands use
    #[command(visible_alias = "auth:login")]
    Login(auth::LoginArgs),
    /// Show who the token in use belongs to
    #[command(visible_alias = "auth:whoami")]
    Whoami(session::JsonArg),
    /// Forget the saved login (the token stays valid until `tokens:revoke`)
    #[command(visible_alias = "auth:logout")]
    Logout,
    /// Print the token in use, for scripts that call the API
    #[command(name = "auth:token")]
    AuthToken,
    /// List apps
    #[command(visible_alias = "apps:list")]
    Apps(session::JsonArg),
    /// Create an app and link the current directory to it
    #[command(name = "apps:create")]
    AppsCreate(apps::CreateArgs),
    /// Show an app
    #[command(name = "apps:info")]
    AppsInfo(session::ShowArgs),
    /// Give the app a new name (and URL); it keeps all it has, and the linked directory
    /// follows
    #[command(name = "apps:rename", visible_alias = "rename")]
    AppsRename(apps::RenameArgs),
    /// Delete an app with its releases and config
    #[command(name = "apps:destroy")]
    AppsDestroy(apps::DestroyArgs),
    /// The cluster's live nodes, each with the key it proves itself with (admin only)
    Nodes(session::JsonArg),
    /// Give the cluster's nodes a new key for the TLS between them; the old one is
    /// trusted for --grace seconds more (admin only)
    #[command(name = "cluster:rotate-key")]
    ClusterRotateKey(cluster::RotateKeyArgs),
    /// Move a single host's state (apps, releases, config, add-on data, domains,
    /// certificates, people and tokens) into a new cluster, before any node runs on it
    #[command(name = "cluster:import")]
    ClusterImport(cluster::ImportArgs),
    /// Copy a single host's data directory while the host runs (one consistent snapshot,
    /// every blob verified); a host started on the copy restores it
    Backup(backup::BackupArgs),
    /// Show whether the app is in maintenance mode
    Maintenance(AppArg),
    /// Answer the app's requests with a 503 maintenance page; its dynos keep running
    #[command(name = "maintenance:on")]
    MaintenanceOn(AppArg),
    /// Serve the app's requests from its dynos again
    #[command(name = "maintenance:off")]
    MaintenanceOff(AppArg),
    /// Print the app's URL, and open it in a browser when there is a desktop
    #[command(visible_alias = "apps:open")]
    Open(AppArg),
    /// Print the host's web dashboard URL (an app's page with -a), and open it on a desktop
    Dashboard(apps::DashboardArgs),
    /// List the app's custom domains
    Domains(AppArg),
    /// Serve the app at a custom domain too
    #[command(name = "domains:add")]
    DomainsAdd(domains::AddArgs),
    /// Stop serving the app at a custom domain (its certificate goes too)
    #[command(name = "domains:remove")]
    DomainsRemove(domains::DomainArgs),
    /// List the TLS certificates of the app's domains
    Certs(AppArg),
    /// Serve a certificate you bring (PEM files) for the app's domains it covers
    #[command(name = "certs:add")]
    CertsAdd(certs::AddArgs),
    /// Stop serving a domain's certificate
    #[command(name = "certs:remove")]
    CertsRemove(certs::RemoveArgs),
    /// Build the app here and deploy it as a new release
    Push(push::PushArgs),
    /// List the app's releases, newest first
    Releases(releases::ReleasesArgs),
    /// Show one release in full: its slug, Procfile, settings and config vars
    #[command(name = "releases:info")]
    ReleasesInfo(releases::InfoArgs),
    /// Show what going live printed for a release: its release command, its boot, why it
    /// failed
    #[command(name = "releases:output")]
    ReleasesOutput(releases::OutputArgs),
    /// Go back to an earlier release (as a new release)
    #[command(visible_alias = "releases:rollback")]
    Rollback(releases::RollbackArgs),
    /// Release the app's slug (the one serving now, or vN) on another app, with that
    /// app's config vars: staging's tried build to production, without a rebuild
    Promote(promote::PromoteArgs),
    /// Release the newest release again, live or failed: its release phase runs again
    /// (after a failure that has passed)
    #[command(name = "releases:retry")]
    ReleasesRetry(AppArg),
    /// Stop the release going live (its release command or boot); it fails and the
    /// previous release keeps serving
    #[command(name = "releases:cancel")]
    ReleasesCancel(AppArg),
    /// Show config vars
    Config(config::ListArgs),
    /// Show one config var
    #[command(name = "config:get")]
    ConfigGet(config::GetArgs),
    /// Set config vars (a new release; running dynos restart, or it waits for the first push)
    #[command(name = "config:set")]
    ConfigSet(config::SetArgs),
    /// Unset config vars (a new release; running dynos restart, or it waits for the first push)
    #[command(name = "config:unset")]
    ConfigUnset(config::UnsetArgs),
    /// Edit the config vars in $VISUAL or $EDITOR, as an env file; what changed is set and
    /// unset in one release when the editor exits
    #[command(name = "config:edit")]
    ConfigEdit(config::EditArgs),
    /// List the app's dynos
    Ps(session::ShowArgs),
    /// Change how many dynos of each process type run
    #[command(name = "ps:scale", visible_alias = "scale")]
    Scale(ps::ScaleArgs),
    /// Restart all dynos, those of a process type (web), or one (web.2)
    #[command(visible_alias = "ps:restart")]
    Restart(ps::RestartArgs),
    /// Wait until every dyno runs the current release and is up, as many of each type as
    /// the formation asks, on every node (for scripts, after a change)
    #[command(name = "ps:wait")]
    PsWait(ps::WaitArgs),
    /// Stop a one-off dyno (run.1002)
    #[command(name = "ps:stop", visible_alias = "ps:kill")]
    Stop(ps::StopArgs),
    /// Run a one-off dyno and stream its output; interrupting this stops the dyno
    Run(ps::RunArgs),
    /// Run a one-off dyno in the background: its output goes to the log stream, and it
    /// runs until its command ends, its time limit or `ps:stop`
    #[command(name = "run:detached")]
    RunDetached(ps::RunDetachedArgs),
    /// Show (and with --tail, follow) the log stream
    Logs(ps::LogsArgs),
    /// What the app's add-ons hold: storage against its quota, its queues
    Addons(session::ShowArgs),
    /// Show a key of the app's key-value add-on
    #[command(name = "kv:get")]
    KvGet(kv::KeyArgs),
    /// Set a key of the app's key-value add-on
    #[command(name = "kv:set")]
    KvSet(kv::SetArgs),
    /// Delete a key of the app's key-value add-on
    #[command(name = "kv:del")]
    KvDel(kv::KeyArgs),
    /// List keys of the app's key-value add-on
    #[command(name = "kv:keys")]
    KvKeys(kv::KeysArgs),
    /// Show the app's job queues: jobs ready, leased and done
    #[command(name = "queue:stats")]
    QueueStats(AppArg),
    /// Everyone the host knows (admin only)
    Users,
    /// Add a person and print their first token (admin only)
    #[command(name = "users:add")]
    UsersAdd(people::AddUserArgs),
    /// Remove a person: their tokens stop working and their access to every app goes (admin only)
    #[command(name = "users:remove")]
    UsersRemove(people::RemoveUserArgs),
    /// Your tokens (an admin's: everyone's)
    Tokens,
    /// Make another token for yourself (an admin: for anyone, with --user)
    #[command(name = "tokens:create")]
    TokensCreate(people::CreateTokenArgs),
    /// Revoke a token by its id
    #[command(name = "tokens:revoke")]
    TokensRevoke(people::RevokeTokenArgs),
    /// Who may act on the app
    Access(AppArg),
    /// Let a person act on the app
    #[command(name = "access:add")]
    AccessAdd(people::AccessArgs),
    /// Take that away
    #[command(name = "access:remove")]
    AccessRemove(people::AccessArgs),
    /// List the app's log drains
    Drains(AppArg),
    /// Send the app's log lines to a syslog or HTTPS drain too
    #[command(name = "drains:add")]
    DrainsAdd(drains::AddArgs),
    /// Stop sending the app's log lines to a drain
    #[command(name = "drains:remove")]
    DrainsRemove(drains::RemoveArgs),
    /// Print the shell completion script for SHELL (bash: `source <(wdeploy completions
    /// bash)`; zsh: write it as `_wdeploy` into a directory of your $fpath)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A command's output piped into `head`, `grep -q` or a pager that quits ends the command
/// quietly, as it does `git log` or `cat`. Rust starts programs with SIGPIPE ignored, so
/// the next `println!` after the reader left would panic with "failed printing to stdout:
/// Broken pipe" and a backtrace. Only for the client commands: `host` and `dev` are
/// servers, where a peer that goes away must never end the process.
fn end_quietly_when_the_reader_goes() {
    // SAFETY: restores the default disposition of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> std::process::ExitCode {
    no_library_backtraces();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Dev(_) | Command::Host(_)) {
        end_quietly_when_the_reader_goes();
    }
    let result = match cli.command {
        Command::Dev(args) => block_on(dev::run(args)),
        Command::Host(args) => block_on(host::run(*args)),
        Command::New(args) => templates::new_app(args),
        Command::Login(args) => auth::login(args),
        Command::Whoami(json) => auth::whoami(json),
        Command::Logout => auth::logout(),
        Command::AuthToken => auth::token(),
        Command::Apps(json) => apps::list(json),
        Command::AppsCreate(args) => apps::create(args),
        Command::AppsInfo(args) => apps::info(args),
        Command::AppsRename(args) => apps::rename(args),
        Command::AppsDestroy(args) => apps::destroy(args),
        Command::Nodes(json) => cluster::nodes(json),
        Command::ClusterRotateKey(args) => cluster::rotate_key(args),
        Command::ClusterImport(args) => block_on(cluster::import(args)),
        Command::Backup(args) => block_on(backup::run(args)),
        Command::Maintenance(args) => apps::maintenance(args),
        Command::MaintenanceOn(args) => apps::set_maintenance(args, true),
        Command::MaintenanceOff(args) => apps::set_maintenance(args, false),
        Command::Open(args) => apps::open(args),
        Command::Dashboard(args) => apps::dashboard(args),
        Command::Domains(args) => domains::list(args),
        Command::DomainsAdd(args) => domains::add(args),
        Command::DomainsRemove(args) => domains::remove(args),
        Command::Certs(args) => certs::list(args),
        Command::CertsAdd(args) => certs::add(args),
        Command::CertsRemove(args) => certs::remove(args),
        Command::Push(args) => push::run(args),
        Command::Releases(args) => releases::list(args),
        Command::ReleasesInfo(args) => releases::info(args),
        Command::ReleasesOutput(args) => releases::output(args),
        Command::Rollback(args) => releases::rollback(args),
        Command::ReleasesRetry(args) => releases::retry(args),
        Command::Promote(args) => promote::run(args),
        Command::ReleasesCancel(args) => releases::cancel(args),
        Command::Config(args) => config::list(args),
        Command::ConfigGet(args) => config::get(args),
        Command::ConfigSet(args) => config::set(args),
        Command::ConfigUnset(args) => config::unset(args),
        Command::ConfigEdit(args) => config::edit(args),
        Command::Addons(args) => addons::list(args),
        Command::Ps(args) => ps::ps(args),
        Command::Scale(args) => ps::scale(args),
        Command::Restart(args) => ps::restart(args),
        Command::PsWait(args) => ps::wait(args),
        Command::Run(args) => match ps::run(args) {
            Ok(code) => return std::process::ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => Err(e),
        },
        Command::RunDetached(args) => ps::run_detached(args),
        Command::Stop(args) => ps::stop(args),
        Command::Logs(args) => ps::logs(args),
        Command::KvGet(args) => kv::get(args),
        Command::KvSet(args) => kv::set(args),
        Command::KvDel(args) => kv::del(args),
        Command::KvKeys(args) => kv::keys(args),
        Command::QueueStats(args) => queue::stats(args),
        Command::Users => people::users(),
        Command::UsersAdd(args) => people::add_user(args),
        Command::UsersRemove(args) => people::remove_user(args),
        Command::Tokens => people::tokens(),
        Command::TokensCreate(args) => people::create_token(args),
        Command::TokensRevoke(args) => people::revoke_token(args),
        Command::Access(args) => people::list(args),
        Command::AccessAdd(args) => people::add(args),
        Command::AccessRemove(args) => people::remove(args),
        Command::Drains(args) => drains::list(args),
        Command::DrainsAdd(args) => drains::add(args),
        Command::DrainsRemove(args) => drains::remove(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "wdeploy",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps host backtraces out of everything guests see, whatever the environment.
///
/// The errors a guest is handed (`wasi:io/error.to-debug-string`, filesystem and HTTP
/// error details) are `wasmtime::Error`s. Like `anyhow::Error`s they capture a backtrace
/// with `std::backtrace::Backtrace::capture` when made, which does so when
/// `RUST_LIB_BACKTRACE` (else `RUST_BACKTRACE`) asks, and print it with `{:?}`, which is
/// what `to-debug-string` returns. So with `RUST_BACKTRACE=1` the host's stack went into
/// apps' logs, and each guest I/O error cost the host a stack walk. wdeploy prints its own
/// errors with `{:#}`, which shows no backtrace, so turning library backtraces off hides
/// nothing from the operator; panics still print theirs when `RUST_BACKTRACE` asks. (The
/// buildpacks `dev` and `push` run inherit the setting, which only quietens their errors.)
fn no_library_backtraces() {
    // SAFETY: the first thing `main` does, before any thread exists that could read or
    // write the environment at the same time (std reads this variable once, later).
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
}

/// What the host's own log (stderr) shows: `WDEPLOY_LOG`, else `RUST_LOG` (`EnvFilter`
/// syntax), when set. By default warnings and errors, but only errors from wasmtime (and
/// its WASI crates) and cranelift: their warnings are about what guests do (an outgoing
/// request that failed, a client gone mid-body) or their own internals, and would
/// interleave with the log stream `dev` prints, where the app's lines already say what
/// went wrong.
fn log_filter() -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    EnvFilter::try_from_env("WDEPLOY_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG))
}

/// See [`log_filter`]; targets match by prefix (`wasmtime` covers `wasmtime_wasi_http`).
const DEFAULT_LOG: &str = "warn,wasmtime=error,cranelift=error";

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heroku's names of the verbs wdeploy has parse as its own.
    #[test]
    fn herokus_names_of_a_verb_are_accepted() {
        for args in [
            &["wdeploy", "apps:list"][..],
            &["wdeploy", "apps:open", "-a", "x"],
            &["wdeploy", "apps:rename", "new-name"],
            &["wdeploy", "releases:rollback", "v1"],
            &["wdeploy", "auth:whoami"],
            &["wdeploy", "auth:logout"],
            &["wdeploy", "ps:restart", "web"],
            &["wdeploy", "ps:kill", "run.1"],
            &["wdeploy", "scale", "web=2"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        Cli::command().debug_assert();
    }
}
