//! Connections that say nothing: silent ones, ones trickling the HTTP/2 preface, ones that
//! send the preface and stop, are all closed by the header deadline; past `max_connections`
//! a connection is closed at once. Real sockets throughout.

use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame: length 0, type 4, no flags, stream 0.
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// A plain request on a connection of its own; the answer's text, empty if refused.
async fn livez(address: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return String::new();
    };
    let request = b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads until the server closes the connection (EOF or reset), whatever it sent first.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Sends the HTTP/2 preface one byte every `pace`, slower than the deadline allows, then
/// waits; stops as soon as the server closes.
async fn trickle_preface(mut stream: TcpStream, pace: Duration) {
    let mut buf = [0u8; 64];
    for byte in H2_PREFACE {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return;
        }
        tokio::select! {
            read = stream.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { return },
            () = tokio::time::sleep(pace) => {}
        }
    }
    closed_by_server(&mut stream).await;
}

/// Waits until `done` holds, at most `within`.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn connections_that_say_nothing_in_time_are_closed() {
    let server =
        Server::start_with(|config| config.header_timeout = Duration::from_millis(300)).await;
    let address = address(&server);
    let mut closing = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let mut silent = TcpStream::connect(&address).await.unwrap();
        closing.spawn(async move { closed_by_server(&mut silent).await });
    }
    for _ in 0..20 {
        let trickling = TcpStream::connect(&address).await.unwrap();
        closing.spawn(trickle_preface(trickling, Duration::from_millis(100)));
    }
    for settings in [false, true] {
        for _ in 0..5 {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            stream.write_all(H2_PREFACE).await.unwrap();
            if settings {
                stream.write_all(H2_EMPTY_SETTINGS).await.unwrap();
            }
            closing.spawn(async move { closed_by_server(&mut stream).await });
        }
    }
    // They take nothing from a client that asks properly.
    assert!(livez(&address).await.starts_with("HTTP/1.1 200"));

    let all_closed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(done) = closing.join_next().await {
            done.unwrap();
        }
    })
    .await;
    assert!(
        all_closed.is_ok(),
        "{} connections still open",
        closing.len()
    );
    assert!(livez(&address).await.starts_with("HTTP/1.1 200"));
    assert!(
        eventually(Duration::from_secs(10), || server.app.connections.open()
            == 0)
        .await
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_past_max_connections_is_refused_until_others_close() {
    const CAP: usize = 8;
    let server = Server::start_with(|config| {
        config.max_connections = CAP;
        config.header_timeout = Duration::from_secs(60);
    })
    .await;
    let address = address(&server);
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(10), || server.app.connections.open()
            == CAP as u64)
        .await
    );

    // One more is closed at once, long before any deadline, and counted.
    let mut extra = TcpStream::connect(&address).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), closed_by_server(&mut extra)).await;
    assert!(closed.is_ok(), "the connection past the cap was closed");
    assert_eq!(server.app.connections.refused(), 1);
    assert_eq!(livez(&address).await, "", "no room for a request either");

    // Once some close, requests are served again.
    idle.truncate(CAP - 2);
    assert!(
        eventually(Duration::from_secs(10), || server.app.connections.open()
            <= (CAP - 2) as u64)
        .await
    );
    assert!(livez(&address).await.starts_with("HTTP/1.1 200"));
    let metrics = scrape_metrics(&address).await;
    let refused = metrics
        .lines()
        .find(|line| line.starts_with("toolgate_connections_refused_total"))
        .and_then(|line| line.rsplit(' ').next());
    assert_eq!(refused, Some("2"), "{metrics}");
    drop(idle);
    server.stop().await;
}

/// `/metrics` on a connection of its own.
async fn scrape_metrics(address: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn one_key_trickling_bodies_cannot_take_every_request_slot() {
    let server = Server::start_with(|config| {
        config.max_concurrent_requests = 8;
        config.max_requests_per_principal = 4;
    })
    .await;
    let hog = server.key("hog", "developer");
    let other = server.key("other", "developer");
    let address = address(&server);
    // Twelve requests that send their headers and one byte of a large body, then stall.
    let mut held = Vec::new();
    for _ in 0..12 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hog}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // The hog's requests past its share are refused at once...
    let mut refused = 0;
    for stream in &mut held {
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).contains("429")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 8, "4 of 12 requests may wait for their bodies");
    // ...while health, metrics and other principals are answered.
    assert!(livez(&address).await.contains("200 OK"));
    let info = server.get(&other, "/v1/info").await;
    assert_eq!(info.status(), reqwest::StatusCode::OK);
    let again = server
        .post(&hog, "/v1/sessions", serde_json::json!({}))
        .await;
    problem(
        again,
        reqwest::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    drop(held);
    server.stop().await;
}
