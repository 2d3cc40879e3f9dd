//! The writer thread: the only connection that writes. It blocks for one command, lingers a
//! moment ([`LINGER`]) to let the rest of a burst arrive, takes what is queued (up to
//! [`MAX_BATCH`]) and commits it in one transaction, so a burst of events costs one commit,
//! not thousands. A task's record written several times in one batch is written once, as it
//! was last. Commands someone waits for (barriers, exclusive work, shutdown) end the linger
//! at once: their senders unpark the writer.
//!
//! A write that fails is logged and counted, never retried and never a panic; the other writes
//! of its batch still commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;

use super::StoreError;
use super::records::{self, SessionRecord, StoredEvent, TaskRecord};

/// The most commands taken into one batch.
pub(crate) const MAX_BATCH: usize = 4096;

/// How long the writer waits after a first write for more to join its batch. Waiting while
/// parked (not on the channel) also spares every sender a wake-up call.
pub(crate) const LINGER: Duration = Duration::from_millis(2);

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

impl Command {
    /// Someone waits for it: the writer stops lingering.
    fn is_urgent(&self) -> bool {
        !matches!(self, Command::Write(_))
    }
}

/// Counters shared with the [`super::Store`] handles.
#[derive(Default)]
pub(crate) struct Counters {
    /// Writes queued and not yet committed (or failed).
    pub(crate) pending: AtomicUsize,
    /// Writes that could not be committed since the store was opened.
    pub(crate) failed: AtomicU64,
    /// Sessions given events since the last prune, with their highest sequence number: a
    /// prune looks at these sessions only, not at the whole table.
    pub(crate) event_sessions: std::sync::Mutex<HashMap<String, u64>>,
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
        let mut urgent = first.is_urgent();
        batch.push(first);
        let deadline = Instant::now() + LINGER;
        loop {
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => {
                        urgent |= command.is_urgent();
                        batch.push(command);
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if urgent || stopping || batch.len() >= MAX_BATCH || now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
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
    // Where each task's latest record sits in `writes`: an earlier one is replaced, not written.
    let mut task_slots: HashMap<(String, String), usize> = HashMap::new();
    for command in batch.drain(..) {
        match command {
            Command::Write(Write::Task(task)) => {
                let key = (task.session.clone(), task.id.clone());
                match task_slots.get(&key) {
                    Some(&slot) => {
                        writes[slot] = Write::Task(task);
                        counters.pending.fetch_sub(1, Ordering::Relaxed);
                    }
                    None => {
                        task_slots.insert(key, writes.len());
                        writes.push(Write::Task(task));
                    }
                }
            }
            Command::Write(write) => writes.push(write),
            Command::Barrier(reply) => barriers.push(reply),
            Command::Exclusive(work) => {
                // Keep the queue's order: what came before is committed first.
                commit(conn, &mut writes, counters);
                task_slots.clear();
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
    let mut last_seqs: HashMap<&str, u64> = HashMap::new();
    match conn.transaction() {
        Ok(tx) => {
            for write in writes.iter() {
                match apply(&tx, write) {
                    Ok(()) => {
                        if let Write::Event(e) = write {
                            let last = last_seqs.entry(&e.session).or_default();
                            *last = (*last).max(e.seq);
                        }
                    }
                    Err(error) => {
                        failed += 1;
                        tracing::error!(%error, what = write.describe(), "store write failed");
                    }
                }
            }
            match tx.commit() {
                Ok(()) => note_event_sessions(counters, last_seqs),
                Err(error) => {
                    failed = total;
                    tracing::error!(%error, writes = total, "store batch commit failed");
                }
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

fn note_event_sessions(counters: &Counters, last_seqs: HashMap<&str, u64>) {
    if last_seqs.is_empty() {
        return;
    }
    let mut noted = counters
        .event_sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (session, seq) in last_seqs {
        match noted.get_mut(session) {
            Some(last) => *last = (*last).max(seq),
            None => {
                noted.insert(session.to_owned(), seq);
            }
        }
    }
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
