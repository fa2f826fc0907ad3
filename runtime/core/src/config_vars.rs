//! The budget of an app's config vars.
//!
//! Every release keeps the whole set and every instance of the app gets it as its
//! environment, so an unbounded set would grow the append-only release log by its full
//! size at each change and slow every instantiation. Heroku allows 32 kB; so does this.

use std::collections::BTreeMap;

/// The most an app's config vars may hold, names and values together.
pub const MAX_CONFIG_BYTES: usize = 32 << 10;

/// What a set of config vars holds: every name and value, in bytes.
pub fn bytes(config: &BTreeMap<String, String>) -> usize {
    config.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Refuses a change that leaves `after` over the budget, unless it shrinks a set that
/// was already over it (made before the budget), so such an app can still unset.
pub fn check_size(before: usize, after: &BTreeMap<String, String>) -> Result<(), String> {
    let after = bytes(after);
    if after <= MAX_CONFIG_BYTES || after < before {
        return Ok(());
    }
    Err(format!(
        "the config vars would hold {} KiB; an app may have at most {} KiB of them (names \
         and values together): keep large data in the key-value add-on (`wdeploy kv:set`) \
         or in the app's source",
        after.div_ceil(1024),
        MAX_CONFIG_BYTES >> 10
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(value_bytes: usize) -> BTreeMap<String, String> {
        BTreeMap::from([("KEY".to_string(), "x".repeat(value_bytes))])
    }

    #[test]
    fn the_budget_counts_names_and_values() {
        assert_eq!(bytes(&of(10)), 13);
        assert!(check_size(0, &of(MAX_CONFIG_BYTES - 3)).is_ok());
        let err = check_size(0, &of(MAX_CONFIG_BYTES)).unwrap_err();
        assert!(
            err.contains("33 KiB") && err.contains("at most 32 KiB"),
            "{err}"
        );
    }

    #[test]
    fn a_set_over_the_budget_may_shrink_but_not_grow() {
        let big = bytes(&of(40 << 10));
        assert!(check_size(big, &of(39 << 10)).is_ok());
        assert!(check_size(big, &of(41 << 10)).is_err());
        assert!(check_size(big, &of(40 << 10)).is_err());
    }
}
