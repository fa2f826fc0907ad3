//! Group commit for the add-ons database: concurrent writes share one SQLite transaction,
//! and so one fsync, while each still returns only once it is durable.
//!
//! Guests write at request rate (a counter per request), and with `synchronous=FULL` each
//! transaction's commit waits for the disk: one transaction per write capped a host at a
//! few thousand writes a second, whatever the number of cores. Here a write runs inside
//! the transaction that is open (or opens one), in a savepoint of its own, and then waits
//! for that transaction's commit. Whoever gets the connection next with a write of the
//! open transaction still waiting commits it, for every write in it: while one commit
//! waits for the disk, the writes arriving meanwhile gather into the next transaction.
//!
//! A write that fails (over its quota, an app gone, a constraint) rolls back to its own
//! savepoint and returns at once: it never fails the others. A commit that fails fails
//! every write of its transaction, none of which was acknowledged.

use crate::error::AddonError;
use parking_lot::Mutex;
use rusqlite::Connection;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// What a write of a committed (or failed) transaction is told.
type Committed = std::result::Result<(), String>;

/// The writer connection and the transaction it may have open.
pub struct GroupWriter {
    state: Mutex<State>,
}

struct State {
    conn: Connection,
    /// Whether a transaction is open on `conn`.
    open: bool,
    /// The writes done in the open transaction, waiting for its commit.
    waiting: Vec<SyncSender<Committed>>,
}

impl GroupWriter {
    pub fn new(conn: Connection) -> GroupWriter {
        GroupWriter {
            state: Mutex::new(State {
                conn,
                open: false,
                waiting: Vec::new(),
            }),
        }
    }

    /// Runs `f` in the open transaction (in a savepoint of its own) and returns its result
    /// once that transaction is committed; an error of `f` is returned at once, with
    /// nothing of it written.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, AddonError>,
    ) -> Result<T, AddonError> {
        let (out, committed) = {
            let mut state = self.state.lock();
            let out = state.run(f);
            match out {
                Ok(out) => {
                    let (done, committed) = sync_channel(1);
                    state.waiting.push(done);
                    (out, committed)
                }
                Err(e) => {
                    // Nothing else may be waiting for the transaction this write opened.
                    if state.waiting.is_empty() {
                        state.commit();
                    }
                    return Err(e);
                }
            }
        };
        wait_committed(&self.state, committed)?;
        Ok(out)
    }
}

/// Waits until the transaction holding this write is committed: by another writer that
/// got the connection first, or by this one, for all the writes waiting with it.
fn wait_committed(state: &Mutex<State>, committed: Receiver<Committed>) -> Result<(), AddonError> {
    let mut guard = state.lock();
    let result = match committed.try_recv() {
        Ok(result) => result,
        Err(_) => {
            guard.commit();
            committed
                .try_recv()
                .unwrap_or_else(|_| Err("the commit gave no answer".into()))
        }
    };
    drop(guard);
    result.map_err(|e| AddonError::Backend(format!("committing add-on writes: {e}")))
}

impl State {
    /// Runs `f` in a savepoint of the open transaction (opening one first).
    fn run<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, AddonError>,
    ) -> Result<T, AddonError> {
        if !self.open {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.open = true;
        }
        self.conn.execute_batch("SAVEPOINT write")?;
        match f(&self.conn) {
            Ok(out) => {
                self.conn.execute_batch("RELEASE write")?;
                Ok(out)
            }
            Err(e) => {
                self.conn
                    .execute_batch("ROLLBACK TO write; RELEASE write")?;
                Err(e)
            }
        }
    }

    /// Commits the open transaction and tells every write waiting for it.
    fn commit(&mut self) {
        if !self.open {
            return;
        }
        let result = self.conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if result.is_err() {
            // SQLite may have rolled back already; make sure no transaction stays open.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.open = false;
        for done in self.waiting.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::embedded::addons_db::{NO_QUOTA, open_temp};
    use crate::error::AddonError;
    use std::sync::Arc;

    /// Many threads incrementing at once, with writes over the quota among them: every
    /// acknowledged increment is counted exactly once and every refused write fails alone,
    /// whichever transaction it shared.
    #[test]
    fn concurrent_writes_are_exact_and_a_failing_one_fails_alone() {
        let (_dir, db) = open_temp();
        let db = Arc::new(db);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut refused = 0;
                    for i in 0..200 {
                        db.increment("a", NO_QUOTA, "b", "count", 1)
                            .expect("increment");
                        if i % 10 == t % 10 {
                            // Far over app b's small quota: refused, and only it.
                            match db.set("b", 100, "b", &format!("k{t}-{i}"), &[0u8; 1000]) {
                                Err(AddonError::OverQuota { .. }) => refused += 1,
                                other => panic!("expected over quota, got {other:?}"),
                            }
                        }
                    }
                    refused
                })
            })
            .collect();
        let refused: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(refused, 8 * 20);
        assert_eq!(
            db.get("a", "b", "count").expect("get"),
            Some(b"1600".to_vec())
        );
        assert_eq!(db.usage("b").expect("usage"), 0);
        // The next write after all that still commits on its own.
        assert_eq!(
            db.increment("a", NO_QUOTA, "b", "count", 1).expect("last"),
            1601
        );
    }
}
