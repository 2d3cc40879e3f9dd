//! Tests of the build's toolchain check, with stand-ins for `rustc` and `rustup`.

#[path = "wasm_target.rs"]
mod wasm_target;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use wasm_target::{TargetSetup, WASM_TARGET, ensure};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A `rustc` whose sysroot is `dir/sysroot`, without the wasm target.
fn fake_rustc(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("sysroot/lib/rustlib")).unwrap();
    script(
        dir,
        "rustc",
        &format!("echo {}", dir.join("sysroot").display()),
    )
}

fn target_lib(dir: &Path) -> PathBuf {
    dir.join("sysroot/lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
}

#[test]
fn an_installed_target_needs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rustc = fake_rustc(dir.path());
    std::fs::create_dir_all(target_lib(dir.path())).unwrap();
    let rustup = script(dir.path(), "rustup", "exit 99");
    assert_eq!(ensure(&rustc, &rustup, None), Ok(TargetSetup::Present));
}

#[test]
fn a_missing_target_is_added_with_rustup_for_the_building_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let rustc = fake_rustc(dir.path());
    let log = dir.path().join("rustup.log");
    let rustup = script(
        dir.path(),
        "rustup",
        &format!(
            "echo \"$@\" > {}\nmkdir -p {}",
            log.display(),
            target_lib(dir.path()).display()
        ),
    );
    let setup = ensure(&rustc, &rustup, Some("1.95.0-x86_64-unknown-linux-gnu")).unwrap();
    assert_eq!(
        setup,
        TargetSetup::Added {
            toolchain: Some("1.95.0-x86_64-unknown-linux-gnu".into())
        }
    );
    let args = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        args.trim(),
        "target add wasm32-wasip2 --toolchain 1.95.0-x86_64-unknown-linux-gnu"
    );
}

#[test]
fn without_rustup_the_build_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let rustc = fake_rustc(dir.path());
    let error = ensure(&rustc, &dir.path().join("no-rustup-here"), None).unwrap_err();
    assert!(!error.contains('\n'), "{error}");
    assert!(error.contains("wasm32-wasip2 target is missing"), "{error}");
    assert!(error.contains("rustup is not available"), "{error}");
}

#[test]
fn a_failing_rustup_is_reported_with_its_last_words() {
    let dir = tempfile::tempdir().unwrap();
    let rustc = fake_rustc(dir.path());
    let rustup = script(
        dir.path(),
        "rustup",
        "echo 'info: syncing channel updates' >&2\necho 'error: could not download file' >&2\nexit 1",
    );
    let error = ensure(&rustc, &rustup, None).unwrap_err();
    assert!(!error.contains('\n'), "{error}");
    assert!(error.ends_with("error: could not download file"), "{error}");
}

#[test]
fn a_rustup_that_succeeds_without_installing_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let rustc = fake_rustc(dir.path());
    let rustup = script(dir.path(), "rustup", "exit 0");
    assert!(ensure(&rustc, &rustup, None).is_err());
}
