//! A test application: the real router on a random loopback port over a fresh store
//! (a temporary SQLite directory, or a fresh PostgreSQL database when
//! `CHANGEGATE_TEST_DATABASE_URL` is set), with a clock the test moves.

#![allow(dead_code)]

/// The webhook secrets the test server is configured with.
pub const GITHUB_SECRET: &str = "test-github-secret";
pub const GITLAB_TOKEN: &str = "test-gitlab-token";

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use server::metrics::Metrics;
use server::service::Service;
use server::{AppState, Clock};
use store::{NewEntry, User};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Which store a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A clock that stands still until the test moves it.
pub struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<TestClock>,
    pub store: Arc<dyn store::Store>,
    pub tokens: HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// The people of the tests: name, roles, groups, machine.
const PEOPLE: &[(&str, &[&str], &[&str], bool)] = &[
    ("alice", &["requester"], &[], false),
    ("bob", &["engineer"], &[], false),
    ("dave", &["peer_reviewer"], &[], false),
    ("erin", &["tester"], &[], false),
    ("frank", &["change_manager"], &[], false),
    ("grace", &["cab_member"], &[], false),
    ("heidi", &["cab_member"], &["dba"], false),
    ("ivan", &["release_manager"], &[], false),
    ("olivia", &["auditor"], &[], false),
    ("ci", &["release_manager"], &[], true),
];

/// Starts a test application, or returns `None` (and says why) when the backend is not
/// available here.
pub async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_with(backend, server::notify::Notifier::disabled()).await
}

/// Like [`spawn`], with notifications going where `notifier` sends them.
pub async fn spawn_with(backend: Backend, notifier: server::notify::Notifier) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg) = match backend {
        Backend::Sqlite => (None, None),
        Backend::Postgres => {
            let Ok(base) = std::env::var("CHANGEGATE_TEST_DATABASE_URL") else {
                eprintln!("skipped: CHANGEGATE_TEST_DATABASE_URL is not set");
                return None;
            };
            let db = tokio::task::spawn_blocking(move || PgDatabase::create(&base))
                .await
                .unwrap();
            (Some(db.url.clone()), Some(db))
        }
    };
    let path = dir.path().to_path_buf();
    // The PostgreSQL store blocks, so it is set up off the async threads.
    let (store, tokens) = tokio::task::spawn_blocking(move || {
        let store = store::open(&path, url.as_deref()).unwrap();
        let mut tokens = HashMap::new();
        for (name, roles, groups, machine) in PEOPLE {
            let token = server::auth::new_token();
            let user = User {
                name: name.to_string(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                machine: *machine,
                active: true,
                created_at: "2026-01-01T00:00:00Z".into(),
            };
            let entry = NewEntry {
                time: "2026-01-01T00:00:00Z".into(),
                actor: "changegate-test".into(),
                roles: vec!["admin".into()],
                kind: "user.added".into(),
                subject: Some(format!("user:{name}")),
                payload: json!({"name": name, "roles": user.roles, "groups": user.groups,
                                "machine": machine}),
            };
            store
                .add_user(&user, &server::auth::token_digest(&token), entry)
                .unwrap();
            tokens.insert(*name, token);
        }
        (store, tokens)
    })
    .await
    .unwrap();
    let clock = Arc::new(TestClock(Mutex::new(datetime!(2026-03-02 09:00 UTC))));
    let state = AppState {
        service: Arc::new(Service::new(store.clone(), domain::Policy::default())),
        clock: clock.clone(),
        metrics: Arc::new(Metrics::default()),
        evidence: Arc::new(server::routes::evidence::EvidenceHub::new(
            server::routes::evidence::EvidenceSettings {
                github_webhook_secret: Some(GITHUB_SECRET.into()),
                gitlab_webhook_token: Some(GITLAB_TOKEN.into()),
                rules: audit::Rules::default(),
            },
            notifier,
        )),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, server::router(state)).await;
    });
    Some(TestApp {
        base,
        client: reqwest::Client::new(),
        clock,
        store,
        tokens,
        _dir: dir,
        _pg: pg,
    })
}

