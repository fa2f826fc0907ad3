//! The flags of `wdeploy host`: every setting of a host, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use wdeploy_host::{
    DEFAULT_MAX_APP_MEMORY_MB, DEFAULT_MAX_DISK_MB, Deadlines, HEADER_TIMEOUT, IDLE_TIMEOUT,
    LETS_ENCRYPT, LogRate, PersonLimits, default_lane_threads,
};

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Where blobs, the state database and compiled components live
    #[arg(long, env = "WDEPLOY_DATA")]
    pub data: Option<PathBuf>,
    /// The router's address: apps answer at http://NAME.DOMAIN:PORT
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also serve the router over HTTPS here (HTTP/2 and HTTP/1.1 through ALPN), with
    /// the apps' certificates (`wdeploy certs`) by SNI
    #[arg(long, value_name = "ADDR")]
    pub listen_tls: Option<SocketAddr>,
    /// A certificate (PEM chain) the HTTPS listener serves for the apps' own names
    /// (`*.DOMAIN`), with --tls-key
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_key",
        requires = "listen_tls"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve the control API (and the dashboard) over HTTPS with this certificate (PEM
    /// chain), with --api-tls-key; the dashboard's cookie is then marked Secure
    #[arg(long, value_name = "PEM", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --api-tls-cert
    #[arg(long, value_name = "PEM", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// The control API's address (keep it private)
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub api: SocketAddr,
    /// Also serve /metrics (Prometheus text) here without a token, for a scraper on a
    /// private network; the API serves it at all times, with the token
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// The domain apps are served under
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Seconds to wait before restarting a crashed dyno: after the 1st, 2nd, … crash (the
    /// last repeats)
    #[arg(long, default_value = "0,1,2,4,8,16,32,60")]
    pub restart_delays: String,
    /// Seconds of running without a crash that reset the restart delays
    #[arg(long, default_value_t = 60.0)]
    pub healthy_after: f64,
    /// Seconds a stopping worker has to exit after its stdin closes (wasm's SIGTERM)
    #[arg(long, default_value_t = 30.0)]
    pub stop_grace: f64,
    /// How long web dynos stay warm without a request before they release their
    /// instances ("15m", "1h"), for apps whose wdeploy.toml does not say ([web]
    /// idle_after); by default they never do
    #[arg(long, default_value = "never")]
    pub idle_after: wdeploy_core::IdleAfter,
    /// Component instances the host can hold at once, over all dynos (a worker is one, a
    /// web dyno up to WEB_CONCURRENCY); sizes the engine's instance pool at start
    #[arg(long, default_value_t = 10_000)]
    pub max_instances: u32,
    /// The most threads one app's guests run on (its lane has one per dyno this host runs
    /// of it, up to this), so how many cores one app can use at once [default: the cores
    /// the host may use]; a busy app is still confined to the batch cores
    #[arg(long, default_value_t = default_lane_threads(), hide_default_value = true, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub lane_threads: usize,
    /// Instances one app may hold at once over all its dynos, its share of the pool (by
    /// default a quarter of --max-instances); past it, its own requests get 503 H11
    #[arg(long)]
    pub max_app_instances: Option<u32>,
    /// The most ephemeral disk (MiB) an app may ask for per dyno with `[limits] disk_mb`
    /// in its wdeploy.toml (512 unless it asks); a release asking for more is refused
    #[arg(long, default_value_t = DEFAULT_MAX_DISK_MB)]
    pub max_disk_mb: u64,
    /// Linear memory (MiB) all of one app's instances may hold together; growing past it
    /// crashes the growing instance with Error R15
    #[arg(long, default_value_t = DEFAULT_MAX_APP_MEMORY_MB)]
    pub max_app_memory_mb: usize,
    /// Let guests' outgoing HTTP reach loopback, private and link-local addresses (by
    /// default only public ones, so apps cannot reach this node's API or its neighbours)
    #[arg(long)]
    pub allow_private_egress: bool,
    /// Let log drains connect to loopback, private and link-local addresses (by default
    /// only public ones: a drain URL is chosen by the app's owner, and the platform must
    /// not connect to this node's neighbours for them)
    #[arg(long)]
    pub allow_private_drains: bool,
    /// A PEM file of CA certificates log drains (syslog+tls://, https://) trust besides
    /// the usual public roots
    #[arg(long, value_name = "PEM")]
    pub drain_ca: Option<PathBuf>,
    /// The ACME directory automatic certificates (`domains:add DOMAIN --acme`) are
    /// ordered from
    #[arg(long, value_name = "URL", default_value = LETS_ENCRYPT)]
    pub acme_directory: String,
    /// The email address the ACME CA may write to about this host's certificates
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// A PEM file of CA certificates trusted for the ACME directory's own HTTPS besides
    /// the usual public roots (a test CA such as pebble's; never for apps)
    #[arg(long, value_name = "PEM")]
    pub acme_ca: Option<PathBuf>,
    /// Open connections each of the router and the API accepts at once; past it a new
    /// one gets a 503 and is closed [default: sized from the open-files limit]
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Open connections one client address may hold on each of the router and the API
    /// [default: 1024, at most --max-connections]
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a client has to send a request's headers, from its first byte (from
    /// connecting, for a connection's first request)
    #[arg(long, default_value_t = HEADER_TIMEOUT.as_secs_f64())]
    pub header_timeout: f64,
    /// Seconds a kept-alive connection may stay silent between requests
    #[arg(long, default_value_t = IDLE_TIMEOUT.as_secs_f64())]
    pub idle_timeout: f64,
    /// Seconds a dyno has to start (its component's start functions) before Error R10
    /// (Boot timeout) stops it
    #[arg(long, default_value_t = Deadlines::DEFAULT_BOOT.as_secs_f64())]
    pub boot_timeout: f64,
    /// Seconds a release command (`release:` in the Procfile) may run before it is
    /// stopped and the release fails
    #[arg(long, default_value_t = Deadlines::DEFAULT_RELEASE.as_secs_f64())]
    pub release_timeout: f64,
    /// Seconds a one-off dyno (`wdeploy run`) may live at most
    #[arg(long, default_value_t = Deadlines::DEFAULT_ONE_OFF.as_secs_f64())]
    pub one_off_timeout: f64,
    /// The most add-on storage (keys, values, queued jobs) any one app may hold, in MB; an
    /// app's `limits.addons_mb` (default 100) asks for less or more within it
    #[arg(long, default_value_t = 1024)]
    pub max_addons_mb: u64,
    /// Log lines per second each app's dynos may write (bursts of --log-burst); lines
    /// over it are dropped and counted in an `Error L10` line
    #[arg(long, default_value_t = LogRate::default().per_second)]
    pub log_rate: u32,
    /// Log lines an app's dynos may write at once before --log-rate applies
    #[arg(long, default_value_t = LogRate::default().burst)]
    pub log_burst: u32,
    /// API calls a second each person but the admin may make, after --api-burst; past
    /// it a call gets 429
    #[arg(long, default_value_t = PersonLimits::default().api_rate)]
    pub api_rate: u32,
    /// API calls a person may make at once before --api-rate applies
    #[arg(long, default_value_t = PersonLimits::default().api_burst)]
    pub api_burst: u32,
    /// Apps a person but the admin may create while they have access to this many
    #[arg(long, default_value_t = PersonLimits::default().max_apps)]
    pub max_apps_per_person: usize,
    /// Seconds between two collections of the blobs no release references (0: never)
    #[arg(long, default_value_t = 3600.0, value_name = "SECS")]
    pub blob_gc_every: f64,
    /// How old an unreferenced blob must be, in seconds, before a collection removes it
    #[arg(long, default_value_t = 86400.0, value_name = "SECS")]
    pub blob_gc_grace: f64,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// This node's name in the cluster (default: the machine's host name)
    #[arg(long, requires = "cluster")]
    pub node: Option<wdeploy_store::NodeName>,
    /// HOST:PORT other nodes forward requests to this node's router at, over TLS
    /// (default: the router's --listen address, which must then not be 0.0.0.0)
    #[arg(long, requires = "cluster", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
}

/// The cluster's NATS server and how to prove oneself to it: `wdeploy host`'s and
/// `wdeploy cluster:import`'s.
#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    /// Run as one node of a cluster whose state is in this NATS server (with JetStream),
    /// shared by every node; without it the host keeps everything in --data. Credentials
    /// go in the URL (nats://USER:PASSWORD@HOST:PORT or nats://TOKEN@HOST:PORT; from the
    /// environment, they stay out of the process list); tls:// requires TLS
    #[arg(long, env = "WDEPLOY_CLUSTER", value_name = "nats://HOST:PORT")]
    pub cluster: Option<wdeploy_store::cluster::ClusterAddress>,
    /// The certificate authority (PEM) that signed the NATS server's TLS certificate,
    /// when not one the system trusts
    #[arg(long, requires = "cluster", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// This node's key for a NATS server that knows its users by keys: a .creds file (a
    /// user's JWT and nkey seed, as nsc or a managed NATS service hands it out) or a user
    /// nkey seed file (as nk -gen user writes it)
    #[arg(
        long,
        env = "WDEPLOY_CLUSTER_CREDS",
        requires = "cluster",
        value_name = "FILE"
    )]
    pub cluster_creds: Option<PathBuf>,
}

impl NatsArgs {
    /// The cluster's NATS server as `--cluster`, `--cluster-ca` and `--cluster-creds` give
    /// it; `None` for the embedded store. The files are read now, so that a wrong one stops
    /// the command with its flag's name before anything starts.
    pub fn address(&self) -> anyhow::Result<Option<wdeploy_store::cluster::ClusterAddress>> {
        use anyhow::Context;
        let Some(address) = self.cluster.clone() else {
            return Ok(None);
        };
        let address = match &self.cluster_ca {
            Some(ca) => {
                // The NATS client reads it only while connecting, and says no more than
                // that the TLS setup failed.
                std::fs::File::open(ca)
                    .with_context(|| format!("reading --cluster-ca {}", ca.display()))?;
                address.with_ca(ca.clone())
            }
            None => address,
        };
        Ok(Some(match &self.cluster_creds {
            Some(creds) => address
                .with_credentials_file(creds)
                .context("--cluster-creds")?,
            None => address,
        }))
    }
}
