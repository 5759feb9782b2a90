//! Shared fixtures of the binary-level tests: a data directory with its own database
//! (SQLite in the directory, or a fresh PostgreSQL database), users added with the real
//! `changegate users add`, and a real `changegate serve` child process on a free loopback
//! port that is killed when the fixture is dropped.
//!
//! Every scenario runs once per backend through [`on_each_backend!`]: the PostgreSQL
//! variant needs `CHANGEGATE_TEST_DATABASE_URL` (a `postgres://` URL of a server where the
//! user may `CREATE DATABASE`) and returns early with a note on stderr without it.

// Each test file uses only part of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The binary under test, built by cargo for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_changegate");

/// The variable naming the PostgreSQL server the tests may create databases on.
pub const PG_ENV: &str = "CHANGEGATE_TEST_DATABASE_URL";

/// Runs a scenario `fn NAME(backend: Backend)` once on SQLite and once on PostgreSQL, as the
/// tests `NAME::sqlite` and `NAME::postgres`. Attributes written before `fn` (such as
/// `#[ignore = "…"]`) go on both.
#[macro_export]
macro_rules! on_each_backend {
    ($($(#[$attr:meta])* fn $name:ident;)+) => {
        $(
            mod $name {
                #[test]
                $(#[$attr])*
                fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite);
                }

                #[test]
                $(#[$attr])*
                fn postgres() {
                    match $crate::common::Backend::postgres() {
                        Some(backend) => super::$name(backend),
                        None => $crate::common::skip_postgres(stringify!($name)),
                    }
                }
            }
        )+
    };
}

/// Where a data directory keeps its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file inside the data directory.
    Sqlite,
    /// A PostgreSQL server, by the URL of a database the user can create databases from.
    Postgres { admin_url: String },
}

impl Backend {
    /// PostgreSQL, when the test environment names a server.
    pub fn postgres() -> Option<Backend> {
        let url = std::env::var(PG_ENV).ok()?;
        let url = url.trim();
        if url.is_empty() {
            return None;
        }
        Some(Backend::Postgres {
            admin_url: url.to_string(),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres { .. })
    }
}

/// Prints why a PostgreSQL variant did nothing.
pub fn skip_postgres(name: &str) {
    eprintln!("note: {name}::postgres skipped: set {PG_ENV}=postgres://… to run it");
}

/// A database of its own on the test PostgreSQL server, dropped with the fixture.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database, as passed to `--database-url`.
    pub url: String,
}

impl PgDatabase {
    pub fn create(admin_url: &str) -> PgDatabase {
        let suffix: u64 = rand::random();
        let name = format!("cg_test_{}_{suffix:016x}", std::process::id());
        let mut client = pg_connect(admin_url);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        PgDatabase {
            admin_url: admin_url.to_string(),
            url: url_with_database(admin_url, &name),
            name,
        }
    }
}

impl PgDatabase {
    /// A copy of this database, made with `CREATE DATABASE … TEMPLATE`: nobody may be
    /// connected to it, so a killed server's sessions are waited out.
    pub fn duplicate(&self) -> PgDatabase {
        let suffix: u64 = rand::random();
        let name = format!("cg_test_{}_{suffix:016x}", std::process::id());
        let mut client = pg_connect(&self.admin_url);
        let mut tries = 0;
        loop {
            match client.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {}", self.name)) {
                Ok(()) => break,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot copy the test database {}: {e}", self.name),
            }
        }
        PgDatabase {
            admin_url: self.admin_url.clone(),
            url: url_with_database(&self.admin_url, &name),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn pg_connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server of {PG_ENV}: {e}"))
}

/// The same server URL naming another database: the path is replaced, the query kept.
pub fn url_with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{PG_ENV} is not a URL"));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// A data directory, its database, and the API tokens of the users added to it.
pub struct DataEnv {
    pub backend: Backend,
    /// Holds the data directory and the server logs.
    tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub pg: Option<PgDatabase>,
    tokens: BTreeMap<String, String>,
}

/// The people and machines most scenarios act as: name, roles, groups, machine.
pub const CAST: &[(&str, &[&str], &[&str], bool)] = &[
    ("alice", &["requester"], &[], false),
    ("bob", &["engineer"], &[], false),
    ("carol", &["engineer"], &[], false),
    ("dave", &["peer_reviewer"], &[], false),
    ("erin", &["tester"], &[], false),
    ("frank", &["change_manager"], &[], false),
    ("grace", &["cab_member"], &[], false),
    ("heidi", &["cab_member"], &["dba"], false),
    ("ivan", &["release_manager"], &[], false),
    ("judy", &["business_owner"], &["acme"], false),
    ("olivia", &["auditor"], &[], false),
    ("bot", &["release_manager"], &[], true),
];

impl DataEnv {
    /// An empty data directory on `backend` (a fresh database on PostgreSQL).
    pub fn new(backend: Backend) -> DataEnv {
        let tmp = tempfile::Builder::new()
            .prefix("changegate-it-")
            .tempdir()
            .expect("temp dir");
        let data = tmp.path().join("data");
        let pg = match &backend {
            Backend::Sqlite => None,
            Backend::Postgres { admin_url } => Some(PgDatabase::create(admin_url)),
        };
        DataEnv {
            backend,
            tmp,
            data,
            pg,
            tokens: BTreeMap::new(),
        }
    }

    /// The data directory with every user of [`CAST`] added.
    pub fn with_cast(backend: Backend) -> DataEnv {
        let mut env = DataEnv::new(backend);
        for (name, roles, groups, machine) in CAST {
            env.add_user_with(name, roles, groups, *machine);
        }
        env
    }

    /// A directory beside the data directory, for logs and copies.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// `--data DIR [--database-url URL]`.
    pub fn store_args(&self) -> Vec<String> {
        let mut args = vec!["--data".to_string(), self.data.display().to_string()];
        if let Some(pg) = &self.pg {
            args.push("--database-url".into());
            args.push(pg.url.clone());
        }
        args
    }

    /// Runs `changegate ARGS… --data DIR [--database-url URL]`.
    pub fn cli(&self, args: &[&str]) -> Output {
        run_bin(args.iter().map(|s| s.to_string()).chain(self.store_args()))
    }

    /// Adds a user with the real CLI and remembers its token.
    pub fn add_user(&mut self, name: &str, roles: &[&str]) -> String {
        self.add_user_with(name, roles, &[], false)
    }

    pub fn add_user_with(
        &mut self,
        name: &str,
        roles: &[&str],
        groups: &[&str],
        machine: bool,
    ) -> String {
        let mut args = vec!["users".to_string(), "add".into(), name.into()];
        for r in roles {
            args.extend(["--role".to_string(), r.to_string()]);
        }
        for g in groups {
            args.extend(["--group".to_string(), g.to_string()]);
        }
        if machine {
            args.push("--machine".into());
        }
        args.extend(self.store_args());
        let out = run_bin(args);
        assert!(
            out.status.success(),
            "users add {name} failed: {}",
            text(&out.stderr)
        );
        let token = last_line(&out.stdout);
        assert!(
            token.starts_with("cg_"),
            "the last line of `users add` is not a token: {token:?}"
        );
        self.tokens.insert(name.to_string(), token.clone());
        token
    }

    /// A copy of the data directory and its database, to damage without harming this one.
    /// The store must not be in use.
    pub fn duplicate(&self) -> DataEnv {
        let tmp = tempfile::Builder::new()
            .prefix("changegate-it-")
            .tempdir()
            .expect("temp dir");
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        for entry in std::fs::read_dir(&self.data).expect("read data dir") {
            let entry = entry.expect("dir entry");
            if entry.file_type().expect("file type").is_file() {
                std::fs::copy(entry.path(), data.join(entry.file_name())).expect("copy");
            }
        }
        DataEnv {
            backend: self.backend.clone(),
            tmp,
            data,
            pg: self.pg.as_ref().map(PgDatabase::duplicate),
            tokens: self.tokens.clone(),
        }
    }

    /// Remembers a token obtained another way (such as the demo's token file).
    pub fn remember_token(&mut self, name: &str, token: &str) {
        self.tokens.insert(name.to_string(), token.to_string());
    }

    /// The token of a user added through this fixture.
    pub fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("no user `{name}` was added"))
    }

    /// Runs `changegate verify` on this data.
    pub fn verify(&self) -> Output {
        self.cli(&["verify"])
    }

    /// `verify`'s one-line summary without its timing, to compare two runs.
    pub fn verify_summary(&self) -> String {
        let s = self.assert_verifies();
        let (kept, _timing) = s.trim_end().rsplit_once(" (").expect("summary with timing");
        kept.to_string()
    }

    /// Runs `changegate verify` and insists that it passes.
    pub fn assert_verifies(&self) -> String {
        let out = self.verify();
        assert_eq!(
            out.status.code(),
            Some(0),
            "verify failed: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

/// Runs the binary with these arguments and captures its output.
pub fn run_bin<I: IntoIterator<Item = String>>(args: I) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CHANGEGATE_DATA")
        .env_remove("CHANGEGATE_DATABASE_URL")
        .env_remove("CHANGEGATE_LISTEN")
        .env_remove("CHANGEGATE_POLICY")
        .stdin(Stdio::null())
        .output()
        .expect("run changegate")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn last_line(bytes: &[u8]) -> String {
    text(bytes)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// A port nobody listens on right now, found by binding port 0.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// An HTTP answer: status, the JSON body (Null when not JSON) and the raw text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub content_type: String,
    pub www_authenticate: Option<String>,
}

impl Reply {
    /// The `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.body
    }

    /// Asserts an error answer with this status and code in the API's error form.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "error answer is not JSON: {}",
            self.content_type
        );
        let message = self.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            !message.is_empty(),
            "error without a message: {}",
            self.text
        );
    }
}

