use std::path::Path;

use crate::vocabulary::{CloseReason, SessionState, TaskState};
use serde_json::json;

use super::*;

fn open(dir: &Path) -> Store {
    Store::open(dir).expect("open store")
}

fn session(id: &str, state: &str) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        principal: "alice".to_owned(),
        profile: "developer".to_owned(),
        state: state.parse().unwrap(),
        created_at_ms: 1_000,
        last_active_ms: 2_000,
        closed_at_ms: (state == "closed").then_some(3_000),
        close_reason: (state == "closed").then_some(CloseReason::Deleted),
        workspace: "/tmp/ws".to_owned(),
        request: json!({"profile": "developer", "ttl_s": 600}),
        sidecar: "local".to_owned(),
    }
}

fn task(session: &str, id: &str, state: &str, created_at_ms: i64) -> TaskRecord {
    let finished = matches!(state, "completed" | "failed" | "cancelled");
    TaskRecord {
        id: id.to_owned(),
        session: session.to_owned(),
        tool: "fs.read".to_owned(),
        input: json!({"path": "notes.txt"}),
        state: state.parse().unwrap(),
        created_at_ms,
        started_at_ms: (state != "queued").then_some(created_at_ms + 1),
        finished_at_ms: finished.then_some(created_at_ms + 2),
        output: (state == "completed").then(|| json!({"content": "hello\n"})),
        error: None,
        usage: finished.then(|| json!({"fuel_consumed": 24907})),
        decision: Some(json!({"allowed": true, "policies": ["p1"]})),
        run: None,
    }
}

fn event(session: &str, seq: u64) -> StoredEvent {
    StoredEvent {
        session: session.to_owned(),
        seq,
        name: "tool.log".to_owned(),
        data: json!({"line": format!("line {seq}")}).to_string().into(),
        at_ms: 5_000 + seq as i64,
    }
}

#[test]
fn open_creates_a_private_directory_in_wal_mode_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("nested");
    let store = open(&dir);
    assert_eq!(store.path(), dir.join(DB_FILE));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mode: String = store
        .reader()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = store
        .reader()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);
    store.close();
    // Migrations are not applied twice.
    let store = open(&dir);
    assert_eq!(store.key_count().unwrap(), 0);
}

#[test]
fn a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", schema::VERSION + 1)
            .unwrap();
    }
    let error = Store::open(tmp.path()).unwrap_err();
    assert!(
        matches!(error, StoreError::UnsupportedSchema { found, .. } if found == schema::VERSION + 1),
        "{error}"
    );
}

