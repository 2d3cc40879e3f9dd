//! Tasks that wait for a person. A permit annotated `@approval("required")` allows a task
//! only once someone approves it: the task waits in `awaiting_approval` (holding no run slot)
//! with an `approval.requested` event, until a principal the policy allows to `approve` it
//! answers (`POST /v1/sessions/{id}/tasks/{task}/approval`), the approval timeout denies it,
//! or it is cancelled. Approvals are stored as they are asked for and answered: a restart
//! keeps a pending one pending, and every answer is a recorded decision.

use super::{Caller, Orchestrator, OrchestratorError, now_ms};
use crate::policy::TaskIdentity;
use crate::sandbox::TaskError;
use crate::store::{ApprovalRecord, TaskRecord};
use crate::vocabulary::{ApprovalState, EventName, TaskState};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `POST /v1/sessions/{id}/tasks/{task}/approval`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    /// `true` runs the task, `false` denies it.
    pub approve: bool,
    /// Why, for the record (at most 4096 bytes).
    #[serde(default)]
    pub comment: Option<String>,
}

/// A task waiting for an approval the caller may give, as `GET /v1/approvals` lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PendingApproval {
    pub task: String,
    pub session: String,
    pub tool: String,
    /// Who asked for the task.
    pub requester: String,
    /// What the task would run with.
    #[schema(value_type = Object)]
    pub input: Value,
    pub requested_at_ms: i64,
    /// No answer by then denies the task.
    pub deadline_ms: i64,
    /// `POST` the answer here.
    pub answer_at: String,
}

/// The most pending approvals one listing shows (the oldest first).
const LISTED_APPROVALS: usize = 1000;

/// The longest comment kept with an answer.
const MAX_COMMENT: usize = 4096;

/// Why a task that waited for its approval does not run.
#[derive(Debug)]
pub(super) enum Unapproved {
    /// Denied, expired, cancelled, or the approval could not be recorded.
    Task(TaskError),
    /// The server is stopping: the approval stays pending and the task waiting, for the next
    /// start to resume.
    ServerStopping,
}

/// What a waiting task learns.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Approved,
    Denied { reasons: Vec<String> },
}

impl Orchestrator {
    /// Asks for a person's approval of `record` (allowed by `decision`, a permit requiring
    /// one) and waits for it. `Ok` once approved; the task's error otherwise.
    pub(super) async fn request_approval(
        &self,
        record: &mut TaskRecord,
        requester: &str,
        decision: &Value,
        limits: Value,
        cancel: &CancellationToken,
    ) -> Result<(), Unapproved> {
        let now = now_ms();
        let timeout_ms = self.config.approval_timeout.as_millis() as i64;
        let approval = ApprovalRecord {
            task: record.id.clone(),
            session: record.session.clone(),
            tool: record.tool.clone(),
            requester: requester.to_owned(),
            state: ApprovalState::Pending,
            requested_at_ms: now,
            deadline_ms: now.saturating_add(timeout_ms),
            limits,
            answered_by: None,
            comment: None,
            answered_at_ms: None,
        };
        // Registered before it can be answered, stored before it is announced.
        let answer = self.expect_answer(&record.id);
        record.state = TaskState::AwaitingApproval;
        record.decision = Some(decision.clone());
        self.store.put_task(record);
        if let Err(error) = self.store.put_approval(&approval) {
            self.forget_answer(&record.id);
            return Err(Unapproved::Task(TaskError::Internal {
                message: format!("cannot record the approval request: {error}"),
            }));
        }
        self.hub.publish(
            &record.session,
            EventName::ApprovalRequested,
            json!({
                "task": record.id,
                "session": record.session,
                "tool": record.tool,
                "requester": requester,
                "input": record.input,
                "decision": decision,
                "deadline_ms": approval.deadline_ms,
                "answer_at": format!("/v1/sessions/{}/tasks/{}/approval", record.session, record.id),
            }),
        );
        self.wait_for_answer(&approval, answer, cancel).await
    }

