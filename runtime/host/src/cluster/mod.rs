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
}

struct View {
    /// Every node considered live, with when its heartbeat was last seen.
    seen: BTreeMap<NodeName, (NodeInfo, Instant)>,
    last_look: Option<Instant>,
    /// Bumped each time the set of live nodes changes.
    generation: u64,
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
        }
    }

    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// Takes in the nodes whose heartbeats the store holds now; returns whether the
    /// view changed.
    pub fn observe(&self, heartbeats: Vec<NodeInfo>) -> bool {
        let now = Instant::now();
        let mut view = self.view.lock();
        let before: Vec<NodeName> = view.seen.keys().cloned().collect();
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
        let changed = view.seen.keys().cloned().collect::<Vec<_>>() != before;
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

    fn live_names(&self) -> Vec<NodeName> {
        self.live().into_iter().map(|n| n.name).collect()
    }

    /// The dynos of `formation` this node runs.
    pub fn share_of(&self, app: &AppId, formation: &Formation, placement: Placement) -> Share {
        placement::share_of(app, formation, &self.live_names(), &self.me.name, placement)
    }

    /// The node each dyno of `formation` runs on (web dynos of an `every-node` app
    /// aside: every node runs them).
    pub fn assign(
        &self,
        app: &AppId,
        formation: &Formation,
        placement: Placement,
    ) -> BTreeMap<(ProcessType, u32), NodeName> {
        placement::assign(app, formation, &self.live_names(), placement)
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