#[test]
fn keys_authenticate_by_hash_and_the_plaintext_is_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let admin = store.create_key("root", "admin", true).unwrap();
    let alice = store.create_key("alice", "developer", false).unwrap();
    let alice2 = store.create_key("alice", "developer", false).unwrap();

    assert!(alice.key.starts_with("tg_"));
    assert_eq!(alice.key.len(), 3 + 43);
    assert!(
        alice.key[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_ne!(alice.key, alice2.key);
    assert_ne!(alice.id, alice2.id);
    assert!(!format!("{alice:?}").contains(&alice.key), "Debug redacts");

    let found = store.authenticate(&alice.key).unwrap().expect("alice");
    assert_eq!(found.id, alice.id);
    assert_eq!(found.principal, "alice");
    assert_eq!(found.profile, "developer");
    assert!(!found.admin);
    assert!(found.created_at_ms > 0);
    let found = store.authenticate(&admin.key).unwrap().expect("admin");
    assert!(found.admin);

    // Wrong keys: another random key, a near miss, garbage, empty.
    let other = keys::generate().unwrap();
    assert_eq!(store.authenticate(&other).unwrap(), None);
    let mut near = alice.key.clone();
    let last = if near.ends_with('A') { "B" } else { "A" };
    near.replace_range(near.len() - 1.., last);
    assert_eq!(store.authenticate(&near).unwrap(), None);
    assert_eq!(store.authenticate("tg_").unwrap(), None);
    assert_eq!(store.authenticate("").unwrap(), None);
    assert_eq!(store.authenticate(&keys::hash(&alice.key)).unwrap(), None);

    assert_eq!(store.key_count().unwrap(), 3);
    assert_eq!(
        store.principals().unwrap(),
        vec![
            ("alice".to_owned(), "developer".to_owned()),
            ("root".to_owned(), "admin".to_owned()),
        ]
    );

    // Neither the database nor its write-ahead log holds a key in clear.
    store.close();
    for suffix in ["", "-wal", "-shm"] {
        let path = tmp.path().join(format!("{DB_FILE}{suffix}"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for key in [&admin.key, &alice.key, &alice2.key] {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds a key",
                path.display()
            );
        }
    }
    // Keys survive a restart.
    let store = open(tmp.path());
    assert_eq!(
        store.authenticate(&alice.key).unwrap().unwrap().id,
        alice.id
    );
}

#[test]
fn sessions_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = session("s-a", "open");
    let b = session("s-b", "closed");
    store.put_session(&a);
    store.put_session(&b);
    store.flush().unwrap();
    assert_eq!(store.get_session("s-a").unwrap(), Some(a.clone()));
    assert_eq!(store.get_session("s-b").unwrap(), Some(b));
    assert_eq!(store.get_session("nope").unwrap(), None);
    assert_eq!(store.open_sessions().unwrap(), vec![a.clone()]);

    // put replaces.
    let mut closed = a.clone();
    closed.state = SessionState::Closed;
    closed.closed_at_ms = Some(9_000);
    closed.close_reason = Some(CloseReason::Idle);
    store.put_session(&closed);
    store.flush().unwrap();
    assert_eq!(store.get_session("s-a").unwrap(), Some(closed));
    assert!(store.open_sessions().unwrap().is_empty());
}

#[test]
fn tasks_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let queued = task("s1", "t1", "queued", 10);
    let mut done = task("s1", "t2", "completed", 20);
    done.error = None;
    let mut failed = task("s1", "t3", "failed", 30);
    failed.error = Some(json!({"kind": "fuel_exhausted", "limit": 5}));
    let other = task("s2", "t1", "running", 5);
    for t in [&failed, &queued, &done, &other] {
        store.put_task(t);
    }
    store.flush().unwrap();

    assert_eq!(store.get_task("s1", "t1").unwrap(), Some(queued.clone()));
    assert_eq!(store.get_task("s2", "t1").unwrap(), Some(other));
    assert_eq!(store.get_task("s1", "nope").unwrap(), None);
    assert_eq!(store.get_task("s3", "t1").unwrap(), None);
    assert_eq!(
        store.list_tasks("s1").unwrap(),
        vec![queued.clone(), done, failed]
    );
    assert!(store.list_tasks("none").unwrap().is_empty());

    let mut running = queued;
    running.state = TaskState::Running;
    running.started_at_ms = Some(11);
    store.put_task(&running);
    store.flush().unwrap();
    assert_eq!(store.get_task("s1", "t1").unwrap(), Some(running));
}

