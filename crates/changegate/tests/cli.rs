//! The binary as a user runs it: adding users, the demo, `verify` on intact and tampered
//! data, and durability of acknowledged actions across `kill -9` of the server.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_changegate");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Adds a user and returns its token (the last line of standard output).
fn add_user(data: &Path, db: Option<&str>, name: &str, roles: &[&str]) -> String {
    let mut args = vec!["users", "add", name, "--data", data.to_str().unwrap()];
    for r in roles {
        args.extend(["--role", r]);
    }
    if let Some(url) = db {
        args.extend(["--database-url", url]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `changegate serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, db: Option<&str>) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &listen,
        ])
        .env("CHANGEGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(url) = db {
            cmd.args(["--database-url", url]);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://{listen}");
        let started = Instant::now();
        loop {
            if reqwest::blocking::get(format!("{base}/healthz")).is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, base }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn users_add_refuses_bad_input_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = run(&[
        "users", "add", "alice", "--role", "deployer", "--data", data,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown role `deployer`"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "users",
        "add",
        "alice",
        "--role",
        "engineer",
        "--group",
        "cab_member",
        "--data",
        data,
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is the name of a role"),
        "{}",
        stderr(&o)
    );
    add_user(dir.path(), None, "alice", &["engineer"]);
    let o = run(&["users", "add", "alice", "--role", "tester", "--data", data]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

#[test]
fn verify_refuses_a_directory_that_holds_no_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let o = run(&["verify", "--data", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        !missing.exists(),
        "verify created the directory it was asked to check"
    );
}

#[test]
fn the_demo_quarter_verifies_and_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = run(&["demo", "--data", data]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["verify", "--data", data]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(summary.starts_with("ledger intact:"), "{summary}");

    let tampers = [
        ("UPDATE ledger_entries SET bytes = CAST(replace(CAST(bytes AS TEXT), 'Z\"', 'Y\"') AS BLOB) WHERE seq = 40",
         "event 40"),
        ("DELETE FROM ledger_entries WHERE seq = 100", "event 100"),
        ("UPDATE ledger_entries SET subject = NULL WHERE seq = 181", "event 181"),
        ("DELETE FROM checkpoints", "not covered by any signed checkpoint"),
        ("UPDATE users SET roles = '[\"requester\",\"cab_member\"]' WHERE name = 'alice'",
         "user `alice`"),
    ];
    for (sql, named) in tampers {
        let copy = tempfile::tempdir().unwrap();
        for f in ["changegate.db", "ledger-signing.key"] {
            std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        let conn = rusqlite::Connection::open(copy.path().join("changegate.db")).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let o = run(&["verify", "--data", copy.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{sql}: {}", stderr(&o));
        assert!(stderr(&o).contains(named), "{sql}: {}", stderr(&o));
    }
}

/// Fires creates and evaluations from several threads, kills the server with SIGKILL in
/// the middle of it, and returns every change id with the version the server acknowledged.
fn burst_then_kill(server: Server, alice: &str, frank: &str) -> Vec<(String, u64)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (base, alice, frank) = (server.base.clone(), alice.to_string(), frank.to_string());
            let acked = acked.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(10) {
                    let Ok(r) = client
                        .post(format!("{base}/api/v1/changes"))
                        .bearer_auth(&alice)
                        .json(&json!({"title": "crash", "type": "normal",
                                      "category": "application", "systems": ["a"]}))
                        .send()
                    else {
                        return;
                    };
                    let Ok(v) = r.json::<Value>() else { return };
                    let Some(id) = v["id"].as_str().map(str::to_string) else {
                        return;
                    };
                    acked.lock().unwrap().push((id.clone(), 1));
                    let Ok(r) = client
                        .post(format!("{base}/api/v1/changes/{id}/actions"))
                        .bearer_auth(&frank)
                        .json(&json!({"action": "evaluate", "risk": "low", "priority": "low"}))
                        .send()
                    else {
                        return;
                    };
                    if r.status() == 200 {
                        acked.lock().unwrap().push((id, 2));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

fn acknowledged_actions_survive_kill_9(db: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let alice = add_user(dir.path(), db, "alice", &["requester"]);
    let frank = add_user(dir.path(), db, "frank", &["change_manager"]);
    let mut all: Vec<(String, u64)> = Vec::new();
    for round in 0..3 {
        let server = Server::start(dir.path(), db);
        let acked = burst_then_kill(server, &alice, &frank);
        assert!(
            acked.len() > 10,
            "round {round}: only {} acknowledged",
            acked.len()
        );
        all.extend(acked);
        let server = Server::start(dir.path(), db);
        let client = reqwest::blocking::Client::new();
        for (id, version) in &all {
            let v: Value = client
                .get(format!("{}/api/v1/changes/{id}", server.base))
                .bearer_auth(&frank)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert!(
                v["version"].as_u64().unwrap_or(0) >= *version,
                "round {round}: {id} acknowledged at version {version}, found {v}"
            );
        }
        server.kill();
    }
    let mut args = vec!["verify", "--data", dir.path().to_str().unwrap()];
    if let Some(url) = db {
        args.extend(["--database-url", url]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn acknowledged_actions_survive_kill_9_on_sqlite() {
    acknowledged_actions_survive_kill_9(None);
}

#[test]
fn acknowledged_actions_survive_kill_9_on_postgres() {
    let Ok(admin) = std::env::var("CHANGEGATE_TEST_DATABASE_URL") else {
        eprintln!("skipped: CHANGEGATE_TEST_DATABASE_URL is not set");
        return;
    };
    let name = format!("cg_crash_{:016x}", rand::random::<u64>());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    acknowledged_actions_survive_kill_9(Some(&format!("{base}/{name}")));
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
