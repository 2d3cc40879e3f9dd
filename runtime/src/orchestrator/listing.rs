//! A principal's sessions and a session's tasks, newest first, a page at a time, read from
//! the store's indexes. Each item is the view `GET` of that one session or task answers.

use super::{Caller, Orchestrator, OrchestratorError, SessionView};
use crate::store::{Position, SessionQuery, TaskQuery, TaskRecord};

/// One page of a listing, and where the next one starts if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Position>,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Another principal's sessions (admins only); the caller's own when `None`.
    pub principal: Option<String>,
    pub state: Option<String>,
    pub after: Option<Position>,
    pub limit: usize,
}

/// Which tasks of a session to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub tool: Option<String>,
    pub after: Option<Position>,
    pub limit: usize,
}

fn internal(error: crate::store::StoreError) -> OrchestratorError {
    OrchestratorError::Internal(error.to_string())
}

impl Orchestrator {
    /// The caller's sessions (an admin may name another principal), newest first.
    pub fn list_sessions(
        &self,
        caller: &Caller,
        filter: &SessionFilter,
    ) -> Result<Page<SessionView>, OrchestratorError> {
        let principal = match &filter.principal {
            Some(other) if *other != caller.principal && !caller.admin => {
                return Err(OrchestratorError::Forbidden {
                    reasons: vec!["only admin keys may list another principal's sessions".into()],
                    decision: serde_json::Value::Null,
                });
            }
            Some(other) => other.as_str(),
            None => caller.principal.as_str(),
        };
        // Records handed to the store a moment ago are listed too.
        let _ = self.store.flush();
        let (rows, more) = self
            .store
            .query_sessions(&SessionQuery {
                principal,
                state: filter.state.as_deref(),
                after: filter.after.as_ref(),
                limit: filter.limit,
            })
            .map_err(internal)?;
        let next = more.then(|| rows.last().map(|(s, _)| position(s.created_at_ms, &s.id)));
        let live = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let items = rows
            .into_iter()
            .map(|(stored, stored_seq)| {
                // An open session's record in memory is newer (its last activity); the hub
                // knows the newest event id of the sessions it holds.
                let last = self.hub.known_last_seq(&stored.id).unwrap_or(stored_seq);
                match live.get(&stored.id) {
                    Some(session) => {
                        let record = session
                            .record
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone();
                        let disk = session.disk(&record.id);
                        self.view_at(&record, disk, last)
                    }
                    None => self.view_at(&stored, None, last),
                }
            })
            .collect();
        Ok(Page {
            items,
            next: next.flatten(),
        })
    }

    /// The tasks of the caller's session `session_id`, newest first.
    pub fn list_tasks(
        &self,
        caller: &Caller,
        session_id: &str,
        filter: &TaskFilter,
    ) -> Result<Page<TaskRecord>, OrchestratorError> {
        // Another principal's session is "not found", as everywhere.
        self.get_session(caller, session_id)?;
        let _ = self.store.flush();
        let (items, more) = self
            .store
            .query_tasks(&TaskQuery {
                session: session_id,
                state: filter.state.as_deref(),
                tool: filter.tool.as_deref(),
                after: filter.after.as_ref(),
                limit: filter.limit,
            })
            .map_err(internal)?;
        let next = more
            .then(|| items.last().map(|t| position(t.created_at_ms, &t.id)))
            .flatten();
        Ok(Page { items, next })
    }
}

fn position(created_at_ms: i64, id: &str) -> Position {
    Position {
        created_at_ms,
        id: id.to_owned(),
    }
}
