//! The cluster itself (admin only): `nodes`, and `cluster:rotate-key`, a new key for the
//! TLS between the nodes.

use wdeploy_api::wire::KeyRotation;

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
        println!(
            "{:<names$}  {:<addresses$}  {version}  up {}  {reached}{this}",
            node.name,
            node.advertise,
            crate::when::moment(node.started_at)
        );
    }
    Ok(())
}
