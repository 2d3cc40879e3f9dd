//! The release `toolgate serve` as a process of its own, for the benchmarks that measure it
//! from outside (shared by `#[path]`: each bench is its own crate).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `toolgate serve` on a loopback port with `config` (TOML) and `env`, its data in
/// `dir/data`; returns the process and its base URL once it listens.
pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> (Child, String) {
    std::fs::create_dir_all(dir).unwrap();
    let config_file = dir.join("config.toml");
    std::fs::write(&config_file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config_file)
        .env("TOOLGATE_LOG", "warn")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start toolgate serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(url) = line.strip_prefix("toolgate listening on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}
