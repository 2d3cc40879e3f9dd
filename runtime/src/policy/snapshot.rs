//! A parsed, validated, immutable policy set: what a decision is made against.
//! Built whole and swapped in whole, so a decision never sees half a reload.

use super::errors::{LineIndex, PolicyLoadError, PolicyProblem, problems_from};
use super::index::ActionIndex;
use super::limits::{LIMIT_ANNOTATIONS, PolicyLimits};

/// `@approval("required")` on a permit: a task it allows waits for a person's approval.
pub const APPROVAL_ANNOTATION: &str = "approval";
use super::locations::{PolicyLocations, array_elements};
use super::sources::PolicySources;
use cedar_policy::{
    ActionConstraint, Effect, Entities, EntityUid, PolicyId, PolicySet, Schema, ValidationMode,
    Validator,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

/// The actions of toolgate's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    CreateSession,
    Invoke,
    ReadFile,
    WriteFile,
    Connect,
    ReadSecret,
    UseModel,
    /// Answer a task waiting for a person's approval.
    Approve,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::CreateSession,
        Action::Invoke,
        Action::ReadFile,
        Action::WriteFile,
        Action::Connect,
        Action::ReadSecret,
        Action::UseModel,
        Action::Approve,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateSession => "create_session",
            Action::Invoke => "invoke",
            Action::ReadFile => "read_file",
            Action::WriteFile => "write_file",
            Action::Connect => "connect",
            Action::ReadSecret => "read_secret",
            Action::UseModel => "use_model",
            Action::Approve => "approve",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        let name = name
            .strip_prefix("Action::")
            .map(|n| n.trim_matches('"'))
            .unwrap_or(name);
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn uid(self) -> EntityUid {
        EntityUid::from_str(&format!("Action::\"{}\"", self.as_str()))
            .expect("action names are valid")
    }
}

/// A validated policy set with its schema and entities.
pub struct PolicySnapshot {
    /// Unique per snapshot built in this process (caches key on it).
    pub(crate) id: u64,
    /// The policy-set version: a hash of the files.
    pub version: String,
    /// Counts the snapshots an engine has made active (reloads and entity
    /// changes alike); set when it becomes active.
    pub revision: u64,
    pub origin: String,
    pub loaded_at: SystemTime,
    pub schema: Schema,
    pub policies: PolicySet,
    /// Per action, the policies whose scope can match it, indexed by the
    /// principals and resources their scopes name.
    by_action: HashMap<Action, Arc<ActionIndex>>,
    pub entities: Entities,
    /// The entities from the files, kept to merge runtime entities into.
    file_entities: Vec<serde_json::Value>,
    limits: HashMap<PolicyId, PolicyLimits>,
    /// Permits annotated `@approval("required")`: what they allow waits for a person.
    approvals: std::collections::HashSet<PolicyId>,
    /// What `@model_calls`, `@tokens_per_call` and `@tokens_per_run` say, by permit.
    model_limits: HashMap<PolicyId, super::ModelLimits>,
    sources: PolicySources,
    /// The runtime entity registrations this snapshot was built with.
    pub(crate) registered: Arc<BTreeSet<String>>,
}

