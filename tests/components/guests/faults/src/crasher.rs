//! A worker that fails at once, to exercise crash handling and restart back-off. With
//! `CRASH_UNTIL` (Unix seconds) it fails only until then and succeeds after: a release
//! command that depends on the outside world, which a retry finds ready.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let until = std::env::var("CRASH_UNTIL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if until.is_some_and(|until| now >= until) {
        println!("crasher: ready");
        return;
    }
    eprintln!("crasher: giving up");
    std::process::exit(1);
}
