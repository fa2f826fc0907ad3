//! `queue:stats`: jobs of each of the app's queues, by state.

use crate::session::{self, AppArg};

pub fn stats(args: AppArg) -> anyhow::Result<()> {
    let app = args.resolve()?;
    let queues = session::client()?.queues(&app)?;
    if queues.is_empty() {
        println!("No queues on {app}");
        return Ok(());
    }
    let width = queues
        .iter()
        .map(|q| q.queue.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<width$}  {:>8}  {:>8}  {:>8}",
        "queue", "ready", "leased", "done"
    );
    for q in queues {
        println!(
            "{:<width$}  {:>8}  {:>8}  {:>8}",
            q.queue, q.ready, q.leased, q.done
        );
    }
    Ok(())
}
