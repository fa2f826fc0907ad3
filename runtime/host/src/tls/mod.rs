//! TLS for the router: the certificates apps are served with (`certificate`: what is
//! checked before one is stored or served; `acme/`: automatic certificates over ACME
//! (HTTP-01), ordered by the host's worker, `control/acme.rs`).

pub mod acme;
pub mod certificate;
