//! A worker that fails at once, to exercise crash handling and restart back-off.

fn main() {
    eprintln!("crasher: giving up");
    std::process::exit(1);
}
