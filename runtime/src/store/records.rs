//! The stored records (sessions, tasks, events), their rows and the SQL that reads and writes
//! them. JSON values are stored as text.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use crate::vocabulary::{CloseReason, ErrorKind, SessionState, TaskState};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub principal: String,
    pub profile: String,
    pub state: SessionState,
    pub created_at_ms: i64,
    pub last_active_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub close_reason: Option<CloseReason>,
    /// The workspace's path on the orchestrator's host (in-process sessions), else empty.
    pub workspace: String,
    /// What the session asked for when it was created.
    pub request: Value,
    /// The sidecar the session runs on (`local`: this process).
    pub sidecar: String,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Task)]
pub struct TaskRecord {
    #[schema(examples("t_5d1c0e7f9a2b4c68b3e1f0a9d8c7b6a5"))]
    pub id: String,
    pub session: String,
    pub tool: String,
    #[schema(value_type = Object)]
    pub input: Value,
    /// queued → running → completed | failed | cancelled | interrupted.
    pub state: TaskState,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The tool's output (`completed` only): JSON, or a string if it was not JSON.
    #[schema(value_type = Option<Value>)]
    pub output: Option<Value>,
    #[schema(value_type = Option<crate::sandbox::TaskFailure>)]
    pub error: Option<Value>,
    #[schema(value_type = Option<crate::sandbox::Usage>)]
    pub usage: Option<Value>,
    /// The `invoke` decision; `null` until the task was decided.
    #[schema(value_type = Option<crate::policy::PolicyDecision>)]
    pub decision: Option<Value>,
    /// The agent run that called the tool, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("r_0f9e8d7c6b5a49382716f5e4d3c2b1a0"))]
    pub run: Option<String>,
}

/// One event of a session's stream. `seq` is assigned by the caller: per session, strictly
/// increasing, never reused (also across restarts: start from [`super::Store::last_event_seq`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub session: String,
    pub seq: u64,
    pub name: String,
    /// The payload as JSON text, stored as it is.
    pub data: std::sync::Arc<str>,
    pub at_ms: i64,
}

/// The error written into a task that was queued or running when the server stopped.
pub(crate) fn interrupted_error() -> Value {
    serde_json::json!({
        "kind": ErrorKind::Interrupted,
        "message": "the server stopped while the task was running",
    })
}

// ---- writes (run by the writer thread, inside its batch transaction) ----

pub(crate) fn write_session(conn: &Connection, s: &SessionRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sessions (id, principal, profile, state, created_at_ms,
             last_active_ms, closed_at_ms, close_reason, workspace, request, sidecar)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        s.id,
        s.principal,
        s.profile,
        s.state,
        s.created_at_ms,
        s.last_active_ms,
        s.closed_at_ms,
        s.close_reason,
        s.workspace,
        serde_json::to_string(&s.request)?,
        s.sidecar,
    ])?;
    Ok(())
}

pub(crate) fn write_task(conn: &Connection, t: &TaskRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO tasks (session, id, tool, input, state, created_at_ms,
             started_at_ms, finished_at_ms, output, error, usage, decision, run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        t.session,
        t.id,
        t.tool,
        serde_json::to_string(&t.input)?,
        t.state,
        t.created_at_ms,
        t.started_at_ms,
        t.finished_at_ms,
        json_opt(&t.output)?,
        json_opt(&t.error)?,
        json_opt(&t.usage)?,
        json_opt(&t.decision)?,
        t.run,
    ])?;
    Ok(())
}

pub(crate) fn write_decision(
    conn: &Connection,
    session: &str,
    task: Option<&str>,
    record: &Value,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO decisions (session, task, record) VALUES (?1, ?2, ?3)")?
        .execute(params![session, task, serde_json::to_string(record)?])?;
    Ok(())
}

/// A sequence number that is already stored is an error (sequence numbers are never reused).
pub(crate) fn write_event(conn: &Connection, e: &StoredEvent) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (session, seq, name, data, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        e.session,
        seq_to_sql(e.seq),
        e.name,
        &*e.data,
        e.at_ms,
    ])?;
    Ok(())
}

