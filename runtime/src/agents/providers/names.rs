//! Tool names on the wire. Providers take function names of `[a-zA-Z0-9_-]{1,64}` only, and
//! toolgate's are `plugin.tool`: each request gets its own table from one to the other, so a
//! name the model answers with maps back exactly, and one it made up maps to nothing.

/// The wire names of one request's tools.
#[derive(Debug, Default, Clone)]
pub struct ToolNames {
    /// `(wire, toolgate)`, in the order the tools were offered.
    pairs: Vec<(String, String)>,
}

impl ToolNames {
    /// A wire name for each of `names`: `.` and any other character providers refuse become
    /// `_`, cut to 64; a clash gets a numbered suffix.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for name in names {
            let base: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(56)
                .collect();
            let base = if base.is_empty() {
                "tool".to_owned()
            } else {
                base
            };
            let mut wire = base.clone();
            let mut n = 2;
            while pairs.iter().any(|(w, _)| *w == wire) {
                wire = format!("{base}_{n}");
                n += 1;
            }
            pairs.push((wire, name.to_owned()));
        }
        Self { pairs }
    }

    /// The wire name of toolgate tool `name` (itself when it was not offered).
    pub fn wire<'a>(&'a self, name: &'a str) -> &'a str {
        self.pairs
            .iter()
            .find(|(_, real)| real == name)
            .map_or(name, |(wire, _)| wire.as_str())
    }

    /// The toolgate tool a wire name stands for (the wire name itself when none: the call
    /// then fails as an unknown tool, as a made-up name should).
    pub fn real(&self, wire: &str) -> String {
        self.pairs
            .iter()
            .find(|(w, _)| w == wire)
            .map_or_else(|| wire.to_owned(), |(_, real)| real.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_clashes_are_told_apart() {
        let names = ToolNames::new(["fs.read", "fs_read", "fs.write"]);
        assert_eq!(names.wire("fs.read"), "fs_read");
        assert_eq!(names.wire("fs_read"), "fs_read_2");
        assert_eq!(names.real("fs_read"), "fs.read");
        assert_eq!(names.real("fs_read_2"), "fs_read");
        assert_eq!(names.real("fs_write"), "fs.write");
        assert_eq!(names.real("made_up"), "made_up");
    }
}
