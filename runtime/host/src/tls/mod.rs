//! HTTPS on the router: the certificates it serves by SNI and the TLS configuration of
//! its HTTPS listener.
//!
//! - `certificate`: what is checked before a certificate is stored or served (`check`);
//! - `sni`: [`SniCerts`], the certificate table rustls asks at each handshake;
//! - `config`: the listener's rustls `ServerConfig` (ALPN: HTTP/2, then HTTP/1.1);
//! - `host_certs`: [`HostCerts`], the host's own certificate and the apps' in one table.
//! - `acme/`: automatic certificates over ACME (HTTP-01), ordered by the host's worker
//!   (`control/acme.rs`).

pub mod acme;
pub mod certificate;
mod config;
mod host_certs;
mod sni;

pub use config::{acceptor, single_acceptor};
pub use host_certs::{HostCerts, PemCert, certified_key_files};
pub use sni::SniCerts;