impl PolicySnapshot {
    /// Parses and strictly validates `sources`; `extra_entities` (principals from
    /// API keys, tools from plugins) are merged into the entities from the files.
    pub fn compile(
        sources: PolicySources,
        extra_entities: &[serde_json::Value],
    ) -> Result<Self, PolicyLoadError> {
        let mut problems = Vec::new();
        let schema_file = sources.locate(&sources.schema.name);
        let schema = match Schema::from_cedarschema_str(&sources.schema.text) {
            Ok((schema, _warnings)) => Some(schema),
            Err(e) => {
                problems.extend(problems_from(&e, &schema_file, &sources.schema.text, None));
                None
            }
        };

        let mut policies = PolicySet::new();
        let mut origin_of: BTreeMap<String, usize> = BTreeMap::new();
        // Where each id was first given, for the message about a second use.
        let mut first_use: HashMap<String, String> = HashMap::new();
        let mut limits = HashMap::new();
        let mut approvals = std::collections::HashSet::new();
        let mut model_limits = HashMap::new();
        for (index, file) in sources.policies.iter().enumerate() {
            let located = sources.locate(&file.name);
            let parsed = match PolicySet::from_str(&file.text) {
                Ok(set) => set,
                Err(errors) => {
                    for error in errors.iter() {
                        problems.extend(problems_from(error, &located, &file.text, None));
                    }
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(problem(
                    &located,
                    None,
                    "policy templates are not supported; write static policies",
                ));
            }
            let spans = PolicyLocations::of(&file.text);
            let lines = LineIndex::new(&file.text);
            let at = |offset: Option<usize>, id: &str, message: &str| {
                let mut problem = problem(&located, Some(id), message);
                if let Some(offset) = offset {
                    let (line, column) = lines.line_column(offset);
                    (problem.line, problem.column) = (Some(line), Some(column));
                }
                problem
            };
            let stem = file.name.trim_end_matches(".cedar");
            for (n, policy) in parsed.policies().enumerate() {
                let parsed_id = policy.id().to_string();
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{stem}.{n}"));
                let id_at = spans.annotation(&parsed_id, "id");
                if let Some(first) = first_use.get(&id) {
                    problems.push(at(
                        id_at,
                        &id,
                        &format!("policy id `{id}` is also used at {first}"),
                    ));
                    continue;
                }
                let here = match id_at.map(|offset| lines.line_column(offset)) {
                    Some((line, column)) => format!("{located}:{line}:{column}"),
                    None => located.clone(),
                };
                first_use.insert(id.clone(), here);
                let policy = policy.new_id(PolicyId::new(&id));
                match PolicyLimits::from_annotations(&policy) {
                    Ok(found) if found.is_empty() => {}
                    Ok(_) if policy.effect() == Effect::Forbid => {
                        let first_limit = LIMIT_ANNOTATIONS
                            .iter()
                            .find(|key| policy.annotation(key).is_some())
                            .copied()
                            .unwrap_or("fuel");
                        problems.push(at(
                            spans.annotation(&parsed_id, first_limit),
                            &id,
                            &format!(
                                "limit annotations ({}) only apply to permit policies",
                                LIMIT_ANNOTATIONS.join(", ")
                            ),
                        ))
                    }
                    Ok(found) => {
                        limits.insert(policy.id().clone(), found);
                    }
                    Err((key, message)) => {
                        problems.push(at(spans.annotation(&parsed_id, key), &id, &message))
                    }
                }
                match super::ModelLimits::from_annotations(&policy) {
                    Ok(found) if found.is_empty() => {}
                    Ok(_) if policy.effect() == Effect::Forbid => {
                        let first = super::model_limits::MODEL_LIMIT_ANNOTATIONS
                            .iter()
                            .find(|key| policy.annotation(key).is_some())
                            .copied()
                            .unwrap_or("model_calls");
                        problems.push(at(
                            spans.annotation(&parsed_id, first),
                            &id,
                            &format!(
                                "model limit annotations ({}) only apply to permit policies",
                                super::model_limits::MODEL_LIMIT_ANNOTATIONS.join(", ")
                            ),
                        ))
                    }
                    Ok(found) => {
                        model_limits.insert(policy.id().clone(), found);
                    }
                    Err((key, message)) => {
                        problems.push(at(spans.annotation(&parsed_id, key), &id, &message))
                    }
                }
                match policy.annotation(APPROVAL_ANNOTATION) {
                    None => {}
                    Some("required") if policy.effect() == Effect::Permit => {
                        approvals.insert(policy.id().clone());
                    }
                    Some(value) => problems.push(at(
                        spans.annotation(&parsed_id, APPROVAL_ANNOTATION),
                        &id,
                        &if policy.effect() == Effect::Permit {
                            format!("@approval(\"{value}\") must be @approval(\"required\")")
                        } else {
                            "@approval only applies to permit policies".to_owned()
                        },
                    )),
                }
                origin_of.insert(id.clone(), index);
                if let Err(e) = policies.add(policy) {
                    problems.push(at(spans.policy(&parsed_id), &id, &e.to_string()));
                }
            }
        }

        let Some(schema) = schema else {
            return Err(PolicyLoadError { problems });
        };
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let id = error.policy_id().to_string();
            match origin_of.get(&id).map(|&i| &sources.policies[i]) {
                Some(file) => problems.extend(problems_from(
                    error,
                    &sources.locate(&file.name),
                    &file.text,
                    Some(id),
                )),
                None => problems.push(problem(&sources.origin, Some(&id), &error.to_string())),
            }
        }

        let file_entities = match &sources.entities {
            None => Vec::new(),
            Some(file) => match serde_json::from_str::<Vec<serde_json::Value>>(&file.text) {
                Ok(list) => list,
                Err(e) => {
                    let (line, column) = (e.line(), e.column());
                    problems.push(PolicyProblem {
                        file: sources.locate(&file.name),
                        line: Some(line),
                        column: Some(column),
                        policy_id: None,
                        message: format!("not a JSON list of Cedar entities: {e}"),
                    });
                    Vec::new()
                }
            },
        };
        let entities = match build_entities(&file_entities, extra_entities, &schema) {
            Ok(entities) => Some(entities),
            Err(message) => {
                match &sources.entities {
                    Some(file) => problems.extend(entity_problems(
                        &sources.locate(&file.name),
                        &file.text,
                        &file_entities,
                        &schema,
                        message,
                    )),
                    None => problems.push(problem("entities", None, &message)),
                }
                None
            }
        };
        if !problems.is_empty() {
            return Err(PolicyLoadError { problems });
        }

        let by_action = Action::ALL
            .into_iter()
            .map(|action| (action, Arc::new(policies_for(&policies, action))))
            .collect();
        Ok(Self {
            id: next_id(),
            version: sources.version(),
            revision: 0,
            origin: sources.origin.clone(),
            loaded_at: SystemTime::now(),
            schema,
            policies,
            by_action,
            entities: entities.expect("no problems means entities were built"),
            file_entities,
            limits,
            approvals,
            model_limits,
            sources,
            registered: Arc::default(),
        })
    }

