//! Tools that try capabilities the task may not have been granted, and say
//! exactly what happened, so tests can check that the sandbox holds.

use crate::toolgate::plugin::host::{self, SecretError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult, http};

fn string_input(name: &str, what: &str) -> Value {
    sdk::object_schema(
        json!({ name: {"type": "string", "description": what} }),
        &[],
    )
}

/// The mapping tests rely on: PermissionDenied is the host refusing.
fn io_error(err: io::Error) -> ToolError {
    match err.kind() {
        io::ErrorKind::PermissionDenied => ToolError::Denied(err.to_string()),
        kind => ToolError::Failed(format!("{kind:?}: {err}")),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PathInput {
    path: String,
    content: String,
}

pub const READ: Tool = Tool {
    name: "read",
    description: "Reads a file with std::fs exactly as given, no path checks of its own (tests the filesystem sandbox).",
    schema: || string_input("path", "Path passed unchanged to std::fs::read_to_string."),
    run: |input| {
        let input: PathInput = sdk::parse_input(input)?;
        let content = std::fs::read_to_string(&input.path).map_err(io_error)?;
        sdk::output(&json!({ "content": content }))
    },
};

pub const WRITE: Tool = Tool {
    name: "write",
    description: "Writes a file with std::fs exactly as given, no path checks of its own (tests the filesystem sandbox).",
    schema: || {
        sdk::object_schema(
            json!({
                "path": {"type": "string", "description": "Path passed unchanged to std::fs::write."},
                "content": {"type": "string", "description": "Text to write (default empty)."}
            }),
            &[],
        )
    },
    run: |input| {
        let input: PathInput = sdk::parse_input(input)?;
        std::fs::write(&input.path, &input.content).map_err(io_error)?;
        sdk::output(&json!({ "bytes_written": input.content.len() }))
    },
};

pub const ENV: Tool = Tool {
    name: "env",
    description: "Returns the environment variables, arguments and initial working directory the component sees.",
    schema: || sdk::object_schema(json!({}), &[]),
    run: |_| {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let args: Vec<String> = std::env::args().collect();
        let cwd = wasi::cli::environment::initial_cwd();
        sdk::output(&json!({ "vars": vars, "args": args, "cwd": cwd }))
    },
};

#[derive(Deserialize)]
#[serde(default)]
struct SocketInput {
    addr: String,
}

impl Default for SocketInput {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:80".into(),
        }
    }
}

pub const SOCKET: Tool = Tool {
    name: "socket",
    description: "Tries a TCP connection with std::net and with raw wasi:sockets. Fails with \"connected to ...\" if either connects, \
                  denied \"socket refused: ...\" if both are refused (tests that sockets are off).",
    schema: || string_input("addr", "host:port to connect to (default 127.0.0.1:80)."),
    run: socket,
};

fn socket(input: &str) -> ToolResult {
    let input: SocketInput = sdk::parse_input(input)?;
    let std_result = match std::net::TcpStream::connect(&input.addr) {
        Ok(_) => Ok("connected".to_string()),
        Err(e) => Err(format!("{:?}: {e}", e.kind())),
    };
    let wasi_result = wasi_connect(&input.addr);
    let show = |r: &Result<String, String>| match r {
        Ok(s) | Err(s) => s.clone(),
    };
    let report = format!("std: {}; wasi: {}", show(&std_result), show(&wasi_result));
    if std_result.is_ok() || wasi_result.is_ok() {
        Err(ToolError::Failed(format!(
            "connected to {}: {report}",
            input.addr
        )))
    } else {
        Err(ToolError::Denied(format!("socket refused: {report}")))
    }
}

/// Connects with the raw `wasi:sockets` interfaces, bypassing libc.
fn wasi_connect(addr: &str) -> Result<String, String> {
    use std::net::SocketAddr;
    use wasi::sockets::instance_network::instance_network;
    use wasi::sockets::network::{
        ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
    };
    use wasi::sockets::tcp_create_socket::create_tcp_socket;

    let addr: SocketAddr = addr.parse().map_err(|e| format!("bad address: {e}"))?;
    let (family, remote) = match addr {
        SocketAddr::V4(a) => {
            let [a0, a1, a2, a3] = a.ip().octets();
            let address = (a0, a1, a2, a3);
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: a.port(),
                    address,
                }),
            )
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            let address = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
            let remote = Ipv6SocketAddress {
                port: a.port(),
                flow_info: 0,
                address,
                scope_id: 0,
            };
            (IpAddressFamily::Ipv6, IpSocketAddress::Ipv6(remote))
        }
    };
    let network = instance_network();
    let socket = create_tcp_socket(family).map_err(|e| format!("create: {e:?}"))?;
    socket
        .start_connect(&network, remote)
        .map_err(|e| format!("start-connect: {e:?}"))?;
    let ready = socket.subscribe();
    loop {
        match socket.finish_connect() {
            Ok(_streams) => return Ok("connected".into()),
            Err(ErrorCode::WouldBlock) => ready.block(),
            Err(e) => return Err(format!("finish-connect: {e:?}")),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FetchInput {
    url: String,
}

pub const FETCH: Tool = Tool {
    name: "fetch",
    description: "GETs a URL through wasi:http and returns {status}; a host refusal is denied (tests the HTTP policy).",
    schema: || string_input("url", "http:// or https:// URL to GET."),
    run: |input| {
        let input: FetchInput = sdk::parse_input(input)?;
        let response = http::send(&http::Request {
            url: &input.url,
            method: "GET",
            headers: &[],
            body: None,
            max_bytes: 0,
            timeout_ms: None,
        })?;
        sdk::output(&json!({ "status": response.status }))
    },
};

#[derive(Deserialize, Default)]
#[serde(default)]
struct SecretInput {
    name: String,
}

pub const SECRET: Tool = Tool {
    name: "secret",
    description: "Reads a secret through the host and returns only its length (tests the secret policy).",
    schema: || string_input("name", "Secret name."),
    run: |input| {
        let input: SecretInput = sdk::parse_input(input)?;
        match host::get_secret(&input.name) {
            Ok(value) => sdk::output(&json!({ "length": value.len() })),
            Err(SecretError::Denied(reason)) => Err(ToolError::Denied(reason)),
            Err(SecretError::NotFound) => Err(ToolError::Failed("secret not found".into())),
        }
    },
};
