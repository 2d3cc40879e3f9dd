//! Policy tests for policy authors: files in `<policies>/tests/*.json`, each a
//! list of requests with the decision (and, where it matters, the determining
//! policy ids) they must get.

use super::engine::{AuthzRequest, PolicyEngine, PolicyOrigin};
use super::errors::PolicyLoadError;
use super::snapshot::Action;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default)]
    pub description: String,
    /// Extra Cedar entities for these cases (principals, paths, ...).
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
    pub cases: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// A `Principal` id.
    pub principal: String,
    pub action: String,
    /// A Cedar entity reference: `Tool::"fs.read"`.
    pub resource: String,
    #[serde(default = "empty_object")]
    pub context: serde_json::Value,
    pub expect: Expect,
    /// When given, the determining policy ids must be exactly these.
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub passed: bool,
    pub action: String,
    pub expected: Expect,
    pub got: Expect,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyTestError {
    #[error(transparent)]
    Policies(#[from] PolicyLoadError),
    #[error("{file}: {message}")]
    BadTestFile { file: String, message: String },
    #[error("no test files in {0} (expected tests/*.json)")]
    NoTests(String),
}

/// Parses `Type::"id"` (the id may contain `::`).
pub fn parse_entity_ref(text: &str) -> Result<(String, String), String> {
    let (ty, id) = text
        .split_once("::\"")
        .ok_or_else(|| format!("`{text}` is not an entity reference like Tool::\"fs.read\""))?;
    let id = id
        .strip_suffix('"')
        .ok_or_else(|| format!("`{text}`: the id must end with a quote"))?;
    Ok((ty.to_owned(), id.replace("\\\"", "\"")))
}

/// Runs every test file in `<dir>/tests` against the policies in `dir`.
pub fn run_tests(dir: &Path) -> Result<Vec<CaseResult>, PolicyTestError> {
    let tests_dir = dir.join("tests");
    let mut files: Vec<_> = std::fs::read_dir(&tests_dir)
        .map_err(|_| PolicyTestError::NoTests(tests_dir.display().to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PolicyTestError::NoTests(tests_dir.display().to_string()));
    }
    let mut results = Vec::new();
    for path in files {
        let file = path.display().to_string();
        let bad = |message: String| PolicyTestError::BadTestFile {
            file: file.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let tests: TestFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let engine = PolicyEngine::load(PolicyOrigin::Dir(dir.to_owned()))?;
        engine
            .upsert_entities(tests.entities.clone())
            .map_err(|e| bad(e.to_string()))?;
        for case in tests.cases {
            results.push(run_case(&engine, &file, case));
        }
    }
    Ok(results)
}

fn run_case(engine: &PolicyEngine, file: &str, case: TestCase) -> CaseResult {
    let mut result = CaseResult {
        file: file.into(),
        name: case.name.clone(),
        passed: false,
        action: case.action.clone(),
        expected: case.expect,
        got: Expect::Deny,
        reasons: Vec::new(),
        errors: Vec::new(),
        failure: None,
    };
    let Some(action) = Action::parse(&case.action) else {
        result.failure = Some(format!("unknown action `{}`", case.action));
        return result;
    };
    let resource = match parse_entity_ref(&case.resource) {
        Ok(resource) => resource,
        Err(message) => {
            result.failure = Some(message);
            return result;
        }
    };
    let decision = engine.decide(&AuthzRequest {
        principal: case.principal,
        action,
        resource,
        context: case.context,
    });
    result.got = if decision.allowed {
        Expect::Allow
    } else {
        Expect::Deny
    };
    result.reasons = decision.reasons.clone();
    result.errors = decision.errors.clone();
    if let Some(malformed) = decision
        .errors
        .iter()
        .find(|e| e.starts_with(super::engine::MALFORMED))
    {
        result.failure = Some(malformed.clone());
    } else if result.got != case.expect {
        result.failure =
            Some(format!("expected {:?}, got {:?}", case.expect, result.got).to_lowercase());
    } else if let Some(expected) = &case.reasons {
        let mut want = expected.clone();
        let mut got = decision.reasons.clone();
        want.sort();
        got.sort();
        if want != got {
            result.failure = Some(format!(
                "expected determining policies {want:?}, got {got:?}"
            ));
        }
    }
    result.passed = result.failure.is_none();
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn entity_refs_parse() {
        assert_eq!(
            super::parse_entity_ref("Tool::\"fs.read\"").unwrap(),
            ("Tool".into(), "fs.read".into())
        );
        assert_eq!(
            super::parse_entity_ref("Path::\"/a::b\"").unwrap(),
            ("Path".into(), "/a::b".into())
        );
        assert!(super::parse_entity_ref("fs.read").is_err());
    }
}