    /// The same policies with a different set of runtime entities.
    pub fn with_extra_entities(
        &self,
        extra: &[serde_json::Value],
    ) -> Result<Self, PolicyLoadError> {
        let entities = build_entities(&self.file_entities, extra, &self.schema)
            .map_err(|message| PolicyLoadError::one("runtime entities", message))?;
        Ok(Self {
            id: next_id(),
            version: self.version.clone(),
            revision: self.revision,
            origin: self.origin.clone(),
            loaded_at: self.loaded_at,
            schema: self.schema.clone(),
            policies: self.policies.clone(),
            by_action: self.by_action.clone(),
            entities,
            file_entities: self.file_entities.clone(),
            limits: self.limits.clone(),
            approvals: self.approvals.clone(),
            model_limits: self.model_limits.clone(),
            sources: self.sources.clone(),
            registered: self.registered.clone(),
        })
    }

    /// Whether the entities of registration `key` (see
    /// [`PolicyEngine::register_entities`](super::PolicyEngine::register_entities)) are in this snapshot.
    pub fn is_registered(&self, key: &str) -> bool {
        self.registered.contains(key)
    }

    pub fn sources(&self) -> &PolicySources {
        &self.sources
    }

    /// The policies that can apply to one request.
    pub fn candidates(
        &self,
        action: Action,
        principal: &EntityUid,
        resource: &EntityUid,
    ) -> Arc<PolicySet> {
        self.by_action[&action].candidates(principal, resource, &self.entities)
    }

    /// The model-call limits a permit's annotations set, if any.
    pub fn model_limits_of(&self, id: &PolicyId) -> Option<&super::ModelLimits> {
        self.model_limits.get(id)
    }

    /// Whether what permit `id` allows waits for a person's approval.
    pub fn requires_approval(&self, id: &PolicyId) -> bool {
        self.approvals.contains(id)
    }

    /// The limits a permit's annotations set, if any.
    pub fn limits_of(&self, id: &PolicyId) -> Option<&PolicyLimits> {
        self.limits.get(id)
    }

