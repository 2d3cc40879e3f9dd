//! The policy engine: the active snapshot, decisions against it, and reloads
//! that validate a whole new set before swapping it in.

use super::errors::PolicyLoadError;
use super::limits::PolicyLimits;
use super::snapshot::{Action, PolicySnapshot};
use super::sources::PolicySources;
use cedar_policy::{Authorizer, Context, EntityUid, Request, RestrictedExpression};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Prefix of the error of a request that could not even be evaluated
/// (unknown entity type, context not matching the schema): always a deny.
pub const MALFORMED: &str = "malformed request";

/// Where the engine reads its policies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// The shipped policies built into the binary (never reloaded).
    Embedded,
    /// A directory, watched for changes.
    Dir(PathBuf),
}

impl PolicyOrigin {
    fn read(&self) -> Result<PolicySources, PolicyLoadError> {
        match self {
            PolicyOrigin::Embedded => Ok(PolicySources::embedded()),
            PolicyOrigin::Dir(dir) => PolicySources::read_dir(dir),
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    /// `Principal` entity id.
    pub principal: String,
    pub action: Action,
    /// The resource as a Cedar entity reference, e.g. `Tool::"fs.read"`.
    pub resource: (String, String),
    /// The context, in Cedar's JSON form (validated against the schema).
    pub context: serde_json::Value,
}

/// The answer, as recorded: decision, determining policies, errors, version, time.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyDecision {
    pub allowed: bool,
    /// Ids of the determining policies (the permits that allowed, or the
    /// forbids that denied; empty when nothing permitted: default deny).
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub policy_version: String,
    pub elapsed_us: u64,
    /// For allowed invocations: the limits the determining permits set.
    #[serde(skip_serializing_if = "PolicyLimits::is_empty")]
    pub limits: PolicyLimits,
}

impl PolicyDecision {
    /// Reasons fit for a caller: the determining policies, or why none applied.
    pub fn explanation(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .reasons
            .iter()
            .map(|id| format!("policy `{id}`"))
            .collect();
        if out.is_empty() && !self.allowed {
            out.push("no policy permits this (default deny)".into());
        }
        out.extend(self.errors.iter().map(|e| format!("evaluation error: {e}")));
        out
    }
}

/// Health of reloading, visible to operators.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub version: String,
    pub origin: String,
    pub policies: usize,
    /// When the active set was loaded, Unix milliseconds.
    pub loaded_at_ms: u64,
    pub reloads: u64,
    pub failed_reloads: u64,
    /// The last reload failure, while the set that failed is still on disk.
    pub last_error: Option<String>,
}

pub struct PolicyEngine {
    origin: PolicyOrigin,
    current: RwLock<Arc<PolicySnapshot>>,
    /// Runtime entities (principals from keys, tools from plugins), by uid.
    extra: Mutex<BTreeMap<String, serde_json::Value>>,
    authorizer: Authorizer,
    reload_state: Mutex<ReloadState>,
    /// Decisions of toolgate-built requests against the active snapshot.
    /// Cedar is deterministic in (request, policies, entities), so an
    /// identical request against the same snapshot gets the same answer;
    /// the cache is dropped whenever the snapshot changes.
    cache: Mutex<DecisionCache>,
}

/// Entries kept before the decision cache starts over.
const DECISION_CACHE_LIMIT: usize = 8192;

#[derive(Default)]
struct DecisionCache {
    snapshot: u64,
    entries: std::collections::HashMap<String, PolicyDecision>,
}

#[derive(Default)]
struct ReloadState {
    reloads: u64,
    failed: u64,
    last_error: Option<String>,
    /// The version that failed last, so it is not retried until it changes.
    failed_version: Option<String>,
}

impl PolicyEngine {
    /// Loads and validates the policies; an invalid set is an error with every problem located.
    pub fn load(origin: PolicyOrigin) -> Result<Self, PolicyLoadError> {
        let snapshot = PolicySnapshot::compile(origin.read()?, &[])?;
        tracing::info!(version = %snapshot.version, origin = %snapshot.origin, policies = snapshot.policy_count(), "policy set loaded");
        Ok(Self {
            origin,
            current: RwLock::new(Arc::new(snapshot)),
            extra: Mutex::default(),
            authorizer: Authorizer::new(),
            cache: Mutex::default(),
            reload_state: Mutex::default(),
        })
    }

    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn version(&self) -> String {
        self.snapshot().version.clone()
    }

