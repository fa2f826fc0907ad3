//! `addons`: what the app's platform add-ons hold (key-value and queues share one
//! storage quota), as Heroku's `addons` lists an app's add-ons.

use crate::session::{self, ShowArgs};

pub fn list(args: ShowArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let usage = session::client()?.addon_usage(&app)?;
    if args.json.printed(&usage)? {
        return Ok(());
    }
    let share = if usage.quota_bytes == 0 {
        0.0
    } else {
        100.0 * usage.storage_bytes as f64 / usage.quota_bytes as f64
    };
    println!("=== {app} Add-ons");
    println!(
        "Storage:    {} of {} ({share:.1} %), keys and queued jobs together",
        bytes(usage.storage_bytes),
        bytes(usage.quota_bytes)
    );
    println!("Key-value:  wdeploy:platform/kv (`wdeploy kv:keys` lists the keys)");
    let queues = if usage.queues.is_empty() {
        "none yet".to_string()
    } else {
        usage
            .queues
            .iter()
            .map(|q| format!("{} ({} ready, {} leased)", q.queue, q.ready, q.leased))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("Queues:     wdeploy:platform/queue: {queues}");
    println!("Config:     wdeploy:platform/config (the release's config vars)");
    Ok(())
}

/// `n` bytes in binary units, as the quota is set (`limits.addons_mb`: MiB).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(64 << 20), "64.0 MiB");
    }
}
