//! Dynos: web dynos (warm instances serving HTTP), worker dynos (a supervised
//! `wasi:cli/run` instance restarted with back-off) and one-offs; their ephemeral
//! filesystems and the states `ps` shows.

pub mod absolute_uri;
pub mod backoff;
pub mod drive;
pub mod ephemeral;
pub mod input;
pub mod ready_body;
pub mod status;
pub mod web;
pub mod worker;
