//! The release phase: runs once before each release goes live (a place for migrations).
//! A non-zero exit would stop the deploy and keep the previous release serving.

fn main() {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "wdeploy".to_string());
    println!("release phase: checking config (GREETING={greeting})");
    println!("release phase: migrations up to date");
}
