//! Agent runs. Each change of a run is written at once (not queued): runs are few and long,
//! and a run's record must be durable before its event is announced.

use super::StoreError;
use super::records::{json_col, json_col_opt};
use crate::vocabulary::RunState;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
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
    pub usage: RunUsage,
    /// The limits in force: the asked-for ones, lowered to the defaults.
    pub limits: RunLimits,
}

/// The limits a run runs with. The policy's model limits (`@model_calls`, `@tokens_per_call`,
/// `@tokens_per_run`) apply at each model call on top of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RunLimits {
    pub model_calls: u64,
    /// `null`: bounded by the policy only.
    pub tokens: Option<u64>,
    pub tokens_per_call: Option<u64>,
    pub tool_calls: u64,
    pub timeout_ms: u64,
    pub fuel: u64,
    pub memory_mb: u64,
}

/// What a run used.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RunUsage {
    /// Model calls that reached the provider.
    pub model_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Tool calls the agent made (tasks created), whatever their outcome.
    pub tool_calls: u64,
    /// Messages the agent emitted.
    pub messages: u64,
    /// Fuel of the agent component (its tools' fuel is on their tasks).
    pub fuel_consumed: u64,
    /// What the model calls cost, in US dollars, summed over the calls whose provider said
    /// it (`usage.cost`); absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cost_usd: Option<f64>,
}

impl RunUsage {
    /// Prompt and completion tokens together.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
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
        usage: serde_json::from_value(json_col(row, 13)?).unwrap_or_default(),
        limits: serde_json::from_value(json_col(row, 14)?).unwrap_or(RunLimits::UNKNOWN),
    })
}

impl RunLimits {
    /// What a stored record whose limits cannot be read shows (never written).
    const UNKNOWN: RunLimits = RunLimits {
        model_calls: 0,
        tokens: None,
        tokens_per_call: None,
        tool_calls: 0,
        timeout_ms: 0,
        fuel: 0,
        memory_mb: 0,
    };
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
        serde_json::to_string(&r.usage)?,
        serde_json::to_string(&r.limits)?,
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
