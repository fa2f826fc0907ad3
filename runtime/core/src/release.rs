//! Where a release stands in its life.

use std::fmt;

/// A release's status. Only a pending release changes, once, to succeeded or failed; the
/// current release of an app is its newest succeeded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// Created; its dynos are being started.
    Pending,
    /// Went live (or, without a slug, recorded a config change).
    Succeeded,
    /// Never served: a dyno failed to boot or the release phase failed.
    Failed,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        }
    }

    /// The status a stored word stands for; `None` for a word no version wrote.
    pub fn parse(s: &str) -> Option<ReleaseStatus> {
        match s {
            "pending" => Some(ReleaseStatus::Pending),
            "succeeded" => Some(ReleaseStatus::Succeeded),
            "failed" => Some(ReleaseStatus::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
