//! Splitting a multi-file unified diff into one text per file, for `diffy`
//! (which parses a single file's patch).
//!
//! A file starts at a `--- ` line directly followed by `+++ ` and then an
//! `@@` hunk header. Requiring all three keeps a removed line that happens to
//! read `-- x` (shown as `--- x`) inside a hunk from starting a new file.

pub fn split(diff: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for line in diff.split_inclusive('\n') {
        lines.push((offset, line));
        offset += line.len();
    }
    let mut starts: Vec<usize> = lines
        .windows(3)
        .filter(|w| {
            w[0].1.starts_with("--- ") && w[1].1.starts_with("+++ ") && w[2].1.starts_with("@@")
        })
        .map(|w| w[0].0)
        .collect();
    if starts.is_empty() {
        return vec![diff];
    }
    // Anything before the first header (`diff --git`, `index`, a mail) is
    // preamble that diffy skips, so the first file starts at 0.
    starts[0] = 0;
    starts.push(diff.len());
    starts.windows(2).map(|w| &diff[w[0]..w[1]]).collect()
}

/// Rewrites each hunk header's line counts from the lines that follow it.
/// Hand-written diffs (an agent's) often get the counts wrong while the
/// lines themselves are right; this is tried only when the strict parse
/// fails. A hunk ends at the next `@@` or at a line that cannot belong to a
/// hunk; blank lines at its end are dropped, not taken as context.
pub fn recount(section: &str) -> String {
    let lines: Vec<&str> = section.split_inclusive('\n').collect();
    let mut out = String::with_capacity(section.len());
    let mut i = 0;
    while i < lines.len() {
        let Some((old_start, new_start, tail)) = hunk_header(lines[i]) else {
            out.push_str(lines[i]);
            i += 1;
            continue;
        };
        let body_start = i + 1;
        let mut end = body_start;
        while end < lines.len() && is_hunk_line(lines[end]) {
            end += 1;
        }
        while end > body_start && lines[end - 1].trim_end_matches(['\n', '\r']).is_empty() {
            end -= 1;
        }
        let (mut old, mut new) = (0, 0);
        for line in &lines[body_start..end] {
            match line.as_bytes().first() {
                Some(b'-') => old += 1,
                Some(b'+') => new += 1,
                Some(b'\\') => {}
                _ => {
                    old += 1;
                    new += 1;
                }
            }
        }
        out.push_str(&format!(
            "@@ -{old_start},{old} +{new_start},{new} @@{tail}"
        ));
        for line in &lines[body_start..end] {
            // A blank line stands for an empty context line.
            if line.trim_end_matches(['\n', '\r']).is_empty() {
                out.push(' ');
            }
            out.push_str(line);
        }
        i = end;
    }
    out
}

/// `@@ -a[,b] +c[,d] @@rest` -> (a, c, rest).
fn hunk_header(line: &str) -> Option<(usize, usize, &str)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, tail) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let start = |r: &str| r.split(',').next()?.parse::<usize>().ok();
    Some((start(old)?, start(new)?, tail))
}

fn is_hunk_line(line: &str) -> bool {
    matches!(
        line.as_bytes().first(),
        Some(b' ' | b'-' | b'+' | b'\\' | b'\n' | b'\r')
    ) && !line.starts_with("--- ")
        && !line.starts_with("+++ ")
}

#[cfg(test)]
mod tests {
    use super::{recount, split};

    #[test]
    fn recount_fixes_wrong_counts() {
        let d = "--- a/x\n+++ b/x\n@@ -1,9 +1,1 @@ fn f\n a\n-b\n+c\n+d\n\n\ndiff --git a/y b/y\n";
        assert_eq!(
            recount(d),
            "--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@ fn f\n a\n-b\n+c\n+d\n\n\ndiff --git a/y b/y\n"
        );
        let d = "@@ -3 +3 @@\n x\n\n-y\n";
        assert_eq!(recount(d), "@@ -3,3 +3,2 @@\n x\n \n-y\n");
    }

    #[test]
    fn one_file_stays_whole() {
        let d = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(split(d), vec![d]);
        assert_eq!(split("@@ -1 +1 @@\n-a\n+b\n").len(), 1);
    }

    #[test]
    fn git_diff_splits_per_file() {
        let d = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\
                 diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-c\n+d\n";
        let parts = split(d);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].starts_with("diff --git a/x"));
        assert!(parts[0].ends_with("+b\ndiff --git a/y b/y\n"));
        assert!(parts[1].starts_with("--- a/y\n"));
    }

    #[test]
    fn removed_dash_lines_do_not_split() {
        let d = "--- a/x.sql\n+++ b/x.sql\n@@ -1,2 +1,2 @@\n--- comment\n+++ other\n keep\n";
        assert_eq!(split(d).len(), 1);
    }
}
