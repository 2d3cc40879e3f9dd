//! The data directory as an operator meets it through the real binary: one server per
//! directory, keys only for profiles that exist, and no database invented by a typo.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn toolgate(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolgate"));
    command
        .args(args)
        .env_remove("TOOLGATE_DATA_DIR")
        .env_remove("TOOLGATE_POLICIES")
        .env_remove("TOOLGATE_CONFIG")
        .env_remove("TOOLGATE_PLUGINS");
    command
}

fn output(args: &[&str]) -> Output {
    toolgate(args).output().expect("run toolgate")
}

/// A server on `data_dir`, once it says it listens.
fn serve(data_dir: &Path) -> Child {
    let mut child = toolgate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start toolgate serve");
    let stderr = child.stderr.take().unwrap();
    let (ready, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("toolgate listening on") {
                let _ = ready.send(());
            }
        }
    });
    said.recv_timeout(Duration::from_secs(60))
        .expect("the server starts");
    child
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_data_directory_is_held_by_one_server_and_keys_still_work_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = serve(&data);

    let started = Instant::now();
    let second = output(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it stops at once"
    );
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let said = stderr(&second);
    assert!(said.contains("in use by another toolgate server"), "{said}");
    assert!(said.contains(&format!("pid {}", first.id())), "{said}");
    assert!(said.contains("listening on 127.0.0.1:"), "{said}");

    // Keys are made beside the running server.
    let key = output(&[
        "keys",
        "create",
        "--principal",
        "ops",
        "--profile",
        "readonly",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(key.status.success(), "{}", stderr(&key));

    // Once the holder is gone, however it went, the directory is free again.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut next = serve(&data);
    next.kill().unwrap();
    next.wait().unwrap();
}

#[test]
fn keys_are_only_made_for_known_profiles_in_existing_data_directories() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec!["keys", "create", "--principal", "ann"];
        args.extend_from_slice(extra);
        output(&args)
    };

    let out = create(&["--profile", "nope", "--data-dir", data, "--init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown profile `nope`"),
        "{}",
        stderr(&out)
    );
    assert!(
        !Path::new(data).exists(),
        "nothing was created for a refused key"
    );

    let out = create(&["--profile", "developer", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(said.contains("no toolgate data directory"), "{said}");
    assert!(said.contains("--init"), "{said}");
    assert!(!Path::new(data).exists());

    let out = create(&["--profile", "developer", "--data-dir", data, "--init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create(&["--profile", "networked", "--data-dir", data]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A profile that exists only in the operator's own policies is known through them.
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::copy(
        root.join("schema.cedarschema"),
        policies.join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        policies.join("entities.json"),
        r#"[{"uid": {"type": "Profile", "id": "auditors"}, "attrs": {}, "parents": []}]"#,
    )
    .unwrap();
    std::fs::write(policies.join("empty.cedar"), "").unwrap();
    let policies = policies.to_str().unwrap();
    let out = create(&[
        "--profile",
        "auditors",
        "--data-dir",
        data,
        "--policies",
        policies,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create(&["--profile", "auditors", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(2), "not a shipped profile");
}

#[test]
fn a_server_refuses_a_directory_of_somebody_elses_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = output(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a toolgate data directory"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("toolgate.db").exists());
}
