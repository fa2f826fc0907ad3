//! The store boundary's typed errors: what callers (the control API) map onto statuses,
//! the same whichever backend runs.

use wdeploy_core::Digest;

/// Why a control-plane or blob call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Another change took release `version` first (another request, or another node):
    /// read the log again and retry the read-modify-write.
    #[error("release v{version} of {app} was created by a concurrent change")]
    VersionTaken { app: String, version: u64 },
    #[error("{0}")]
    Invalid(String),
    /// A blob whose content no longer matches its address: never use it.
    #[error(
        "blob {digest} is corrupted on disk (its content hashes to {actual}); push the app again to replace it"
    )]
    Corrupt { digest: Digest, actual: Digest },
    #[error("upload does not match its digest {expected} (received content hashes to {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The backend itself failed (a database error).
    #[error("storage backend: {0}")]
    Backend(String),
    /// The cluster store cannot be reached now (NATS down or cut off): nothing was
    /// changed; the same call works again once it is back.
    #[error("the cluster store is unavailable ({0}); try again when NATS is reachable")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why an add-on call failed. Everything but `Backend` is the caller's doing and says
/// what to change; it reaches the guest as its WIT error variant, never as a trap.
#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("job {0} not found")]
    NoSuchJob(u64),
    /// The write would take the app's add-on data past its quota (`limits.addons_mb`).
    #[error(
        "add-on storage quota exceeded: the app holds {used} bytes of its {quota} byte quota (limits.addons_mb) and this write needs {needed} more; delete keys or ack jobs first"
    )]
    OverQuota { used: u64, quota: u64, needed: u64 },
    /// The app this instance was bound to has been destroyed: its data is gone and a new
    /// app of the same name is someone else.
    #[error("the app this dyno belongs to was destroyed")]
    AppGone,
    #[error("add-on storage: {0}")]
    Backend(String),
}

pub type AddonResult<T> = std::result::Result<T, AddonError>;
