//! SIGTERM to the real binary: from that moment `/readyz` answers 503 (and new API requests
//! are refused) while a request already in flight finishes, and the log says so.

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads from `stream` until `needle` was seen (or the connection ended); what was read.
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Waits for a log line containing `needle`, at most `within`.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with `{needle}` within {within:?}"),
        }
    }
}

/// Kills the server if the test ends early.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigterm_makes_readyz_503_while_a_request_in_flight_drains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policies = test_policies(dir.path());
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--policies")
            .arg(&policies)
            .env("TOOLGATE_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start toolgate serve"),
    );
    let (sender, lines) = mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let listening = wait_for_line(&lines, "toolgate listening on ", Duration::from_secs(60));
    let base = listening
        .split("toolgate listening on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let addr = base.trim_start_matches("http://").to_owned();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    // A fresh connection per request: after the stop, open ones take no new requests.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // A request in flight: its headers are in and the handler is reading its body (the server
    // said `100 Continue`), the body not sent yet.
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /v1/sessions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let continued = read_until(&mut slow, "\r\n\r\n");
    assert!(continued.starts_with("HTTP/1.1 100"), "{continued}");

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let line = wait_for_line(&lines, "shutting down", Duration::from_secs(10));
    assert!(line.contains("/readyz answers 503"), "{line}");

    // While that request is open, the server still answers health checks: not ready.
    let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
    problem(
        readyz,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;
    let info = client
        .get(format!("{base}/v1/info"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    problem(info, reqwest::StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the server waits for the request in flight"
    );

    // The request in flight finishes normally, then the server is done.
    slow.write_all(b"{}").unwrap();
    let answer = read_until(&mut slow, "\"state\":\"open\"");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    wait_for_line(&lines, "connections drained", Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}
