//! The cluster itself: `nodes` and `cluster:rotate-key` (admin only, through the API),
//! and `cluster:import`, which moves a single host's state into a new cluster (the
//! operator's, straight into NATS and from the host's data directory).

use anyhow::Context;
use std::path::PathBuf;
use wdeploy_api::wire::KeyRotation;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The single host's data directory (its `--data`); stop that host first
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    #[command(flatten)]
    pub nats: crate::host::NatsArgs,
}

/// `cluster:import`: copies the stopped single host's state in `--from` into the new
/// cluster at `--cluster` (`wdeploy_store::import`), before any node runs on it.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let address = args.nats.address()?.context(
        "say which cluster to import into: --cluster nats://HOST:PORT (or WDEPLOY_CLUSTER)",
    )?;
    let from = args
        .from
        .canonicalize()
        .with_context(|| format!("--from {}: no such directory", args.from.display()))?;
    // The import's own copies of the blobs it uploads (a node keeps its own under its data
    // directory); gone when it ends.
    let cache = tempfile::tempdir().context("making a temporary directory")?;
    let me = wdeploy_store::NodeInfo {
        name: "import".parse().map_err(anyhow::Error::msg)?,
        advertise: String::new(),
        started_at: chrono::Utc::now(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        leaving: false,
    };
    let target = wdeploy_store::cluster::open(wdeploy_store::cluster::ClusterOptions {
        address: address.clone(),
        me,
        cache_dir: cache.path().to_path_buf(),
    })
    .await
    .with_context(|| format!("joining the cluster at {address}"))?;
    println!(
        "Importing the single host's state in {} into the cluster at {address}",
        from.display()
    );
    let done =
        wdeploy_store::import::from_embedded(&from, &target, &mut |line| println!("-----> {line}"))
            .await
            .with_context(|| {
                format!("importing {} into the cluster at {address}", from.display())
            })?;
    println!(
        "Imported {}. Start the cluster's nodes with \
         --cluster: every token in use works on them, and the apps start from their \
         current releases. Keep {} until they serve, and run no host on it: what it \
         changed now would not be in the cluster.",
        done.summary(),
        from.display()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RotateKeyArgs {
    /// How long the nodes still trust the key it replaces, in seconds (at least 10): every
    /// node reads the new one meanwhile, so no forwarded request fails
    #[arg(long, default_value_t = KeyRotation::DEFAULT_GRACE_SECONDS)]
    pub grace: u64,
}

/// `cluster:rotate-key` (admin only).
pub fn rotate_key(args: RotateKeyArgs) -> anyhow::Result<()> {
    let rotated = crate::session::client()?.rotate_cluster_key(&KeyRotation {
        grace_seconds: args.grace,
    })?;
    println!("Rotated the cluster's key: the nodes prove themselves with the new one now.");
    println!(
        "They trust the previous one until {}, and no more after.",
        crate::when::moment(rotated.previous_trusted_until)
    );
    Ok(())
}

/// `nodes` (admin only): every live node, with the key it proves itself with, as the node
/// answering found it by opening the hop to each.
pub fn nodes(json: crate::session::JsonArg) -> anyhow::Result<()> {
    let nodes = crate::session::client()?.nodes()?;
    if json.printed(&nodes)? {
        return Ok(());
    }
    println!("=== Nodes ({})", nodes.len());
    let width =
        |f: fn(&wdeploy_api::wire::NodeStatus) -> usize| nodes.iter().map(f).max().unwrap_or(0);
    let (names, addresses) = (width(|n| n.name.len()), width(|n| n.advertise.len()));
    for node in &nodes {
        let version = match node.version.as_str() {
            "" => "v?".to_string(),
            v => format!("v{v}"),
        };
        let reached = match (&node.key, &node.unreachable) {
            (Some(key), _) => format!("key {key}"),
            (None, Some(why)) => format!("unreachable: {why}"),
            (None, None) => "key ?".to_string(),
        };
        let this = if node.this { "  (this node)" } else { "" };
        let leaving = if node.leaving { "  leaving" } else { "" };
        println!(
            "{:<names$}  {:<addresses$}  {version}  up {}  {reached}{leaving}{this}",
            node.name,
            node.advertise,
            crate::when::moment(node.started_at)
        );
    }
    Ok(())
}
