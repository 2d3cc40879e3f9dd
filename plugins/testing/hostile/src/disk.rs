//! `hostile.fill`: fills the workspace every way WASI lets a tool grow a tree
//! (std writes, raw descriptor writes, output streams, appends, set-size,
//! a write far past the end, many files, many directories, many hard links,
//! reopening a file while a stream write to it is still under way), and reports how
//! far it got and the error that stopped it, so the disk quota can be tested.

use serde::Deserialize;
use serde_json::{Value, json};
use toolgate_plugin_sdk::{self as sdk, Tool};
use wasi::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

const CHUNK: usize = 64 << 10;
/// `blocking-write-and-flush` takes at most 4096 bytes a call.
const STREAM_CHUNK: usize = 4096;

#[derive(Deserialize)]
struct FillInput {
    how: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    bytes: u64,
    #[serde(default = "one")]
    count: u64,
}

fn default_path() -> String {
    "fill".into()
}

fn one() -> u64 {
    1
}

pub const FILL: Tool = Tool {
    name: "fill",
    description: "Grows the workspace until told to stop or refused; reports how far it got and why it stopped (tests the disk quota).",
    schema: || {
        sdk::object_schema(
            json!({
                "how": {"enum": ["std", "write", "stream", "append", "extend", "seek", "files", "dirs", "links", "race"]},
                "path": {"type": "string"},
                "bytes": {"type": "integer", "minimum": 0},
                "count": {"type": "integer", "minimum": 1}
            }),
            &["how"],
        )
    },
    run: |input| {
        let mut input: FillInput = sdk::parse_input(input)?;
        // std resolves relative paths against "/", not the working directory.
        input.path = sdk::paths::normalize(&sdk::paths::cwd(), &input.path);
        let (done, error) = match input.how.as_str() {
            "std" => std_write(&input.path, input.bytes),
            "write" => with_file(&input.path, |f| pwrite(f, 0, input.bytes)),
            "stream" => with_file(&input.path, |f| stream(f, false, input.bytes)),
            "append" => with_file(&input.path, |f| stream(f, true, input.bytes)),
            "extend" => with_file(&input.path, |f| match f.set_size(input.bytes) {
                Ok(()) => (input.bytes, None),
                Err(e) => (0, Some(wasi_error(e))),
            }),
            "seek" => with_file(&input.path, |f| {
                pwrite(f, input.bytes.saturating_sub(1), 1.min(input.bytes))
            }),
            "files" => entries(input.count, |i| {
                std::fs::write(
                    format!("{}-{i}", input.path),
                    vec![7u8; input.bytes as usize],
                )
            }),
            "dirs" => entries(input.count, |i| {
                std::fs::create_dir(format!("{}-{i}", input.path))
            }),
            "race" => race(&input.path, input.count),
            "links" => match std::fs::write(&input.path, b"linked") {
                Ok(()) => entries(input.count, |i| {
                    std::fs::hard_link(&input.path, format!("{}-{i}", input.path))
                }),
                Err(e) => (0, Some(io_error(e))),
            },
            other => {
                return Err(sdk::ToolError::InvalidInput(format!(
                    "unknown how `{other}`"
                )));
            }
        };
        sdk::output(&json!({ "done": done, "error": error }))
    },
};

fn io_error(e: std::io::Error) -> Value {
    json!({ "kind": format!("{:?}", e.kind()), "message": e.to_string() })
}

fn wasi_error(e: ErrorCode) -> Value {
    json!({ "kind": e.name(), "message": e.message() })
}

fn stream_error(e: wasi::io::streams::StreamError) -> Value {
    match e {
        wasi::io::streams::StreamError::LastOperationFailed(e) => {
            match wasi::filesystem::types::filesystem_error_code(&e) {
                Some(code) => wasi_error(code),
                None => json!({ "kind": "Io", "message": e.to_debug_string() }),
            }
        }
        wasi::io::streams::StreamError::Closed => json!({ "kind": "Closed" }),
    }
}

