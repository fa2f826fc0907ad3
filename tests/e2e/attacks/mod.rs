//! The host attacked as a hostile client or tenant would (issue 12): each test reproduces
//! an attack against the real binary on loopback and checks that it no longer works.

mod budgets;
mod build;
mod deadlines;
mod listeners;
mod metrics_listener;
mod neighbours;
mod tls_listener;
