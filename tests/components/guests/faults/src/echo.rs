//! A command that reads its stdin to the end (`wdeploy run --stdin echo < file`): it
//! prints its first ten lines back as `echo: LINE`, then how many bytes came in all.

use std::io::{BufRead, BufReader};

fn main() {
    let mut input = BufReader::new(std::io::stdin().lock());
    let (mut bytes, mut lines) = (0usize, 0usize);
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(n) => {
                bytes += n;
                lines += 1;
                if lines <= 10 {
                    println!("echo: {}", String::from_utf8_lossy(&line).trim_end());
                }
            }
            Err(e) => {
                eprintln!("echo: reading stdin: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("echo: end of input after {bytes} bytes in {lines} lines");
}