/// Marks every queued or running task `interrupted` and returns them as updated.
pub(crate) fn interrupt_unfinished(
    conn: &mut Connection,
    now_ms: i64,
) -> Result<Vec<TaskRecord>, StoreError> {
    let tx = conn.transaction()?;
    let mut tasks = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN (?1, ?2)
             ORDER BY created_at_ms, session, id"
        ))?;
        stmt.query_map([TaskState::Queued, TaskState::Running], task_from_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    let error = interrupted_error();
    let error_text = serde_json::to_string(&error)?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE tasks SET state = ?5, finished_at_ms = ?1, error = ?2
             WHERE session = ?3 AND id = ?4",
        )?;
        for task in &mut tasks {
            update.execute(params![
                now_ms,
                error_text,
                task.session,
                task.id,
                TaskState::Interrupted
            ])?;
            task.state = TaskState::Interrupted;
            task.finished_at_ms = Some(now_ms);
            task.error = Some(error.clone());
        }
    }
    tx.commit()?;
    Ok(tasks)
}

// ---- reads ----

const SESSION_COLUMNS: &str = "id, principal, profile, state, created_at_ms, last_active_ms, \
     closed_at_ms, close_reason, workspace, request, sidecar";

const TASK_COLUMNS: &str = "id, session, tool, input, state, created_at_ms, started_at_ms, \
     finished_at_ms, output, error, usage, decision, run";

pub(crate) fn session(conn: &Connection, id: &str) -> Result<Option<SessionRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
        ))?
        .query_row([id], session_from_row)
        .optional()?)
}

pub(crate) fn open_sessions(conn: &Connection) -> Result<Vec<SessionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE state = ?1 ORDER BY created_at_ms, id"
    ))?;
    let rows = stmt.query_map([SessionState::Open], session_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn task(
    conn: &Connection,
    session: &str,
    id: &str,
) -> Result<Option<TaskRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE session = ?1 AND id = ?2"
        ))?
        .query_row([session, id], task_from_row)
        .optional()?)
}

pub(crate) fn tasks(conn: &Connection, session: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE session = ?1 ORDER BY created_at_ms, id"
    ))?;
    let rows = stmt.query_map([session], task_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where a page of a newest-first listing ends: the last row it showed. The next page starts
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub created_at_ms: i64,
    pub id: String,
}

/// A page of one principal's sessions, newest first.
#[derive(Debug, Clone)]
pub struct SessionQuery<'a> {
    pub principal: &'a str,
    /// Only sessions in this state.
    pub state: Option<&'a str>,
    /// Only sessions after this one in the listing (older).
    pub after: Option<&'a Position>,
    pub limit: usize,
}

/// A page of one session's tasks, newest first.
#[derive(Debug, Clone)]
pub struct TaskQuery<'a> {
    pub session: &'a str,
    pub state: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub after: Option<&'a Position>,
    pub limit: usize,
}

/// The filters of a listing as SQL: each condition is added only when it is asked for, so
/// the planner sees plain equalities and uses the index made for them. Returns the `WHERE`
/// clause and its parameters.
fn conditions<'a>(
    equal: &[(&str, Option<&'a str>)],
    after: Option<&'a Position>,
) -> (String, Vec<Box<dyn rusqlite::ToSql + 'a>>) {
    let mut clauses = Vec::new();
    let mut values: Vec<Box<dyn rusqlite::ToSql + 'a>> = Vec::new();
    for (column, value) in equal {
        if let Some(value) = value {
            values.push(Box::new(*value));
            clauses.push(format!("{column} = ?{}", values.len()));
        }
    }
    if let Some(after) = after {
        values.push(Box::new(after.created_at_ms));
        values.push(Box::new(after.id.as_str()));
        clauses.push(format!(
            "(created_at_ms, id) < (?{}, ?{})",
            values.len() - 1,
            values.len()
        ));
    }
    (clauses.join(" AND "), values)
}

/// One more row than the page is read, to know whether another page follows.
fn page_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// A statement and its parameters.
pub(crate) type Statement<'a> = (String, Vec<Box<dyn rusqlite::ToSql + 'a>>);

pub(crate) fn sessions_statement<'a>(query: &SessionQuery<'a>) -> Statement<'a> {
    let (clause, mut values) = conditions(
        &[("principal", Some(query.principal)), ("state", query.state)],
        query.after,
    );
    values.push(Box::new(page_limit(query.limit)));
    let sql = format!(
        "SELECT {SESSION_COLUMNS},
             (SELECT MAX(seq) FROM events WHERE events.session = sessions.id)
         FROM sessions WHERE {clause}
         ORDER BY created_at_ms DESC, id DESC LIMIT ?{}",
        values.len()
    );
    (sql, values)
}

