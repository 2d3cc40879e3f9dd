//! Plugins that are not valid tool components are refused with a clear
//! error, and nothing of them is cached.

use crate::common::*;
use toolgate::sandbox::{Catalog, CatalogError, DescribeViolation, PluginError};

fn cache_entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn load(bytes: &[u8]) -> (Result<String, CatalogError>, Vec<String>) {
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join("candidate.wasm");
    std::fs::write(&file, bytes).unwrap();
    let cache_dir = cache.path().join("cache");
    let catalog = Catalog::new(engine(), Some(&cache_dir));
    let result = catalog.load_file(&file).await.map(|p| p.name().to_owned());
    (result, cache_entries(&cache_dir))
}

fn plugin_error(result: Result<String, CatalogError>) -> PluginError {
    match result {
        Err(CatalogError::Plugin(e)) => e,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    let (result, cached) =
        load(&wat::parse_str("(module (func (export \"call\")))").unwrap()).await;
    let error = plugin_error(result);
    assert!(matches!(error, PluginError::CoreModule { .. }), "{error}");
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
    assert!(cached.is_empty(), "{cached:?}");
}

#[tokio::test]
async fn a_component_of_another_world_names_what_is_missing() {
    let (result, cached) = load(&std::fs::read(artifact("not-a-tool")).unwrap()).await;
    let error = plugin_error(result);
    let message = error.to_string();
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{message}");
    assert!(
        message.contains("`describe`") && message.contains("`call`"),
        "{message}"
    );
    assert!(cached.is_empty(), "{cached:?}");
}

#[tokio::test]
async fn random_bytes_are_not_wasm() {
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (result, cached) = load(&noise).await;
    assert!(matches!(plugin_error(result), PluginError::NotWasm { .. }));
    assert!(cached.is_empty());

    let mut fake = b"\0asm\x0d\x00\x01\x00".to_vec();
    fake.extend_from_slice(&noise);
    let (result, cached) = load(&fake).await;
    assert!(matches!(plugin_error(result), PluginError::Invalid { .. }));
    assert!(cached.is_empty());
}

#[tokio::test]
async fn a_truncated_component_is_invalid() {
    let bytes = std::fs::read(artifact("fs")).unwrap();
    let (result, cached) = load(&bytes[..bytes.len() / 2]).await;
    let error = plugin_error(result);
    assert!(matches!(error, PluginError::Invalid { .. }), "{error}");
    assert!(cached.is_empty(), "{cached:?}");
    let (result, cached) = load(&bytes[..7]).await;
    assert!(matches!(plugin_error(result), PluginError::NotWasm { .. }));
    assert!(cached.is_empty());
}

#[tokio::test]
async fn a_valid_plugin_is_compiled_once_and_cached() {
    let (result, cached) = load(&std::fs::read(artifact("echo")).unwrap()).await;
    assert_eq!(result.unwrap(), "candidate");
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"));

    // A second catalog on the same cache loads the precompiled artifact.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.wasm");
    std::fs::copy(artifact("echo"), &file).unwrap();
    let cache_dir = dir.path().join("cache");
    let first = Catalog::new(engine(), Some(&cache_dir))
        .load_file(&file)
        .await
        .unwrap();
    let artifact_file = cache_dir.join(&cache_entries(&cache_dir)[0]);
    let written = std::fs::metadata(&artifact_file)
        .unwrap()
        .modified()
        .unwrap();
    let second = Catalog::new(engine(), Some(&cache_dir))
        .load_file(&file)
        .await
        .unwrap();
    assert_eq!(first.digest(), second.digest());
    assert_eq!(
        std::fs::metadata(&artifact_file)
            .unwrap()
            .modified()
            .unwrap(),
        written
    );

    // A corrupt artifact is discarded and rebuilt, never trusted.
    std::fs::write(&artifact_file, b"garbage").unwrap();
    let third = Catalog::new(engine(), Some(&cache_dir))
        .load_file(&file)
        .await
        .unwrap();
    assert_eq!(third.tools().len(), first.tools().len());
    assert!(std::fs::metadata(&artifact_file).unwrap().len() > 1000);
}

#[tokio::test]
async fn unknown_plugin_names_list_what_exists() {
    let error = catalog().get("nope").await.err().unwrap();
    let message = error.to_string();
    assert!(
        message.contains("fs") && message.contains("http") && message.contains("json"),
        "{message}"
    );
}

#[tokio::test]
async fn a_plugins_directory_adds_and_overrides_plugins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(artifact("echo"), dir.path().join("echo.wasm")).unwrap();
    std::fs::copy(artifact("echo"), dir.path().join("json.wasm")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a plugin").unwrap();
    let mut catalog = catalog();
    assert_eq!(catalog.add_dir(dir.path()).unwrap(), vec!["echo", "json"]);
    assert!(catalog.get("echo").await.unwrap().tool("echo").is_some());
    // The file overrides the bundled plugin of the same name.
    assert!(catalog.get("json").await.unwrap().tool("echo").is_some());
    assert!(catalog.get("fs").await.unwrap().tool("read").is_some());

    std::fs::write(dir.path().join("Bad Name.wasm"), b"").unwrap();
    let error = catalog.add_dir(dir.path()).unwrap_err();
    assert!(matches!(error, CatalogError::BadName { .. }), "{error}");
    let missing = catalog.add_dir(&dir.path().join("absent")).unwrap_err();
    assert!(
        matches!(missing, CatalogError::Directory { .. }),
        "{missing}"
    );
}

#[tokio::test]
async fn a_plugin_describing_too_many_tools_is_refused_and_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("many.wasm");
    let second = dir.path().join("same_bytes.wasm");
    std::fs::copy(artifact("many_tools"), &first).unwrap();
    std::fs::copy(artifact("many_tools"), &second).unwrap();
    let cache_dir = dir.path().join("cache");
    let catalog = Catalog::new(engine(), Some(&cache_dir));

    let error = plugin_error(catalog.load_file(&first).await.map(|p| p.name().to_owned()));
    match &error {
        PluginError::BadToolInfo { violation, .. } => assert_eq!(
            violation,
            &DescribeViolation::TooManyTools { count: 400_000 }
        ),
        other => panic!("expected the tool bound, got {other}"),
    }
    assert_eq!(error.code(), "too_many_tools");
    assert!(cache_entries(&cache_dir).is_empty(), "nothing cached");
    assert_eq!(catalog.load_attempts(), 1);

    // The same bytes, under another name: refused at once, told of the new file.
    let again = plugin_error(
        catalog
            .load_file(&second)
            .await
            .map(|p| p.name().to_owned()),
    );
    assert_eq!(again.code(), "too_many_tools");
    assert!(again.to_string().contains("same_bytes.wasm"), "{again}");
    assert_eq!(catalog.load_attempts(), 1, "not loaded again");
    assert_eq!(catalog.remembered_failures(), 1);
}
