//! Limits chosen by policy: annotations on the permits that allowed a task.

use crate::sandbox::Limits;
use cedar_policy::Policy;
use serde::Serialize;

pub const LIMIT_ANNOTATIONS: [&str; 4] = ["fuel", "memory_mb", "timeout_ms", "output_kb"];

/// The value of annotation `@key("N")` on `policy`, a positive whole number, if it is there;
/// on a bad value, which annotation and why.
pub(super) fn positive_annotation(
    policy: &Policy,
    key: &'static str,
) -> Result<Option<u64>, (&'static str, String)> {
    match policy.annotation(key) {
        None => Ok(None),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err((
                key,
                format!("@{key}(\"{text}\") must be a positive whole number"),
            )),
        },
    }
}

/// The tighter of two bounds (`None`: unbounded).
pub(super) fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The limits one or more permits set. `None`: that permit does not bound it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PolicyLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub output_kb: Option<u64>,
}

impl PolicyLimits {
    /// Reads `@fuel("N")`, `@memory_mb("N")`, `@timeout_ms("N")`, `@output_kb("N")`.
    /// On a bad value: which annotation, and why.
    pub fn from_annotations(policy: &Policy) -> Result<Self, (&'static str, String)> {
        let read = |key| positive_annotation(policy, key);
        Ok(Self {
            fuel: read("fuel")?,
            memory_mb: read("memory_mb")?,
            timeout_ms: read("timeout_ms")?,
            output_kb: read("output_kb")?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The tighter of the two on every bound.
    pub fn tightest(self, other: PolicyLimits) -> PolicyLimits {
        let min = tighter;
        PolicyLimits {
            fuel: min(self.fuel, other.fuel),
            memory_mb: min(self.memory_mb, other.memory_mb),
            timeout_ms: min(self.timeout_ms, other.timeout_ms),
            output_kb: min(self.output_kb, other.output_kb),
        }
    }

    /// The four bounds of `limits`, in the units annotations use.
    pub fn of(limits: &Limits) -> PolicyLimits {
        PolicyLimits {
            fuel: Some(limits.fuel),
            memory_mb: Some(limits.memory_bytes >> 20),
            timeout_ms: Some(limits.timeout.as_millis().min(u64::MAX as u128) as u64),
            output_kb: Some(limits.output_bytes >> 10),
        }
    }

    /// The bounds on which `asked` is above `allowed` (both in annotation units).
    pub fn above(asked: &PolicyLimits, allowed: &PolicyLimits) -> Vec<String> {
        let pairs = [
            ("fuel", asked.fuel, allowed.fuel),
            ("memory_mb", asked.memory_mb, allowed.memory_mb),
            ("timeout_ms", asked.timeout_ms, allowed.timeout_ms),
            ("output_kb", asked.output_kb, allowed.output_kb),
        ];
        pairs
            .into_iter()
            .filter(|(_, asked, allowed)| matches!((asked, allowed), (Some(a), Some(b)) if a > b))
            .map(|(name, _, _)| name.to_owned())
            .collect()
    }

    /// The limits of a task: these where set, the configured defaults
    /// elsewhere. (The engine still clamps everything to its ceilings.)
    pub fn applied_to(&self, defaults: Limits) -> Limits {
        defaults.with_asked(self.fuel, self.memory_mb, self.timeout_ms, self.output_kb)
    }
}