#[test]
fn unfinished_tasks_are_interrupted_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let finished = task("s1", "done", "completed", 10);
    {
        let store = open(tmp.path());
        store.put_task(&finished);
        store.put_task(&task("s1", "q", "queued", 20));
        store.put_task(&task("s1", "r", "running", 30));
        store.put_task(&task("s2", "r", "running", 40));
        store.flush().unwrap();
        // Dropped without close, as if the server had stopped.
    }
    let store = open(tmp.path());
    let interrupted = store.interrupt_unfinished_tasks().unwrap();
    let ids: Vec<_> = interrupted
        .iter()
        .map(|t| (t.session.as_str(), t.id.as_str()))
        .collect();
    assert_eq!(ids, vec![("s1", "q"), ("s1", "r"), ("s2", "r")]);
    for t in &interrupted {
        assert_eq!(t.state, "interrupted");
        assert!(t.finished_at_ms.unwrap() > 0);
        assert_eq!(
            t.error,
            Some(json!({
                "kind": "interrupted",
                "message": "the server stopped while the task was running",
            }))
        );
        // Synchronous: already visible to reads, identical to what was returned.
        assert_eq!(store.get_task(&t.session, &t.id).unwrap().as_ref(), Some(t));
    }
    let r = store.get_task("s1", "r").unwrap().unwrap();
    assert_eq!(r.started_at_ms, Some(31), "the rest of the record is kept");
    assert_eq!(store.get_task("s1", "done").unwrap(), Some(finished));
    // Nothing left to interrupt.
    assert!(store.interrupt_unfinished_tasks().unwrap().is_empty());
}

#[test]
fn interrupting_sees_writes_queued_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.put_task(&task("s", "t", "running", 1));
    // No flush: the writer runs queued writes first.
    let interrupted = store.interrupt_unfinished_tasks().unwrap();
    assert_eq!(interrupted.len(), 1);
}

#[test]
fn a_crash_keeps_committed_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.put_session(&session("s", "open"));
    store.put_task(&task("s", "t", "running", 1));
    store.flush().unwrap();
    // Neither closed nor dropped: the writer and its connection stay behind, as after kill -9
    // the files do.
    std::mem::forget(store);
    let store = open(tmp.path());
    assert_eq!(store.open_sessions().unwrap().len(), 1);
    assert_eq!(store.interrupt_unfinished_tasks().unwrap().len(), 1);
}

#[test]
fn events_persist_and_resume_across_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path());
        assert_eq!(store.last_event_seq("s1").unwrap(), 0);
        for seq in 1..=5 {
            store.put_event(&event("s1", seq));
        }
        store.put_event(&event("s2", 1));
        store.flush().unwrap();
        assert_eq!(store.last_event_seq("s1").unwrap(), 5);
        store.close();
    }
    let store = open(tmp.path());
    assert_eq!(store.last_event_seq("s1").unwrap(), 5);
    assert_eq!(store.last_event_seq("s2").unwrap(), 1);
    assert_eq!(store.last_event_seq("s3").unwrap(), 0);

    let all = store.events_after("s1", 0, 100).unwrap();
    assert_eq!(all, (1..=5).map(|seq| event("s1", seq)).collect::<Vec<_>>());
    let seqs = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.events_after("s1", 2, 100).unwrap()),
        vec![3, 4, 5]
    );
    assert_eq!(seqs(store.events_after("s1", 1, 2).unwrap()), vec![2, 3]);
    assert!(store.events_after("s1", 5, 100).unwrap().is_empty());
    assert!(store.events_after("s1", 0, 0).unwrap().is_empty());
    assert!(store.events_after("s1", u64::MAX, 10).unwrap().is_empty());

    // Numbering continues after a restart; a reused number is a counted, failed write that
    // leaves the stored event alone.
    store.put_event(&event("s1", 6));
    let mut reused = event("s1", 3);
    reused.name = "message".to_owned();
    store.put_event(&reused);
    store.flush().unwrap();
    assert_eq!(store.failed_writes(), 1);
    assert_eq!(store.last_event_seq("s1").unwrap(), 6);
    assert_eq!(
        store.events_after("s1", 2, 1).unwrap(),
        vec![event("s1", 3)]
    );
}

