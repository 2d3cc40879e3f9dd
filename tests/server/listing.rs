//! `GET /v1/sessions` and `GET /v1/sessions/{id}/tasks`: the caller's own, newest first,
//! filtered, a page at a time; each item is what `GET` of that one session or task answers.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every item of a listing, page after page of `limit`, checking each page's `Link`.
async fn all_pages(server: &Server, key: &str, path: &str, items: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut url = format!("{path}{separator}limit=2");
    for _ in 0..100 {
        let response = server.get(key, &url).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = response.json().await.unwrap();
        let listed = page[items].as_array().unwrap();
        assert!(listed.len() <= 2, "{page}");
        all.extend(listed.iter().cloned());
        let Some(cursor) = page["next_cursor"].as_str() else {
            assert_eq!(link, None, "no next page, no link");
            return all;
        };
        let link = link.expect("a next page has a link");
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        url = link
            .trim_start_matches('<')
            .split_once('>')
            .unwrap()
            .0
            .to_owned();
        assert!(url.contains(cursor), "{url}");
    }
    panic!("the listing of {path} does not end");
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sessions_are_listed_newest_first_a_page_at_a_time_and_never_another_principals() {
    let server = Server::start().await;
    let alice = server.key("alice", "developer");
    let bob = server.key("bob", "developer");
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(server.session(&alice).await);
    }
    let bobs = server.session(&bob).await;
    let closed = server
        .delete(&alice, &format!("/v1/sessions/{}", created[1]))
        .await;
    assert_eq!(closed.status(), StatusCode::OK);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    // Three pages of two, each item exactly what `GET /v1/sessions/{id}` answers.
    let listed = all_pages(&server, &alice, "/v1/sessions", "sessions").await;
    assert_eq!(ids(&listed), newest_first);
    for item in &listed {
        let one: Value = server
            .get(
                &alice,
                &format!("/v1/sessions/{}", item["id"].as_str().unwrap()),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(*item, one);
    }
    assert!(
        listed.iter().any(|s| s["disk"].is_object()),
        "open ones show their disk"
    );

    // Filters.
    let closed_only = all_pages(&server, &alice, "/v1/sessions?state=closed", "sessions").await;
    assert_eq!(ids(&closed_only), [created[1].clone()]);
    let open_only = all_pages(&server, &alice, "/v1/sessions?state=open", "sessions").await;
    assert_eq!(open_only.len(), 4);
    assert!(open_only.iter().all(|s| s["state"] == "open"));

    // Bob sees his own only; he may not name alice. An admin may, and sees hers.
    let his = all_pages(&server, &bob, "/v1/sessions", "sessions").await;
    assert_eq!(ids(&his), [bobs.as_str()]);
    problem(
        server.get(&bob, "/v1/sessions?principal=alice").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let own = server.get(&bob, "/v1/sessions?principal=bob").await;
    assert_eq!(own.status(), StatusCode::OK);
    let hers = all_pages(
        &server,
        &server.admin,
        "/v1/sessions?principal=alice",
        "sessions",
    )
    .await;
    assert_eq!(ids(&hers), newest_first);
    let admins: Value = server
        .get(&server.admin, "/v1/sessions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admins, json!({"sessions": [], "next_cursor": null}));

    // Bad queries are 422 with a stable code; no key is 401.
    for (query, code) in [
        ("state=running", "invalid_query"),
        ("limit=0", "invalid_query"),
        ("limit=201", "invalid_query"),
        ("limit=ten", "invalid_query"),
        ("colour=blue", "invalid_query"),
        ("state=open&state=closed", "invalid_query"),
        ("cursor=bm90IGEgY3Vyc29y", "invalid_cursor"),
        ("cursor=%25%25", "invalid_cursor"),
    ] {
        let response = server.get(&alice, &format!("/v1/sessions?{query}")).await;
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    let anonymous = server
        .client
        .get(server.url("/v1/sessions"))
        .send()
        .await
        .unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    server.stop().await;
}

#[tokio::test]
async fn a_sessions_tasks_are_listed_newest_first_filtered_by_state_and_tool() {
    let server = Server::start().await;
    let alice = server.key("alice", "developer");
    let session = server.session(&alice).await;
    let tasks = format!("/v1/sessions/{session}/tasks");
    let mut created = Vec::new();
    for body in [
        json!({"tool": "fs.write", "input": {"path": "a.txt", "content": "hi"}}),
        json!({"tool": "fs.read", "input": {"path": "missing.txt"}}),
        json!({"tool": "fs.list", "input": {}}),
        json!({"tool": "fs.read", "input": {"path": "a.txt"}}),
        json!({"tool": "fs.read", "input": {"path": "a.txt"}}),
    ] {
        let task: Value = server
            .post(&alice, &tasks, body)
            .await
            .json()
            .await
            .unwrap();
        created.push(task["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let listed = all_pages(&server, &alice, &tasks, "tasks").await;
    assert_eq!(ids(&listed), newest_first);
    for item in &listed {
        let one: Value = server
            .get(&alice, &format!("{tasks}/{}", item["id"].as_str().unwrap()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(*item, one);
    }
    let reads = all_pages(&server, &alice, &format!("{tasks}?tool=fs.read"), "tasks").await;
    assert_eq!(ids(&reads), [created[4].as_str(), &created[3], &created[1]]);
    let failed = all_pages(&server, &alice, &format!("{tasks}?state=failed"), "tasks").await;
    assert_eq!(ids(&failed), [created[1].as_str()]);
    let both = format!("{tasks}?tool=fs.read&state=completed");
    assert_eq!(
        ids(&all_pages(&server, &alice, &both, "tasks").await),
        [created[4].as_str(), &created[3]]
    );

    // Another principal's session is not found; bad filters are 422.
    let bob = server.key("bob", "developer");
    problem(
        server.get(&bob, &tasks).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for query in ["tool=fs", "tool=FS.READ", "state=open", "limit=-1"] {
        let response = server.get(&alice, &format!("{tasks}?{query}")).await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
        assert!(body["parameter"].is_string(), "{body}");
    }

    // A closed session's tasks stay listed.
    server
        .delete(&alice, &format!("/v1/sessions/{session}"))
        .await;
    assert_eq!(
        ids(&all_pages(&server, &alice, &tasks, "tasks").await),
        newest_first
    );
    server.stop().await;
}
