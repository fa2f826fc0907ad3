//! This host as one node of a cluster (on the embedded store, a cluster of one): which
//! nodes are alive as far as this node can tell, and which dynos it runs.
//!
//! - `node_tls`: the hop between nodes, TLS both ways with the cluster's own identity,
//!   which is also how a node tells a request another node forwarded from a client's;
//! - `placement`: the deterministic answer to "which node runs `web.3` of this app";
//! - [`Membership`]: the live nodes, seen through heartbeats, with a grace period so a
//!   NATS outage (during which every heartbeat expires at once) does not make every node
//!   take every dyno when it comes back.

pub mod node_tls;
pub mod placement;

use parking_lot::Mutex;
use placement::Share;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wdeploy_core::settings::Placement;
use wdeploy_core::{Formation, ProcessType};
use wdeploy_store::{AppId, NodeInfo, NodeName};

/// How long a node missing from the heartbeats stays in this node's view, while this
/// node is itself watching: a missed look (a slow call, a NATS restart) moves nothing.
const GRACE: Duration = Duration::from_secs(3);
/// A gap this long between two looks means this node could not see for a while: it
/// gives every node it knew a fresh grace period.
const BLIND_GAP: Duration = Duration::from_secs(3);

/// The live nodes as this node sees them.
pub struct Membership {
    me: NodeInfo,
    view: Mutex<View>,
    /// This node is stopping and hands its dynos to the others ([`NodeInfo::leaving`]).
    leaving: std::sync::atomic::AtomicBool,
}

struct View {
    /// Every node considered live, with when its heartbeat was last seen.
    seen: BTreeMap<NodeName, (NodeInfo, Instant)>,
    last_look: Option<Instant>,
    /// Bumped each time the set of live nodes changes.
    generation: u64,
}

impl View {
    /// The live nodes and whether each is leaving: a change in either moves placement.
    fn names_and_leaving(&self) -> Vec<(NodeName, bool)> {
        let seen = self.seen.iter();
        seen.map(|(name, (node, _))| (name.clone(), node.leaving))
            .collect()
    }
}

impl Membership {
    pub fn new(me: NodeInfo) -> Membership {
        Membership {
            me,
            view: Mutex::new(View {
                seen: BTreeMap::new(),
                last_look: None,
                generation: 0,
            }),
            leaving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes this node a leaving one: from now on no dyno is placed on it, in its own
    /// view at once and in the others' once its heartbeat says so.
    pub fn set_leaving(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.view.lock().generation += 1;
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// Takes in the nodes whose heartbeats the store holds now; returns whether the
    /// view changed.
    pub fn observe(&self, heartbeats: Vec<NodeInfo>) -> bool {
        let now = Instant::now();
        let mut view = self.view.lock();
        let before = view.names_and_leaving();
        if view.last_look.is_some_and(|at| now - at > BLIND_GAP) {
            for (_, at) in view.seen.values_mut() {
                *at = now;
            }
        }
        view.last_look = Some(now);
        for node in heartbeats {
            view.seen.insert(node.name.clone(), (node, now));
        }
        view.seen.retain(|_, (_, at)| now - *at <= GRACE);
        let changed = view.names_and_leaving() != before;
        if changed {
            view.generation += 1;
        }
        changed
    }

    /// Changes whenever the set of live nodes does: placement decided under one
    /// generation holds until the next.
    pub fn generation(&self) -> u64 {
        self.view.lock().generation
    }

    /// The live nodes, this one always among them, by name.
    pub fn live(&self) -> Vec<NodeInfo> {
        let view = self.view.lock();
        let mut live: Vec<NodeInfo> = view.seen.values().map(|(n, _)| n.clone()).collect();
        if !view.seen.contains_key(&self.me.name) {
            live.push(self.me.clone());
            live.sort_by(|a, b| a.name.cmp(&b.name));
        }
        live
    }

    pub fn is_live(&self, node: &NodeName) -> bool {
        node == &self.me.name || self.view.lock().seen.contains_key(node)
    }

    /// The nodes dynos are placed on: the live ones not leaving (all of them if every
    /// one is leaving: the last nodes of a cluster stopping together keep their dynos).
    fn placed_on(&self) -> Vec<NodeName> {
        let live = self.live();
        let staying: Vec<NodeName> = live
            .iter()
            .filter(|n| !self.leaves(n))
            .map(|n| n.name.clone())
            .collect();
        match staying.is_empty() {
            true => live.into_iter().map(|n| n.name).collect(),
            false => staying,
        }
    }

    /// Whether `node` is leaving: this node's own word for itself, the others' heartbeats.
    fn leaves(&self, node: &NodeInfo) -> bool {
        match node.name == self.me.name {
            true => self.is_leaving(),
            false => node.leaving,
        }
    }

    /// Whether another live node stays: somewhere for this node's dynos to go.
    pub fn others_stay(&self) -> bool {
        self.live()
            .iter()
            .any(|n| n.name != self.me.name && !n.leaving)
    }

    /// The dynos of `formation` this node runs.
    pub fn share_of(&self, app: &AppId, formation: &Formation, placement: Placement) -> Share {
        placement::share_of(app, formation, &self.placed_on(), &self.me.name, placement)
    }

    /// The node each dyno of `formation` runs on (web dynos of an `every-node` app
    /// aside: every node runs them).
    pub fn assign(
        &self,
        app: &AppId,
        formation: &Formation,
        placement: Placement,
    ) -> BTreeMap<(ProcessType, u32), NodeName> {
        placement::assign(app, formation, &self.placed_on(), placement)
    }

    /// This node's dynos in `owners` (an [`Membership::assign`] of `formation`).
    pub fn share_in(
        &self,
        owners: &BTreeMap<(ProcessType, u32), NodeName>,
        formation: &Formation,
        placement: Placement,
    ) -> Share {
        placement::share_in(owners, formation, &self.me.name, placement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, leaving: bool) -> NodeInfo {
        NodeInfo {
            name: name.parse().expect("a node name"),
            advertise: format!("{name}:80"),
            started_at: chrono::Utc::now(),
            version: String::new(),
            leaving,
        }
    }

    /// How many of six workers each node runs, as `me` sees it.
    fn spread(me: &Membership) -> usize {
        let formation: Formation = [("worker".parse().expect("a type"), 6)]
            .into_iter()
            .collect();
        let app = AppId::random();
        let share = me.share_of(&app, &formation, Placement::Spread);
        share.numbers(&"worker".parse().expect("a type")).count()
    }

    #[test]
    fn a_leaving_node_is_given_no_dyno_unless_every_node_leaves() {
        let me = Membership::new(node("b", false));
        me.observe(vec![node("a", false), node("b", false), node("c", false)]);
        assert_eq!(spread(&me), 2);
        let generation = me.generation();
        me.set_leaving();
        assert!(me.generation() > generation, "placement is decided again");
        assert_eq!(spread(&me), 0);
        assert!(me.others_stay());
        // Another node's word that it leaves moves placement too.
        let generation = me.generation();
        assert!(me.observe(vec![node("a", false), node("b", true), node("c", true)]));
        assert!(me.generation() > generation);
        assert!(me.others_stay());
        // The last nodes leaving together keep their dynos.
        me.observe(vec![node("a", true), node("b", true), node("c", true)]);
        assert!(!me.others_stay());
        assert_eq!(spread(&me), 2);
    }
}
