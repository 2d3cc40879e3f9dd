//! Where a policy set comes from: a directory of plain Cedar files (the same
//! files the official `cedar` CLI reads), or the copy built into the binary.

use super::errors::PolicyLoadError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const SCHEMA_FILE: &str = "schema.cedarschema";
pub const ENTITIES_FILE: &str = "entities.json";

/// The text of every file of a policy set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicySources {
    /// Where the files were read from, for messages (`embedded` or a directory).
    pub origin: String,
    pub schema: SourceFile,
    /// `*.cedar`, sorted by name.
    pub policies: Vec<SourceFile>,
    pub entities: Option<SourceFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl PolicySources {
    /// The policies shipped with toolgate, compiled into the binary.
    pub fn embedded() -> Self {
        let file = |name: &str, text: &str| SourceFile {
            name: name.into(),
            text: text.into(),
        };
        Self {
            origin: "embedded".into(),
            schema: file(
                SCHEMA_FILE,
                include_str!("../../../policies/schema.cedarschema"),
            ),
            policies: vec![file(
                "profiles.cedar",
                include_str!("../../../policies/profiles.cedar"),
            )],
            entities: Some(file(
                ENTITIES_FILE,
                include_str!("../../../policies/entities.json"),
            )),
        }
    }

    /// Reads `schema.cedarschema`, every `*.cedar` and `entities.json` (optional) from `dir`.
    pub fn read_dir(dir: &Path) -> Result<Self, PolicyLoadError> {
        let origin = dir.display().to_string();
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|e| {
                PolicyLoadError::one(path.display().to_string(), format!("cannot read: {e}"))
            })
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            PolicyLoadError::one(
                origin.clone(),
                format!("cannot read the policy directory: {e}"),
            )
        })?;
        let mut policies = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| PolicyLoadError::one(origin.clone(), e.to_string()))?
                .path();
            if path.extension().and_then(|e| e.to_str()) == Some("cedar") && path.is_file() {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                policies.push(SourceFile {
                    name,
                    text: read(path)?,
                });
            }
        }
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let schema_path = dir.join(SCHEMA_FILE);
        if !schema_path.exists() {
            return Err(PolicyLoadError::one(
                origin,
                format!("no {SCHEMA_FILE}: policies are validated against a schema"),
            ));
        }
        let schema = SourceFile {
            name: SCHEMA_FILE.into(),
            text: read(schema_path)?,
        };
        let entities_path = dir.join(ENTITIES_FILE);
        let entities = if entities_path.exists() {
            Some(SourceFile {
                name: ENTITIES_FILE.into(),
                text: read(entities_path)?,
            })
        } else {
            None
        };
        Ok(Self {
            origin,
            schema,
            policies,
            entities,
        })
    }

    /// A content hash of the whole set: the policy-set version.
    pub fn version(&self) -> String {
        let mut hash = Sha256::new();
        for file in std::iter::once(&self.schema)
            .chain(&self.policies)
            .chain(&self.entities)
        {
            hash.update(file.name.as_bytes());
            hash.update([0]);
            hash.update((file.text.len() as u64).to_le_bytes());
            hash.update(file.text.as_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// The path of `name` for messages: inside the directory, or `embedded:name`.
    pub fn locate(&self, name: &str) -> String {
        if self.origin == "embedded" {
            format!("embedded:{name}")
        } else {
            Path::new(&self.origin).join(name).display().to_string()
        }
    }
}
