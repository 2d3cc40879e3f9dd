//! The durable store: API keys, sessions, tasks, decisions and events in an embedded SQLite
//! database, `<data_dir>/toolgate.db`, in WAL mode.
//!
//! # Writes
//! Sessions, tasks, decisions and events are *queued*: `put_*` hands the record to one writer
//! thread (`toolgate-store`) and returns at once. The writer lets a batch gather for a moment
//! (`writer::LINGER`, 2 ms) and commits it in one transaction, so the store keeps up with
//! bursts (thousands of events cost a few commits). [`Store::flush`] does not wait for that.
//! `put_*` blocks only when [`QUEUE_CAPACITY`] writes are already waiting, i.e. when the disk
//! is far behind: back pressure rather than unbounded memory. A write that fails (disk full, a
//! reused event sequence number, ...) is logged and counted in [`Store::failed_writes`]; it never
//! panics and never stops the writer.
//!
//! Key creation and revocation and [`Store::interrupt_unfinished_tasks`] are synchronous: they run on the
//! writer, after everything queued before them, and return once committed.
//!
//! # Reads
//! Reads use their own connection and see *committed* data only: a record just passed to
//! `put_*` may not be visible yet. Call [`Store::flush`] first when you need to read your own
//! writes. Reads are short, blocking calls; WAL lets them run while the writer commits.
//!
//! # Durability
//! Every committed batch survives the process being killed (`kill -9`): the database is in WAL
//! mode with `synchronous = NORMAL`, so a commit is in the write-ahead log before it returns.
//! (A power loss may lose the last few commits, never corrupt the database.) Writes still
//! queued when the process dies (at most the last couple of milliseconds' worth) are lost; [`Store::close`] (or dropping the last handle)
//! commits them.

mod approvals;
pub mod data_dir;
mod keys;
mod records;
mod runs;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use approvals::ApprovalRecord;
pub use keys::{KEY_PREFIX, KeyInfo, KeyRecord, NewKey};
pub use records::{Position, SessionQuery, SessionRecord, StoredEvent, TaskQuery, TaskRecord};
pub use runs::{RunLimits, RunRecord, RunUsage};

use writer::{Command, Counters, Write};

/// The database file inside the data directory.
pub const DB_FILE: &str = "toolgate.db";

/// How many writes may wait for the writer before `put_*` blocks.
pub const QUEUE_CAPACITY: usize = 65_536;

/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot prepare the data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot encode a stored value: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "the database has schema version {found}, newer than this toolgate supports ({supported})"
    )]
    UnsupportedSchema { found: i64, supported: i64 },
    #[error("no randomness available for a new key: {0}")]
    Random(String),
    #[error("the store is closed")]
    Closed,
}

/// A handle on the store. Cheap to clone; every clone shares one writer and one read
/// connection. The writer stops on [`Store::close`] or when the last handle is dropped (both
/// commit what is queued first).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    commands: SyncSender<Command>,
    reader: Mutex<Connection>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Unparked after every command someone waits for, so the writer stops lingering.
    writer_thread: std::thread::Thread,
    /// Authentication's own read connection: every request reads the revocation generation,
    /// and must not wait behind a long read (a listing) on `reader`.
    keys: Mutex<Connection>,
    /// Keys seen before (never the plaintext), valid as of a revocation generation.
    known_keys: Mutex<KnownKeys>,
    /// The newest revocation generation this process has seen; open event streams watch it.
    revocations: tokio::sync::watch::Sender<u64>,
}

/// Key hash → its record, as of revocation generation `generation`: forgotten, all of them,
/// when a newer generation is seen (revocations are rare; a cache miss is one indexed read).
#[derive(Default)]
struct KnownKeys {
    generation: u64,
    keys: std::collections::HashMap<String, KeyRecord>,
}