#[test]
fn decisions_are_kept_in_order_per_session_and_task() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let d = |n: u32| json!({"n": n, "allowed": n.is_multiple_of(2), "policies": [format!("p{n}")]});
    store.put_decision("s1", None, &d(1));
    store.put_decision("s1", Some("t1"), &d(2));
    store.put_decision("s1", Some("t2"), &d(3));
    store.put_decision("s1", Some("t1"), &d(4));
    store.put_decision("s2", Some("t1"), &d(5));
    store.flush().unwrap();

    assert_eq!(store.decisions("s1", Some("t1")).unwrap(), vec![d(2), d(4)]);
    assert_eq!(store.decisions("s1", Some("t2")).unwrap(), vec![d(3)]);
    assert_eq!(
        store.decisions("s1", None).unwrap(),
        vec![d(1), d(2), d(3), d(4)]
    );
    assert_eq!(store.decisions("s2", Some("t1")).unwrap(), vec![d(5)]);
    assert!(store.decisions("s3", None).unwrap().is_empty());
}

#[test]
fn a_task_written_again_in_one_batch_is_stored_as_it_was_last() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut first = task("s1", "t1", "queued", 10);
    let second = task("s1", "t2", "queued", 11);
    store.put_task(&first);
    first.state = TaskState::Running;
    store.put_task(&first);
    store.put_task(&second);
    first = task("s1", "t1", "completed", 10);
    store.put_task(&first);
    store.flush().unwrap();
    assert_eq!(store.pending_writes(), 0);
    assert_eq!(store.failed_writes(), 0);
    assert_eq!(store.list_tasks("s1").unwrap(), vec![first, second.clone()]);

    // Exclusive work between two writes of a task sees the first and is overwritten by the second.
    let mut third = task("s1", "t3", "running", 12);
    store.put_task(&third);
    let interrupted = store.interrupt_unfinished_tasks().unwrap();
    assert_eq!(
        interrupted
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["t2", "t3"]
    );
    third.state = TaskState::Completed;
    store.put_task(&third);
    store.flush().unwrap();
    assert_eq!(store.get_task("s1", "t3").unwrap(), Some(third));
    assert_eq!(store.pending_writes(), 0);
}

#[test]
fn pruning_keeps_the_newest_events_of_each_session() {
    let tmp = tempfile::tempdir().unwrap();
    let seqs = |store: &Store, session: &str| {
        let events = store.events_after(session, 0, 100).unwrap();
        events.into_iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    {
        let store = open(tmp.path());
        for seq in 1..=10 {
            store.put_event(&event("s1", seq));
        }
        for seq in 1..=3 {
            store.put_event(&event("s2", seq));
        }
        assert_eq!(store.prune_events(4).unwrap(), 6);
        assert_eq!(seqs(&store, "s1"), [7, 8, 9, 10]);
        assert_eq!(seqs(&store, "s2"), [1, 2, 3]);
        assert_eq!(
            store.prune_events(4).unwrap(),
            0,
            "nothing new, nothing to do"
        );
        store.put_event(&event("s1", 11));
        store.put_event(&event("s1", 12));
        assert_eq!(store.prune_events(4).unwrap(), 2);
        assert_eq!(seqs(&store, "s1"), [9, 10, 11, 12]);
        assert_eq!(store.last_event_seq("s1").unwrap(), 12);
    }
    // After a restart with a lower retention, the whole table is pruned once.
    let store = open(tmp.path());
    assert_eq!(
        store.prune_events(2).unwrap(),
        0,
        "no session was given events yet"
    );
    assert_eq!(store.prune_all_events(2).unwrap(), 3);
    assert_eq!(seqs(&store, "s1"), [11, 12]);
    assert_eq!(seqs(&store, "s2"), [2, 3]);
}

#[test]
fn many_writes_are_batched_and_all_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    for seq in 1..=10_000 {
        store.put_event(&event("burst", seq));
    }
    store.flush().unwrap();
    assert_eq!(store.pending_writes(), 0);
    assert_eq!(store.failed_writes(), 0);
    assert_eq!(store.last_event_seq("burst").unwrap(), 10_000);
    let events = store.events_after("burst", 0, 20_000).unwrap();
    assert_eq!(events.len(), 10_000);
    assert!(events.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    assert_eq!(events[9_999], event("burst", 10_000));
}

#[test]
fn writes_from_many_threads_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    std::thread::scope(|scope| {
        for n in 0..4 {
            let store = store.clone();
            scope.spawn(move || {
                let session = format!("s{n}");
                for seq in 1..=500 {
                    store.put_event(&event(&session, seq));
                }
            });
        }
    });
    store.flush().unwrap();
    for n in 0..4 {
        assert_eq!(store.last_event_seq(&format!("s{n}")).unwrap(), 500);
    }
}

