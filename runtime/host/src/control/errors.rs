//! How the control plane's failures reach API clients: store and add-on errors become
//! API errors by kind (what the caller did wrong is 4xx, the rest 500).

use wdeploy_api::ApiError;
use wdeploy_store::{AddonError, StoreError};

/// A failure inside a control call. `?` gathers store, add-on and API errors alike; the
/// `Platform` boundary turns it into one [`ApiError`].
#[derive(Debug)]
pub(crate) enum ControlError {
    Api(ApiError),
    Store(StoreError),
    Addon(AddonError),
}

pub(crate) type Result<T, E = ControlError> = std::result::Result<T, E>;

impl From<ApiError> for ControlError {
    fn from(e: ApiError) -> Self {
        ControlError::Api(e)
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(e)
    }
}

impl From<AddonError> for ControlError {
    fn from(e: AddonError) -> Self {
        ControlError::Addon(e)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::Api(e) => e,
            ControlError::Store(e) => store_error(e),
            ControlError::Addon(e) => addon_error(e),
        }
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
        StoreError::Conflict(m) => ApiError::conflict(m),
        e @ StoreError::VersionTaken { .. } => ApiError::conflict(e.to_string()),
        StoreError::Invalid(m) => ApiError::invalid(m),
        e @ (StoreError::Corrupt { .. } | StoreError::DigestMismatch { .. }) => {
            ApiError::invalid(e.to_string())
        }
        e @ StoreError::TooLarge { .. } => ApiError::new(413, "payload_too_large", e.to_string()),
        e @ (StoreError::Io(_) | StoreError::Backend(_)) => ApiError::internal(e.to_string()),
        // Nothing was changed: the same call works again once NATS is back.
        e @ StoreError::Unavailable(_) => ApiError::new(503, "unavailable", e.to_string()),
    }
}

/// Limits and bad names are the caller's (422); a missing job is 404.
fn addon_error(e: AddonError) -> ApiError {
    match e {
        e @ (AddonError::TooLarge { .. }
        | AddonError::Invalid(_)
        | AddonError::OverQuota { .. }) => ApiError::invalid(e.to_string()),
        e @ (AddonError::NoSuchJob(_) | AddonError::AppGone) => ApiError::not_found(e.to_string()),
        e @ AddonError::Backend(_) => ApiError::internal(e.to_string()),
    }
}

/// A message for the client from a host-side failure (`{e:#}`: with its causes).
pub(crate) fn invalid(e: anyhow::Error) -> ControlError {
    ControlError::Api(ApiError::invalid(format!("{e:#}")))
}

/// Config var names: a letter or `_`, then letters, digits and `_`; at most 256 bytes.
pub(crate) fn check_config_key(key: &str) -> Result<()> {
    let mut chars = key.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 256;
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`{key}` is not a valid config var name (letters, digits and `_`, not starting with a digit)"
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys() {
        assert!(check_config_key("DATABASE_URL").is_ok());
        assert!(check_config_key("_X1").is_ok());
        for bad in ["", "1X", "A-B", "A B"] {
            assert!(check_config_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_errors_keep_their_kind() {
        let e: ApiError = ControlError::from(StoreError::NotFound("app x".into())).into();
        assert_eq!((e.status, e.message.as_str()), (404, "app x not found"));
        let e: ApiError = ControlError::from(AddonError::Invalid("bad".into())).into();
        assert_eq!(e.status, 422);
    }
}