/// Keys remembered before the memory starts over.
const KNOWN_KEYS_LIMIT: usize = 10_000;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("pending_writes", &self.pending_writes())
            .field("failed_writes", &self.failed_writes())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/toolgate.db`: creates the directory (mode 0700 on
    /// Unix; the database file is made 0600), switches to WAL, applies pending migrations and
    /// starts the writer thread.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);

        let mut write_conn = Connection::open(&path)?;
        restrict_file(&path)?;
        configure(&write_conn)?;
        let mode: String = write_conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "the store database is not in WAL mode");
        }
        schema::migrate(&mut write_conn)?;
        write_conn.set_prepared_statement_cache_capacity(32);

        let reader = read_connection(&path)?;
        let keys = read_connection(&path)?;
        let generation = keys::generation(&keys)?;

        let counters = Arc::new(Counters::default());
        let (commands, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writer = std::thread::Builder::new()
            .name("toolgate-store".to_owned())
            .spawn({
                let counters = counters.clone();
                move || writer::run(write_conn, receiver, counters)
            })
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        tracing::info!(path = %path.display(), "store opened");
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                commands,
                reader: Mutex::new(reader),
                counters,
                writer_thread: writer.thread().clone(),
                writer: Mutex::new(Some(writer)),
                keys: Mutex::new(keys),
                known_keys: Mutex::new(KnownKeys {
                    generation,
                    keys: Default::default(),
                }),
                revocations: tokio::sync::watch::Sender::new(generation),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    // ---- API keys ----

    /// Creates a key for `principal` in `profile`. The returned [`NewKey::key`] is the only
    /// copy of the secret (only its SHA-256 hash is stored). Synchronous.
    pub fn create_key(
        &self,
        principal: &str,
        profile: &str,
        admin: bool,
    ) -> Result<NewKey, StoreError> {
        let (principal, profile) = (principal.to_owned(), profile.to_owned());
        let now = now_ms();
        self.exclusive(move |conn| keys::insert(conn, &principal, &profile, admin, now))
    }

    /// What `presented` authenticates as, or `None` when it is not a valid key (unknown or
    /// revoked). Each call reads the revocation generation (one row, on a connection of its
    /// own), so a key revoked by any process is refused from the next call on; the keys
    /// themselves are remembered until the generation changes.
    pub fn authenticate(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let digest = keys::hash(presented);
        let keys = self.keys_connection();
        let generation = keys::generation(&keys)?;
        self.observe_revocations(generation);
        if let Some(hit) = self.known_keys().keys.get(&digest) {
            return Ok(Some(hit.clone()));
        }
        let found = keys::authenticate(&keys, presented)?;
        drop(keys);
        if let Some(record) = &found {
            let mut known = self.known_keys();
            // Read as of `generation`: remembered only if no newer revocation was seen since.
            if known.generation == generation {
                if known.keys.len() >= KNOWN_KEYS_LIMIT {
                    known.keys.clear();
                }
                known.keys.insert(digest, record.clone());
            }
        }
        Ok(found)
    }

    /// Every key, revoked ones included, oldest first. Never a secret.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        keys::list(&self.reader())
    }

    /// The key with id `id`, if there is one.
    pub fn key(&self, id: &str) -> Result<Option<KeyInfo>, StoreError> {
        keys::get(&self.keys_connection(), id)
    }

    /// Revokes key `id`: from now on it authenticates nowhere, in this process or any other
    /// on the same database. Revoking a revoked key changes nothing. `None` when there is no
    /// such key. Synchronous.
    pub fn revoke_key(&self, id: &str) -> Result<Option<KeyInfo>, StoreError> {
        let (id, now) = (id.to_owned(), now_ms());
        let info = self.exclusive(move |conn| keys::revoke(conn, &id, now))?;
        self.check_revocations()?;
        Ok(info)
    }

    /// Reads the revocation generation and tells [`Store::revocations`]' watchers when it
    /// moved (a key was revoked, maybe by another process). Returns it.
    pub fn check_revocations(&self) -> Result<u64, StoreError> {
        let generation = keys::generation(&self.keys_connection())?;
        self.observe_revocations(generation);
        Ok(generation)
    }

    /// The newest revocation generation seen, changed whenever a revocation is seen (by
    /// [`Store::authenticate`], [`Store::revoke_key`] or [`Store::check_revocations`]).
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revocations.subscribe()
    }

    /// Forgets the remembered keys and wakes the watchers when `generation` is newer than the
    /// last one seen.
    fn observe_revocations(&self, generation: u64) {
        let mut known = self.known_keys();
        if generation > known.generation {
            known.generation = generation;
            known.keys.clear();
            drop(known);
            self.inner.revocations.send_if_modified(|seen| {
                let newer = generation > *seen;
                if newer {
                    *seen = generation;
                }
                newer
            });
        }
    }

    fn known_keys(&self) -> MutexGuard<'_, KnownKeys> {
        self.inner
            .known_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn keys_connection(&self) -> MutexGuard<'_, Connection> {
        self.inner.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn key_count(&self) -> Result<u64, StoreError> {
        keys::count(&self.reader())
    }

    /// The distinct `(principal, profile)` pairs of all keys, sorted.
    pub fn principals(&self) -> Result<Vec<(String, String)>, StoreError> {
        keys::principals(&self.reader())
    }

    // ---- hosts ----

    /// Records that an admin drained (or undrained) a host, at once (not queued).
    pub fn set_host_drained(&self, host: &str, drained: bool) -> Result<(), StoreError> {
        let host = host.to_owned();
        self.exclusive(move |conn| {
            if drained {
                conn.execute(
                    "INSERT OR REPLACE INTO host_drains (host, drained_at_ms) VALUES (?1, ?2)",
                    rusqlite::params![host, now_ms()],
                )?;
            } else {
                conn.execute("DELETE FROM host_drains WHERE host = ?1", [host])?;
            }
            Ok(())
        })
    }

    /// The hosts an admin drained and did not undrain.
    pub fn drained_hosts(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.reader();
        let mut statement = conn.prepare("SELECT host FROM host_drains ORDER BY host")?;
        let hosts = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(hosts)
    }

    // ---- sessions ----

    /// Inserts or replaces the session (queued).
    pub fn put_session(&self, s: &SessionRecord) {
        self.queue(Write::Session(Box::new(s.clone())));
    }

    pub fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        records::session(&self.reader(), id)
    }

    /// Sessions whose state is `"open"`, oldest first.
    pub fn open_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        records::open_sessions(&self.reader())
    }

    // ---- tasks ----

    /// Inserts or replaces the task (queued). Tasks are keyed by `(session, id)`.
    pub fn put_task(&self, t: &TaskRecord) {
        self.queue(Write::Task(Box::new(t.clone())));
    }

    pub fn get_task(&self, session: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        records::task(&self.reader(), session, id)
    }

    /// The session's tasks, oldest first.
    pub fn list_tasks(&self, session: &str) -> Result<Vec<TaskRecord>, StoreError> {
        records::tasks(&self.reader(), session)
    }

    /// One page of a principal's sessions, newest first, each with the highest stored event
    /// sequence number of the session; `more` when rows follow the page.
    pub fn query_sessions(
        &self,
        query: &SessionQuery<'_>,
    ) -> Result<(Vec<(SessionRecord, u64)>, bool), StoreError> {
        records::query_sessions(&self.reader(), query)
    }

    /// One page of a session's tasks, newest first; `more` when rows follow the page.
    pub fn query_tasks(
        &self,
        query: &TaskQuery<'_>,
    ) -> Result<(Vec<TaskRecord>, bool), StoreError> {
        records::query_tasks(&self.reader(), query)
    }

    /// Marks every `queued` or `running` task `interrupted` (`finished_at_ms` = now, `error` =
    /// `{"kind": "interrupted", "message": ...}`) and returns them as updated. Call once at
    /// startup, before accepting tasks. Synchronous: it runs after every write queued before
    /// it and returns once committed.
    pub fn interrupt_unfinished_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let now = now_ms();
        self.exclusive(move |conn| records::interrupt_unfinished(conn, now))
    }

    // ---- approvals ----

    /// Records an approval, at once (after every write queued before it).
    pub fn put_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let approval = approval.clone();
        self.exclusive(move |conn| approvals::insert(conn, &approval))
    }

    pub fn get_approval(&self, task: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        approvals::get(&self.reader(), task)
    }

    /// The approvals still waiting for an answer, oldest first.
    pub fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, StoreError> {
        approvals::pending(&self.reader())
    }

    /// Answers a pending approval, at once; `false` when it was no longer pending.
    pub fn answer_approval(
        &self,
        task: &str,
        state: crate::vocabulary::ApprovalState,
        by: Option<&str>,
        comment: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (task, by, comment) = (
            task.to_owned(),
            by.map(str::to_owned),
            comment.map(str::to_owned),
        );
        let now = now_ms();
        self.exclusive(move |conn| {
            approvals::answer(conn, &task, state, by.as_deref(), comment.as_deref(), now)
        })
    }

    // ---- runs ----

    /// Records a run (new or changed), at once (after every write queued before it).
    pub fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let run = run.clone();
        self.exclusive(move |conn| runs::put(conn, &run))
    }

    pub fn get_run(&self, session: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
        runs::get(&self.reader(), session, id)
    }

    /// Marks every `queued` or `running` run `interrupted` and returns them. Call once at
    /// startup, before accepting runs.
    pub fn interrupt_unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let now = now_ms();
        self.exclusive(move |conn| runs::interrupt_unfinished(conn, now))
    }

    // ---- decisions ----

    /// Records one decision of the session (`task: None`) or of one of its tasks (queued).
    pub fn put_decision(&self, session: &str, task: Option<&str>, record: &serde_json::Value) {
        self.queue(Write::Decision {
            session: session.to_owned(),
            task: task.map(str::to_owned),
            record: record.clone(),
        });
    }

    /// The decisions recorded for the session, in the order they were recorded: with
    /// `task: Some(id)` only that task's; with `None` all of them, the tasks' included.
    pub fn decisions(
        &self,
        session: &str,
        task: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        records::decisions(&self.reader(), session, task)
    }

    // ---- events ----

    /// Stores one event (queued). Its `seq` must be new for the session; a reused one is a
    /// failed write (logged and counted), the stored event stays.
    pub fn put_event(&self, e: &StoredEvent) {
        self.queue(Write::Event(Box::new(e.clone())));
    }

    /// Up to `limit` events of the session with `seq > after`, ascending.
    pub fn events_after(
        &self,
        session: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        records::events_after(&self.reader(), session, after, limit)
    }

    /// The highest stored sequence number of the session; 0 when it has none. Continue
    /// numbering after it (and after any event still queued).
    pub fn last_event_seq(&self, session: &str) -> Result<u64, StoreError> {
        records::last_event_seq(&self.reader(), session)
    }

    /// Keeps only the newest `keep` events of each session given events since the last
    /// prune; older ones are deleted (a client asking for them gets a `gap`). Each such
    /// session costs one range delete, whatever the size of the table. Returns how many went.
    pub fn prune_events(&self, keep: u64) -> Result<u64, StoreError> {
        let counters = self.inner.counters.clone();
        self.exclusive(move |conn| {
            // Taken on the writer, after every event queued before the call is committed.
            let sessions = std::mem::take(
                &mut *counters
                    .event_sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            let tx = conn.transaction()?;
            let mut deleted = 0;
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM events WHERE session = ?1 AND seq <= ?2")?;
                for (session, last) in sessions.iter().filter(|(_, last)| **last > keep) {
                    let below = i64::try_from(last - keep).unwrap_or(i64::MAX);
                    deleted += delete.execute(rusqlite::params![session, below])? as u64;
                }
            }
            tx.commit()?;
            Ok(deleted)
        })
    }

    /// Deletes a session and everything of it (tasks, decisions, events), after every write
    /// queued before the call. For throwaway sessions of the server's own (the readiness
    /// self-test), so they do not pile up in the store. Returns the rows deleted.
    pub fn delete_session(&self, id: &str) -> Result<u64, StoreError> {
        let id = id.to_owned();
        self.exclusive(move |conn| {
            let tx = conn.transaction()?;
            let mut deleted = 0;
            for table in ["events", "decisions", "tasks", "runs"] {
                deleted += tx.execute(&format!("DELETE FROM {table} WHERE session = ?1"), [&id])?;
            }
            deleted += tx.execute("DELETE FROM sessions WHERE id = ?1", [&id])?;
            tx.commit()?;
            Ok(deleted as u64)
        })
    }

    /// Like [`Store::prune_events`] for every session in the table: one pass over all events,
    /// for startup (the retention may have been lowered since the last run).
    pub fn prune_all_events(&self, keep: u64) -> Result<u64, StoreError> {
        let keep = keep.min(i64::MAX as u64) as i64;
        self.exclusive(move |conn| {
            let deleted = conn.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(e.seq) FROM events e WHERE e.session = events.session) - ?1",
                [keep],
            )?;
            Ok(deleted as u64)
        })
    }

    // ---- the writer ----

    /// Blocks until every write queued before the call is committed (or has failed, see
    /// [`Store::failed_writes`]). `Err(Closed)` once the store is closed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::channel();
        self.send(Command::Barrier(reply))?;
        done.recv().map_err(|_| StoreError::Closed)
    }

    /// Commits everything queued and stops the writer. Idempotent; later writes fail (logged,
    /// counted) and `flush` returns `Err(Closed)`. Reads keep working. Call on graceful
    /// shutdown.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Writes queued and not yet committed.
    pub fn pending_writes(&self) -> usize {
        self.inner.counters.pending.load(Ordering::Relaxed)
    }

    /// Writes that failed since the store was opened.
    pub fn failed_writes(&self) -> u64 {
        self.inner.counters.failed.load(Ordering::Relaxed)
    }

    fn queue(&self, write: Write) {
        let counters = &self.inner.counters;
        counters.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::SendError(Command::Write(write))) =
            self.inner.commands.send(Command::Write(write))
        {
            counters.pending.fetch_sub(1, Ordering::Relaxed);
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                what = write.describe(),
                "store write dropped: the store is closed"
            );
        }
    }

    /// Sends a command someone waits for.
    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| StoreError::Closed)?;
        self.inner.writer_thread.unpark();
        Ok(())
    }

    /// Runs `work` on the write connection after everything queued so far, and waits for it.
    fn exclusive<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, result) = mpsc::channel();
        self.send(Command::Exclusive(Box::new(move |conn| {
            let _ = reply.send(work(conn));
        })))?;
        result.recv().map_err(|_| StoreError::Closed)?
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection inconsistent (each read
        // is one statement), so a poisoned lock is still usable.
        self.inner
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn close(&self) {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(handle) = writer.take() else { return };
        let sent = self.commands.send(Command::Shutdown).is_ok();
        self.writer_thread.unpark();
        if sent && handle.join().is_err() {
            tracing::error!("the store writer panicked");
        }
        tracing::debug!(path = %self.path.display(), "store closed");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A connection that only reads.
fn read_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", false)?;
    Ok(())
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// The database holds session inputs and outputs: readable by its owner only. SQLite gives
/// the `-wal` and `-shm` files the database file's permissions.
fn restrict_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Io {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests;
