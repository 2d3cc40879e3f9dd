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
        .filter(|w| w[0].1.starts_with("--- ") && w[1].1.starts_with("+++ ") && w[2].1.starts_with("@@"))
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

#[cfg(test)]
mod tests {
    use super::split;

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