    pub fn status(&self) -> PolicyStatus {
        let snapshot = self.snapshot();
        let state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
        PolicyStatus {
            version: snapshot.version.clone(),
            origin: snapshot.origin.clone(),
            policies: snapshot.policy_count(),
            loaded_at_ms: snapshot
                .loaded_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            reloads: state.reloads,
            failed_reloads: state.failed,
            last_error: state.last_error.clone(),
        }
    }

    /// Adds or replaces runtime entities (Cedar JSON entity objects).
    pub fn upsert_entities(
        &self,
        entities: impl IntoIterator<Item = serde_json::Value>,
    ) -> Result<(), PolicyLoadError> {
        let mut extra = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = extra.clone();
        for entity in entities {
            let key = entity.get("uid").map(|u| u.to_string()).unwrap_or_default();
            next.insert(key, entity);
        }
        let list: Vec<serde_json::Value> = next.values().cloned().collect();
        let rebuilt = self.snapshot().with_extra_entities(&list)?;
        *extra = next;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rebuilt);
        Ok(())
    }

    /// Re-reads the policy files. A valid changed set is swapped in atomically;
    /// an invalid one is refused and the last good set stays in force.
    /// Returns whether a new version became active.
    pub fn reload(&self) -> Result<bool, PolicyLoadError> {
        let sources = match self.origin.read() {
            Ok(sources) => sources,
            Err(e) => return Err(self.reload_failed(None, e)),
        };
        let version = sources.version();
        if version == self.version() {
            let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
            state.last_error = None;
            state.failed_version = None;
            return Ok(false);
        }
        let extra: Vec<serde_json::Value> = self
            .extra
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        match PolicySnapshot::compile(sources, &extra) {
            Ok(snapshot) => {
                tracing::info!(version = %snapshot.version, previous = %self.version(), policies = snapshot.policy_count(), "policy set reloaded");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
                let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
                state.reloads += 1;
                state.last_error = None;
                state.failed_version = None;
                Ok(true)
            }
            Err(e) => Err(self.reload_failed(Some(version), e)),
        }
    }

    fn reload_failed(&self, version: Option<String>, error: PolicyLoadError) -> PolicyLoadError {
        let mut state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
        if version.is_none() || state.failed_version != version {
            state.failed += 1;
            tracing::error!(active = %self.version(), error = %error, "policy reload refused; the last good set stays in force");
        }
        state.last_error = Some(error.to_string());
        state.failed_version = version;
        error
    }

    /// Polls the policy directory every `interval` and reloads on change.
    /// Returns `None` for embedded policies, which never change.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        if self.origin == PolicyOrigin::Embedded {
            return None;
        }
        let engine = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                let _ = engine.reload();
            }
        }))
    }

    /// Decides one request against the active set, checking its context
    /// against the schema. Never panics: a malformed request is a deny with
    /// the error recorded.
    pub fn decide(&self, request: &AuthzRequest) -> PolicyDecision {
        self.decide_with(request, false)
    }

    /// Like [`decide`](Self::decide), for requests toolgate built itself
    /// (their shape is fixed and tested), skipping the schema check.
    pub(crate) fn decide_trusted(&self, request: &AuthzRequest) -> PolicyDecision {
        self.decide_with(request, true)
    }

    fn decide_with(&self, request: &AuthzRequest, trusted: bool) -> PolicyDecision {
        let started = Instant::now();
        let snapshot = self.snapshot();
        let key = trusted.then(|| cache_key(request));
        let cached = key.as_ref().and_then(|key| {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            (cache.snapshot == snapshot.id)
                .then(|| cache.entries.get(key).cloned())
                .flatten()
        });
        let mut decision = match cached
            .map(Ok)
            .unwrap_or_else(|| self.evaluate(&snapshot, request, trusted))
        {
            Ok(decision) => decision,
            Err(error) => PolicyDecision {
                allowed: false,
                reasons: Vec::new(),
                errors: vec![format!("{MALFORMED}: {error}")],
                policy_version: String::new(),
                elapsed_us: 0,
                limits: PolicyLimits::default(),
            },
        };
        decision.policy_version = snapshot.version.clone();
        decision.elapsed_us = started.elapsed().as_micros() as u64;
        if let Some(key) = key {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let current = snapshot.id;
            if cache.snapshot != current || cache.entries.len() >= DECISION_CACHE_LIMIT {
                cache.snapshot = current;
                cache.entries.clear();
            }
            cache.entries.entry(key).or_insert_with(|| decision.clone());
        }
        tracing::info!(
            target: "toolgate::decision",
            principal = %request.principal,
            action = request.action.as_str(),
            resource = %format!("{}::{:?}", request.resource.0, request.resource.1),
            allowed = decision.allowed,
            reasons = ?decision.reasons,
            errors = ?decision.errors,
            policy_version = %decision.policy_version,
            elapsed_us = decision.elapsed_us,
            "decision"
        );
        decision
    }

    fn evaluate(
        &self,
        snapshot: &PolicySnapshot,
        request: &AuthzRequest,
        trusted: bool,
    ) -> Result<PolicyDecision, String> {
        let principal = uid("Principal", &request.principal)?;
        let resource = uid(&request.resource.0, &request.resource.1)?;
        let action = request.action.uid();
        // Contexts toolgate builds itself are checked against the schema by its
        // tests; contexts from outside (explain, policy tests) are checked here.
        let schema = if trusted {
            None
        } else {
            Some(&snapshot.schema)
        };
        let context = if trusted {
            trusted_context(&request.context)?
        } else {
            Context::from_json_value(request.context.clone(), schema.map(|s| (s, &action)))
                .map_err(|e| format!("invalid context: {e}"))?
        };
        let candidates = snapshot.candidates(request.action, &principal, &resource);
        let cedar_request = Request::new(principal, action, resource, context, schema)
            .map_err(|e| format!("invalid request: {e}"))?;
        let response =
            self.authorizer
                .is_authorized(&cedar_request, &candidates, &snapshot.entities);
        let allowed = response.decision() == cedar_policy::Decision::Allow;
        let reasons: Vec<cedar_policy::PolicyId> =
            response.diagnostics().reason().cloned().collect();
        let limits = if allowed {
            reasons
                .iter()
                .filter_map(|id| snapshot.limits_of(id))
                .fold(PolicyLimits::default(), |a, b| a.tightest(*b))
        } else {
            PolicyLimits::default()
        };
        Ok(PolicyDecision {
            allowed,
            reasons: reasons.iter().map(|id| id.to_string()).collect(),
            errors: response
                .diagnostics()
                .errors()
                .map(|e| e.to_string())
                .collect(),
            policy_version: String::new(),
            elapsed_us: 0,
            limits,
        })
    }
}

