//! What a plugin's `describe` may return. Every bound is here, checked in one pass over the
//! tools (duplicates through a set), so a hostile component cannot make loading it slow or
//! large: at most [`MAX_TOOLS`] tools, each field at most its size, all of them together at
//! most [`MAX_DESCRIBE_BYTES`]; and before any of that, what is copied out of the guest at
//! most [`MAX_DESCRIBE_COPY_BYTES`].

use super::plugin::ToolInfo;
use std::collections::HashSet;

/// Tools one plugin may provide.
pub const MAX_TOOLS: usize = 256;
/// Bytes of a tool's name (`[a-z0-9_-]`).
pub const MAX_TOOL_NAME_BYTES: usize = 64;
/// Bytes of a tool's description.
pub const MAX_DESCRIPTION_BYTES: usize = 4 * 1024;
/// Bytes of a tool's input schema (JSON text).
pub const MAX_INPUT_SCHEMA_BYTES: usize = 64 * 1024;
/// Bytes of all names, descriptions and input schemas of a plugin together.
pub const MAX_DESCRIBE_BYTES: usize = 1024 * 1024;
/// Host memory the answer of `describe` may take while it is copied out of the guest (as
/// wasmtime counts it: each list element's host size and each string's bytes), before the
/// bounds above are checked. Room for a few hundred thousand small tools, so that a plugin
/// describing too many is told how many; past it the load fails as `describe_failed`.
pub const MAX_DESCRIBE_COPY_BYTES: usize = 64 * 1024 * 1024;

/// Why what a plugin describes is refused. Messages name the bound that was crossed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescribeViolation {
    #[error("it provides no tools")]
    NoTools,
    #[error("it describes {count} tools; at most {MAX_TOOLS} tools per plugin are allowed")]
    TooManyTools { count: usize },
    #[error("the {field} of tool {tool} is {bytes} bytes; at most {limit} bytes are allowed")]
    FieldTooLong {
        /// The tool's name, quoted and shortened if need be.
        tool: String,
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "its tools' names, descriptions and input schemas exceed {MAX_DESCRIBE_BYTES} bytes in total"
    )]
    TooLarge,
    #[error("tool name {name} must be 1-{MAX_TOOL_NAME_BYTES} of [a-z0-9_-]")]
    BadName { name: String },
    #[error("tool `{name}` is described twice")]
    Duplicate { name: String },
    #[error("the input schema of `{name}` is not JSON: {message}")]
    SchemaNotJson { name: String, message: String },
    #[error("the input schema of `{name}` is not a JSON object")]
    SchemaNotObject { name: String },
}

impl DescribeViolation {
    /// The stable name of the bound or rule that was broken.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoTools => "no_tools",
            Self::TooManyTools { .. } => "too_many_tools",
            Self::FieldTooLong { field, .. } => match *field {
                "name" => "tool_name_too_long",
                "description" => "description_too_long",
                _ => "input_schema_too_long",
            },
            Self::TooLarge => "describe_too_large",
            Self::BadName { .. } => "bad_tool_name",
            Self::Duplicate { .. } => "duplicate_tool",
            Self::SchemaNotJson { .. } | Self::SchemaNotObject { .. } => "bad_input_schema",
        }
    }
}

/// Checks tools one at a time, in time linear in what they hold.
pub(crate) struct ToolsCheck {
    seen: HashSet<String>,
    total_bytes: usize,
    tools: Vec<ToolInfo>,
}

impl ToolsCheck {
    /// Starts the check of a plugin that describes `count` tools.
    pub fn new(count: usize) -> Result<Self, DescribeViolation> {
        if count == 0 {
            return Err(DescribeViolation::NoTools);
        }
        if count > MAX_TOOLS {
            return Err(DescribeViolation::TooManyTools { count });
        }
        Ok(Self {
            seen: HashSet::with_capacity(count),
            total_bytes: 0,
            tools: Vec::with_capacity(count),
        })
    }

    /// Checks and keeps one tool. Sizes are checked before anything is copied or parsed.
    pub fn add(
        &mut self,
        name: &str,
        description: &str,
        input_schema: &str,
    ) -> Result<(), DescribeViolation> {
        for (field, text, limit) in [
            ("name", name, MAX_TOOL_NAME_BYTES),
            ("description", description, MAX_DESCRIPTION_BYTES),
            ("input schema", input_schema, MAX_INPUT_SCHEMA_BYTES),
        ] {
            if text.len() > limit {
                return Err(DescribeViolation::FieldTooLong {
                    tool: quoted(name),
                    field,
                    bytes: text.len(),
                    limit,
                });
            }
        }
        self.total_bytes += name.len() + description.len() + input_schema.len();
        if self.total_bytes > MAX_DESCRIBE_BYTES {
            return Err(DescribeViolation::TooLarge);
        }
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(DescribeViolation::BadName { name: quoted(name) });
        }
        if !self.seen.insert(name.to_owned()) {
            return Err(DescribeViolation::Duplicate { name: name.into() });
        }
        let schema: serde_json::Value =
            serde_json::from_str(input_schema).map_err(|e| DescribeViolation::SchemaNotJson {
                name: name.into(),
                message: e.to_string(),
            })?;
        if !schema.is_object() {
            return Err(DescribeViolation::SchemaNotObject { name: name.into() });
        }
        self.tools.push(ToolInfo {
            name: name.into(),
            description: description.into(),
            input_schema: schema,
        });
        Ok(())
    }

    pub fn finish(self) -> Vec<ToolInfo> {
        self.tools
    }
}

