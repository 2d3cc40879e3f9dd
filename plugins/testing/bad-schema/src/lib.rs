//! `bad_schema`: a well-formed component whose tool `broken` declares an input schema that is
//! JSON but not a JSON Schema (`type` must be a string or a list of them). The host must refuse
//! the plugin when it loads, since no input could be checked against that schema.

wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const GOOD_SCHEMA: &str = r#"{"type":"object"}"#;
const BROKEN_SCHEMA: &str = r#"{"type":"object","properties":{"n":{"type":12}}}"#;

struct BadSchema;

impl Guest for BadSchema {
    fn describe() -> Vec<ToolInfo> {
        vec![
            ToolInfo {
                name: "fine".into(),
                description: "A tool with a valid schema, refused with its plugin.".into(),
                input_schema: GOOD_SCHEMA.into(),
            },
            ToolInfo {
                name: "broken".into(),
                description: "A tool whose input schema does not compile.".into(),
                input_schema: BROKEN_SCHEMA.into(),
            },
        ]
    }

    fn call(_name: String, input: String) -> Result<String, ToolError> {
        Ok(input)
    }
}

export!(BadSchema);
