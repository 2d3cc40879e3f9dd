//! `query`: the nodes a JSONPath query selects, with their locations.

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use serde_json_path::JsonPath;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult};

pub const TOOL: Tool = Tool {
    name: "query",
    description: "Select values from a JSON document with a JSONPath query (RFC 9535), for example \
                  $.items[?@.price < 10].name. Returns the matched values and their normalized paths.",
    schema,
    run,
};

fn schema() -> Value {
    // "Exactly one of document / document_text" is said in words: some model
    // APIs refuse a top-level oneOf in tool schemas.
    sdk::object_schema(
        json!({
            "document": {"description": "The JSON value to query (any type). Give this or document_text."},
            "document_text": {"type": "string", "description": "The document as JSON text. Give this or document."},
            "query": {"type": "string", "description": "JSONPath query (RFC 9535), starting with $."}
        }),
        &["query"],
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// `Some(Value::Null)` when the document is `null`, `None` when absent.
    #[serde(default, deserialize_with = "present")]
    document: Option<Value>,
    document_text: Option<String>,
    query: String,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let document = match (input.document, input.document_text) {
        (Some(doc), None) => doc,
        (None, Some(text)) => serde_json::from_str(&text).map_err(|e| {
            ToolError::InvalidInput(format!("document_text is not valid JSON: {e}"))
        })?,
        _ => {
            return Err(ToolError::InvalidInput(
                "give exactly one of document and document_text".into(),
            ));
        }
    };
    let path = JsonPath::parse(&input.query)
        .map_err(|e| ToolError::InvalidInput(format!("invalid JSONPath query: {e}")))?;

    let nodes = path.query_located(&document);
    let paths: Vec<String> = nodes.iter().map(|n| n.location().to_string()).collect();
    let matches: Vec<&Value> = nodes.iter().map(|n| n.node()).collect();
    sdk::output(&json!({ "matches": matches, "paths": paths, "count": matches.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(input: Value) -> Result<Value, ToolError> {
        run(&input.to_string()).map(|s| serde_json::from_str(&s).unwrap())
    }

    #[test]
    fn filters_values() {
        let out = call(json!({
            "document": {"items": [{"n": "a", "p": 5}, {"n": "b", "p": 50}]},
            "query": "$.items[?@.p < 10].n"
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({"matches": ["a"], "paths": ["$['items'][0]['n']"], "count": 1})
        );
    }

    #[test]
    fn document_text_and_null() {
        let out = call(json!({"document_text": "[1,2,3]", "query": "$[-1]"})).unwrap();
        assert_eq!(out["matches"], json!([3]));
        let out = call(json!({"document": null, "query": "$"})).unwrap();
        assert_eq!(out["matches"], json!([null]));
    }

    #[test]
    fn bad_queries_are_invalid_input() {
        let err = call(json!({"document": {}, "query": "$[?"})).unwrap_err();
        assert!(
            matches!(err, ToolError::InvalidInput(m) if m.starts_with("invalid JSONPath query"))
        );
        let err = call(json!({"query": "$"})).unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(_)));
    }
}
