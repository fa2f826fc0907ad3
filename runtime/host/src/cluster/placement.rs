//! Which node runs which dyno, worked out by every node alike from the same facts (the
//! formation and the live nodes): there is no scheduler to ask, and none to lose.
//!
//! Each dyno (`web.3` of an app) ranks the live nodes by a hash of (app, dyno, node) —
//! rendezvous hashing — and goes to the best-ranked node that still has room, room being
//! an even split of the process type's dynos (`ceil(count / nodes)`). So dynos spread
//! evenly, and when a node joins or leaves only the dynos that must move do: the others
//! keep their best-ranked node. A web process of an app placed `every-node` instead runs
//! all its `web` dynos on every node.

use std::collections::{BTreeMap, BTreeSet};
use wdeploy_core::settings::Placement as WebPlacement;
use wdeploy_core::{Formation, ProcessType};
use wdeploy_store::{AppId, NodeName};

/// The dynos of a formation one node runs: dyno numbers by process type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Share(BTreeMap<ProcessType, BTreeSet<u32>>);

impl Share {
    /// All of `formation` (a cluster of one).
    pub fn whole(formation: &Formation) -> Share {
        Share(
            formation
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(t, count)| (t.clone(), (1..=count).collect()))
                .collect(),
        )
    }

    /// The numbers of this node's dynos of `process_type`, ascending.
    pub fn numbers(&self, process_type: &ProcessType) -> impl Iterator<Item = u32> + '_ {
        self.0.get(process_type).into_iter().flatten().copied()
    }

    pub fn contains(&self, process_type: &ProcessType, n: u32) -> bool {
        self.0.get(process_type).is_some_and(|s| s.contains(&n))
    }

    pub fn insert(&mut self, process_type: ProcessType, n: u32) {
        self.0.entry(process_type).or_default().insert(n);
    }

    /// Every (process type, number), by type then number.
    pub fn iter(&self) -> impl Iterator<Item = (&ProcessType, u32)> {
        self.0
            .iter()
            .flat_map(|(t, numbers)| numbers.iter().map(move |n| (t, *n)))
    }

    /// How many dynos the share holds (a release phase is not one).
    pub fn dynos(&self) -> usize {
        self.0
            .iter()
            .filter(|(t, _)| !t.is_release())
            .map(|(_, numbers)| numbers.len())
            .sum()
    }

    /// How many dynos of each type the share holds, for log lines.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(_, n)| !n.is_empty())
            .map(|(t, numbers)| {
                let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
                format!("{t}.{{{}}}", list.join(","))
            })
            .collect();
        if parts.is_empty() {
            "no dynos".to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// The node each dyno of `formation` runs on, over the live `nodes` (sorted or not: the
/// answer depends only on the set). Web dynos of an `every-node` app are not in it: each
/// node runs them all.
pub fn assign(
    app: &AppId,
    formation: &Formation,
    nodes: &[NodeName],
    web: WebPlacement,
) -> BTreeMap<(ProcessType, u32), NodeName> {
    let mut owners = BTreeMap::new();
    if nodes.is_empty() {
        return owners;
    }
    for (process_type, count) in formation.iter() {
        if process_type.is_web() && web == WebPlacement::EveryNode {
            continue;
        }
        // Every node gets `even` dynos, and `extra` of them one more. Pairs are taken
        // best score first, so a dyno keeps its node unless that node is full or gone.
        let (even, extra) = (count / nodes.len() as u32, count % nodes.len() as u32);
        let mut pairs: Vec<(u64, u32, &NodeName)> = (1..=count)
            .flat_map(|n| nodes.iter().map(move |node| (n, node)))
            .map(|(n, node)| (score(app, process_type, n, node), n, node))
            .collect();
        // Highest score first; dyno numbers and names break the (unlikely) ties.
        pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then_with(|| a.2.cmp(b.2)));
        let mut load: BTreeMap<&NodeName, u32> = BTreeMap::new();
        let mut fuller = 0;
        for (_, n, node) in pairs {
            let key = (process_type.clone(), n);
            if owners.contains_key(&key) {
                continue;
            }
            let have = load.entry(node).or_default();
            if *have < even || (*have == even && fuller < extra) {
                *have += 1;
                if *have == even + 1 {
                    fuller += 1;
                }
                owners.insert(key, node.clone());
            }
        }
    }
    owners
}

