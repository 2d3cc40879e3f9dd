//! Approvals: a task a permit marked `@approval("required")` waits for a person's answer.
//! Each is written at once (not queued) when asked for and when answered, so a restart keeps
//! a pending one pending, and the first answer is the only one (answers race in SQL).

use super::StoreError;
use crate::vocabulary::ApprovalState;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// One approval, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Approval)]
pub struct ApprovalRecord {
    /// The task that waits (or waited).
    pub task: String,
    pub session: String,
    pub tool: String,
    /// Who asked for the task.
    pub requester: String,
    pub state: ApprovalState,
    pub requested_at_ms: i64,
    /// No answer by then denies the task (`expired`).
    pub deadline_ms: i64,
    /// The limits the task asked for, for running it once approved.
    #[serde(skip)]
    pub limits: Value,
    pub answered_by: Option<String>,
    pub comment: Option<String>,
    pub answered_at_ms: Option<i64>,
}

const COLUMNS: &str = "task, session, tool, requester, state, requested_at_ms, deadline_ms, \
     limits, answered_by, comment, answered_at_ms";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let limits: String = row.get(7)?;
    Ok(ApprovalRecord {
        task: row.get(0)?,
        session: row.get(1)?,
        tool: row.get(2)?,
        requester: row.get(3)?,
        state: row.get(4)?,
        requested_at_ms: row.get(5)?,
        deadline_ms: row.get(6)?,
        limits: serde_json::from_str(&limits).unwrap_or(Value::Null),
        answered_by: row.get(8)?,
        comment: row.get(9)?,
        answered_at_ms: row.get(10)?,
    })
}

pub(crate) fn insert(conn: &Connection, a: &ApprovalRecord) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT OR REPLACE INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            a.task,
            a.session,
            a.tool,
            a.requester,
            a.state,
            a.requested_at_ms,
            a.deadline_ms,
            a.limits.to_string(),
            a.answered_by,
            a.comment,
            a.answered_at_ms,
        ],
    )?;
    Ok(())
}

pub(crate) fn get(conn: &Connection, task: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE task = ?1"))?
        .query_row([task], from_row)
        .optional()?)
}

pub(crate) fn pending(conn: &Connection) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE state = ?1 ORDER BY requested_at_ms, task"
    ))?;
    let rows = statement
        .query_map([ApprovalState::Pending], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Answers a pending approval; `false` when it was not pending any more (answered first by
/// someone else, expired or cancelled).
pub(crate) fn answer(
    conn: &Connection,
    task: &str,
    state: ApprovalState,
    by: Option<&str>,
    comment: Option<&str>,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE approvals SET state = ?2, answered_by = ?3, comment = ?4, answered_at_ms = ?5
         WHERE task = ?1 AND state = ?6",
        params![task, state, by, comment, at_ms, ApprovalState::Pending],
    )?;
    Ok(changed == 1)
}
