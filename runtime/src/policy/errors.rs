use serde::Serialize;
use std::fmt;

/// One problem in a policy set, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyProblem {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(id) = &self.policy_id {
            write!(f, ": policy `{id}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A policy set that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid policy set ({} problem{}):\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct PolicyLoadError {
    pub problems: Vec<PolicyProblem>,
}

impl PolicyLoadError {
    pub fn one(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![PolicyProblem {
                file: file.into(),
                line: None,
                column: None,
                policy_id: None,
                message: message.into(),
            }],
        }
    }
}

/// Converts a miette diagnostic into located problems: one per label, or one
/// unlocated problem when the diagnostic carries no span.
pub(crate) fn problems_from(
    diagnostic: &dyn miette::Diagnostic,
    file: &str,
    source: &str,
    policy_id: Option<String>,
) -> Vec<PolicyProblem> {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message = format!("{message} (help: {help})");
    }
    let labels: Vec<miette::LabeledSpan> =
        diagnostic.labels().map(|l| l.collect()).unwrap_or_default();
    if labels.is_empty() {
        return vec![PolicyProblem {
            file: file.into(),
            line: None,
            column: None,
            policy_id,
            message,
        }];
    }
    labels
        .iter()
        .take(1)
        .map(|label| {
            let (line, column) = line_column(source, label.offset());
            PolicyProblem {
                file: file.into(),
                line: Some(line),
                column: Some(column),
                policy_id: policy_id.clone(),
                message: message.clone(),
            }
        })
        .collect()
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Where each line of a text starts, so that many offsets become lines and columns without
/// rescanning the text for each (a set of thousands of policies is located in linear time).
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self {
            starts,
            len: text.len(),
        }
    }

    /// As [`line_column`].
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.len);
        let line = self.starts.partition_point(|start| *start <= offset);
        (line, offset - self.starts[line - 1] + 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_index_of_lines_agrees_with_the_scan() {
        let src = "ab\ncde\nf\n\nlast";
        let index = super::LineIndex::new(src);
        for offset in 0..src.len() + 3 {
            assert_eq!(
                index.line_column(offset),
                super::line_column(src, offset),
                "{offset}"
            );
        }
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = "ab\ncde\nf";
        assert_eq!(super::line_column(src, 0), (1, 1));
        assert_eq!(super::line_column(src, 4), (2, 2));
        assert_eq!(super::line_column(src, 7), (3, 1));
    }
}
