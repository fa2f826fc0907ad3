//! What `ps` shows of a dyno: its state and since when, shared with its supervisor.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Idle,
}

impl DynoState {
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
            DynoState::Idle => "idle",
        }
    }
}

/// A dyno's state, updated by whoever supervises it and read by `ps`.
#[derive(Debug, Clone)]
pub struct DynoStatus {
    inner: Arc<Mutex<(DynoState, DateTime<Utc>)>>,
}

impl Default for DynoStatus {
    fn default() -> Self {
        DynoStatus {
            inner: Arc::new(Mutex::new((DynoState::Starting, Utc::now()))),
        }
    }
}

impl DynoStatus {
    pub fn set(&self, state: DynoState) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 != state {
            *s = (state, Utc::now());
        }
    }

    pub fn get(&self) -> (DynoState, DateTime<Utc>) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One line of `ps`.
#[derive(Debug, Clone)]
pub struct DynoSnapshot {
    pub name: String,
    pub process_type: String,
    pub state: DynoState,
    pub since: DateTime<Utc>,
    pub release: u64,
    pub command: String,
}
