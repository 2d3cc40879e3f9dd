//! `echo`: the benchmark's trivial tool. It returns its input text as it came,
//! without parsing it, so a benchmark measures the host and not the tool.

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const ECHO_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","description":"Any JSON object; it is returned unchanged.","additionalProperties":true}"#;
const FAIL_SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","description":"Any JSON object; it is ignored.","additionalProperties":true}"#;

struct Echo;

impl Guest for Echo {
    fn describe() -> Vec<ToolInfo> {
        vec![
            ToolInfo {
                name: "echo".into(),
                description: "Returns its input object unchanged. Useful to test a connection or measure overhead.".into(),
                input_schema: ECHO_SCHEMA.into(),
            },
            ToolInfo {
                name: "fail".into(),
                description: "Always fails with the error \"asked to fail\". Useful to test error handling.".into(),
                input_schema: FAIL_SCHEMA.into(),
            },
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        match name.as_str() {
            "echo" => Ok(input),
            "fail" => Err(ToolError::Failed("asked to fail".into())),
            _ => Err(ToolError::UnknownTool(name)),
        }
    }
}

export!(Echo);
