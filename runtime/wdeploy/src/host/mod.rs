//! `wdeploy host`: the router, the dyno manager, the control API and the embedded store in
//! one process, as run on an edge node.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use wdeploy_host::{
    AcmeOptions, Backoff, BlobCollection, Deadlines, DrainOptions, Egress, Engine, EngineOptions,
    Host, HostConfig, LaneOptions, ListenerLimits, LogRate, PersonLimits, Router, SlotReset,
    raise_fd_limit,
};

mod args;

pub use args::{HostArgs, NatsArgs};

/// Prints one of the host's own lines on stdout. A host outlives whoever reads its output:
/// with the reader gone (a closed pipe, a log collector restarted) the line is lost, where
/// `println!` would panic, and at a stop cut the host's shutdown short.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Past this the instance pool's reserved address space (4 GiB per memory slot) nears
/// what a 64-bit process has.
const MAX_INSTANCES: u32 = 16_000;

const STOP_GRACE: Duration = Duration::from_secs(30);
/// Longest a stopping node of a cluster spends handing its dynos to the others.
const HAND_OVER: Duration = Duration::from_secs(30);

/// Open connections the `--metrics` listener takes at once.
const METRICS_CONNECTIONS: usize = 256;

/// The longest deadline a flag may set (a week): past it a deadline is no deadline.
const MAX_DEADLINE_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// A deadline flag's value: positive seconds, at most a week.
fn deadline(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        secs.is_finite() && secs > 0.0 && secs <= MAX_DEADLINE_SECS,
        "--{flag} must be a number of seconds above 0 and at most {MAX_DEADLINE_SECS}"
    );
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(args: HostArgs) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let limits = listener_limits(&args)?;
    let data = match &args.data {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let router_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the router (in use? try --listen)",
                args.listen
            )
        })?;
    let api_listener = tokio::net::TcpListener::bind(args.api)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the API (in use? try --api)",
                args.api
            )
        })?;
    let tls_listener = match args.listen_tls {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for HTTPS (in use? try another --listen-tls)")
        })?),
        None => None,
    };
    let own_cert = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            wdeploy_host::tls::certified_key_files(cert, key)
                .context("--tls-cert and --tls-key")?,
        ),
        _ => None,
    };
    let tls = Arc::new(wdeploy_host::tls::HostCerts::new(&args.domain, own_cert));
    let api_transport = match (&args.api_tls_cert, &args.api_tls_key) {
        (Some(cert), Some(key)) => {
            let key = wdeploy_host::tls::certified_key_files(cert, key)
                .context("--api-tls-cert and --api-tls-key")?;
            wdeploy_host::Transport::Tls(wdeploy_host::tls::single_acceptor(key)?)
        }
        _ => wdeploy_host::Transport::Plain,
    };
    let api_scheme = api_transport.scheme();
    let metrics_listener = match args.metrics {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for /metrics (in use? try another --metrics)")
        })?),
        None => None,
    };
    let router_addr = router_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let metrics_addr = metrics_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;

    let schedule = Backoff::parse_schedule(&args.restart_delays)
        .map_err(|e| anyhow::anyhow!("--restart-delays: {e}"))?;
    anyhow::ensure!(
        args.healthy_after.is_finite() && args.healthy_after >= 0.0,
        "--healthy-after must be a number of seconds"
    );
    let backoff = Backoff::new(schedule, Duration::from_secs_f64(args.healthy_after));
    anyhow::ensure!(
        args.stop_grace.is_finite() && (0.0..=3600.0).contains(&args.stop_grace),
        "--stop-grace must be between 0 and 3600 seconds"
    );
    let deadlines = Deadlines {
        boot: deadline("boot-timeout", args.boot_timeout)?,
        release: deadline("release-timeout", args.release_timeout)?,
        one_off: deadline("one-off-timeout", args.one_off_timeout)?,
        stop: Duration::from_secs_f64(args.stop_grace),
        idle_after: args.idle_after.duration(),
    };
    anyhow::ensure!(
        (1..=MAX_INSTANCES).contains(&args.max_instances),
        "--max-instances must be between 1 and {MAX_INSTANCES}"
    );
    if let Some(share) = args.max_app_instances {
        anyhow::ensure!(
            (1..=args.max_instances).contains(&share),
            "--max-app-instances must be between 1 and --max-instances ({})",
            args.max_instances
        );
    }
    anyhow::ensure!(
        args.max_app_memory_mb >= 1,
        "--max-app-memory-mb must be at least 1"
    );
    anyhow::ensure!(
        (1..=wdeploy_core::settings::MAX_DISK_MB).contains(&args.max_disk_mb),
        "--max-disk-mb must be between 1 and {}",
        wdeploy_core::settings::MAX_DISK_MB
    );
    anyhow::ensure!(
        (1..=wdeploy_core::settings::MAX_ADDONS_MB).contains(&args.max_addons_mb),
        "--max-addons-mb must be between 1 and {}",
        wdeploy_core::settings::MAX_ADDONS_MB
    );
    anyhow::ensure!(
        args.log_rate >= 1 && args.log_burst >= 1,
        "--log-rate and --log-burst must be at least 1"
    );
    anyhow::ensure!(
        args.api_rate >= 1 && args.api_burst >= 1 && args.max_apps_per_person >= 1,
        "--api-rate, --api-burst and --max-apps-per-person must be at least 1"
    );
    let engine = Engine::new(&engine_options(&args, &data))?;
    let slot_reset = engine.slot_reset();
    let router = Router::new(&args.domain);
    let me = wdeploy_store::NodeInfo {
        name: args
            .node
            .clone()
            .unwrap_or_else(wdeploy_store::nodes::default_node_name),
        advertise: advertised(args.advertise.as_deref(), router_addr)?,
        started_at: chrono::Utc::now(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        leaving: false,
    };
    anyhow::ensure!(
        args.nats.cluster.is_none() || !me.advertise.is_empty(),
        "the router listens on {router_addr}, which other nodes cannot reach: say where they \
         can with --advertise HOST:PORT"
    );
    let cluster = args.nats.address()?;
    let store = match &cluster {
        // The cluster store: state in NATS JetStream, blobs cached under the data dir.
        Some(address) => {
            let options = wdeploy_store::cluster::ClusterOptions {
                address: address.clone(),
                me: me.clone(),
                cache_dir: data.join("blobs"),
            };
            wdeploy_store::cluster::open(options)
                .await
                .with_context(|| format!("joining the cluster at {address}"))?
        }
        // The embedded store: blobs and SQLite under the data dir.
        None => {
            let dir = data.clone();
            tokio::task::spawn_blocking(move || wdeploy_store::embedded::open(&dir, me))
                .await
                .context("opening the store")?
                .with_context(|| format!("opening the store in {}", data.display()))?
        }
    };
    let (host, new_token) = Host::open(
        HostConfig {
            data_dir: data.clone(),
            domain: args.domain.clone(),
            router_port: router_addr.port(),
            backoff,
            deadlines,
            max_addons_mb: args.max_addons_mb,
            log_rate: LogRate {
                per_second: args.log_rate,
                burst: args.log_burst,
            },
            blob_gc: BlobCollection {
                // 0: never.
                every: (args.blob_gc_every != 0.0)
                    .then(|| deadline("blob-gc-every", args.blob_gc_every))
                    .transpose()?,
                grace: {
                    let grace = args.blob_gc_grace;
                    anyhow::ensure!(
                        grace.is_finite() && (0.0..=MAX_DEADLINE_SECS).contains(&grace),
                        "--blob-gc-grace must be a number of seconds from 0 to {MAX_DEADLINE_SECS}"
                    );
                    Duration::from_secs_f64(grace)
                },
            },
            people: PersonLimits {
                api_rate: args.api_rate,
                api_burst: args.api_burst,
                max_apps: args.max_apps_per_person,
            },
            drains: DrainOptions {
                extra_roots_pem: match &args.drain_ca {
                    Some(path) => std::fs::read(path)
                        .with_context(|| format!("reading --drain-ca {}", path.display()))?,
                    None => Vec::new(),
                },
                allow_private: args.allow_private_drains,
            },
            tls: tls.clone(),
            acme: AcmeOptions {
                directory: args.acme_directory.clone(),
                email: args.acme_email.clone(),
                extra_roots_pem: match &args.acme_ca {
                    Some(path) => std::fs::read(path)
                        .with_context(|| format!("reading --acme-ca {}", path.display()))?,
                    None => Vec::new(),
                },
            },
        },
        store,
        engine,
        router.clone(),
    )
    .await?;
    // Every app is routed (a 503 until it is up) before the router listens.
    let apps = host
        .routed_apps()
        .await
        .context("listing the apps to restore")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Plain HTTP for clients; TLS for the cluster's other nodes forwarding to this one.
    let router_task = tokio::spawn(router.clone().serve(
        router_listener,
        router.plain_transport(),
        limits.clone(),
        wait_stop(stop_rx.clone()),
        STOP_GRACE,
    ));
    // The HTTPS listener has the router's limits, with caps of its own.
    let tls_task = match tls_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let acceptor = wdeploy_host::tls::acceptor(tls.sni())?;
            let task = tokio::spawn(router.clone().serve(
                listener,
                wdeploy_host::Transport::Tls(acceptor),
                limits.clone(),
                wait_stop(stop_rx.clone()),
                STOP_GRACE,
            ));
            Some((task, addr))
        }
        None => None,
    };
    // The metrics listener has caps of its own, as the router and the API do: the same
    // deadlines, and few connections (a scraper needs one or two), so the file
    // descriptors stay the router's and the API's.
    let metrics_task = metrics_listener.map(|listener| {
        let metrics = wdeploy_api::server::metrics_router(host.clone());
        let max_connections = limits.max_connections.min(METRICS_CONNECTIONS);
        let metrics_limits = ListenerLimits {
            max_connections,
            max_connections_per_ip: limits.max_connections_per_ip.min(max_connections),
            ..limits.clone()
        };
        tokio::spawn(wdeploy_host::serve_http(
            "metrics",
            listener,
            wdeploy_host::Transport::Plain,
            metrics_limits,
            move |_| hyper_util::service::TowerToHyperService::new(metrics.clone()),
            wait_stop(stop_rx.clone()),
            STOP_GRACE,
        ))
    });
    let api = wdeploy_api::server::router_with(
        host.clone(),
        wdeploy_api::dashboard::DashboardOptions {
            secure_cookie: api_transport.is_tls(),
        },
    );
    let api_task = tokio::spawn(wdeploy_host::serve_http(
        "api",
        api_listener,
        api_transport,
        limits,
        move |_| hyper_util::service::TowerToHyperService::new(api.clone()),
        wait_stop(stop_rx.clone()),
        STOP_GRACE,
    ));

    // Apps come back once the router and the API answer: an app not up yet gets a 503
    // meanwhile, and one that cannot boot holds back neither the host nor the others.
    let restoring = tokio::spawn({
        let host = host.clone();
        async move {
            let (count, started) = (apps.len(), std::time::Instant::now());
            host.restore_apps(apps).await;
            if count > 0 {
                say!(
                    "wdeploy host: restored {count} apps in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
    // Heartbeats, other nodes' log lines, and converging on the store's state.
    let node_stop = tokio_util::sync::CancellationToken::new();
    let node_task = tokio::spawn(host.clone().run_node(node_stop.clone()));

    say!("wdeploy host: data in {}", data.display());
    say!(
        "wdeploy host: router on http://{router_addr} (apps at http://NAME.{}:{})",
        args.domain,
        router_addr.port()
    );
    if let Some((_, addr)) = &tls_task {
        say!("wdeploy host: router on https://{addr} (HTTP/2 and HTTP/1.1; certificates by SNI)");
    }
    say!("wdeploy host: API on {api_scheme}://{api_addr}");
    if slot_reset == SlotReset::Plain {
        say!(
            "wdeploy host: swap is on, so freed instances are reset the slower safe way (apps \
             with a fresh instance per request use more CPU); a host with no swap, or in a \
             cgroup with memory.swap.max=0, resets them faster (README: Swap)"
        );
    }
    if let Some(addr) = metrics_addr {
        say!("wdeploy host: metrics on http://{addr}/metrics (no token: keep it private)");
    }
    if let Some(url) = &cluster {
        let node = host.node();
        say!(
            "wdeploy host: node {} of the cluster at {url} (other nodes forward to {})",
            node.name,
            node.advertise
        );
    }
    if let Some(token) = new_token {
        say!(
            "wdeploy host: admin token (shown once, also in {}):",
            data.join("admin-token").display()
        );
        say!("    {token}");
        say!(
            "wdeploy host: log in with: wdeploy login --host {api_scheme}://{api_addr} --token {token}"
        );
    }

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    say!("wdeploy host: stopping");
    if cluster.is_some() {
        // Its dynos go to the other nodes while it still serves (a second signal cuts
        // that short).
        say!("wdeploy host: handing this node's dynos to the other nodes");
        let left = tokio::select! {
            left = host.hand_over(HAND_OVER) => Some(left),
            _ = interrupt.recv() => None,
            _ = terminate.recv() => None,
        };
        match left {
            Some(0) => say!("wdeploy host: the other nodes run this node's dynos"),
            Some(n) => say!(
                "wdeploy host: {} not handed over within {}s: stopping all the same",
                wdeploy_core::counted::counted(n, "app"),
                HAND_OVER.as_secs()
            ),
            None => say!("wdeploy host: hand-over cut short"),
        }
    }
    let _ = stop_tx.send(true);
    restoring.abort();
    // The requests the router has taken finish on the dynos serving them: its listeners
    // drain (within their grace) before the dynos stop. A request another node forwarded
    // here a moment before would otherwise find no dyno, and forwarded once it goes no
    // further.
    let _ = router_task.await;
    if let Some((task, _)) = tls_task {
        let _ = task.await;
    }
    node_stop.cancel();
    let _ = node_task.await;
    host.stop().await;
    let _ = api_task.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(())
}

/// The address other nodes reach this node's router at.
fn advertised(flag: Option<&str>, router: SocketAddr) -> anyhow::Result<String> {
    match flag {
        Some(addr) => {
            anyhow::ensure!(
                addr.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
                "--advertise must be HOST:PORT, like 10.0.0.5:8080"
            );
            Ok(addr.to_string())
        }
        None if router.ip().is_unspecified() => Ok(String::new()),
        None => Ok(router.to_string()),
    }
}

/// The router's and the API's limits from the flags, the open-files limit raised first
/// (each connection is a file descriptor).
fn listener_limits(args: &HostArgs) -> anyhow::Result<ListenerLimits> {
    let mut limits = match raise_fd_limit() {
        Ok(fd_limit) => ListenerLimits::for_fd_limit(fd_limit),
        Err(e) => {
            tracing::warn!("cannot raise the open-files limit: {e}");
            ListenerLimits::default()
        }
    };
    if let Some(max) = args.max_connections {
        anyhow::ensure!(max >= 1, "--max-connections must be at least 1");
        limits.max_connections = max;
        limits.max_connections_per_ip = limits.max_connections_per_ip.min(max);
    }
    if let Some(max) = args.max_connections_per_ip {
        anyhow::ensure!(
            (1..=limits.max_connections).contains(&max),
            "--max-connections-per-ip must be between 1 and --max-connections ({})",
            limits.max_connections
        );
        limits.max_connections_per_ip = max;
    }
    limits.header_timeout = seconds("--header-timeout", args.header_timeout)?;
    limits.idle_timeout = seconds("--idle-timeout", args.idle_timeout)?;
    Ok(limits)
}

/// A timeout flag: more than 0 and at most an hour.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0 && value <= 3600.0,
        "{flag} must be more than 0 and at most 3600 seconds"
    );
    Ok(Duration::from_secs_f64(value))
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("wdeploy"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data DIR")?;
    Ok(PathBuf::from(home).join(".local/share/wdeploy"))
}

/// The engine `args` ask for, its compiled components cached under `data`.
fn engine_options(args: &HostArgs, data: &Path) -> EngineOptions {
    EngineOptions {
        cache_dir: Some(data.join("compiled")),
        max_instances: args.max_instances,
        max_disk_bytes: args.max_disk_mb << 20,
        max_app_instances: args.max_app_instances,
        max_app_memory_bytes: args.max_app_memory_mb.saturating_mul(1 << 20),
        egress: if args.allow_private_egress {
            Egress::Any
        } else {
            Egress::PublicOnly
        },
        lanes: LaneOptions {
            threads: args.lane_threads,
            ..LaneOptions::default()
        },
        ..EngineOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        host: HostArgs,
    }

    #[test]
    fn lane_threads_reach_the_engine_and_zero_is_refused() {
        let data = Path::new("/data");
        let default = Cli::try_parse_from(["host"]).expect("no flags");
        assert_eq!(
            engine_options(&default.host, data).lanes.threads,
            wdeploy_host::default_lane_threads()
        );
        let two = Cli::try_parse_from(["host", "--lane-threads", "2"]).expect("two");
        assert_eq!(engine_options(&two.host, data).lanes.threads, 2);
        assert!(Cli::try_parse_from(["host", "--lane-threads", "0"]).is_err());
    }
}
