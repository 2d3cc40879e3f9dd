//! Precompiled components on disk, keyed by the component's content digest
//! and the engine's compatibility hash (wasmtime version, target, settings),
//! so a component is compiled once per engine, ever.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    compat: String,
}

impl ArtifactCache {
    /// Opens (creating it, private to this user) the cache directory.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Precompiled code is trusted when loaded: nobody else may write here.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            compat: compatibility_key(engine),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.compat))
    }

    /// The cached compilation of `digest`, if there is a usable one. A corrupt
    /// or stale file is removed so it is rebuilt.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // Read into memory rather than map the file: a cache file truncated
        // or replaced while in use must not be able to fault the process.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: files here are written only by `store` below, into a directory
        // only this user can write; wasmtime also checks the header and engine
        // compatibility before using the code.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "discarding unusable cached artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component atomically (write, then rename).
    pub fn store(&self, digest: &str, component: &Component) {
        let path = self.path(digest);
        let write = || -> anyhow::Result<()> {
            let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(&bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(err) = write() {
            tracing::warn!(path = %path.display(), error = %err, "cannot cache compiled component");
        }
    }
}

/// The SHA-256 digest of a component's bytes, in hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A short, stable key for everything that makes compiled code usable by an engine.
fn compatibility_key(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}
