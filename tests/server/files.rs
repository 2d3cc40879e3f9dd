//! Workspace files in and out without a tool, through the real server: one file or a tar of
//! the workspace, confined to the workspace, charged to the session's disk quota (shared with
//! its tasks), each transfer an event on the session's stream, for the session's owner only.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

async fn session_with_disk(server: &Server, key: &str, disk_mb: u64) -> String {
    let response = server
        .post(
            key,
            "/v1/sessions",
            json!({"resources": {"cpu_millis": 1000, "memory_mb": 256, "disk_mb": disk_mb, "timeout_ms": 60000}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let session: Value = response.json().await.unwrap();
    session["id"].as_str().unwrap().to_owned()
}

fn workspace(server: &Server, session: &str) -> PathBuf {
    server.data_dir().join("workspaces").join(session)
}

/// Every name in the workspace on disk, sorted (`/`-separated, relative).
fn names(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

async fn used(server: &Server, key: &str, session: &str) -> u64 {
    let view: Value = server
        .get(key, &format!("/v1/sessions/{session}"))
        .await
        .json()
        .await
        .unwrap();
    view["disk"]["used_bytes"].as_u64().unwrap()
}

async fn put(
    server: &Server,
    key: &str,
    session: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    server
        .send(
            server
                .client
                .put(server.url(&format!("/v1/sessions/{session}/files/{path}")))
                .bearer_auth(key)
                .body(body),
        )
        .await
}

async fn get(server: &Server, key: &str, session: &str, path: &str) -> reqwest::Response {
    server
        .get(key, &format!("/v1/sessions/{session}/files/{path}"))
        .await
}

async fn put_tar(server: &Server, key: &str, session: &str, tar: Vec<u8>) -> reqwest::Response {
    server
        .send(
            server
                .client
                .put(server.url(&format!("/v1/sessions/{session}/workspace.tar")))
                .bearer_auth(key)
                .header("content-type", "application/x-tar")
                .body(tar),
        )
        .await
}

/// The session's events from the first, up to the first named `last`.
async fn events_until(server: &Server, key: &str, session: &str, last: &str) -> Vec<SseEvent> {
    let response = server
        .get(key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    read_events(response, |e| e.name == last).await
}

#[tokio::test]
async fn a_file_goes_in_and_out_its_tools_see_it_and_each_transfer_is_an_event() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = server.session(&key).await;

    let created = put(&server, &key, &session, "docs/notes.txt", "hello\n").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created,
        json!({"path": "docs/notes.txt", "size": 6, "replaced": false})
    );
    let replaced = put(&server, &key, &session, "docs/notes.txt", "hello again\n").await;
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_eq!(replaced.json::<Value>().await.unwrap()["replaced"], true);

    // The session's tools see what was uploaded.
    let task: Value = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.read", "input": {"path": "docs/notes.txt"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["output"]["content"], "hello again\n", "{task}");

    let download = get(&server, &key, &session, "docs/notes.txt").await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(download.headers()["content-length"], "12");
    assert_eq!(download.text().await.unwrap(), "hello again\n");

    problem(
        get(&server, &key, &session, "docs/nope.txt").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        get(&server, &key, &session, "docs").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    problem(
        put(&server, &key, &session, "docs", "x").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let events = events_until(&server, &key, &session, "file.downloaded").await;
    let transfers: Vec<(String, Value)> = events
        .iter()
        .filter(|e| e.name.starts_with("file."))
        .filter(|e| e.name != "file.changed")
        .map(|e| (e.name.clone(), e.data.clone()))
        .collect();
    assert_eq!(
        transfers,
        [
            (
                "file.uploaded".to_owned(),
                json!({"path": "docs/notes.txt", "size": 6, "replaced": false})
            ),
            (
                "file.uploaded".to_owned(),
                json!({"path": "docs/notes.txt", "size": 12, "replaced": true})
            ),
            (
                "file.downloaded".to_owned(),
                json!({"path": "docs/notes.txt", "size": 12})
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn uploads_are_charged_to_the_quota_the_session_shares_with_its_tasks() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = session_with_disk(&server, &key, 1).await;
    let root = workspace(&server, &session);
    let part = vec![b'a'; 600 * 1024];

    assert_eq!(
        put(&server, &key, &session, "first.bin", part.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let after_first = used(&server, &key, &session).await;
    assert!(after_first >= 600 * 1024, "{after_first}");

    // Announced too large: refused before any of it is read.
    let refused = problem(
        put(&server, &key, &session, "second.bin", part.clone()).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quota_exceeded",
    )
    .await;
    assert_eq!(refused["quota_bytes"], MIB, "{refused}");
    // Streamed without a length: refused when the quota is reached, and what was written
    // until then is gone again.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        part.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    problem(
        put(&server, &key, &session, "dir/third.bin", streamed).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        names(&root),
        ["first.bin"],
        "nothing of a refused upload is left"
    );
    assert_eq!(used(&server, &key, &session).await, after_first);

    // The session's tasks meet the same quota.
    let task: Value = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "hostile.fill", "input": {"how": "std", "bytes": 600 * 1024}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let kind = task["output"]["error"]["kind"].as_str().unwrap_or_default();
    assert!(
        ["StorageFull", "insufficient-space", "Uncategorized"].contains(&kind),
        "{task}"
    );
    server.stop().await;
}

#[tokio::test]
async fn paths_and_links_never_lead_outside_the_workspace() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = server.session(&key).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    // What a tool could have made: a link out of the workspace.
    std::os::unix::fs::symlink(outside.path(), workspace(&server, &session).join("link")).unwrap();

    for path in [
        "link/secret.txt",
        "link",
        "..%2F..%2Fadmin.key",
        "%2Fetc%2Fpasswd",
        "a/..%2F..%2F..%2Fx",
    ] {
        problem(
            get(&server, &key, &session, path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
        )
        .await;
        problem(
            put(&server, &key, &session, path, "x").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
        )
        .await;
    }
    let mut outside_names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside_names.sort();
    assert_eq!(outside_names, ["secret.txt"]);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "secret"
    );
    assert_eq!(names(&workspace(&server, &session)), ["link"]);
    server.stop().await;
}

#[tokio::test]
async fn a_workspace_goes_out_and_in_as_a_tar() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let first = server.session(&key).await;
    put(&server, &key, &first, "a.txt", "aaa").await;
    put(&server, &key, &first, "dir/b.txt", "bbbb").await;
    std::os::unix::fs::symlink("b.txt", workspace(&server, &first).join("dir/l")).unwrap();

    let response = server
        .get(&key, &format!("/v1/sessions/{first}/workspace.tar"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let archive = response.bytes().await.unwrap().to_vec();
    let mut seen = Vec::new();
    for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let kind = entry.header().entry_type();
        let content = if kind.is_symlink() {
            entry.link_name().unwrap().unwrap().display().to_string()
        } else {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            text
        };
        seen.push((
            path.trim_end_matches('/').to_owned(),
            format!("{kind:?}"),
            content,
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("a.txt".into(), "Regular".into(), "aaa".into()),
            ("dir".into(), "Directory".into(), String::new()),
            ("dir/b.txt".into(), "Regular".into(), "bbbb".into()),
            ("dir/l".into(), "Symlink".into(), "b.txt".into()),
        ] as [(String, String, String); 4]
    );

    let second = server.session(&key).await;
    let extracted = put_tar(&server, &key, &second, archive).await;
    assert_eq!(extracted.status(), StatusCode::OK);
    let extracted: Value = extracted.json().await.unwrap();
    assert_eq!(extracted, json!({"size": 7, "entries": 4}));
    assert_eq!(
        get(&server, &key, &second, "dir/b.txt")
            .await
            .text()
            .await
            .unwrap(),
        "bbbb"
    );
    assert_eq!(
        names(&workspace(&server, &second)),
        ["a.txt", "dir", "dir/b.txt", "dir/l"]
    );
    assert!(used(&server, &key, &second).await >= 4 * 4096);

    let out = events_until(&server, &key, &first, "file.downloaded").await;
    assert_eq!(out.last().unwrap().data, json!({"size": 7, "entries": 4}));
    let ins = events_until(&server, &key, &second, "file.uploaded").await;
    assert_eq!(ins.last().unwrap().data, json!({"size": 7, "entries": 4}));
    server.stop().await;
}

/// One raw tar entry: `name` and `link` are written as they are, checks or not.
fn raw_entry(
    out: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
    }
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.append(&header, data).unwrap();
}

/// A tar whose first entry is a good file and whose second is `name` (`kind`, `link`, `data`).
fn tar_with(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    raw_entry(&mut out, b"good.txt", tar::EntryType::Regular, b"", b"good");
    raw_entry(&mut out, name, kind, link, data);
    out.into_inner().unwrap()
}

#[tokio::test]
async fn a_bad_or_too_large_archive_is_refused_whole_and_writes_nothing() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = session_with_disk(&server, &key, 1).await;
    put(&server, &key, &session, "x", "a file").await;
    let root = workspace(&server, &session);
    let before = used(&server, &key, &session).await;
    let cases = [
        (
            tar_with(b"../evil.txt", tar::EntryType::Regular, b"", b"e"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"/abs.txt", tar::EntryType::Regular, b"", b"e"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"dev", tar::EntryType::Char, b"", b""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"fifo", tar::EntryType::Fifo, b"", b""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"hard", tar::EntryType::Link, b"../../admin.key", b""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"hard", tar::EntryType::Link, b"x", b""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"soft", tar::EntryType::Symlink, b"/etc/passwd", b""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(b"d/soft", tar::EntryType::Symlink, b"../../out", b""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
        (
            tar_with(
                b"big.bin",
                tar::EntryType::Regular,
                b"",
                &vec![0u8; 2 * MIB as usize],
            ),
            StatusCode::INSUFFICIENT_STORAGE,
            "quota_exceeded",
        ),
        // `x` is a file in the workspace: a directory of that name clashes.
        (
            tar_with(b"x/y.txt", tar::EntryType::Regular, b"", b"y"),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            b"not a tar archive at all, far too short".repeat(20),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_archive",
        ),
    ];
    for (archive, status, code) in cases {
        let body = problem(
            put_tar(&server, &key, &session, archive).await,
            status,
            code,
        )
        .await;
        assert_eq!(names(&root), ["x"], "{body}");
        assert_eq!(std::fs::read_to_string(root.join("x")).unwrap(), "a file");
        assert_eq!(used(&server, &key, &session).await, before, "{body}");
    }
    let wrong_type = server
        .client
        .put(server.url(&format!("/v1/sessions/{session}/workspace.tar")))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(
        wrong_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn only_the_owner_of_an_open_session_moves_its_files() {
    let server = Server::start().await;
    let alice = server.key("alice", "developer");
    let bob = server.key("bob", "developer");
    let session = server.session(&alice).await;
    put(&server, &alice, &session, "mine.txt", "mine").await;

    problem(
        get(&server, &bob, &session, "mine.txt").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        put(&server, &bob, &session, "theirs.txt", "x").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let tar = server
        .get(&bob, &format!("/v1/sessions/{session}/workspace.tar"))
        .await;
    problem(tar, StatusCode::NOT_FOUND, "not_found").await;
    let anonymous = server
        .client
        .get(server.url(&format!("/v1/sessions/{session}/files/mine.txt")))
        .send()
        .await
        .unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // A closed session's workspace was deleted with it.
    assert_eq!(
        server
            .delete(&alice, &format!("/v1/sessions/{session}"))
            .await
            .status(),
        StatusCode::OK
    );
    problem(
        get(&server, &alice, &session, "mine.txt").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    problem(
        put(&server, &alice, &session, "mine.txt", "x").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let tar = server
        .get(&alice, &format!("/v1/sessions/{session}/workspace.tar"))
        .await;
    problem(tar, StatusCode::CONFLICT, "conflict").await;
    server.stop().await;
}
