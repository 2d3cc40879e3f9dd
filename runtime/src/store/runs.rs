//! Agent runs. Each change of a run is written at once (not queued): runs are few and long,
//! and a run's record must be durable before its event is announced.

use super::StoreError;
use super::records::{json_col, json_col_opt};
use crate::vocabulary::RunState;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// One agent run, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Run)]
pub struct RunRecord {
    #[schema(examples("r_0f9e8d7c6b5a49382716f5e4d3c2b1a0"))]
    pub id: String,
    pub session: String,
    /// Who started it.
    pub principal: String,
    /// The agent, e.g. `tool-loop`.
    pub agent: String,
    pub provider: String,
    pub model: String,
    #[schema(value_type = Object)]
    pub input: Value,
    /// queued → running → completed | failed | cancelled | interrupted.
    pub state: RunState,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The agent's final answer (`completed` only): `{"content": "...", "data": {...}}`.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Why it did not complete: `{"kind": "...", "message": "..."}`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// What it used so far: model calls, tokens, tool calls, fuel.
    #[schema(value_type = crate::orchestrator::RunUsage)]
    pub usage: Value,
    /// The limits in force: the asked-for ones, lowered to the policy's.
    #[schema(value_type = crate::orchestrator::RunLimits)]
    pub limits: Value,
}

const COLUMNS: &str = "id, session, principal, agent, provider, model, input, state, \
     created_at_ms, started_at_ms, finished_at_ms, output, error, usage, limits";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        session: row.get(1)?,
        principal: row.get(2)?,
        agent: row.get(3)?,
        provider: row.get(4)?,
        model: row.get(5)?,
        input: json_col(row, 6)?,
        state: row.get(7)?,
        created_at_ms: row.get(8)?,
        started_at_ms: row.get(9)?,
        finished_at_ms: row.get(10)?,
        output: json_col_opt(row, 11)?,
        error: json_col_opt(row, 12)?,
        usage: json_col(row, 13)?,
        limits: json_col(row, 14)?,
    })
}

pub(crate) fn put(conn: &Connection, r: &RunRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO runs ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
    .execute(params![
        r.id,
        r.session,
        r.principal,
        r.agent,
        r.provider,
        r.model,
        r.input.to_string(),
        r.state,
        r.created_at_ms,
        r.started_at_ms,
        r.finished_at_ms,
        r.output.as_ref().map(Value::to_string),
        r.error.as_ref().map(Value::to_string),
        r.usage.to_string(),
        r.limits.to_string(),
    ])?;
    Ok(())
}

pub(crate) fn get(
    conn: &Connection,
    session: &str,
    id: &str,
) -> Result<Option<RunRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs WHERE session = ?1 AND id = ?2"
        ))?
        .query_row([session, id], from_row)
        .optional()?)
}

/// Marks every queued or running run `interrupted` and returns them as updated.
pub(crate) fn interrupt_unfinished(
    conn: &mut Connection,
    now_ms: i64,
) -> Result<Vec<RunRecord>, StoreError> {
    let tx = conn.transaction()?;
    let mut runs = {
        let mut select = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs WHERE state IN (?1, ?2) ORDER BY created_at_ms, session, id"
        ))?;
        select
            .query_map([RunState::Queued, RunState::Running], from_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    let error = serde_json::json!({
        "kind": crate::vocabulary::ErrorKind::Interrupted,
        "message": "the server stopped while the run was queued or running",
    });
    {
        let mut update = tx.prepare_cached(
            "UPDATE runs SET state = ?1, finished_at_ms = ?2, error = ?3 WHERE session = ?4 AND id = ?5",
        )?;
        for run in &mut runs {
            update.execute(params![
                RunState::Interrupted,
                now_ms,
                error.to_string(),
                run.session,
                run.id
            ])?;
            run.state = RunState::Interrupted;
            run.finished_at_ms = Some(now_ms);
            run.error = Some(error.clone());
        }
    }
    tx.commit()?;
    Ok(runs)
}