fn std_write(path: &str, bytes: u64) -> (u64, Option<Value>) {
    use std::io::Write;
    let mut file = match std::fs::File::create(path) {
        Ok(file) => file,
        Err(e) => return (0, Some(io_error(e))),
    };
    let chunk = vec![1u8; CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(CHUNK as u64) as usize;
        if let Err(e) = file.write_all(&chunk[..n]) {
            return (done, Some(io_error(e)));
        }
        done += n as u64;
    }
    (done, None)
}

/// Opens (creating) the absolute guest `path` through raw WASI, in the preopen holding it.
fn with_file(
    path: &str,
    fill: impl FnOnce(&Descriptor) -> (u64, Option<Value>),
) -> (u64, Option<Value>) {
    let preopens = wasi::filesystem::preopens::get_directories();
    let holding = preopens
        .iter()
        .filter(|(_, root)| sdk::paths::is_inside(path, root))
        .max_by_key(|(_, root)| root.len());
    let Some((dir, root)) = holding else {
        return (
            0,
            Some(json!({ "kind": "NoPreopen", "message": "no granted directory holds the path" })),
        );
    };
    let relative = path.strip_prefix(root.as_str()).unwrap_or(path);
    match dir.open_at(
        PathFlags::empty(),
        relative.trim_start_matches('/'),
        OpenFlags::CREATE,
        DescriptorFlags::READ | DescriptorFlags::WRITE,
    ) {
        Ok(file) => fill(&file),
        Err(e) => (0, Some(wasi_error(e))),
    }
}

fn pwrite(file: &Descriptor, offset: u64, bytes: u64) -> (u64, Option<Value>) {
    let chunk = vec![2u8; CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(CHUNK as u64) as usize;
        match file.write(&chunk[..n], offset + done) {
            Ok(written) => done += written,
            Err(e) => return (done, Some(wasi_error(e))),
        }
    }
    (done, None)
}

fn stream(file: &Descriptor, append: bool, bytes: u64) -> (u64, Option<Value>) {
    let out = match if append {
        file.append_via_stream()
    } else {
        file.write_via_stream(0)
    } {
        Ok(out) => out,
        Err(e) => return (0, Some(wasi_error(e))),
    };
    let chunk = vec![3u8; STREAM_CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(STREAM_CHUNK as u64) as usize;
        if let Err(e) = out.blocking_write_and_flush(&chunk[..n]) {
            return (done, Some(stream_error(e)));
        }
        done += n as u64;
    }
    (done, None)
}

fn entries(count: u64, mut make: impl FnMut(u64) -> std::io::Result<()>) -> (u64, Option<Value>) {
    for i in 0..count {
        if let Err(e) = make(i) {
            return (i, Some(io_error(e)));
        }
    }
    (count, None)
}

/// For each of `count` files: a stream write handed over without waiting,
/// the file opened again while it may still be landing, then the flush. A
/// reopen must never make the quota forget the write under way.
fn race(path: &str, count: u64) -> (u64, Option<Value>) {
    let chunk = vec![4u8; CHUNK];
    for i in 0..count {
        let name = format!("{path}-{i}");
        let step = with_file(&name, |file| {
            let out = match file.write_via_stream(0) {
                Ok(out) => out,
                Err(e) => return (0, Some(wasi_error(e))),
            };
            let n = match out.check_write() {
                Ok(n) => (n as usize).min(CHUNK),
                Err(e) => return (0, Some(stream_error(e))),
            };
            if let Err(e) = out.write(&chunk[..n]) {
                return (0, Some(stream_error(e)));
            }
            let again = with_file(&name, |_| (0, None));
            if again.1.is_some() {
                return again;
            }
            match out.blocking_flush() {
                Ok(()) => (1, None),
                Err(e) => (0, Some(stream_error(e))),
            }
        });
        if step.1.is_some() {
            return (i, step.1);
        }
    }
    (count, None)
}
