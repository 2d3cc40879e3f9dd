//! Where things are in the source files of a policy set, for messages that point at them:
//! each policy and each of its annotations (`@fuel("abc")`), and each entity of
//! `entities.json`. `cedar-policy` keeps these spans to itself; its core parser has them.

use std::collections::HashMap;

/// The byte offsets of each policy of one `.cedar` file, by the id the parser gave it
/// (`policy0`, `policy1`, ... in source order), and of each of its annotations.
#[derive(Debug, Default)]
pub(crate) struct PolicyLocations {
    by_id: HashMap<String, Located>,
}

#[derive(Debug, Default)]
struct Located {
    start: Option<usize>,
    annotations: HashMap<String, usize>,
}

impl PolicyLocations {
    /// The locations in `text`; empty if it does not parse (its errors are located already).
    pub(crate) fn of(text: &str) -> Self {
        let Ok(parsed) = cedar_policy_core::parser::parse_policyset(text) else {
            return Self::default();
        };
        let by_id = parsed
            .policies()
            .map(|policy| {
                let located = Located {
                    start: policy.loc().map(|loc| loc.start()),
                    annotations: policy
                        .annotations()
                        .filter_map(|(key, annotation)| {
                            Some((key.to_string(), annotation.loc.as_ref()?.start()))
                        })
                        .collect(),
                };
                (policy.id().to_string(), located)
            })
            .collect();
        Self { by_id }
    }

    /// Where the policy the parser called `parsed_id` starts (its first annotation).
    pub(crate) fn policy(&self, parsed_id: &str) -> Option<usize> {
        self.by_id.get(parsed_id)?.start
    }

    /// Where annotation `@key` of that policy starts, else where the policy does.
    pub(crate) fn annotation(&self, parsed_id: &str, key: &str) -> Option<usize> {
        let located = self.by_id.get(parsed_id)?;
        located.annotations.get(key).copied().or(located.start)
    }
}

/// The byte offset of each element of the JSON array `text` (which parsed already), in order.
pub(crate) fn array_elements(text: &str) -> Vec<usize> {
    let mut offsets = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut expecting = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if depth == 1 && expecting && c != ']' {
            offsets.push(i);
            expecting = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_annotations_are_located() {
        let text = "@id(\"a\")\npermit (principal, action, resource);\n\n@id(\"b\")\n  @fuel(\"x\")\nforbid (principal, action, resource);\n";
        let found = PolicyLocations::of(text);
        assert_eq!(found.policy("policy0"), Some(0));
        let fuel = found.annotation("policy1", "fuel").unwrap();
        assert!(text[fuel..].starts_with("@fuel"), "{fuel}");
        let id = found.annotation("policy1", "id").unwrap();
        assert!(text[id..].starts_with("@id(\"b\")"));
        assert_eq!(found.annotation("policy1", "none"), found.policy("policy1"));
    }

    #[test]
    fn array_elements_are_found_past_strings_and_nesting() {
        let text = "[\n {\"a\": \"],{\\\"\"},\n [1, [2]] , 3\n]";
        let offsets = array_elements(text);
        let starts: Vec<char> = offsets
            .iter()
            .map(|&o| text[o..].chars().next().unwrap())
            .collect();
        assert_eq!(starts, ['{', '[', '3']);
        assert!(array_elements("[]").is_empty());
    }
}
