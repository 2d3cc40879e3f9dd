//! Processes of the built binary for multi-process tests: started, waited for, killed
//! when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process that is killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `args` and waits for `banner` on stderr; returns what follows it.
pub fn spawn(args: &[&str], banner: &str) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .env("TOOLGATE_LOG", "warn,toolgate::sidecar=debug")
        .env("RUST_BACKTRACE", "0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start toolgate");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let rest = loop {
        let line = lines
            .next()
            .expect("the process says where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix(banner) {
            break rest.trim().to_owned();
        }
    };
    // What the processes say is shown with a failing test.
    let who = args[0].to_owned();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("[{who}] {line}");
        }
    });
    (Process(child), rest)
}

/// Writes a file aside and renames it in, so a process never reads it half written.
pub fn write(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("partial");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, path).unwrap();
}
