//! Makes sure the toolchain building the plugins has the `wasm32-wasip2` target: `rustup`
//! installs a `rust-toolchain.toml`'s targets only when it installs the toolchain itself, so a
//! machine that already had the pinned toolchain lacks it. Shared by `build.rs` and its tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// What had to be done for the target to be there.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetSetup {
    /// It was installed already.
    Present,
    /// `rustup target add` installed it just now (for this toolchain, if one is named).
    Added { toolchain: Option<String> },
}

/// Where `rustc` keeps its standard libraries, by target.
fn sysroot(rustc: &Path) -> Result<PathBuf, String> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed ({})",
            rustc.display(),
            output.status
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}

fn installed(sysroot: &Path) -> bool {
    sysroot
        .join("lib")
        .join("rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
}

/// Installs the target with `rustup` when `rustc` lacks it. `toolchain` is the toolchain
/// rustup selected for this build (`RUSTUP_TOOLCHAIN`), so the target goes to the toolchain
/// that builds, not to rustup's default one. The error is one line, fit to show as it is.
pub fn ensure(rustc: &Path, rustup: &Path, toolchain: Option<&str>) -> Result<TargetSetup, String> {
    let sysroot = sysroot(rustc)?;
    if installed(&sysroot) {
        return Ok(TargetSetup::Present);
    }
    let mut add = Command::new(rustup);
    add.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = toolchain {
        add.args(["--toolchain", toolchain]);
    }
    let output = match add.output() {
        Ok(output) => output,
        Err(_) => {
            return Err(format!(
                "the {WASM_TARGET} target is missing from the toolchain at {} and rustup is not \
                 available to add it; install the target for this toolchain and build again",
                sysroot.display()
            ));
        }
    };
    let last_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    if !output.status.success() || !installed(&sysroot) {
        return Err(format!(
            "the {WASM_TARGET} target is missing and `rustup target add {WASM_TARGET}` failed ({}): {}",
            output.status,
            last_line(&output.stderr)
        ));
    }
    Ok(TargetSetup::Added {
        toolchain: toolchain.map(str::to_owned),
    })
}