pub(crate) fn tasks_statement<'a>(query: &TaskQuery<'a>) -> Statement<'a> {
    let (clause, mut values) = conditions(
        &[
            ("session", Some(query.session)),
            ("state", query.state),
            ("tool", query.tool),
        ],
        query.after,
    );
    values.push(Box::new(page_limit(query.limit)));
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE {clause}
         ORDER BY created_at_ms DESC, id DESC LIMIT ?{}",
        values.len()
    );
    (sql, values)
}

pub(crate) fn query_sessions(
    conn: &Connection,
    query: &SessionQuery<'_>,
) -> Result<(Vec<(SessionRecord, u64)>, bool), StoreError> {
    let (sql, values) = sessions_statement(query);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), |row| {
        let last: Option<i64> = row.get(11)?;
        Ok((session_from_row(row)?, last.map_or(0, seq_from_sql)))
    })?;
    let mut rows: Vec<_> = rows.collect::<Result<_, _>>()?;
    let more = rows.len() > query.limit;
    rows.truncate(query.limit);
    Ok((rows, more))
}

pub(crate) fn query_tasks(
    conn: &Connection,
    query: &TaskQuery<'_>,
) -> Result<(Vec<TaskRecord>, bool), StoreError> {
    let (sql, values) = tasks_statement(query);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), task_from_row)?;
    let mut rows: Vec<_> = rows.collect::<Result<_, _>>()?;
    let more = rows.len() > query.limit;
    rows.truncate(query.limit);
    Ok((rows, more))
}

/// `task: None` means no filter: every decision of the session, task decisions included.
pub(crate) fn decisions(
    conn: &Connection,
    session: &str,
    task: Option<&str>,
) -> Result<Vec<Value>, StoreError> {
    let read = |row: &Row<'_>| json_col(row, 0);
    let rows = match task {
        Some(task) => conn
            .prepare_cached(
                "SELECT record FROM decisions WHERE session = ?1 AND task = ?2 ORDER BY id",
            )?
            .query_map([session, task], read)?
            .collect::<Result<_, _>>()?,
        None => conn
            .prepare_cached("SELECT record FROM decisions WHERE session = ?1 ORDER BY id")?
            .query_map([session], read)?
            .collect::<Result<_, _>>()?,
    };
    Ok(rows)
}

pub(crate) fn events_after(
    conn: &Connection,
    session: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT session, seq, name, data, at_ms FROM events
         WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![session, seq_to_sql(after), limit], |row| {
        Ok(StoredEvent {
            session: row.get(0)?,
            seq: seq_from_sql(row.get(1)?),
            name: row.get(2)?,
            data: row.get::<_, String>(3)?.into(),
            at_ms: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn last_event_seq(conn: &Connection, session: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT MAX(seq) FROM events WHERE session = ?1")?
        .query_row([session], |row| row.get(0))?;
    Ok(seq.map_or(0, seq_from_sql))
}

// ---- rows ----

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get(0)?,
        principal: row.get(1)?,
        profile: row.get(2)?,
        state: row.get(3)?,
        created_at_ms: row.get(4)?,
        last_active_ms: row.get(5)?,
        closed_at_ms: row.get(6)?,
        close_reason: row.get(7)?,
        workspace: row.get(8)?,
        request: json_col(row, 9)?,
        sidecar: row.get(10)?,
    })
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: row.get(0)?,
        session: row.get(1)?,
        tool: row.get(2)?,
        input: json_col(row, 3)?,
        state: row.get(4)?,
        created_at_ms: row.get(5)?,
        started_at_ms: row.get(6)?,
        finished_at_ms: row.get(7)?,
        output: json_col_opt(row, 8)?,
        error: json_col_opt(row, 9)?,
        usage: json_col_opt(row, 10)?,
        decision: json_col_opt(row, 11)?,
        run: row.get(12)?,
    })
}

fn json_opt(value: &Option<Value>) -> Result<Option<String>, serde_json::Error> {
    value.as_ref().map(serde_json::to_string).transpose()
}

pub(super) fn json_col(row: &Row<'_>, index: usize) -> rusqlite::Result<Value> {
    let text: String = row.get(index)?;
    parse_json(index, &text)
}

pub(super) fn json_col_opt(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(index)?;
    text.map(|text| parse_json(index, &text)).transpose()
}

fn parse_json(index: usize, text: &str) -> rusqlite::Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

/// Sequence numbers are stored as SQLite integers (i64); anything beyond is clamped.
fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_from_sql(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}