/// The dynos of `formation` that `me` runs, given the live `nodes`.
pub fn share_of(
    app: &AppId,
    formation: &Formation,
    nodes: &[NodeName],
    me: &NodeName,
    web: WebPlacement,
) -> Share {
    share_in(&assign(app, formation, nodes, web), formation, me, web)
}

/// The dynos `me` runs of an assignment of `formation` (see [`assign`]).
pub fn share_in(
    owners: &BTreeMap<(ProcessType, u32), NodeName>,
    formation: &Formation,
    me: &NodeName,
    web: WebPlacement,
) -> Share {
    let mut share = Share::default();
    for ((process_type, n), owner) in owners {
        if owner == me {
            share.insert(process_type.clone(), *n);
        }
    }
    if web == WebPlacement::EveryNode {
        for n in 1..=formation.quantity(ProcessType::WEB) {
            share.insert(ProcessType::web(), n);
        }
    }
    share
}

/// A stable hash of (app, dyno, node): FNV-1a, spelled out here so that every node,
/// whatever its build, ranks nodes the same way (std's hasher may change between
/// releases).
fn score(app: &AppId, process_type: &ProcessType, n: u32, node: &NodeName) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        app.as_str().as_bytes(),
        process_type.as_str().as_bytes(),
        &n.to_le_bytes(),
        node.as_str().as_bytes(),
    ];
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly; a final avalanche (from SplitMix64) spreads them.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<NodeName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn formation(spec: &[(&str, u32)]) -> Formation {
        spec.iter().map(|(t, n)| (t.parse().unwrap(), *n)).collect()
    }

    fn load(owners: &BTreeMap<(ProcessType, u32), NodeName>) -> BTreeMap<String, u32> {
        let mut load = BTreeMap::new();
        for node in owners.values() {
            *load.entry(node.to_string()).or_default() += 1;
        }
        load
    }

    #[test]
    fn dynos_spread_evenly_and_every_node_agrees() {
        let three = nodes(&["a", "b", "c"]);
        for i in 0..50 {
            let app = AppId::random();
            let owners = assign(
                &app,
                &formation(&[("web", 3)]),
                &three,
                WebPlacement::Spread,
            );
            assert_eq!(
                load(&owners).values().copied().collect::<Vec<_>>(),
                [1, 1, 1],
                "{i}"
            );
            // Order of the node list does not matter.
            let shuffled = nodes(&["c", "a", "b"]);
            let again = assign(
                &app,
                &formation(&[("web", 3)]),
                &shuffled,
                WebPlacement::Spread,
            );
            assert_eq!(owners, again);
            let seven = assign(
                &app,
                &formation(&[("web", 7)]),
                &three,
                WebPlacement::Spread,
            );
            assert!(load(&seven).values().all(|n| (2..=3).contains(n)));
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_dynos() {
        let f = formation(&[("web", 6), ("worker", 3)]);
        for _ in 0..50 {
            let app = AppId::random();
            let before = assign(&app, &f, &nodes(&["a", "b", "c"]), WebPlacement::Spread);
            let after = assign(&app, &f, &nodes(&["a", "c"]), WebPlacement::Spread);
            let on_b = before.values().filter(|n| n.as_str() == "b").count();
            let moved = before
                .iter()
                .filter(|(dyno, owner)| owner.as_str() != "b" && &after[*dyno] != *owner)
                .count();
            // Evening the load out may move a dyno or two between the staying nodes,
            // never most of them.
            assert!(
                moved <= on_b.div_ceil(2),
                "{moved} of {on_b} moved between live nodes"
            );
            assert!(after.values().all(|n| n.as_str() != "b"));
        }
    }

    #[test]
    fn every_node_placement_runs_all_web_dynos_everywhere() {
        let app = AppId::random();
        let f = formation(&[("web", 2), ("worker", 1)]);
        let all = nodes(&["a", "b"]);
        let mut workers = 0;
        for me in &all {
            let share = share_of(&app, &f, &all, me, WebPlacement::EveryNode);
            assert_eq!(
                share.numbers(&ProcessType::web()).collect::<Vec<_>>(),
                [1, 2]
            );
            workers += share.numbers(&"worker".parse().unwrap()).count();
        }
        assert_eq!(workers, 1);
    }

    #[test]
    fn one_node_runs_the_whole_formation() {
        let f = formation(&[("web", 2), ("worker", 3)]);
        let me: NodeName = "solo".parse().unwrap();
        let share = share_of(
            &AppId::random(),
            &f,
            std::slice::from_ref(&me),
            &me,
            WebPlacement::Spread,
        );
        assert_eq!(share, Share::whole(&f));
    }
}
