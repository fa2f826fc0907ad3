//! Group commit for the add-ons database: concurrent writes share one SQLite transaction,
//! and so one fsync, while each still returns only once it is durable.
//!
//! Guests write at request rate (a counter per request), and with `synchronous=FULL` each
//! commit waits for the disk (about 0.2 ms here): one transaction per write capped a host
//! at a few thousand writes a second, whatever the number of cores. So one thread owns the
//! writer connection and takes writes from a queue: it runs the first waiting write in a
//! new transaction, then every other write already queued (each in a savepoint of its
//! own), commits once, and only then answers them all. While it waits for the disk, the
//! writes arriving meanwhile gather into the next transaction: the busier the host, the
//! bigger the batches.
//!
//! Left at that, concurrent writers fall into step: the writes one commit answers come
//! back together, and one that missed the last commit is committed alone while the others
//! make their way back, a whole fsync for one write, every other turn (`bench/addons.sh`
//! saw 60 % of commits carry a single write). So a transaction smaller than the last one
//! waits, for at most twice the last commit's time, for as many writes as that one held.
//! A writer on its own never waits: its last transaction held one write.
//!
//! A write that fails (over its quota, an app gone, a bad id) rolls back to its own
//! savepoint and is answered at once: it never fails the others. A commit that fails fails
//! every write of its transaction, none of which was acknowledged.

use crate::error::AddonError;
use rusqlite::Connection;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The most writes one transaction takes, so a flood still commits (and answers) often.
const MAX_BATCH: usize = 1024;

/// A transaction smaller than the last waits for more writes for at most this many times
/// the last commit's duration (`bench/addons.sh`, two lane threads: 1 gave 19.0k, 2 19.8k,
/// 3 19.5k and 4 18.8k increments/s)...
const GATHER_COMMITS: u32 = 2;
/// ...and never longer than this, whatever a slow disk takes.
const MAX_GATHER: Duration = Duration::from_millis(1);

/// A queued write: run on the writer connection (or told why it cannot be), it answers at
/// once when it failed, or returns what answers it once its transaction is committed.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Option<Answer> + Send>;

