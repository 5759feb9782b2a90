//! The command line outside the HTTP API: `users add` refusing bad input without writing,
//! `verify` on stores with nothing in them, and `serve` refusing to start (bad policy, busy
//! port) without recording anything.

mod common;

use common::{run_bin, text, Backend, DataEnv};

crate::on_each_backend! {
    fn users_add_refuses_a_bad_role_and_names_it;
    fn users_add_refuses_a_duplicate_user;
    fn users_add_refuses_bad_names_and_groups;
    fn users_add_prints_a_fresh_token_last;
    fn verify_on_a_store_without_events_is_fine;
    fn serve_with_a_bad_policy_records_nothing;
    fn serve_on_a_busy_port_records_nothing;
}

fn summary(env: &DataEnv) -> String {
    env.verify_summary()
}

fn users_add_refuses_a_bad_role_and_names_it(backend: Backend) {
    let mut env = DataEnv::new(backend);
    env.add_user("alice", &["requester"]);
    let before = summary(&env);
    for roles in [
        vec!["deployer"],
        vec!["engineer", "deployer"],
        vec!["Engineer"],
    ] {
        let mut args = vec!["users", "add", "bob"];
        for r in &roles {
            args.extend(["--role", r]);
        }
        let out = env.cli(&args);
        assert!(!out.status.success(), "{roles:?} accepted");
        let stderr = text(&out.stderr);
        let bad = roles.last().unwrap();
        assert!(
            stderr.contains(&format!("`{bad}`")),
            "the message does not name `{bad}`: {stderr}"
        );
        // It lists the roles that exist.
        assert!(stderr.contains("change_manager"), "{stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
    // Without any role.
    let out = env.cli(&["users", "add", "bob"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--role"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(summary(&env), before, "a refused user was recorded");
    let list = text(&env.cli(&["users", "list"]).stdout);
    assert!(!list.contains("bob"), "{list}");
}

fn users_add_refuses_a_duplicate_user(backend: Backend) {
    let mut env = DataEnv::new(backend);
    env.add_user("alice", &["requester"]);
    let before = summary(&env);
    let out = env.cli(&["users", "add", "alice", "--role", "change_manager"]);
    assert!(!out.status.success(), "a second `alice` was added");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("alice") && stderr.contains("already exists"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "printed a token: {}",
        text(&out.stdout)
    );
    assert_eq!(summary(&env), before);
    // The first alice keeps her roles.
    let list = text(&env.cli(&["users", "list"]).stdout);
    let line = list.lines().find(|l| l.starts_with("alice")).expect(&list);
    assert!(line.contains("requester"), "{line}");
    assert!(!line.contains("change_manager"), "{line}");
}

fn users_add_refuses_bad_names_and_groups(backend: Backend) {
    let env = DataEnv::new(backend);
    let long = "x".repeat(65);
    for (name, extra) in [
        ("two words", vec![]),
        ("", vec![]),
        ("changegate-server", vec![]),
        ("ChangeGate-cli", vec![]),
        (long.as_str(), vec![]),
        ("semi;colon", vec![]),
        ("fine", vec!["--group", "cab_member"]),
        ("fine", vec!["--group", ""]),
    ] {
        let mut args = vec!["users", "add", name, "--role", "engineer"];
        args.extend(extra.iter().copied());
        let out = env.cli(&args);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!text(&out.stderr).is_empty());
    }
    // Nothing was recorded (the store may not even exist yet, so list first).
    let list = env.cli(&["users", "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert_eq!(text(&list.stdout).trim(), "");
    let s = summary(&env);
    assert!(s.contains(" 0 events"), "{s}");
}

fn users_add_prints_a_fresh_token_last(backend: Backend) {
    let mut env = DataEnv::new(backend);
    let a = env.add_user("alice", &["requester"]);
    let b = env.add_user_with("ci", &["release_manager"], &["pipelines"], true);
    for t in [&a, &b] {
        let hex = t.strip_prefix("cg_").unwrap();
        assert_eq!(hex.len(), 64, "{t}");
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{t}");
    }
    assert_ne!(a, b);
    let list = text(&env.cli(&["users", "list"]).stdout);
    let ci = list.lines().find(|l| l.starts_with("ci ")).expect(&list);
    assert!(ci.contains("(machine)"), "{ci}");
    assert!(ci.contains("groups=pipelines"), "{ci}");
    assert!(ci.contains("active"), "{ci}");
    // The token is not stored in the clear anywhere in the data directory.
    for entry in std::fs::read_dir(&env.data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let hex = a.strip_prefix("cg_").unwrap().as_bytes();
        assert!(
            !bytes.windows(hex.len()).any(|w| w == hex),
            "a token is stored in the clear"
        );
    }
    let s = summary(&env);
    assert!(s.contains("2 users"), "{s}");
}

fn verify_on_a_store_without_events_is_fine(backend: Backend) {
    let env = DataEnv::new(backend);
    // `users list` opens (and so creates) the store and records nothing.
    let list = env.cli(&["users", "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let s = env.assert_verifies();
    assert_eq!(s.lines().count(), 1, "{s}");
    assert!(s.starts_with("ledger intact: 0 events"), "{s}");
    assert!(s.contains("0 users and 0 changes"), "{s}");
    if !env.backend.is_postgres() {
        // A directory with nothing in it is not a changegate store: verify says so and
        // creates nothing there.
        let bare = tempfile::tempdir().unwrap();
        let out = run_bin([
            "verify".to_string(),
            "--data".into(),
            bare.path().display().to_string(),
        ]);
        assert!(!out.status.success(), "{}", text(&out.stdout));
        assert!(!text(&out.stderr).is_empty());
        assert_eq!(
            std::fs::read_dir(bare.path()).unwrap().count(),
            0,
            "verify wrote into an empty directory"
        );
    }
}

fn serve_with_a_bad_policy_records_nothing(backend: Backend) {
    let mut env = DataEnv::new(backend);
    env.add_user("alice", &["requester"]);
    let before = summary(&env);
    let policy = env.scratch().join("bad-policy.toml");
    for content in [
        "emergency_approval_window_hours = 0\n",
        "[roles]\nimplement = [\"wizard\"]\n",
        "no_such_setting = true\n",
        "this is not toml",
    ] {
        std::fs::write(&policy, content).unwrap();
        let check = run_bin([
            "policy".to_string(),
            "check".into(),
            policy.display().to_string(),
        ]);
        assert!(!check.status.success(), "policy check accepted {content:?}");
        let port = common::free_port().to_string();
        let mut args = vec!["serve".to_string()];
        args.extend(env.store_args());
        args.extend([
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--policy".into(),
            policy.display().to_string(),
        ]);
        let out = run_bin(args);
        assert!(!out.status.success(), "serve started with {content:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("bad-policy.toml"), "{stderr}");
    }
    let missing = env.scratch().join("missing.toml");
    let mut args = vec!["serve".to_string()];
    args.extend(env.store_args());
    args.extend([
        "--listen".into(),
        format!("127.0.0.1:{}", common::free_port()),
        "--policy".into(),
        missing.display().to_string(),
    ]);
    let out = run_bin(args);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("missing.toml"));
    assert_eq!(summary(&env), before, "a failed start recorded something");
}

fn serve_on_a_busy_port_records_nothing(backend: Backend) {
    let mut env = DataEnv::new(backend);
    env.add_user("alice", &["requester"]);
    let before = summary(&env);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = vec!["serve".to_string()];
    args.extend(env.store_args());
    args.extend(["--listen".into(), addr.clone()]);
    let out = run_bin(args);
    assert!(
        !out.status.success(),
        "serve claims to listen on a busy port"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&addr), "{stderr}");
    assert_eq!(summary(&env), before, "a start that could not serve wrote");
    drop(taken);
}
