//! The words toolgate's API speaks: task and session states, why a session closed, error
//! kinds and event names. Each is an enum whose string form is written once, here; JSON,
//! SQLite, the OpenAPI document and query parameters all take it from [`as_str`].
//!
//! [`as_str`]: TaskState::as_str

/// A word that is not one of its vocabulary's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{word}` is not a {what}: expected one of {expected}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
    pub expected: String,
}

macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant ),+
        }

        impl $name {
            /// Every word, in the order they are documented.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The string forms of [`Self::ALL`].
            pub fn words() -> impl Iterator<Item = &'static str> {
                Self::ALL.iter().map(|word| word.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;

            fn from_str(word: &str) -> Result<Self, UnknownWord> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|known| known.as_str() == word)
                    .ok_or_else(|| UnknownWord {
                        what: $what,
                        word: word.to_owned(),
                        expected: Self::words().collect::<Vec<_>>().join(", "),
                    })
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let word = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                word.parse().map_err(serde::de::Error::custom)
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::Borrowed(
                    rusqlite::types::ValueRef::Text(self.as_str().as_bytes()),
                ))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::words()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

vocabulary! {
    /// Where a task is: `queued → running → completed | failed | cancelled | interrupted`, with
    /// `awaiting_approval` between the two when a permit asks a person first.
    TaskState ("task state") {
        Queued = "queued",
        /// Allowed, once a person approves: it waits for the answer (or the timeout).
        AwaitingApproval = "awaiting_approval",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        /// The server stopped while the task was queued or running.
        Interrupted = "interrupted",
    }
}

impl TaskState {
    /// Whether the task is over (its record will not change again).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::AwaitingApproval | Self::Running)
    }
}

vocabulary! {
    /// Where an agent run is: `queued → running → completed | failed | cancelled | interrupted`.
    RunState ("run state") {
        /// Waiting for a place among the runs that may go at once.
        Queued = "queued",
        Running = "running",
        /// The agent gave its final answer.
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        /// The server stopped while the run was queued or running.
        Interrupted = "interrupted",
    }
}

impl RunState {
    /// Whether the run is over (its record will not change again).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

vocabulary! {
    /// Where an approval is: `pending`, then answered or ended.
    ApprovalState ("approval state") {
        Pending = "pending",
        Approved = "approved",
        Denied = "denied",
        /// Nobody answered within the approval timeout: the task was denied.
        Expired = "expired",
        /// The task was cancelled (or its session closed) before an answer.
        Cancelled = "cancelled",
    }
}

vocabulary! {
    SessionState ("session state") {
        Open = "open",
        Closed = "closed",
    }
}

vocabulary! {
    /// Why a session was closed.
    CloseReason ("close reason") {
        /// Its owner or an admin deleted it.
        Deleted = "deleted",
        /// No request for longer than the idle timeout.
        Idle = "idle",
        /// Open longer than the session lifetime.
        Lifetime = "lifetime",
        /// The sidecar it ran on died, was cut off or restarted.
        HostLost = "host_lost",
    }
}

vocabulary! {
    /// Why a task or an agent run did not produce output: the `kind` of its `error`.
    ErrorKind ("task error kind") {
        FuelExhausted = "fuel_exhausted",
        MemoryLimit = "memory_limit",
        Timeout = "timeout",
        Trap = "trap",
        OutputTooLarge = "output_too_large",
        InvalidInput = "invalid_input",
        ToolError = "tool_error",
        Denied = "denied",
        Cancelled = "cancelled",
        Internal = "internal",
        HostLost = "host_lost",
        /// The server stopped while the task was queued or running.
        Interrupted = "interrupted",
        /// An agent run used up a step, model-call, tool-call or token budget.
        BudgetExhausted = "budget_exhausted",
        /// An agent ended its run with a failure of its own.
        AgentFailed = "agent_failed",
    }
}

vocabulary! {
    /// The `event:` names of a session's stream.
    EventName ("event name") {
        SessionCreated = "session.created",
        TaskQueued = "task.queued",
        TaskStarted = "task.started",
        PolicyDecision = "policy.decision",
        ToolLog = "tool.log",
        ToolProgress = "tool.progress",
        FileChanged = "file.changed",
        FileUploaded = "file.uploaded",
        FileDownloaded = "file.downloaded",
        TaskCompleted = "task.completed",
        TaskFailed = "task.failed",
        SessionClosed = "session.closed",
        /// A task waits for a person's approval (a permit asked for one).
        ApprovalRequested = "approval.requested",
        /// A person approved or denied a waiting task, or nobody answered in time.
        ApprovalAnswered = "approval.answered",
        /// An agent run started running.
        RunStarted = "run.started",
        /// A turn of a run's conversation, as its agent emitted it.
        Message = "message",
        /// A model call of a run answered (with its usage).
        ModelCalled = "model.called",
        /// A run's agent logged something.
        RunLog = "run.log",
        /// A run's agent reported progress.
        RunProgress = "run.progress",
        /// A run's agent gave its final answer.
        RunCompleted = "run.completed",
        /// A run failed, was cancelled or was cut off by a restart.
        RunFailed = "run.failed",
        /// Events a client asked for that are no longer kept.
        Gap = "gap",
        /// A host changed state (on the admins' host stream, `GET /v1/hosts/events`).
        HostChanged = "host.changed",
    }
}

vocabulary! {
    /// Where a host is: only `ready` hosts take new sessions.
    HostState ("host state") {
        /// Answers its health checks and takes sessions.
        Ready = "ready",
        /// Keeps its sessions but takes no new ones (an admin or its driver drains it).
        Draining = "draining",
        /// Does not answer its health checks: takes nothing; its sessions ended `host_lost`.
        Unhealthy = "unhealthy",
        /// Up and answering, held in reserve: promoted to `ready` when no ready host fits.
        Standby = "standby",
        /// Asked of a driver and not answering yet.
        Provisioning = "provisioning",
    }
}

vocabulary! {
    /// How placement scores the hosts a session fits on.
    PlacementStrategy ("placement strategy") {
        /// The least allocated host first: sessions spread over every host.
        Spread = "spread",
        /// The most allocated host that still fits first: hosts fill up one by one, and
        /// idle ones can be released.
        BinPack = "bin_pack",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_itself_in_each_form() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(*state));
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, state.as_str());
            assert_eq!(serde_json::from_value::<TaskState>(json).unwrap(), *state);
        }
        for name in EventName::ALL {
            assert_eq!(name.to_string().parse::<EventName>(), Ok(*name));
        }
    }

    #[test]
    fn an_unknown_word_says_what_was_expected() {
        let error = "done".parse::<TaskState>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`done` is not a task state: expected one of queued, awaiting_approval, running, completed, failed, cancelled, interrupted"
        );
        assert!(serde_json::from_str::<SessionState>(r#""opened""#).is_err());
    }

    #[test]
    fn words_are_stored_and_read_as_text() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let back: CloseReason = db
            .query_row("SELECT ?1", [CloseReason::HostLost], |row| row.get(0))
            .unwrap();
        assert_eq!(back, CloseReason::HostLost);
        let garbled: rusqlite::Result<CloseReason> =
            db.query_row("SELECT 'gone'", [], |row| row.get(0));
        assert!(garbled.is_err());
    }

    #[test]
    fn the_schema_lists_every_word() {
        let schema = serde_json::to_value(<ErrorKind as utoipa::PartialSchema>::schema()).unwrap();
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(listed, ErrorKind::words().collect::<Vec<_>>());
    }
}
