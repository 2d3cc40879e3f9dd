//! File-name globs for `search`'s `include`: `*` (any run of characters),
//! `?` (one character), everything else literal. Enough for "*.rs" or
//! "test_*.py" without pulling in a glob crate.

pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` and the name index it was tried at, to
    // backtrack to: linear-ish, no recursion.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("*.rs", "main.rs"));
        assert!(!matches("*.rs", "main.rsx"));
        assert!(matches("test_?.py", "test_a.py"));
        assert!(matches("*a*b*", "xaybz"));
        assert!(!matches("*a*b", "xaybz"));
        assert!(matches("*", ""));
        assert!(matches("Cargo.toml", "Cargo.toml"));
    }
}
