//! The `worker` process: a background loop printing a tick line every second.

use std::time::Duration;

fn main() {
    let dyno = std::env::var("DYNO").unwrap_or_default();
    println!("worker {dyno} starting");
    for n in 1.. {
        println!("tick {n}");
        std::thread::sleep(Duration::from_secs(1));
    }
}
