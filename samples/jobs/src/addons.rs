//! The add-ons (`wdeploy:platform/addons`: key-value, config, queue), generated from the
//! vendored WIT, and what `web` and `worker` share: the queue's name and the keys a job's
//! state is kept under.
//!
//! A job's state lives in the app's default key-value bucket:
//! `job/ID/queued` (set by web), `job/ID/attempt` (the worker's latest take),
//! `job/ID/runs` (times a worker started it), `job/ID/result` (when done).

// Shared by both processes, each using part of it.
#![allow(dead_code, unused_imports)]

wit_bindgen::generate!({
    path: "wit",
    world: "wdeploy:platform/addons",
    generate_all,
});

pub use self::wasi::keyvalue::{atomics, store};
pub use self::wdeploy::platform::queue;

/// The queue web puts jobs on and the worker takes them from.
pub const QUEUE: &str = "jobs";

pub fn key(id: u64, what: &str) -> String {
    format!("job/{id}/{what}")
}

pub fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such bucket".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(message) => message,
    }
}

pub fn describe_queue(e: queue::Error) -> String {
    match e {
        queue::Error::Invalid(message) | queue::Error::Other(message) => message,
        queue::Error::NoSuchJob => "no such job".into(),
    }
}
