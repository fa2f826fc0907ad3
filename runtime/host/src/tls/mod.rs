//! TLS for the router: the certificates apps are served with (`certificate`: what is
//! checked before one is stored or served).

pub mod certificate;
