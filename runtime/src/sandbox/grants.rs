use super::quota::DiskQuota;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// What one task may reach. The default grants nothing: no files, no
/// environment, no secrets, no network.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Host directories preopened for the component (the session workspace).
    pub dirs: Vec<DirGrant>,
    /// Directories outside the workspace the task asks for: each is decided by
    /// the gate (`read_file`, `write_file`) when the task starts.
    pub outside: Vec<DirGrant>,
    /// The guest path relative paths resolve against (`wasi:cli/environment.initial-cwd`).
    /// Defaults to the first granted directory.
    pub cwd: Option<String>,
    /// Environment variables, exactly these.
    pub env: Vec<(String, String)>,
    /// Secrets the task may ask for by name; each read is still decided by the gate.
    pub secrets: BTreeMap<String, Secret>,
    pub network: NetworkGrant,
    /// Credentials the host adds to outbound requests to their hosts; the guest never sees
    /// them. Each use is still decided by the gate (`read_secret`).
    pub credentials: Vec<Credential>,
}

/// One preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub writable: bool,
    /// The disk quota everything written beneath it counts against (a session's workspace).
    pub quota: Option<DiskQuota>,
}

impl DirGrant {
    /// Parses `HOST:GUEST`, `HOST:GUEST:ro` or `HOST:GUEST:rw` and nothing else: a mistyped
    /// mode (`:RO`, `:readonly`) must never end up read-write as part of the guest path. Paths
    /// containing `:` cannot be granted this way.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let usage = |why: &str| {
            format!(
                "`{spec}` is not a directory grant ({why}); write HOST:GUEST, HOST:GUEST:ro or HOST:GUEST:rw"
            )
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, guest, writable) = match parts.as_slice() {
            [host, guest] => (*host, *guest, true),
            [host, guest, "rw"] => (*host, *guest, true),
            [host, guest, "ro"] => (*host, *guest, false),
            [_, _, mode] => {
                return Err(usage(&format!(
                    "the mode must be `ro` or `rw`, not `{mode}`"
                )));
            }
            [_] => return Err(usage("no guest path")),
            _ => return Err(usage("too many `:`")),
        };
        if host.is_empty() {
            return Err(usage("HOST is empty"));
        }
        if !guest.starts_with('/') {
            return Err(usage("GUEST must be an absolute path"));
        }
        if guest.split('/').any(|part| part == "..") {
            return Err(usage("GUEST must not contain `..`"));
        }
        Ok(Self {
            host: host.into(),
            guest: guest.into(),
            writable,
            quota: None,
        })
    }
}

#[cfg(test)]
mod parse_tests {
    use super::DirGrant;

    #[test]
    fn only_the_documented_forms_are_grants() {
        let rw = DirGrant::parse("/x:/w").unwrap();
        assert_eq!(
            (rw.host.to_str(), rw.guest.as_str(), rw.writable),
            (Some("/x"), "/w", true)
        );
        assert!(DirGrant::parse("/x:/w:rw").unwrap().writable);
        let ro = DirGrant::parse(".:/work:ro").unwrap();
        assert_eq!((ro.guest.as_str(), ro.writable), ("/work", false));
        for bad in [
            "/x:/w:RO",
            "/x:/w:readonly",
            "/x:/w:rx",
            "/x:/w:",
            "/x",
            ":/w",
            "/x:w",
            "/x:/w:ro:ro",
            "/x:/a/../b",
            "/x:/w:ro ",
        ] {
            let error = DirGrant::parse(bad).unwrap_err();
            assert!(error.contains("HOST:GUEST:ro"), "{bad}: {error}");
        }
    }
}

/// Outbound network a task may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkGrant {
    /// Outbound HTTP through `wasi:http`; each request still goes to the gate.
    pub http: bool,
    /// Also connect to loopback, private, link-local and metadata addresses.
    /// Off unless a policy or operator says so explicitly.
    pub allow_private_addresses: bool,
}

/// A secret bound to a host: the host adds `header: value` to a task's outbound requests to
/// `host` (over HTTPS, or plain HTTP too when `allow_http`), when the gate allows reading
/// `secret` for that task. A header of that name the guest set is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The secret's name, as policies name it (`Secret::"<name>"`).
    pub secret: String,
    /// Exact host name or IP address (lowercase, IPv6 without brackets), as in the request's URI.
    pub host: String,
    /// The port; `None`: the scheme's default (443, or 80 for plain HTTP).
    pub port: Option<u16>,
    /// Header name (lowercase).
    pub header: String,
    /// The whole header value, the secret in it.
    pub value: Secret,
    pub allow_http: bool,
}

/// A secret value. Never printed: `Debug` and `Display` show only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for handing to the guest that was allowed to read it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_specs_parse_with_modes() {
        let ro = DirGrant::parse("/tmp/a:/data:ro").unwrap();
        assert_eq!(
            (ro.host.to_str().unwrap(), ro.guest.as_str(), ro.writable),
            ("/tmp/a", "/data", false)
        );
        assert!(DirGrant::parse("/tmp/a:/data").unwrap().writable);
        assert!(DirGrant::parse("/tmp/a:/data:rw").unwrap().writable);
        assert!(DirGrant::parse("/tmp/a").is_err());
        assert!(DirGrant::parse("/tmp/a:data").is_err());
    }

    #[test]
    fn secrets_never_print_their_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
