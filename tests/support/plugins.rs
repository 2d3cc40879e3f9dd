//! Plugins for tests: the build script's artifacts, one engine per test binary (as one
//! process would share it) and one compilation cache per run.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use toolgate::sandbox::{Catalog, EngineConfig, Plugin, SandboxEngine};

/// Path of a plugin built by the build script (`fs`, `echo`, `hostile`, ...).
pub fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("TOOLGATE_PLUGIN_ARTIFACTS")).join(format!("{name}.wasm"))
}

/// The engine shared by every test of this binary.
pub fn engine() -> Arc<SandboxEngine> {
    static ENGINE: OnceLock<Arc<SandboxEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(SandboxEngine::new(EngineConfig::default()).expect("engine")))
        .clone()
}

/// A cache shared by the tests so each plugin is compiled once per run.
fn shared_cache() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
        .to_owned()
}

pub fn catalog() -> Catalog {
    Catalog::new(engine(), Some(&shared_cache()))
}

pub async fn plugin(name: &str) -> Plugin {
    catalog()
        .load_file(&artifact(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}
