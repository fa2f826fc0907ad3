//! The `worker` process: a background loop printing a tick line every second (or every
//! N seconds with `worker --every N` in the Procfile).
//!
//! It also watches stdin: the platform closes a worker's stdin when it stops the dyno
//! (wasm's SIGTERM), and the worker then finishes cleanly instead of being cut off.

use wasi::cli::stdin::get_stdin;
use wasi::clocks::monotonic_clock::subscribe_duration;
use wasi::io::poll::poll;

fn main() {
    let dyno = std::env::var("DYNO").unwrap_or_default();
    let every: u64 = std::env::args()
        .skip_while(|a| a != "--every")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    println!("worker {dyno} starting");
    let stdin = get_stdin();
    let stdin_ready = stdin.subscribe();
    for n in 1u64.. {
        println!("tick {n}");
        let tick = subscribe_duration(every.saturating_mul(1_000_000_000));
        let ready = poll(&[&stdin_ready, &tick]);
        if ready.contains(&0) && stdin.read(4096).is_err() {
            println!("worker: stdin closed, shutting down");
            return;
        }
    }
}