    /// Waits for the answer to a pending approval (after a restart too), its deadline, or a
    /// cancel.
    pub(super) async fn wait_for_answer(
        &self,
        approval: &ApprovalRecord,
        answer: tokio::sync::oneshot::Receiver<Outcome>,
        cancel: &CancellationToken,
    ) -> Result<(), Unapproved> {
        let left = (approval.deadline_ms - now_ms()).max(0) as u64;
        // Answered before this waiter was registered (while a restarted server resumed it).
        if let Ok(Some(stored)) = self.store.get_approval(&approval.task)
            && stored.state != ApprovalState::Pending
        {
            self.forget_answer(&approval.task);
            return match self.stored_outcome(&approval.task) {
                Outcome::Approved => Ok(()),
                Outcome::Denied { reasons } => Err(Unapproved::Task(TaskError::Denied { reasons })),
            };
        }
        let outcome = tokio::select! {
            biased;
            outcome = answer => outcome.ok(),
            () = cancel.cancelled() => {
                self.forget_answer(&approval.task);
                if self.shutdown.is_cancelled() {
                    return Err(Unapproved::ServerStopping);
                }
                let _ = self.store.answer_approval(&approval.task, ApprovalState::Cancelled, None, None);
                self.announce(approval, ApprovalState::Cancelled, None, None);
                return Err(Unapproved::Task(TaskError::Cancelled));
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(left)) => None,
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                self.forget_answer(&approval.task);
                // An answer stored at the same moment wins over the deadline.
                match self
                    .store
                    .answer_approval(&approval.task, ApprovalState::Expired, None, None)
                {
                    Ok(true) | Err(_) => {
                        self.announce(approval, ApprovalState::Expired, None, None);
                        Outcome::Denied {
                            reasons: vec![format!(
                                "nobody approved the task within {} s (approval_timeout_s)",
                                (approval.deadline_ms - approval.requested_at_ms) / 1000
                            )],
                        }
                    }
                    Ok(false) => self.stored_outcome(&approval.task),
                }
            }
        };
        match outcome {
            Outcome::Approved => Ok(()),
            Outcome::Denied { reasons } => Err(Unapproved::Task(TaskError::Denied { reasons })),
        }
    }

    /// The answer a stored approval holds.
    fn stored_outcome(&self, task: &str) -> Outcome {
        match self.store.get_approval(task) {
            Ok(Some(a)) if a.state == ApprovalState::Approved => Outcome::Approved,
            Ok(Some(a)) => Outcome::Denied {
                reasons: vec![denial_reason(&a)],
            },
            _ => Outcome::Denied {
                reasons: vec!["the approval cannot be read".into()],
            },
        }
    }

    /// Answers the approval task `task_id` of session `session_id` waits for, as `caller`.
    /// Decided by the `approve` action; the decision and the answer are recorded. Blocking
    /// (store writes): callers run it off the async workers.
    pub fn answer_approval(
        &self,
        caller: &Caller,
        session_id: &str,
        task_id: &str,
        answer: ApprovalAnswer,
    ) -> Result<ApprovalRecord, OrchestratorError> {
        if let Some(comment) = &answer.comment {
            if comment.len() > MAX_COMMENT {
                return Err(OrchestratorError::Invalid(format!(
                    "`comment` is longer than {MAX_COMMENT} bytes"
                )));
            }
            // It is shown to the requester (in a denial's reasons, over MCP): plain text only.
            if comment
                .chars()
                .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
            {
                return Err(OrchestratorError::Invalid(
                    "`comment` must be plain text: no control or bidirectional-override characters"
                        .into(),
                ));
            }
        }
        let _ = self.store.flush();
        let approval = match self.store.get_approval(task_id) {
            Ok(Some(approval)) if approval.session == session_id => approval,
            Ok(_) => return Err(OrchestratorError::NotFound("approval")),
            Err(e) => return Err(OrchestratorError::Internal(e.to_string())),
        };
        let session = match self.store.get_session(session_id) {
            Ok(Some(session)) => session,
            Ok(None) => return Err(OrchestratorError::NotFound("approval")),
            Err(e) => return Err(OrchestratorError::Internal(e.to_string())),
        };
        let identity = TaskIdentity {
            principal: approval.requester.clone(),
            profile: session.profile.clone(),
            session: session_id.to_owned(),
            tool: approval.tool.clone(),
        };
        let decision = self
            .policy
            .authorize_approve(&caller.principal, &identity, task_id);
        let decision_json = serde_json::to_value(&decision).unwrap_or(Value::Null);
        let record = json!({
            "action": "approve",
            "principal": caller.principal,
            "approve": answer.approve,
            "comment": answer.comment,
            "decision": decision_json,
        });
        // Every answer is recorded; only an allowed one reaches the session's stream, which
        // a principal who may not answer must not be able to write into.
        self.store.put_decision(session_id, Some(task_id), &record);
        if decision.allowed {
            self.hub.publish(
                session_id,
                EventName::PolicyDecision,
                json!({ "task": task_id, "action": "approve", "principal": caller.principal, "decision": decision_json }),
            );
        }
        if !decision.allowed {
            return Err(OrchestratorError::Forbidden {
                reasons: decision.explanation(),
                decision: decision_json,
            });
        }
        if approval.state != ApprovalState::Pending {
            return Err(OrchestratorError::Conflict(format!(
                "the approval of task {task_id} is already {}",
                approval.state
            )));
        }
        let state = if answer.approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        let answered = self
            .store
            .answer_approval(
                task_id,
                state,
                Some(&caller.principal),
                answer.comment.as_deref(),
            )
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        if !answered {
            return Err(OrchestratorError::Conflict(format!(
                "the approval of task {task_id} was answered or ended meanwhile"
            )));
        }
        let stored = self
            .store
            .get_approval(task_id)
            .ok()
            .flatten()
            .unwrap_or(approval);
        self.announce(
            &stored,
            state,
            Some(&caller.principal),
            answer.comment.as_deref(),
        );
        let outcome = if answer.approve {
            Outcome::Approved
        } else {
            Outcome::Denied {
                reasons: vec![denial_reason(&stored)],
            }
        };
        if let Some(waiter) = self.forget_answer(task_id) {
            let _ = waiter.send(outcome);
        }
        Ok(stored)
    }

    /// The pending approvals `caller` may answer (the `approve` decision for each, not
    /// recorded: nothing is answered by listing), oldest first.
    pub fn approvals_for(
        &self,
        caller: &Caller,
    ) -> Result<Vec<PendingApproval>, OrchestratorError> {
        let _ = self.store.flush();
        let pending = self
            .store
            .pending_approvals()
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        let mut listed = Vec::new();
        for approval in pending {
            if listed.len() == LISTED_APPROVALS {
                break;
            }
            let Ok(Some(session)) = self.store.get_session(&approval.session) else {
                continue;
            };
            let identity = TaskIdentity {
                principal: approval.requester.clone(),
                profile: session.profile.clone(),
                session: approval.session.clone(),
                tool: approval.tool.clone(),
            };
            if !self
                .policy
                .authorize_approve(&caller.principal, &identity, &approval.task)
                .allowed
            {
                continue;
            }
            let input = match self.store.get_task(&approval.session, &approval.task) {
                Ok(Some(task)) => task.input,
                _ => Value::Null,
            };
            listed.push(PendingApproval {
                answer_at: format!(
                    "/v1/sessions/{}/tasks/{}/approval",
                    approval.session, approval.task
                ),
                task: approval.task,
                session: approval.session,
                tool: approval.tool,
                requester: approval.requester,
                input,
                requested_at_ms: approval.requested_at_ms,
                deadline_ms: approval.deadline_ms,
            });
        }
        Ok(listed)
    }

    /// The approval of a task, for anyone who may see the task.
    pub fn get_approval(
        &self,
        caller: &Caller,
        session_id: &str,
        task_id: &str,
    ) -> Result<ApprovalRecord, OrchestratorError> {
        self.get_task(caller, session_id, task_id)?;
        match self.store.get_approval(task_id) {
            Ok(Some(approval)) if approval.session == session_id => Ok(approval),
            Ok(_) => Err(OrchestratorError::NotFound("approval")),
            Err(e) => Err(OrchestratorError::Internal(e.to_string())),
        }
    }

    /// `approval.answered` on the task's session.
    fn announce(
        &self,
        approval: &ApprovalRecord,
        state: ApprovalState,
        by: Option<&str>,
        comment: Option<&str>,
    ) {
        self.hub.publish(
            &approval.session,
            EventName::ApprovalAnswered,
            json!({ "task": approval.task, "state": state, "by": by, "comment": comment }),
        );
    }

    /// Where the answer to `task`'s approval will be sent.
    fn expect_answer(&self, task: &str) -> tokio::sync::oneshot::Receiver<Outcome> {
        let (send, receive) = tokio::sync::oneshot::channel();
        self.approval_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task.to_owned(), send);
        receive
    }

    fn forget_answer(&self, task: &str) -> Option<tokio::sync::oneshot::Sender<Outcome>> {
        self.approval_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(task)
    }

    /// After a restart: each pending approval of a session that is open again waits anew (for
    /// what is left of its time), and runs its task once approved; one whose session did not
    /// come back is cancelled with its task.
    pub fn resume_approvals(self: &Arc<Self>) {
        let pending = match self.store.pending_approvals() {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "cannot read the pending approvals");
                return;
            }
        };
        for approval in pending {
            let live = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&approval.session)
                .cloned();
            let task = self.store.get_task(&approval.session, &approval.task);
            match (live, task) {
                // A run's tool call does not outlive its run, which a stop ended (`interrupted`).
                (Some(live), Ok(Some(task)))
                    if task.state == TaskState::AwaitingApproval && task.run.is_none() =>
                {
                    self.clone().resume_task(live, task, approval);
                }
                (_, task) => {
                    let _ = self.store.answer_approval(
                        &approval.task,
                        ApprovalState::Cancelled,
                        None,
                        None,
                    );
                    if let Ok(Some(mut task)) = task
                        && !task.state.is_terminal()
                    {
                        task.state = TaskState::Cancelled;
                        task.error = Some(TaskError::Cancelled.to_json());
                        task.finished_at_ms = Some(now_ms());
                        self.store.put_task(&task);
                        self.hub.publish(
                            &task.session,
                            EventName::TaskFailed,
                            json!({ "task": task.id, "state": task.state, "error": task.error }),
                        );
                    }
                }
            }
        }
    }

    /// Waits again for the answer to a task's approval, from a restart on.
    pub(super) fn waiter_for(&self, task: &str) -> tokio::sync::oneshot::Receiver<Outcome> {
        self.expect_answer(task)
    }
}

/// The characters that reorder displayed text (a comment could hide what it says).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// What a denied or expired approval says.
fn denial_reason(approval: &ApprovalRecord) -> String {
    match (approval.state, &approval.answered_by, &approval.comment) {
        (ApprovalState::Denied, Some(by), Some(comment)) => {
            format!("approval denied by `{by}`: {comment}")
        }
        (ApprovalState::Denied, Some(by), None) => format!("approval denied by `{by}`"),
        (ApprovalState::Expired, ..) => "nobody approved the task in time".into(),
        (state, ..) => format!("the approval is {state}"),
    }
}
