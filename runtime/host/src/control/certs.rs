//! The apps' TLS certificates as this node serves them.

use super::Host;

impl Host {
    /// Reads the certificates again into this node's TLS table (after a change here).
    // TODO(lead): fill the SNI table from `self.store.certs.all_certs()`.
    pub(super) async fn refresh_certs(&self) {}
}
