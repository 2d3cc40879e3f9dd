//! Limits on model calls chosen by policy: annotations on the `use_model` permits that allowed
//! a call. `@model_calls("N")` (calls per run), `@tokens_per_call("N")` (the most tokens one
//! answer may have) and `@tokens_per_run("N")` (prompt and completion tokens of all of a run's
//! calls). The tightest of the determining permits wins; a run can only ask for less.

use cedar_policy::Policy;
use serde::Serialize;

pub const MODEL_LIMIT_ANNOTATIONS: [&str; 3] = ["model_calls", "tokens_per_call", "tokens_per_run"];

/// The limits one or more permits set on model calls. `None`: not bounded by them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ModelLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub model_calls: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tokens_per_call: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tokens_per_run: Option<u64>,
}

impl ModelLimits {
    /// Reads the annotations; on a bad value, which annotation and why.
    pub fn from_annotations(policy: &Policy) -> Result<Self, (&'static str, String)> {
        let read = |key| super::limits::positive_annotation(policy, key);
        Ok(Self {
            model_calls: read("model_calls")?,
            tokens_per_call: read("tokens_per_call")?,
            tokens_per_run: read("tokens_per_run")?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The tighter of the two on every bound.
    pub fn tightest(self, other: ModelLimits) -> ModelLimits {
        let min = super::limits::tighter;
        ModelLimits {
            model_calls: min(self.model_calls, other.model_calls),
            tokens_per_call: min(self.tokens_per_call, other.tokens_per_call),
            tokens_per_run: min(self.tokens_per_run, other.tokens_per_run),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn policy(annotations: &str) -> Policy {
        Policy::from_str(&format!(
            "{annotations} permit (principal, action == Action::\"use_model\", resource);"
        ))
        .unwrap()
    }

    #[test]
    fn annotations_are_read_and_the_tightest_wins() {
        let a =
            ModelLimits::from_annotations(&policy(r#"@model_calls("10") @tokens_per_run("5000")"#))
                .unwrap();
        let b =
            ModelLimits::from_annotations(&policy(r#"@model_calls("4") @tokens_per_call("800")"#))
                .unwrap();
        assert_eq!(
            a.tightest(b),
            ModelLimits {
                model_calls: Some(4),
                tokens_per_call: Some(800),
                tokens_per_run: Some(5000)
            }
        );
        assert!(
            ModelLimits::from_annotations(&policy(""))
                .unwrap()
                .is_empty()
        );
        let (key, message) =
            ModelLimits::from_annotations(&policy(r#"@tokens_per_call("lots")"#)).unwrap_err();
        assert_eq!(key, "tokens_per_call");
        assert!(message.contains("positive whole number"), "{message}");
        assert!(ModelLimits::from_annotations(&policy(r#"@model_calls("0")"#)).is_err());
    }
}
