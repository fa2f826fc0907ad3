//! Dyno states and names, as `ps` shows them.

use crate::process::ProcessType;
use std::fmt;

/// Where a dyno is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Idle,
}

impl DynoState {
    /// Whether a web dyno in this state takes requests: an idle one does (the request
    /// wakes it).
    pub fn serves(self) -> bool {
        matches!(self, DynoState::Up | DynoState::Idle)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
            DynoState::Idle => "idle",
        }
    }
}

impl fmt::Display for DynoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `worker.2` → (`worker`, 2): a dyno's process type and number.
pub fn parse_name(name: &str) -> Option<(ProcessType, u32)> {
    let (process_type, n) = name.rsplit_once('.')?;
    Some((process_type.parse().ok()?, n.parse().ok()?))
}

/// Whether dyno `name`, running `process_type`, is a one-off (`run.1002` running
/// `worker`, or the release phase's `release.1000`) rather than one of the formation
/// (`worker.2`), which is named after its process type.
pub fn is_one_off(name: &str, process_type: &ProcessType) -> bool {
    process_type.is_release() || name.split('.').next() != Some(process_type.as_str())
}

/// Whether `selector` picks dyno `name`: that dyno (`web.2`), or every dyno of a process
/// type (`web`: web.1, web.2, …), as Heroku's `logs --dyno` and `ps:restart` take it.
pub fn selects(selector: &str, name: &str) -> bool {
    name == selector
        || name
            .strip_prefix(selector)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Whether a restart of `selector` reaches dyno `name`, running `process_type`: a dyno
/// of the formation it selects; a one-off never (`ps:stop` stops those).
pub fn restart_reaches(selector: &str, name: &str, process_type: &ProcessType) -> bool {
    selects(selector, name) && !is_one_off(name, process_type)
}

/// Whether `selector` names a process type (`web`) rather than one dyno (`web.2`).
pub fn is_type_selector(selector: &str) -> bool {
    parse_name(selector).is_none()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_selector_picks_a_dyno_or_every_dyno_of_a_type() {
        for (selector, name, picked) in [
            ("web.2", "web.2", true),
            ("web", "web.2", true),
            ("web", "web", true),
            ("web", "webhook.1", false),
            ("web.1", "web.12", false),
            ("worker", "web.1", false),
            ("run", "run.4821", true),
            ("web", "router", false),
        ] {
            assert_eq!(super::selects(selector, name), picked, "{selector} {name}");
        }
        let worker: crate::ProcessType = "worker".parse().unwrap();
        assert!(super::restart_reaches("worker", "worker.2", &worker));
        assert!(!super::restart_reaches("run", "run.1002", &worker));
        assert!(super::is_type_selector("web"));
        assert!(!super::is_type_selector("web.2"));
    }

    #[test]
    fn one_offs_are_told_from_the_formation() {
        let worker = "worker".parse().unwrap();
        assert!(super::is_one_off("run.1002", &worker));
        assert!(!super::is_one_off("worker.2", &worker));
        assert!(super::is_one_off(
            "release.1000",
            &crate::ProcessType::release()
        ));
    }

    #[test]
    fn dyno_names() {
        let (t, n) = super::parse_name("worker.2").unwrap();
        assert_eq!((t.as_str(), n), ("worker", 2));
        assert!(super::parse_name("web").is_none());
        assert!(super::parse_name("web.x").is_none());
    }
}