#[test]
fn flush_waits_for_earlier_writes_and_close_is_final() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    // Nothing queued: returns at once.
    store.flush().unwrap();

    store.put_session(&session("s", "open"));
    store.put_event(&event("s", 1));
    store.flush().unwrap();
    assert!(store.get_session("s").unwrap().is_some());
    assert_eq!(store.last_event_seq("s").unwrap(), 1);
    assert_eq!(store.pending_writes(), 0);

    // close commits what is queued, is idempotent (also through a clone), and then writes
    // are refused but reads still work.
    store.put_event(&event("s", 2));
    let clone = store.clone();
    store.close();
    clone.close();
    assert_eq!(store.last_event_seq("s").unwrap(), 2);
    assert!(matches!(store.flush(), Err(StoreError::Closed)));
    assert!(matches!(
        store.create_key("a", "b", false),
        Err(StoreError::Closed)
    ));
    store.put_event(&event("s", 3));
    assert_eq!(store.failed_writes(), 1);
    assert_eq!(store.pending_writes(), 0);
    assert_eq!(store.last_event_seq("s").unwrap(), 2);
}

#[test]
fn dropping_the_last_handle_commits_queued_writes() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path());
        for seq in 1..=100 {
            store.put_event(&event("s", seq));
        }
    }
    let store = open(tmp.path());
    assert_eq!(store.last_event_seq("s").unwrap(), 100);
}

#[test]
fn a_revoked_key_is_refused_by_every_handle_on_the_database_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path());
    // Another process on the same data directory (`toolgate keys revoke`).
    let cli = open(tmp.path());
    let alice = server.create_key("alice", "developer", false).unwrap();
    let bob = server.create_key("bob", "developer", false).unwrap();
    // Remembered by the server's handle.
    assert!(server.authenticate(&alice.key).unwrap().is_some());
    let mut watch = server.revocations();
    let before = *watch.borrow_and_update();

    let revoked = cli.revoke_key(&alice.id).unwrap().expect("a known key");
    assert!(revoked.revoked_at_ms.is_some());
    assert_eq!(server.authenticate(&alice.key).unwrap(), None);
    assert!(server.authenticate(&bob.key).unwrap().is_some());
    assert!(watch.has_changed().unwrap(), "watchers are told");
    assert_eq!(*watch.borrow_and_update(), before + 1);

    // Revoking again keeps the first time and counts nothing; an unknown id is `None`.
    let again = cli.revoke_key(&alice.id).unwrap().unwrap();
    assert_eq!(again.revoked_at_ms, revoked.revoked_at_ms);
    assert_eq!(server.check_revocations().unwrap(), before + 1);
    assert_eq!(cli.revoke_key("key_nope").unwrap(), None);

    // Listed without secrets, revoked ones included; a restart keeps the revocation.
    let listed = server.list_keys().unwrap();
    let find = |id: &str| listed.iter().find(|k| k.id == id).expect("listed");
    assert_eq!(listed.len(), 2);
    assert_eq!(find(&alice.id).revoked_at_ms, revoked.revoked_at_ms);
    assert_eq!(find(&bob.id).revoked_at_ms, None);
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&alice.key) && !text.contains(&keys::hash(&alice.key)));
    drop((server, cli));
    let store = open(tmp.path());
    assert_eq!(store.authenticate(&alice.key).unwrap(), None);
}

fn owned_session(id: &str, principal: &str, state: &str, created_at_ms: i64) -> SessionRecord {
    SessionRecord {
        principal: principal.to_owned(),
        created_at_ms,
        ..session(id, state)
    }
}

