//! A tool's input schema, compiled once when its plugin loads and checked against every input
//! before a component is instantiated for it.
//!
//! Schemas are JSON Schema draft 2020-12. They come from plugins, inputs from callers, so
//! neither may make the host do more than look at the two documents: `$ref`s are resolved only
//! inside the schema (nothing is fetched from the network or read from disk: the crate is built
//! without those features), and `pattern`s use a regex engine that runs in linear time, so a
//! crafted input cannot make a pattern backtrack for minutes.

use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::Value;

/// A compiled input schema.
pub struct InputSchema(Validator);

/// Where an input fails its schema, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// JSON Pointer to the failing part of the input (`""` for the whole input).
    pub path: String,
    pub message: String,
}

impl InputSchema {
    /// Compiles `schema`; the error says why it is not a usable draft 2020-12 schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_pattern_options(PatternOptions::regex())
            .build(schema)
            .map(InputSchema)
            .map_err(|e| e.to_string())
    }

    /// The first way `input` fails the schema, if it does.
    pub fn check(&self, input: &Value) -> Result<(), Mismatch> {
        self.0.validate(input).map_err(|error| Mismatch {
            path: error.instance_path().as_str().to_owned(),
            message: error.to_string(),
        })
    }
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputSchema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mismatch_names_the_failing_path() {
        let schema = InputSchema::compile(&json!({
            "type": "object",
            "properties": {
                "path": { "type": "string" },
                "options": { "type": "object", "properties": { "depth": { "type": "integer", "minimum": 0 } } }
            },
            "required": ["path"],
            "additionalProperties": false
        }))
        .unwrap();
        schema.check(&json!({ "path": "a" })).unwrap();
        let wrong = schema
            .check(&json!({ "path": "a", "options": { "depth": -1 } }))
            .unwrap_err();
        assert_eq!(wrong.path, "/options/depth");
        assert!(wrong.message.contains("minimum"), "{}", wrong.message);
        let missing = schema.check(&json!({})).unwrap_err();
        assert_eq!(missing.path, "");
        assert!(missing.message.contains("path"), "{}", missing.message);
    }

    #[test]
    fn schemas_that_do_not_compile_say_why() {
        for bad in [
            json!({ "type": 12 }),
            json!({ "type": "object", "properties": { "a": { "pattern": "(" } } }),
            json!({ "$ref": "https://example.com/schema.json" }),
            json!({ "minimum": "zero" }),
        ] {
            assert!(InputSchema::compile(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_backtracking_pattern_does_not_hang_on_a_crafted_input() {
        let schema = InputSchema::compile(&json!({
            "type": "object",
            "properties": { "s": { "type": "string", "pattern": "^(a+)+$" } }
        }))
        .unwrap();
        let crafted = format!("{}!", "a".repeat(100_000));
        assert!(schema.check(&json!({ "s": crafted })).is_err());
    }
}
