//! What `ps` shows of a dyno: its state and since when, shared with its supervisor.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::sync::Arc;
use wdeploy_core::DynoState;

/// A dyno's state, updated by whoever supervises it and read by `ps`.
#[derive(Debug, Clone)]
pub struct DynoStatus {
    inner: Arc<Mutex<Status>>,
}

/// A state, since when, and (while crashed) when the next start is due.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub state: DynoState,
    pub since: DateTime<Utc>,
    pub next_start: Option<DateTime<Utc>>,
}

impl Default for DynoStatus {
    fn default() -> Self {
        DynoStatus {
            inner: Arc::new(Mutex::new(Status {
                state: DynoState::Starting,
                since: Utc::now(),
                next_start: None,
            })),
        }
    }
}

impl DynoStatus {
    pub fn set(&self, state: DynoState) {
        let mut s = self.inner.lock();
        if s.state != state {
            *s = Status {
                state,
                since: Utc::now(),
                next_start: None,
            };
        }
    }

    /// Crashed, restarting at `next_start`.
    pub fn crashed_until(&self, next_start: DateTime<Utc>) {
        let mut s = self.inner.lock();
        if s.state != DynoState::Crashed {
            s.since = Utc::now();
        }
        s.state = DynoState::Crashed;
        s.next_start = Some(next_start);
    }

    pub fn get(&self) -> Status {
        *self.inner.lock()
    }
}

/// One line of `ps`: the store's record of a dyno, so what a node publishes of its dynos
/// for the others is what its own `ps` shows.
pub type DynoSnapshot = wdeploy_store::DynoRecord;
