//! Tools that never finish or produce too much: the host must stop them
//! (fuel or epoch deadline, memory limit, stack limit, output budget).

use crate::toolgate::plugin::host::{self, LogLevel};
use core::hint::black_box;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolResult};

fn no_input() -> Value {
    sdk::object_schema(json!({}), &[])
}

pub const SPIN: Tool = Tool {
    name: "spin",
    description: "Loops forever without calling the host (tests the CPU deadline / fuel).",
    schema: no_input,
    run: |_| spin(),
};

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

pub const ALLOC: Tool = Tool {
    name: "alloc",
    description: "Allocates and touches memory forever, step_mb at a time, never freeing (tests the memory limit).",
    schema: || {
        sdk::object_schema(
            json!({"step_mb": {"type": "integer", "minimum": 1, "description": "MiB per step (default 8)."}}),
            &[],
        )
    },
    run: alloc,
};

#[derive(Deserialize)]
#[serde(default)]
struct AllocInput {
    step_mb: usize,
}

impl Default for AllocInput {
    fn default() -> Self {
        Self { step_mb: 8 }
    }
}

fn alloc(input: &str) -> ToolResult {
    let input: AllocInput = sdk::parse_input(input)?;
    let step = input.step_mb.max(1) << 20;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero fill writes every page, so the memory is really used.
        kept.push(black_box(vec![0xa5u8; step]));
        black_box(&mut kept);
    }
}

pub const RECURSE: Tool = Tool {
    name: "recurse",
    description: "Recurses without bound (not a tail call) until the stack overflows (tests the stack limit).",
    schema: no_input,
    run: |_| Ok(recurse(0).to_string()),
};

fn recurse(depth: u64) -> u64 {
    // black_box keeps the frame (and a buffer on the shadow stack) alive and
    // stops the compiler from proving the recursion endless or a loop.
    let frame = black_box([depth; 16]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(black_box(depth + 1)).wrapping_add(frame[black_box(3)])
}

pub const FLOOD: Tool = Tool {
    name: "flood",
    description: "Writes to stdout forever, ignoring write errors (tests the output budget and deadline).",
    schema: no_input,
    run: |_| flood(),
};

fn flood() -> ! {
    let line = [b'x'; 1023];
    let mut out = std::io::stdout();
    loop {
        let _ = black_box(out.write_all(&line));
        let _ = out.write_all(b"\n");
    }
}

pub const FLOOD_LOG: Tool = Tool {
    name: "flood_log",
    description: "Calls the host log function forever (tests the output budget).",
    schema: no_input,
    run: |_| loop {
        host::log(LogLevel::Info, black_box("flooding the log"));
    },
};

pub const BIG_OUTPUT: Tool = Tool {
    name: "big_output",
    description: "Returns a JSON string whose text is exactly `bytes` bytes long, quotes included (tests the result size limit).",
    schema: || {
        sdk::object_schema(
            json!({"bytes": {"type": "integer", "minimum": 2, "description": "Size of the result text (default 1048576)."}}),
            &[],
        )
    },
    run: big_output,
};

#[derive(Deserialize)]
#[serde(default)]
struct BigInput {
    bytes: usize,
}

impl Default for BigInput {
    fn default() -> Self {
        Self { bytes: 1 << 20 }
    }
}

fn big_output(input: &str) -> ToolResult {
    let input: BigInput = sdk::parse_input(input)?;
    let inner = input.bytes.saturating_sub(2);
    let mut out = String::with_capacity(inner + 2);
    out.push('"');
    out.extend(std::iter::repeat_n('x', inner));
    out.push('"');
    Ok(out)
}

pub const SLEEP: Tool = Tool {
    name: "sleep",
    description: "Sleeps for ms milliseconds in a blocking host call (tests deadlines on host calls).",
    schema: || {
        sdk::object_schema(
            json!({"ms": {"type": "integer", "minimum": 0, "description": "Milliseconds to sleep (default 0)."}}),
            &[],
        )
    },
    run: sleep,
};

#[derive(Deserialize, Default)]
#[serde(default)]
struct SleepInput {
    ms: u64,
}

fn sleep(input: &str) -> ToolResult {
    let input: SleepInput = sdk::parse_input(input)?;
    std::thread::sleep(Duration::from_millis(input.ms));
    sdk::output(&json!({ "slept_ms": input.ms }))
}

pub const PROGRESS: Tool = Tool {
    name: "progress",
    description: "Logs \"working\" (info), reports progress 1 of 2 then 2 of 2, and returns {\"ok\": true}.",
    schema: no_input,
    run: |_| {
        host::log(LogLevel::Info, "working");
        host::progress(1, Some(2), None);
        host::progress(2, Some(2), None);
        Ok(r#"{"ok":true}"#.into())
    },
};