/// Everything a decision depends on besides the snapshot.
fn cache_key(request: &AuthzRequest) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        request.principal,
        request.action.as_str(),
        request.resource.0,
        request.resource.1,
        request.context
    )
}

/// Builds a context directly from the JSON toolgate wrote itself (no parser
/// trying alternatives, which is most of the cost of a decision otherwise).
fn trusted_context(json: &serde_json::Value) -> Result<Context, String> {
    let serde_json::Value::Object(map) = json else {
        return Err("a context must be a JSON object".into());
    };
    let pairs = map
        .iter()
        .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    Context::from_pairs(pairs).map_err(|e| format!("invalid context: {e}"))
}

fn restricted(value: &serde_json::Value) -> Result<RestrictedExpression, String> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => {
            RestrictedExpression::new_long(n.as_i64().ok_or_else(|| format!("{n} is not a Long"))?)
        }
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(restricted)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => {
            if let Some(entity) = map.get("__entity") {
                let field = |k: &str| {
                    entity
                        .get(k)
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("__entity needs `{k}`"))
                };
                RestrictedExpression::new_entity_uid(uid(field("type")?, field("id")?)?)
            } else if let Some(extn) = map.get("__extn") {
                match (
                    extn.get("fn").and_then(Value::as_str),
                    extn.get("arg").and_then(Value::as_str),
                ) {
                    (Some("ip"), Some(arg)) => RestrictedExpression::new_ip(arg),
                    _ => return Err(format!("unsupported extension value {extn}")),
                }
            } else {
                let fields = map
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                RestrictedExpression::new_record(fields).map_err(|e| e.to_string())?
            }
        }
        Value::Null => return Err("null is not a Cedar value".into()),
    })
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let ty = cedar_policy::EntityTypeName::from_str(ty)
        .map_err(|e| format!("bad entity type `{ty}`: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(
        ty,
        cedar_policy::EntityId::new(id),
    ))
}
