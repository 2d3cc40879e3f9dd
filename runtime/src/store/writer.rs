//! The writer thread: the only connection that writes. It blocks for one command, takes
//! whatever else is already queued (up to [`MAX_BATCH`]) and commits all the queued writes
//! in one transaction, so a burst of events costs one commit, not thousands.
//!
//! A write that fails is logged and counted, never retried and never a panic; the other writes
//! of its batch still commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use rusqlite::Connection;
use serde_json::Value;

use super::StoreError;
use super::records::{self, SessionRecord, StoredEvent, TaskRecord};

/// The most commands taken into one batch.
pub(crate) const MAX_BATCH: usize = 512;

/// A queued write.
pub(crate) enum Write {
    Session(Box<SessionRecord>),
    Task(Box<TaskRecord>),
    Decision {
        session: String,
        task: Option<String>,
        record: Value,
    },
    Event(Box<StoredEvent>),
}

/// Work that runs on the write connection in its own transaction, between batches, and
/// answers through its own channel (key creation, interrupting tasks).
pub(crate) type Exclusive = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Command {
    Write(Write),
    /// Answered once every command queued before it is committed.
    Barrier(Sender<()>),
    Exclusive(Exclusive),
    /// Commit what is queued, then stop.
    Shutdown,
}

/// Counters shared with the [`super::Store`] handles.
#[derive(Default)]
pub(crate) struct Counters {
    /// Writes queued and not yet committed (or failed).
    pub(crate) pending: AtomicUsize,
    /// Writes that could not be committed since the store was opened.
    pub(crate) failed: AtomicU64,
}

pub(crate) fn run(mut conn: Connection, commands: Receiver<Command>, counters: Arc<Counters>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        // Block for the first command; after `Shutdown`, only take what is already queued.
        let first = if stopping {
            commands.try_recv().ok()
        } else {
            commands.recv().ok()
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        stopping |= process(&mut conn, &mut batch, &counters);
    }
    tracing::debug!("store writer stopped");
}

/// Runs one batch; true when it held a `Shutdown`.
fn process(conn: &mut Connection, batch: &mut Vec<Command>, counters: &Counters) -> bool {
    let mut writes = Vec::new();
    let mut barriers = Vec::new();
    let mut shutdown = false;
    for command in batch.drain(..) {
        match command {
            Command::Write(write) => writes.push(write),
            Command::Barrier(reply) => barriers.push(reply),
            Command::Exclusive(work) => {
                // Keep the queue's order: what came before is committed first.
                commit(conn, &mut writes, counters);
                answer(&mut barriers);
                work(conn);
            }
            Command::Shutdown => shutdown = true,
        }
    }
    commit(conn, &mut writes, counters);
    answer(&mut barriers);
    shutdown
}

fn answer(barriers: &mut Vec<Sender<()>>) {
    for reply in barriers.drain(..) {
        // The caller may have gone away; nothing to do then.
        let _ = reply.send(());
    }
}

/// Commits `writes` in one transaction; each failure is logged and counted.
fn commit(conn: &mut Connection, writes: &mut Vec<Write>, counters: &Counters) {
    if writes.is_empty() {
        return;
    }
    let total = writes.len();
    let mut failed = 0usize;
    match conn.transaction() {
        Ok(tx) => {
            for write in writes.iter() {
                if let Err(error) = apply(&tx, write) {
                    failed += 1;
                    tracing::error!(%error, what = write.describe(), "store write failed");
                }
            }
            if let Err(error) = tx.commit() {
                failed = total;
                tracing::error!(%error, writes = total, "store batch commit failed");
            }
        }
        Err(error) => {
            failed = total;
            tracing::error!(%error, writes = total, "store batch could not start");
        }
    }
    writes.clear();
    if failed > 0 {
        counters.failed.fetch_add(failed as u64, Ordering::Relaxed);
    }
    counters.pending.fetch_sub(total, Ordering::Relaxed);
}

fn apply(conn: &Connection, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Session(s) => records::write_session(conn, s),
        Write::Task(t) => records::write_task(conn, t),
        Write::Decision {
            session,
            task,
            record,
        } => records::write_decision(conn, session, task.as_deref(), record),
        Write::Event(e) => records::write_event(conn, e),
    }
}

impl Write {
    /// What the write was about, for logs (ids only, never contents).
    pub(crate) fn describe(&self) -> String {
        match self {
            Write::Session(s) => format!("session {}", s.id),
            Write::Task(t) => format!("task {}/{}", t.session, t.id),
            Write::Decision { session, task, .. } => match task {
                Some(task) => format!("decision for task {session}/{task}"),
                None => format!("decision for session {session}"),
            },
            Write::Event(e) => format!("event {}#{}", e.session, e.seq),
        }
    }
}
