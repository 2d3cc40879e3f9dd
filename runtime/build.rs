//! Builds the plugins in `plugins/` for wasm32-wasip2 so that `cargo build` and
//! `cargo test` need no other step (the way wasmtime's test-programs artifacts
//! are built). The default tool plugins are bundled into the binary; the paths
//! of all artifacts, test-only ones included, reach the tests through
//! `TOOLGATE_PLUGIN_ARTIFACTS`.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "build_support/wasm_target.rs"]
mod wasm_target;

/// Plugins bundled into the `toolgate` binary.
const BUNDLED: &[&str] = &["fs", "http", "json", "probe"];
/// Every artifact the plugins workspace must produce.
const ARTIFACTS: &[&str] = &[
    "fs",
    "http",
    "json",
    "probe",
    "echo",
    "hostile",
    "not-a-tool",
    "http_hello",
    "many_tools",
    "bad_schema",
    "webhook",
    "hostile_driver",
    "tool_loop",
    "agent_spy",
];
/// Host drivers bundled into the `toolgate` binary.
const BUNDLED_DRIVERS: &[&str] = &["webhook"];
/// Agents bundled into the `toolgate` binary (addressed with `-` for `_`: `tool-loop`).
const BUNDLED_AGENTS: &[&str] = &["tool_loop"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("runtime/ sits in the repository");
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    for watched in [
        "Cargo.toml",
        "Cargo.lock",
        "sdk",
        "tools",
        "drivers",
        "agents",
        "testing",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=build_support");

    ensure_wasm_target();
    let target_dir = plugin_target_dir(&out_dir);
    build_plugins(&plugins, &target_dir);

    let release = target_dir.join("wasm32-wasip2").join("release");
    let mut generated = String::new();
    bundle(
        &mut generated,
        "Default tool plugins",
        "BUNDLED",
        BUNDLED,
        &release,
    );
    bundle(
        &mut generated,
        "Host-driver components",
        "BUNDLED_DRIVERS",
        BUNDLED_DRIVERS,
        &release,
    );
    bundle(
        &mut generated,
        "Agent components",
        "BUNDLED_AGENTS",
        BUNDLED_AGENTS,
        &release,
    );
    std::fs::write(out_dir.join("bundled_plugins.rs"), generated).unwrap();

    for name in ARTIFACTS {
        artifact(&release, name);
    }
    println!(
        "cargo:rustc-env=TOOLGATE_PLUGIN_ARTIFACTS={}",
        release.display()
    );
}

/// Writes a `(name, component bytes)` table of the artifacts `names`, included in the binary.
fn bundle(generated: &mut String, what: &str, constant: &str, names: &[&str], release: &Path) {
    writeln!(
        generated,
        "/// {what} compiled into the binary: (name, component bytes)."
    )
    .unwrap();
    writeln!(generated, "pub const {constant}: &[(&str, &[u8])] = &[").unwrap();
    for name in names {
        let path = artifact(release, name);
        // Addressed as users write them: `tool-loop` for the artifact `tool_loop`.
        let addressed = name.replace('_', "-");
        writeln!(
            generated,
            "    ({addressed:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    generated.push_str("];\n");
}

/// Share one plugin build between debug and release builds of the runtime:
/// `<target>/wasm-plugins`, found from OUT_DIR (`<target>/<profile>/build/<pkg>/out`).
fn plugin_target_dir(out_dir: &Path) -> PathBuf {
    match out_dir.ancestors().nth(4) {
        Some(target) => target.join("wasm-plugins"),
        None => out_dir.join("wasm-plugins"),
    }
}

/// Gets the `wasm32-wasip2` target with rustup when the toolchain lacks it, or stops the build
/// with one line saying what is missing.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    match wasm_target::ensure(Path::new(&rustc), Path::new("rustup"), toolchain.as_deref()) {
        Ok(wasm_target::TargetSetup::Present) => {}
        Ok(wasm_target::TargetSetup::Added { toolchain }) => println!(
            "cargo:warning=installed the {} target with rustup for toolchain {} (the plugins are built for it)",
            wasm_target::WASM_TARGET,
            toolchain.as_deref().unwrap_or("default")
        ),
        Err(line) => {
            eprintln!("error: {line}");
            std::process::exit(1);
        }
    }
}

fn build_plugins(plugins: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for the plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed ({status}); \
             if the target is missing, run `rustup target add wasm32-wasip2`"
        );
    }
}

fn artifact(release: &Path, name: &str) -> PathBuf {
    let path = release.join(format!("{name}.wasm"));
    if !path.exists() {
        panic!("plugin artifact {} was not produced", path.display());
    }
    path
}
