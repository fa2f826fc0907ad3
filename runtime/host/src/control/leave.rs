//! A node of a cluster stopping without dropping a request: before its listeners close,
//! it hands its dynos to the others. Its heartbeat says it is leaving, so no node places
//! a dyno on it any more (`Membership::set_leaving`); its workers stop so that others
//! start them, and its web dynos keep serving to its end, while the others forward to it
//! until they know where the new ones run (`converge.rs`). It stops once a look begun
//! after it was leaving finds every web dyno it had running up on its new node (then a
//! second more, for the others' looks to stop forwarding to it), or after `within`. A node alone, or the last one staying, keeps its dynos to the end, as a
//! single host does. An `every-node` app's web dynos run everywhere already.

use super::Host;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the hand-over is checked.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long the others have to stop forwarding here once the hand-over is done: a look
/// follows each change of the dyno records at once, so this is a margin for a busy node.
const SETTLE: Duration = Duration::from_secs(1);

impl Host {
    /// Hands this node's dynos to the others, for at most `within`; how many apps still
    /// had a web dyno here not yet running elsewhere when it ended (0: none).
    pub async fn hand_over(&self, within: Duration) -> usize {
        if !self.membership.others_stay() {
            return 0;
        }
        let looks = self.full_looks.load(Ordering::SeqCst);
        self.membership.set_leaving();
        if let Err(e) = self.store.nodes.heartbeat(true).await {
            tracing::warn!("saying this node leaves: {e}");
        }
        self.nudge_all();
        let deadline = Instant::now() + within;
        loop {
            // A look begun before this node was leaving may have settled an app under
            // the old placement: only one begun after counts.
            let looked = self.full_looks.load(Ordering::SeqCst) >= looks + 2;
            let left = self.handing_over();
            if looked && left == 0 {
                // The others forward to a node leaving only until their next look has
                // seen its dynos run elsewhere: given that long, none sends it more.
                tokio::time::sleep(SETTLE).await;
                return 0;
            }
            if Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    /// The apps with a web dyno here that another node does not run up yet.
    fn handing_over(&self) -> usize {
        let apps = self.apps.lock();
        apps.values().filter(|e| e.node.lock().handing_over).count()
    }
}
