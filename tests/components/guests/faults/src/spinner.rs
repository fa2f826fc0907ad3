//! A worker that never yields on its own: the host must still keep every other dyno and
//! the router responsive.

fn main() {
    println!("spinner: spinning");
    let mut n: u64 = 0;
    loop {
        n = n.wrapping_add(1);
        std::hint::black_box(n);
    }
}