/// Tells a write that ran whether its transaction was committed.
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// The writer connection, owned by the thread that commits for everyone.
pub struct GroupWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupWriter {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> std::io::Result<GroupWriter> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("addon-writer".into())
            .spawn(move || commit_loop(&conn, &queue))?;
        Ok(GroupWriter {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` in a transaction (in a savepoint of its own) and returns its result once
    /// that transaction is committed; an error of `f` is returned as soon as it happens,
    /// with nothing of it written.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, AddonError> + Send + 'static,
    ) -> Result<T, AddonError> {
        let (done, answer) = oneshot::channel::<Result<T, AddonError>>();
        let job: Job = Box::new(move |conn| {
            let out = match conn {
                Ok(conn) => in_savepoint(conn, f),
                Err(why) => Err(backend("starting a transaction", why)),
            };
            match out {
                Ok(out) => Some(Box::new(move |committed: Result<(), &str>| {
                    let _ = done.send(
                        committed
                            .map(|()| out)
                            .map_err(|why| backend("committing add-on writes", why)),
                    );
                })),
                Err(e) => {
                    let _ = done.send(Err(e));
                    None
                }
            }
        });
        let stopped = || AddonError::Backend("the add-on writer has stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for GroupWriter {
    /// Lets the thread commit what is queued, then waits for it (and its connection) to end.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend(what: &str, why: &str) -> AddonError {
    AddonError::Backend(format!("{what}: {why}"))
}

/// Runs `f` in a savepoint, rolled back alone when `f` fails.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, AddonError>,
) -> Result<T, AddonError> {
    run(conn, "SAVEPOINT write")?;
    match f(conn) {
        Ok(out) => {
            run(conn, "RELEASE write")?;
            Ok(out)
        }
        Err(e) => {
            // When SQLite has already rolled the whole transaction back (a full disk, an
            // I/O error) there is no savepoint left; the loop sees that and fails the batch.
            if !conn.is_autocommit() {
                run(conn, "ROLLBACK TO write")?;
                run(conn, "RELEASE write")?;
            }
            Err(e)
        }
    }
}

/// The writer thread: one transaction per turn, holding every write queued by then.
fn commit_loop(conn: &Connection, queue: &mpsc::Receiver<Job>) {
    let mut pace = Pace::default();
    while let Ok(first) = queue.recv() {
        let gather_until = Instant::now() + pace.gather_window();
        let mut waiting: Vec<Answer> = Vec::new();
        let mut ran = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            if conn.is_autocommit()
                && let Err(e) = run(conn, "BEGIN IMMEDIATE")
            {
                let why = e.to_string();
                fail(&mut waiting, &why);
                let _ = job(Err(&why));
                break;
            }
            waiting.extend(job(Ok(conn)));
            ran += 1;
            if conn.is_autocommit() {
                // The write's failure ended the transaction, and with it the writes before
                // it: none of them is durable.
                fail(
                    &mut waiting,
                    "the transaction was rolled back by a failing write",
                );
            }
            if ran < MAX_BATCH {
                next = queue.try_recv().ok().or_else(|| {
                    // Fewer writes than last time: the others are likely on their way back
                    // (answered by the last commit); a moment's wait saves a commit.
                    let left = gather_until.saturating_duration_since(Instant::now());
                    (ran < pace.last_batch && !left.is_zero())
                        .then(|| queue.recv_timeout(left).ok())
                        .flatten()
                });
            }
        }
        if conn.is_autocommit() {
            continue;
        }
        let started = Instant::now();
        match run(conn, "COMMIT") {
            Ok(()) => {
                pace.committed(ran, started.elapsed());
                tracing::trace!(writes = waiting.len(), "committed add-on writes");
                for answer in waiting.drain(..) {
                    answer(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = waiting.len(), "committing add-on writes failed");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                fail(&mut waiting, &e.to_string());
            }
        }
    }
}

/// What the last commit was like, to tell how long a small batch may wait for more.
#[derive(Default)]
struct Pace {
    /// Writes in the last transaction committed.
    last_batch: usize,
    /// How long that commit took (mostly the fsync).
    last_commit: Duration,
}

impl Pace {
    fn committed(&mut self, writes: usize, took: Duration) {
        self.last_batch = writes;
        self.last_commit = took;
    }

    /// How long a transaction smaller than the last may wait for more writes: about as
    /// long as the commits it saves; nothing before the first commit.
    fn gather_window(&self) -> Duration {
        (self.last_commit * GATHER_COMMITS).min(MAX_GATHER)
    }
}

/// Runs one of the few statements of the loop, each parsed once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn fail(waiting: &mut Vec<Answer>, why: &str) {
    for answer in waiting.drain(..) {
        answer(Err(why));
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_GATHER, Pace};
    use crate::embedded::addons_db::{NO_QUOTA, open_temp};
    use crate::error::AddonError;
    use std::sync::Arc;
    use std::time::Duration;

    /// Many tasks incrementing at once, with writes over the quota among them: every
    /// acknowledged increment is counted exactly once and every refused write fails alone,
    /// whichever transaction it shared.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_are_exact_and_a_failing_one_fails_alone() {
        let (_dir, db) = open_temp().await;
        let db = Arc::new(db);
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut refused = 0;
                    for i in 0..100 {
                        db.increment("a", NO_QUOTA, "b", "count", 1)
                            .await
                            .expect("increment");
                        if i % 10 == t % 10 {
                            // Far over app b's small quota: refused, and only it.
                            let key = format!("k{t}-{i}");
                            match db.set("b", 100, "b", &key, vec![0u8; 1000]).await {
                                Err(AddonError::OverQuota { .. }) => refused += 1,
                                other => panic!("expected over quota, got {other:?}"),
                            }
                        }
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            refused += task.await.expect("task");
        }
        assert_eq!(refused, 32 * 10);
        assert_eq!(
            db.get("a", "b", "count").expect("get"),
            Some(b"3200".to_vec())
        );
        assert_eq!(db.usage("b").expect("usage"), 0);
        // The next write after all that still commits on its own.
        assert_eq!(
            db.increment("a", NO_QUOTA, "b", "count", 1)
                .await
                .expect("last"),
            3201
        );
    }

    #[test]
    fn a_transaction_waits_for_more_only_after_a_commit_and_never_long() {
        let mut pace = Pace::default();
        assert_eq!(
            pace.gather_window(),
            Duration::ZERO,
            "nothing to wait for yet"
        );
        pace.committed(12, Duration::from_micros(200));
        assert_eq!(pace.gather_window(), Duration::from_micros(400));
        pace.committed(12, Duration::from_secs(1));
        assert_eq!(
            pace.gather_window(),
            MAX_GATHER,
            "a slow disk does not lengthen it"
        );
    }
}
