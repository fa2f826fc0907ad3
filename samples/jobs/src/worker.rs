//! The `worker` process of the jobs sample: takes jobs off the app's queue with a lease,
//! does the work (here: upper-cases the text), stores the result in key-value and acks.
//!
//! Delivery is at least once: a worker that dies mid-job never acks, its lease expires
//! (`JOB_LEASE_SECONDS`, a config var read through wasi:config, default 30) and the job is
//! taken again. A job whose text is `crash-once` shows it: its first run marks the job and
//! crashes the worker on purpose; the retry finds the mark and completes.
//!
//! Like the hello worker it watches stdin, which the platform closes to stop the dyno.

#[path = "addons.rs"]
mod addons;

use addons::wasi::config::store as config;
use addons::{QUEUE, atomics, describe, describe_queue, key, queue, store};
use wasi::cli::stdin::get_stdin;
use wasi::clocks::monotonic_clock::subscribe_duration;
use wasi::io::poll::poll;

/// How long to wait before asking again when the queue is empty.
const IDLE_POLL_NS: u64 = 100_000_000;

fn main() {
    let lease = config::get("JOB_LEASE_SECONDS")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(30);
    println!("worker: taking jobs from `{QUEUE}` with a {lease}s lease");
    let bucket = match store::open("") {
        Ok(bucket) => bucket,
        Err(e) => {
            eprintln!("worker: cannot open the key-value store: {}", describe(e));
            std::process::exit(1);
        }
    };
    let stdin = get_stdin();
    let stdin_ready = stdin.subscribe();
    loop {
        let wait = match queue::take(QUEUE, lease) {
            Ok(Some(job)) => {
                work(&bucket, job);
                0
            }
            Ok(None) => IDLE_POLL_NS,
            Err(e) => {
                eprintln!("worker: cannot take a job: {}", describe_queue(e));
                10 * IDLE_POLL_NS
            }
        };
        let timer = subscribe_duration(wait);
        let ready = poll(&[&stdin_ready, &timer]);
        if ready.contains(&0) && stdin.read(4096).is_err() {
            println!("worker: stdin closed, shutting down");
            return;
        }
    }
}

fn work(bucket: &store::Bucket, job: queue::Job) {
    let id = job.id;
    let text = String::from_utf8_lossy(&job.payload).into_owned();
    println!("job {id}: attempt {}: {text}", job.attempt);
    let noted = bucket
        .set(&key(id, "attempt"), job.attempt.to_string().as_bytes())
        .and_then(|()| atomics::increment(bucket, &key(id, "runs"), 1));
    if let Err(e) = noted {
        // Not acked: the job comes back when its lease expires.
        eprintln!("job {id}: cannot record the attempt: {}", describe(e));
        return;
    }
    if text == "crash-once" && !bucket.exists(&key(id, "crashed")).unwrap_or(true) {
        let _ = bucket.set(&key(id, "crashed"), b"yes");
        println!("job {id}: crashing on purpose; the job runs again when its lease expires");
        std::process::abort();
    }
    let result = text.to_uppercase();
    if let Err(e) = bucket.set(&key(id, "result"), result.as_bytes()) {
        eprintln!("job {id}: cannot store the result: {}", describe(e));
        return;
    }
    match queue::ack(id) {
        Ok(()) => println!("job {id}: done"),
        Err(e) => eprintln!("job {id}: cannot ack: {}", describe_queue(e)),
    }
}
