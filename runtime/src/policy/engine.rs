//! The policy engine: the active snapshot, decisions against it, and reloads
//! that validate a whole new set before swapping it in.

use super::errors::PolicyLoadError;
use super::limits::PolicyLimits;
use super::runtime_entities::RuntimeEntities;
use super::snapshot::{Action, PolicySnapshot};
use super::sources::PolicySources;
use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Context, EntityUid, Request, RestrictedExpression};
use serde::Serialize;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prefix of the error of a request that could not even be evaluated
/// (unknown entity type, context not matching the schema): always a deny.
pub const MALFORMED: &str = "malformed request";

/// `@reason("...")` on a policy: why it decided, in words a caller sees with a denial.
pub const REASON_ANNOTATION: &str = "reason";

/// Where the engine reads its policies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// The shipped policies built into the binary (never reloaded).
    Embedded,
    /// A directory, watched for changes.
    Dir(PathBuf),
    /// A set an orchestrator shipped to a sidecar: one version, never reloaded.
    Shipped(Box<PolicySources>),
}

impl PolicyOrigin {
    fn read(&self) -> Result<PolicySources, PolicyLoadError> {
        match self {
            PolicyOrigin::Embedded => Ok(PolicySources::embedded()),
            PolicyOrigin::Dir(dir) => PolicySources::read_dir(dir),
            PolicyOrigin::Shipped(sources) => Ok((**sources).clone()),
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyDecision {
    pub allowed: bool,
    /// Ids of the determining policies (the permits that allowed, or the
    /// forbids that denied; empty when nothing permitted: default deny).
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Hash of the policy set that decided.
    pub policy_version: String,
    /// Time spent deciding, in microseconds.
    pub elapsed_us: u64,
    /// For allowed invocations: the limits the determining permits set; in a task's recorded
    /// decision, the limits it ran with.
    #[serde(skip_serializing_if = "PolicyLimits::is_empty")]
    #[schema(required = false)]
    pub limits: PolicyLimits,
    /// What the determining policies' `@reason("...")` annotations say, in their order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// Once settled: the limits the permits set, where `limits` are those in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub policy_limits: Option<PolicyLimits>,
    /// Once settled: the bounds (`fuel`, `memory_mb`, ...) the caller asked more of than the
    /// policy allows; the task got the policy's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
    /// For allowed model calls: the limits on the run's model calls the determining permits set.
    #[serde(skip_serializing_if = "super::ModelLimits::is_empty")]
    #[schema(required = false)]
    pub model_limits: super::ModelLimits,
    /// Allowed, once a person approves: a determining permit says `@approval("required")`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub approval_required: bool,
}

impl PolicyDecision {
    /// Reasons fit for a caller: the determining policies, or why none applied.
    pub fn explanation(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .reasons
            .iter()
            .enumerate()
            .map(
                |(n, id)| match self.messages.get(n).filter(|m| !m.is_empty()) {
                    Some(message) => format!("policy `{id}`: {message}"),
                    None => format!("policy `{id}`"),
                },
            )
            .collect();
        if out.is_empty() && !self.allowed {
            out.push("no policy permits this (default deny)".into());
        }
        out.extend(self.errors.iter().map(|e| format!("evaluation error: {e}")));
        out
    }
}

/// Health of reloading, visible to operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyStatus {
    /// Hash of every file of the set in force.
    pub version: String,
    /// Counts the snapshots made active (reloads and entity changes alike).
    pub revision: u64,
    /// Where the set came from: its directory for admin keys, `directory` for other keys, or
    /// `embedded` (the policies built into the binary).
    pub origin: String,
    pub policies: usize,
    /// When the active set was loaded, Unix milliseconds.
    pub loaded_at_ms: u64,
    pub reloads: u64,
    pub failed_reloads: u64,
    /// The last reload failure, while the set that failed is still on disk (the last good set
    /// stays in force). Its problems for admin keys only; other keys get a fixed sentence.
    pub last_error: Option<String>,
}

pub struct PolicyEngine {
    origin: PolicyOrigin,
    /// The active snapshot: loaded without a lock by every decision, replaced whole.
    current: ArcSwap<PolicySnapshot>,
    /// Held by every rebuild of the snapshot (a reload or an entity change) from
    /// reading what it builds from until the swap, so rebuilds happen one at a
    /// time and each starts from the latest policies and the latest entities.
    /// Owns the runtime entities (principals from keys, tools from plugins).
    update: Mutex<RuntimeEntities>,
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
        let mut snapshot = PolicySnapshot::compile(origin.read()?, &[])?;
        snapshot.revision = 1;
        tracing::info!(version = %snapshot.version, origin = %snapshot.origin, policies = snapshot.policy_count(), "policy set loaded");
        Ok(Self {
            origin,
            current: ArcSwap::from_pointee(snapshot),
            update: Mutex::default(),
            authorizer: Authorizer::new(),
            cache: Mutex::default(),
            reload_state: Mutex::default(),
        })
    }

    /// True when the active set knows `Profile::"name"` (from `entities.json`).
    pub fn has_profile(&self, name: &str) -> bool {
        let uid = EntityUid::from_type_name_and_id(
            "Profile".parse().expect("a valid type name"),
            cedar_policy::EntityId::new(name),
        );
        self.snapshot().entities.get(&uid).is_some()
    }

    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    pub fn version(&self) -> String {
        self.current.load().version.clone()
    }

    pub fn status(&self) -> PolicyStatus {
        let snapshot = self.snapshot();
        let state = self.reload_state.lock().unwrap_or_else(|e| e.into_inner());
        PolicyStatus {
            version: snapshot.version.clone(),
            revision: snapshot.revision,
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

    /// Adds or replaces runtime entities (Cedar JSON entity objects) by uid.
    /// When it returns `Ok`, the active snapshot has them.
    pub fn upsert_entities(
        &self,
        entities: impl IntoIterator<Item = serde_json::Value>,
    ) -> Result<(), PolicyLoadError> {
        self.change_entities(|runtime| runtime.upsert(entities))
    }

    /// Adds the entities of registration `key` (a plugin at one digest, say)
    /// once. When it returns `Ok`, to this caller and to every caller that
    /// asked for `key` at the same time, the active snapshot has them: a
    /// registration is never seen before its entities are.
    pub fn register_entities(
        &self,
        key: &str,
        entities: impl FnOnce() -> Vec<serde_json::Value>,
    ) -> Result<(), PolicyLoadError> {
        if self.current.load().is_registered(key) {
            return Ok(());
        }
        self.change_entities(|runtime| runtime.register(key, entities()))
    }

    /// One entity change: applied to a copy of the runtime entities, built
    /// with the active policies into a new snapshot and swapped in, all under
    /// the update lock; a change whose entities do not validate changes nothing.
    fn change_entities(
        &self,
        change: impl FnOnce(&mut RuntimeEntities) -> bool,
    ) -> Result<(), PolicyLoadError> {
        let mut runtime = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = runtime.clone();
        if !change(&mut next) {
            return Ok(());
        }
        // Under the lock the active snapshot holds the latest policies: every swap happens here.
        let rebuilt = self.snapshot().with_extra_entities(&next.list())?;
        self.activate(rebuilt, &next);
        *runtime = next;
        Ok(())
    }

    /// Makes `snapshot`, built from `runtime`, the active one. Called with the update lock held.
    fn activate(&self, mut snapshot: PolicySnapshot, runtime: &RuntimeEntities) {
        snapshot.revision = self.current.load().revision + 1;
        snapshot.registered = runtime.registered();
        self.current.store(Arc::new(snapshot));
    }

    /// Re-reads the policy files. A valid changed set, with the current
    /// runtime entities, is swapped in atomically; an invalid one is refused
    /// and the last good set stays in force. Returns whether a new version
    /// became active.
    pub fn reload(&self) -> Result<bool, PolicyLoadError> {
        let runtime = self.update.lock().unwrap_or_else(|e| e.into_inner());
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
        match PolicySnapshot::compile(sources, &runtime.list()) {
            Ok(snapshot) => {
                tracing::info!(version = %snapshot.version, previous = %self.version(), policies = snapshot.policy_count(), "policy set reloaded");
                self.activate(snapshot, &runtime);
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
        if !matches!(self.origin, PolicyOrigin::Dir(_)) {
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
                // Reading and compiling a set is blocking work, kept off the async workers.
                let _ = tokio::task::spawn_blocking(move || engine.reload()).await;
            }
        }))
    }

    /// Whether `context` (Cedar's JSON form) is what the schema says `action` takes.
    pub fn check_context(&self, action: Action, context: &serde_json::Value) -> Result<(), String> {
        let snapshot = self.snapshot();
        Context::from_json_value(context.clone(), Some((&snapshot.schema, &action.uid())))
            .map(drop)
            .map_err(|e| {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message = format!("{message}: {cause}");
                    source = cause.source();
                }
                message
            })
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
                messages: Vec::new(),
                policy_limits: None,
                capped: Vec::new(),
                approval_required: false,
                model_limits: super::ModelLimits::default(),
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
        let approval_required = allowed && reasons.iter().any(|id| snapshot.requires_approval(id));
        let model_limits = if allowed {
            reasons
                .iter()
                .filter_map(|id| snapshot.model_limits_of(id))
                .fold(super::ModelLimits::default(), |a, b| a.tightest(*b))
        } else {
            super::ModelLimits::default()
        };
        let limits = if allowed {
            reasons
                .iter()
                .filter_map(|id| snapshot.limits_of(id))
                .fold(PolicyLimits::default(), |a, b| a.tightest(*b))
        } else {
            PolicyLimits::default()
        };
        // One message per determining policy (empty where it has no `@reason`), so that
        // `explanation` can pair them; none at all when no policy has one.
        let mut messages: Vec<String> = reasons
            .iter()
            .map(|id| {
                snapshot
                    .policies
                    .policy(id)
                    .and_then(|p| p.annotation(REASON_ANNOTATION))
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if messages.iter().all(String::is_empty) {
            messages.clear();
        }
        Ok(PolicyDecision {
            allowed,
            approval_required,
            model_limits,
            messages,
            policy_limits: None,
            capped: Vec::new(),
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
