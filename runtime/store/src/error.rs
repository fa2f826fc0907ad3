//! The store's typed errors: what callers (the API) map onto statuses.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A blob whose content no longer matches its address: never use it.
    #[error(
        "blob {digest} is corrupted on disk (its content hashes to {actual}); push the app again to replace it"
    )]
    Corrupt { digest: String, actual: String },
    #[error("upload does not match its digest {expected} (received content hashes to {actual})")]
    DigestMismatch { expected: String, actual: String },
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