impl TestApp {
    pub fn advance(&self, by: Duration) {
        *self.clock.0.lock().unwrap() += by;
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub async fn post(&self, who: &str, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(who, path, body.to_string()).await
    }

    pub async fn post_raw(&self, who: &str, path: &str, body: String) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[who])
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs JSON and gives the status, the content type and the raw answer.
    #[allow(dead_code)]
    pub async fn post_bytes(&self, who: &str, path: &str, body: Value) -> (u16, String, Vec<u8>) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[who])
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, content_type, r.bytes().await.unwrap().to_vec())
    }

    pub async fn get(&self, who: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[who])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Requests a change and returns its id.
    pub async fn request(&self, body: Value) -> String {
        let (status, v) = self.post("alice", "/api/v1/changes", body).await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Takes an action that must succeed; returns the answer.
    pub async fn act(&self, who: &str, id: &str, action: Value) -> Value {
        self.advance(Duration::minutes(5));
        let (status, v) = self
            .post(who, &format!("/api/v1/changes/{id}/actions"), action)
            .await;
        assert_eq!(status, 200, "{who} on {id}: {v}");
        v
    }

    /// Takes an action that must be refused; returns status and error code.
    pub async fn refused(&self, who: &str, id: &str, action: Value) -> (u16, String) {
        let (status, v) = self
            .post(who, &format!("/api/v1/changes/{id}/actions"), action)
            .await;
        assert!(status >= 400, "{who} on {id} was accepted: {v}");
        (
            status,
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
        )
    }

    pub async fn change(&self, id: &str) -> Value {
        let (status, v) = self.get("olivia", &format!("/api/v1/changes/{id}")).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub fn ledger_size(&self) -> u64 {
        // The PostgreSQL store blocks; keep it off the thread that drives async tasks.
        tokio::task::block_in_place(|| self.store.ledger_size().unwrap())
    }

    /// A normal application change driven to `stage` through the API.
    pub async fn normal_change_at(&self, stage: &str) -> String {
        let id = self
            .request(json!({"title": "Add refund codes", "type": "normal",
                            "category": "application", "systems": ["payments"]}))
            .await;
        let window_start = fmt(self.now() - Duration::hours(1));
        let window_end = fmt(self.now() + Duration::days(2));
        let steps: Vec<(&str, &str, Value)> = vec![
            (
                "evaluated",
                "frank",
                json!({"action": "evaluate", "risk": "medium", "priority": "low"}),
            ),
            (
                "authorized",
                "frank",
                json!({"action": "authorize", "assignee": "bob"}),
            ),
            (
                "planned",
                "bob",
                json!({"action": "plan", "implementation_plan": "deploy",
                                      "test_plan": "suite", "rollback_plan": "redeploy"}),
            ),
            (
                "peer_reviewed",
                "dave",
                json!({"action": "peer_review", "decision": "approved",
                                             "comment": "ok"}),
            ),
            (
                "tested",
                "erin",
                json!({"action": "test", "result": "passed", "evidence": "ci 1"}),
            ),
            (
                "approved_for_deployment",
                "frank",
                json!({"action": "approve_deployment",
                "window_start": window_start, "window_end": window_end}),
            ),
            (
                "implemented",
                "ivan",
                json!({"action": "implement", "environment": "production",
                                           "artifact": "app@sha256:1"}),
            ),
            (
                "post_implementation_reviewed",
                "frank",
                json!({"action": "review_implementation",
                                                             "outcome": "successful"}),
            ),
            (
                "communicated",
                "ivan",
                json!({"action": "communicate", "release_notes": "done"}),
            ),
            ("closed", "frank", json!({"action": "close"})),
        ];
        if stage == "requested" {
            return id;
        }
        for (reached, who, action) in steps {
            let v = self.act(who, &id, action).await;
            assert_eq!(v["stage"], reached, "{v}");
            if reached == stage {
                return id;
            }
        }
        panic!("unknown stage `{stage}`")
    }
}

pub fn fmt(t: OffsetDateTime) -> String {
    domain::action::format_instant(t.replace_nanosecond(0).unwrap())
}

/// A database of its own on the test PostgreSQL server, dropped afterwards.
pub struct PgDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    fn create(admin: &str) -> PgDatabase {
        let name = format!("cg_api_{:016x}", rand::random::<u64>());
        let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        PgDatabase {
            admin: admin.to_string(),
            name: name.clone(),
            url: format!("{base}/{name}"),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Dropping runs outside the test's runtime so the blocking client may start its own.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// Runs one scenario on each backend as its own test.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::support::spawn($crate::support::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::support::spawn($crate::support::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )+
        }
    };
}
