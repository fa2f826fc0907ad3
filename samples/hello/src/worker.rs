//! The `worker` process: a background loop printing a tick line every second.
//!
//! It also watches stdin: the platform closes a worker's stdin when it stops the dyno
//! (wasm's SIGTERM), and the worker then finishes cleanly instead of being cut off.

use wasi::cli::stdin::get_stdin;
use wasi::clocks::monotonic_clock::subscribe_duration;
use wasi::io::poll::poll;

fn main() {
    let dyno = std::env::var("DYNO").unwrap_or_default();
    println!("worker {dyno} starting");
    let stdin = get_stdin();
    let stdin_ready = stdin.subscribe();
    for n in 1u64.. {
        println!("tick {n}");
        let second = subscribe_duration(1_000_000_000);
        let ready = poll(&[&stdin_ready, &second]);
        if ready.contains(&0) && stdin.read(4096).is_err() {
            println!("worker: stdin closed, shutting down");
            return;
        }
    }
}