#[test]
fn sessions_and_tasks_are_listed_newest_first_page_by_page() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    // Two sessions share a creation time: the id orders them.
    for (id, principal, state, at) in [
        ("s_1", "alice", "closed", 1_000),
        ("s_2", "alice", "open", 2_000),
        ("s_3", "alice", "open", 2_000),
        ("s_4", "bob", "open", 3_000),
        ("s_5", "alice", "closed", 4_000),
    ] {
        store.put_session(&owned_session(id, principal, state, at));
    }
    store.put_event(&event("s_2", 7));
    for (id, state, at) in [
        ("t_1", "completed", 10),
        ("t_2", "failed", 20),
        ("t_3", "completed", 30),
    ] {
        store.put_task(&TaskRecord {
            tool: if id == "t_2" { "fs.write" } else { "fs.read" }.to_owned(),
            ..task("s_2", id, state, at)
        });
    }
    store.put_task(&task("s_3", "t_9", "completed", 40));
    store.flush().unwrap();

    let ids =
        |rows: &[(SessionRecord, u64)]| rows.iter().map(|(s, _)| s.id.clone()).collect::<Vec<_>>();
    let mut query = SessionQuery {
        principal: "alice",
        state: None,
        after: None,
        limit: 3,
    };
    let (first, more) = store.query_sessions(&query).unwrap();
    assert_eq!(ids(&first), ["s_5", "s_3", "s_2"]);
    assert!(more);
    assert_eq!(first[2].1, 7, "the last stored event id comes along");
    let last = &first[2].0;
    let position = Position {
        created_at_ms: last.created_at_ms,
        id: last.id.clone(),
    };
    query.after = Some(&position);
    let (second, more) = store.query_sessions(&query).unwrap();
    assert_eq!(ids(&second), ["s_1"]);
    assert!(!more);
    let open_only = SessionQuery {
        state: Some("open"),
        after: None,
        ..query.clone()
    };
    assert_eq!(
        ids(&store.query_sessions(&open_only).unwrap().0),
        ["s_3", "s_2"]
    );

    let query = TaskQuery {
        session: "s_2",
        state: None,
        tool: None,
        after: None,
        limit: 10,
    };
    let task_ids = |query: &TaskQuery<'_>| {
        let (rows, _) = store.query_tasks(query).unwrap();
        rows.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    assert_eq!(task_ids(&query), ["t_3", "t_2", "t_1"]);
    let read = TaskQuery {
        tool: Some("fs.read"),
        ..query.clone()
    };
    assert_eq!(task_ids(&read), ["t_3", "t_1"]);
    let failed = TaskQuery {
        state: Some("failed"),
        ..query.clone()
    };
    assert_eq!(task_ids(&failed), ["t_2"]);
}

#[test]
fn listings_are_answered_from_their_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let position = Position {
        created_at_ms: 5,
        id: "s_x".into(),
    };
    let plan = |(sql, values): records::Statement<'_>| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values.iter()), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    };
    for state in [None, Some("open")] {
        for after in [None, Some(&position)] {
            let text = plan(records::sessions_statement(&SessionQuery {
                principal: "alice",
                state,
                after,
                limit: 50,
            }));
            assert!(text.contains("USING INDEX sessions_by_principal"), "{text}");
            assert!(!text.contains("TEMP B-TREE"), "sorted by the index: {text}");
            assert!(!text.contains("SCAN events"), "{text}");
        }
    }
    for (state, tool) in [(None, None), (Some("failed"), Some("fs.read"))] {
        let text = plan(records::tasks_statement(&TaskQuery {
            session: "s_x",
            state,
            tool,
            after: Some(&position),
            limit: 50,
        }));
        assert!(
            text.contains("USING INDEX tasks_by_session_created"),
            "{text}"
        );
        assert!(!text.contains("TEMP B-TREE"), "{text}");
    }
}
