//! The path of an outbound request, in the two forms the host needs. Servers read a path
//! after resolving `.` and `..`, decoding percent-escapes and often collapsing `//`, so a
//! policy on `context.path` must see what the server will see, not the spelling the tool
//! chose (`/x/../admin`, `/%61dmin`, `//admin` are all `/admin` to most servers).

/// What the policy decides on: every escape decoded (an encoded `/` too, the way the most
/// lenient server reads it), `\` read as `/`, dot segments resolved, repeated `/` collapsed.
pub(super) fn for_policy(path: &str) -> String {
    let decoded = String::from_utf8_lossy(&decode(path, |_| true)).replace('\\', "/");
    resolve(&decoded)
}

/// What is sent: escapes of unreserved characters decoded (they mean the same either way),
/// other escapes kept, dot segments resolved, repeated `/` collapsed, so the server is asked
/// for the path the policy allowed.
pub(super) fn for_wire(path: &str) -> String {
    let decoded = decode(path, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let mut text = String::with_capacity(decoded.len());
    for &b in &decoded {
        // Bytes that were not escapes come back as they were; escape any other that is not
        // plain ASCII (a decoded escape is always an unreserved character here).
        if b.is_ascii_graphic() {
            text.push(b as char);
        } else {
            text.push_str(&format!("%{b:02X}"));
        }
    }
    resolve(&text)
}

/// Decodes the `%XX` escapes whose byte `keep` accepts; others stay as written.
fn decode(path: &str, keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && let Some(byte) = bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            && keep(byte)
        {
            out.push(byte);
            at += 3;
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    out
}

/// Resolves `.` and `..` segments (never above the root) and collapses repeated `/`; keeps a
/// trailing `/`.
fn resolve(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    let ends_in_directory = path.ends_with('/')
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path == "."
        || path == "..";
    if ends_in_directory && out.len() > 1 {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_read_as_that_path() {
        for spelling in [
            "/admin/users",
            "/x/../admin/users",
            "/%61dmin/users",
            "//admin/users",
            "/./admin/users",
            "/x/%2e%2e/admin/users",
            "/x/%2E%2E/admin//users",
            "/x%2F..%2Fadmin/users",
            "/x\\..\\admin/users",
            "/../../admin/users",
        ] {
            assert_eq!(for_policy(spelling), "/admin/users", "{spelling}");
        }
        assert_eq!(for_policy("/"), "/");
        assert_eq!(for_policy(""), "/");
        assert_eq!(for_policy("/a/b/"), "/a/b/");
        assert_eq!(for_policy("/a/b/.."), "/a/");
    }

    #[test]
    fn what_is_sent_keeps_the_escapes_that_matter() {
        assert_eq!(for_wire("/x/%2e%2e/admin"), "/admin");
        assert_eq!(for_wire("/%61dmin//users"), "/admin/users");
        // An encoded `/` stays encoded (GitLab's `group%2Fproject`), an encoded space too.
        assert_eq!(
            for_wire("/api/v4/projects/group%2Fproject/a%20b"),
            "/api/v4/projects/group%2Fproject/a%20b"
        );
        assert_eq!(
            for_policy("/api/v4/projects/group%2Fproject"),
            "/api/v4/projects/group/project"
        );
    }
}