/// A running `changegate serve` on its own data directory, killed on drop.
pub struct TestServer {
    pub env: DataEnv,
    child: Option<Child>,
    pub base: String,
    client: reqwest::blocking::Client,
    extra_args: Vec<String>,
    starts: u32,
}

impl TestServer {
    /// Starts a server on `env`.
    pub fn start(env: DataEnv) -> TestServer {
        TestServer::start_with(env, &[])
    }

    /// Starts a server on a fresh data directory holding [`CAST`].
    pub fn with_cast(backend: Backend) -> TestServer {
        TestServer::start(DataEnv::with_cast(backend))
    }

    /// Starts a server with extra `serve` arguments (such as `--policy FILE`).
    pub fn start_with(env: DataEnv, extra_args: &[&str]) -> TestServer {
        let mut server = TestServer {
            env,
            child: None,
            base: String::new(),
            client: http_client(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        server.spawn();
        server
    }

    fn log_path(&self) -> PathBuf {
        self.env.scratch().join("server.log")
    }

    /// The server's log so far (stderr of every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        for _attempt in 0..5 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .expect("server log");
            let mut cmd = Command::new(BIN);
            cmd.arg("serve")
                .args(self.env.store_args())
                .args(["--listen", &listen])
                .args(&self.extra_args)
                .env_remove("CHANGEGATE_DATA")
                .env_remove("CHANGEGATE_DATABASE_URL")
                .env_remove("CHANGEGATE_POLICY")
                .env("CHANGEGATE_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let mut child = cmd.spawn().expect("spawn changegate serve");
            self.starts += 1;
            let base = format!("http://{listen}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = self.log();
                    if log.contains("cannot listen") {
                        // Someone took the port between our probe and the bind: retry.
                        break;
                    }
                    panic!("changegate serve exited with {status} before it was ready:\n{log}");
                }
                let healthy = self
                    .client
                    .get(format!("{base}/healthz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .is_ok_and(|r| r.status().as_u16() == 200);
                if healthy {
                    self.child = Some(child);
                    self.base = base;
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("changegate serve did not answer /healthz:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start changegate serve on a free port");
    }

    /// Kills the server with SIGKILL (`kill -9`) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and hands its data directory over.
    pub fn into_env(mut self) -> DataEnv {
        self.kill9();
        // An empty SQLite fixture (a bare temp dir) takes the place of the handed-over one.
        std::mem::replace(&mut self.env, DataEnv::new(Backend::Sqlite))
    }

    /// Starts the server again on the same data (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn token(&self, user: &str) -> &str {
        self.env.token(user)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that shares nothing with the fixture's, for use on other threads.
    pub fn client(&self) -> reqwest::blocking::Client {
        http_client()
    }

    /// GET as `user` (`None`: without a token).
    pub fn get(&self, user: Option<&str>, path: &str) -> Reply {
        let token = user.map(|u| self.token(u).to_string());
        self.send(self.client.get(self.url(path)), token.as_deref())
    }

    /// GET with a raw `Authorization` header value.
    pub fn get_with_auth(&self, authorization: &str, path: &str) -> Reply {
        let request = self
            .client
            .get(self.url(path))
            .header("authorization", authorization);
        self.send(request, None)
    }

    /// POST a JSON value as `user`.
    pub fn post(&self, user: Option<&str>, path: &str, body: &Value) -> Reply {
        self.post_raw(user, path, &body.to_string())
    }

    /// POST a raw body (declared as JSON) as `user`.
    pub fn post_raw(&self, user: Option<&str>, path: &str, body: &str) -> Reply {
        let token = user.map(|u| self.token(u).to_string());
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request, token.as_deref())
    }

    fn send(&self, mut request: reqwest::blocking::RequestBuilder, token: Option<&str>) -> Reply {
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("request failed: {e}\nserver log:\n{}", self.log()));
        reply(response)
    }

    /// Requests a change as `user`; returns the answer.
    pub fn create(&self, user: &str, body: &Value) -> Reply {
        self.post(Some(user), "/api/v1/changes", body)
    }

    /// Requests a change that must be accepted; returns its id.
    #[track_caller]
    pub fn create_ok(&self, user: &str, body: &Value) -> String {
        let r = self.create(user, body);
        r.expect(201);
        r.body["id"].as_str().expect("id").to_string()
    }

    /// Takes an action on a change as `user`.
    pub fn act(&self, user: &str, id: &str, action: &Value) -> Reply {
        self.post(Some(user), &format!("/api/v1/changes/{id}/actions"), action)
    }

    /// Takes an action that must be accepted; returns the answer's body.
    #[track_caller]
    pub fn act_ok(&self, user: &str, id: &str, action: &Value) -> Value {
        let r = self.act(user, id, action);
        assert_eq!(
            r.status, 200,
            "{} by {user} on {id} refused: {}",
            action["action"], r.text
        );
        r.body
    }

    /// Reads one change (as the auditor, who may read everything).
    #[track_caller]
    pub fn change(&self, id: &str) -> Value {
        let r = self.get(Some(self.reader()), &format!("/api/v1/changes/{id}"));
        r.expect(200).clone()
    }

    fn reader(&self) -> &'static str {
        if self.env.tokens.contains_key("olivia") {
            "olivia"
        } else {
            "alice"
        }
    }

    /// The latest signed checkpoint.
    #[track_caller]
    pub fn checkpoint(&self) -> Value {
        let r = self.get(Some(self.reader()), "/api/v1/ledger/checkpoint");
        r.expect(200).clone()
    }

    /// The size of the latest signed checkpoint.
    #[track_caller]
    pub fn ledger_size(&self) -> u64 {
        self.checkpoint()["size"].as_u64().expect("size")
    }

    /// Every change of the listing, following `next` pages.
    #[track_caller]
    pub fn list_all(&self, filter: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/changes?limit=500{filter}");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let r = self.get(Some(self.reader()), &path);
            let body = r.expect(200);
            out.extend(body["changes"].as_array().expect("changes").iter().cloned());
            match body["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return out,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// Reads an answer into a [`Reply`].
pub fn reply(mut response: reqwest::blocking::Response) -> Reply {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let mut text = String::new();
    let _ = response.read_to_string(&mut text);
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        text,
        content_type,
        www_authenticate,
    }
}

/// An instant as the API takes it: RFC 3339.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format time")
}

/// Now, plus or minus some minutes, as RFC 3339.
pub fn minutes_from_now(minutes: i64) -> String {
    rfc3339(OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
}

/// A normal application change request.
pub fn normal_change(title: &str) -> Value {
    serde_json::json!({
        "title": title,
        "description": "integration test change",
        "type": "normal",
        "category": "application",
        "systems": ["payments-api"],
    })
}

/// Actions that take a normal, low-risk application change from `requested` to
/// `approved_for_deployment`, with the actor of each: built by `bob`.
pub fn to_approved(window_start: &str, window_end: &str) -> Vec<(&'static str, Value)> {
    use serde_json::json;
    vec![
        (
            "frank",
            json!({"action": "evaluate", "risk": "low", "priority": "medium",
                   "impact": "none expected"}),
        ),
        (
            "grace",
            json!({"action": "authorize", "assignee": "bob", "release": "2026.12"}),
        ),
        (
            "bob",
            json!({"action": "plan", "implementation_plan": "deploy with the pipeline",
                   "test_plan": "unit and smoke tests", "rollback_plan": "redeploy previous"}),
        ),
        (
            "dave",
            json!({"action": "peer_review", "decision": "approved", "comment": "fine"}),
        ),
        (
            "erin",
            json!({"action": "test", "result": "passed", "evidence": "ci run #1 green"}),
        ),
        (
            "frank",
            json!({"action": "approve_deployment", "window_start": window_start,
                   "window_end": window_end}),
        ),
    ]
}

/// The actions after `approved_for_deployment` up to `closed`.
pub fn to_closed() -> Vec<(&'static str, Value)> {
    use serde_json::json;
    vec![
        (
            "ivan",
            json!({"action": "implement", "environment": "production",
                   "artifact": "payments-api@sha256:abc"}),
        ),
        (
            "frank",
            json!({"action": "review_implementation", "outcome": "successful"}),
        ),
        (
            "ivan",
            json!({"action": "communicate", "release_notes": "refund codes are live"}),
        ),
        ("frank", json!({"action": "close"})),
    ]
}

/// Runs these actions in order; each must be accepted.
#[track_caller]
pub fn run_actions(server: &TestServer, id: &str, actions: &[(&str, Value)]) {
    for (user, action) in actions {
        server.act_ok(user, id, action);
    }
}