/// Checks a whole tool list (name, description, input schema).
#[cfg(test)]
fn check<'a>(
    tools: impl ExactSizeIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Vec<ToolInfo>, DescribeViolation> {
    let mut check = ToolsCheck::new(tools.len())?;
    for (name, description, schema) in tools {
        check.add(name, description, schema)?;
    }
    Ok(check.finish())
}

/// A guest's string for a message: debug-quoted, at most 64 characters of it.
fn quoted(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{:?}…", &text[..end])
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"object"}"#;

    #[test]
    fn a_plain_list_passes() {
        let tools = check([("read", "Reads.", SCHEMA), ("write", "", "{}")].into_iter()).unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[1].name, "write");
        assert!(tools[0].input_schema.is_object());
    }

    #[test]
    fn the_count_is_bounded_before_any_tool_is_read() {
        assert_eq!(
            ToolsCheck::new(MAX_TOOLS + 1).err(),
            Some(DescribeViolation::TooManyTools {
                count: MAX_TOOLS + 1
            })
        );
        assert_eq!(ToolsCheck::new(0).err(), Some(DescribeViolation::NoTools));
        let names: Vec<String> = (0..MAX_TOOLS).map(|i| format!("t{i}")).collect();
        let full = check(names.iter().map(|n| (n.as_str(), "", "{}")));
        assert_eq!(full.unwrap().len(), MAX_TOOLS);
        let message = DescribeViolation::TooManyTools { count: 400_000 }.to_string();
        assert!(
            message.contains("400000") && message.contains("256"),
            "{message}"
        );
    }

    #[test]
    fn each_field_is_bounded_and_named() {
        let long_name = "n".repeat(MAX_TOOL_NAME_BYTES + 1);
        let long_description = "d".repeat(MAX_DESCRIPTION_BYTES + 1);
        let long_schema = format!(
            r#"{{"description":"{}"}}"#,
            "s".repeat(MAX_INPUT_SCHEMA_BYTES)
        );
        for (tool, code, field) in [
            ((long_name.as_str(), "", "{}"), "tool_name_too_long", "name"),
            (
                ("t", long_description.as_str(), "{}"),
                "description_too_long",
                "description",
            ),
            (
                ("t", "", long_schema.as_str()),
                "input_schema_too_long",
                "input schema",
            ),
        ] {
            let error = check([tool].into_iter()).unwrap_err();
            assert_eq!(error.code(), code, "{error}");
            assert!(error.to_string().contains(field), "{error}");
        }
        let at_limits = check(
            [(
                "n".repeat(MAX_TOOL_NAME_BYTES).as_str(),
                "d".repeat(MAX_DESCRIPTION_BYTES).as_str(),
                "{}",
            )]
            .into_iter(),
        );
        assert!(at_limits.is_ok());
    }

    #[test]
    fn the_total_is_bounded() {
        // Each schema is within its own bound; together they are not.
        let schema = format!(r#"{{"description":"{}"}}"#, "s".repeat(60 * 1024));
        let names: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let error = check(names.iter().map(|n| (n.as_str(), "", schema.as_str()))).unwrap_err();
        assert_eq!(error, DescribeViolation::TooLarge);
        assert!(error.to_string().contains(&MAX_DESCRIBE_BYTES.to_string()));
    }

    #[test]
    fn names_are_checked_and_unique() {
        for bad in ["", "Read", "a.b", "a b", "ü"] {
            let error = check([(bad, "", "{}")].into_iter()).unwrap_err();
            assert_eq!(error.code(), "bad_tool_name", "{bad:?}: {error}");
        }
        let error = check([("a", "", "{}"), ("b", "", "{}"), ("a", "", "{}")].into_iter());
        assert_eq!(
            error.unwrap_err(),
            DescribeViolation::Duplicate { name: "a".into() }
        );
    }

    #[test]
    fn schemas_are_json_objects() {
        let error = check([("a", "", "{")].into_iter()).unwrap_err();
        assert!(matches!(error, DescribeViolation::SchemaNotJson { .. }));
        let error = check([("a", "", "[]")].into_iter()).unwrap_err();
        assert!(matches!(error, DescribeViolation::SchemaNotObject { .. }));
    }

    #[test]
    fn a_long_guest_string_is_shortened_in_messages() {
        let error = check([("X".repeat(10_000).as_str(), "", "{}")].into_iter()).unwrap_err();
        assert!(error.to_string().len() < 300, "{error}");
    }
}