    pub fn policy_count(&self) -> usize {
        self.policies.num_of_policies()
    }
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn problem(file: &str, policy_id: Option<&str>, message: &str) -> PolicyProblem {
    PolicyProblem {
        file: file.into(),
        line: None,
        column: None,
        policy_id: policy_id.map(str::to_owned),
        message: message.into(),
    }
}

/// Entities from the files plus runtime ones; a runtime entity that the files
/// also define gets the union of both parent lists.
fn build_entities(
    from_files: &[serde_json::Value],
    extra: &[serde_json::Value],
    schema: &Schema,
) -> Result<Entities, String> {
    let mut merged: Vec<serde_json::Value> = from_files.to_vec();
    for entity in extra {
        let existing = merged
            .iter_mut()
            .find(|e| e.get("uid") == entity.get("uid"));
        match existing {
            Some(existing) => {
                let parents = entity
                    .get("parents")
                    .and_then(|p| p.as_array())
                    .cloned()
                    .unwrap_or_default();
                if let Some(list) = existing.get_mut("parents").and_then(|p| p.as_array_mut()) {
                    for parent in parents {
                        if !list.contains(&parent) {
                            list.push(parent);
                        }
                    }
                }
            }
            None => merged.push(entity.clone()),
        }
    }
    Entities::from_json_value(serde_json::Value::Array(merged), Some(schema))
        .map_err(|e| entities_error(&e))
}

/// An entities error with its causes (Cedar's own message is only "error during entity
/// deserialization"; the cause names the entity and the attribute).
fn entities_error(error: &cedar_policy::entities_errors::EntitiesError) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if let Some(help) = miette::Diagnostic::help(error) {
        message = format!("{message} (help: {help})");
    }
    message
}

/// Locates what is wrong in `entities.json`: each entity that is invalid on its own gets a
/// problem at its place in the file; if none is (the set as a whole is wrong, e.g. the same
/// entity twice), the whole set's error is reported.
fn entity_problems(
    file: &str,
    text: &str,
    entities: &[serde_json::Value],
    schema: &Schema,
    whole: String,
) -> Vec<PolicyProblem> {
    let offsets = array_elements(text);
    let lines = LineIndex::new(text);
    let located: Vec<PolicyProblem> = entities
        .iter()
        .enumerate()
        .filter_map(|(i, entity)| {
            let alone = serde_json::Value::Array(vec![entity.clone()]);
            let error = Entities::from_json_value(alone, Some(schema)).err()?;
            let (line, column) = offsets
                .get(i)
                .map(|&offset| lines.line_column(offset))
                .unzip();
            let uid = &entity["uid"];
            let name = match (uid["type"].as_str(), uid["id"].as_str()) {
                (Some(kind), Some(id)) => format!("entity {kind}::{id:?}"),
                _ => format!("entity #{}", i + 1),
            };
            Some(PolicyProblem {
                file: file.into(),
                line,
                column,
                policy_id: None,
                message: format!("{name}: {}", entities_error(&error)),
            })
        })
        .collect();
    if located.is_empty() {
        vec![problem(file, None, &whole)]
    } else {
        located
    }
}

/// The policies whose action scope can match `action`, indexed.
fn policies_for(all: &PolicySet, action: Action) -> ActionIndex {
    let uid = action.uid();
    let matching = all.policies().filter(|p| match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == uid,
        ActionConstraint::In(list) => list.contains(&uid),
    });
    ActionIndex::new(matching.cloned().collect())
}

/// Entities that a policy can name but that only exist at runtime.
pub fn principal_entity(principal: &str, profiles: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "uid": { "type": "Principal", "id": principal },
        "attrs": {},
        "parents": profiles.iter().map(|p| serde_json::json!({ "type": "Profile", "id": p })).collect::<Vec<_>>(),
    })
}

pub fn tool_entity(plugin: &str, tool: &str) -> serde_json::Value {
    serde_json::json!({
        "uid": { "type": "Tool", "id": format!("{plugin}.{tool}") },
        "attrs": {},
        "parents": [{ "type": "Plugin", "id": plugin }],
    })
}
