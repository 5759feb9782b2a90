//! Outgoing notifications against real receivers on loopback: an HTTP server in the test
//! that records what it is sent and answers as scripted, and Python's aiosmtpd as the
//! mail relay.

use std::collections::VecDeque;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use server::notify::{
    Notification, NotificationKind, Notifier, NotifyConfig, NotifyError, RetryConfig, SmtpConfig,
    SmtpTls, WebhookFormat, WebhookTarget,
};
use sha2::Sha256;

/// How the receiver answers one request.
#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    /// A status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Never answers.
    Hang,
}

#[derive(Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    otherwise: Reply,
}

/// An HTTP server on 127.0.0.1 that records every request, answers with the scripted
/// replies in order and then with `otherwise`.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(script: &[Reply], otherwise: Reply) -> Receiver {
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.iter().copied().collect()),
            otherwise,
        });
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(state.otherwise);
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::RetryAfter(code, seconds) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", seconds.to_string())],
        )
            .into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

fn notification(kind: NotificationKind, id: &str) -> Notification {
    Notification {
        kind,
        id: id.to_string(),
        title: "Unauthorized change on payments-api".to_string(),
        text: "A commit reached main without an approved change.".to_string(),
        change: Some("CHG-000042".to_string()),
        repository: Some("acme/payments-api".to_string()),
        commit: Some("9fceb02d0ae598e95dc970b74767f19372d61af8".to_string()),
        environment: Some("production".to_string()),
        reasons: vec![
            "no approved change references the commit".to_string(),
            "pushed by <bob> & merged without review".to_string(),
        ],
        at: "2026-03-01T12:00:00Z".to_string(),
        link: Some("https://changegate.example.com/changes/CHG-000042".to_string()),
    }
}

fn webhook(url: String) -> WebhookTarget {
    WebhookTarget {
        url,
        secret: None,
        format: WebhookFormat::Json,
        events: Vec::new(),
    }
}

/// Waits of tens of milliseconds, so that retry tests take little time.
fn quick_retry(attempts: u32) -> RetryConfig {
    RetryConfig {
        attempts,
        base_delay_ms: 10,
        multiplier: 2.0,
        max_delay_ms: 200,
        timeout_ms: 5_000,
    }
}

fn config(webhooks: Vec<WebhookTarget>, retry: RetryConfig) -> NotifyConfig {
    NotifyConfig {
        webhooks,
        smtp: None,
        retry,
        queue_capacity: 100,
    }
}

fn body_json(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn json_webhook_carries_the_notification_headers_and_a_verifiable_signature() {
    let receiver = Receiver::start(&[], Reply::Status(204)).await;
    let mut target = webhook(receiver.url("/hooks/audit?token=abc"));
    target.secret = Some("s3cret".to_string());
    let notifier = Notifier::start(config(vec![target], quick_retry(3))).unwrap();

    let sent = notification(NotificationKind::UnauthorizedChange, "ntf-1");
    notifier.send(sent.clone());
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/hooks/audit");
    let body = body_json(r);
    assert_eq!(body["kind"], "unauthorized_change");
    assert_eq!(body["id"], "ntf-1");
    assert_eq!(body["title"], sent.title);
    assert_eq!(body["text"], sent.text);
    assert_eq!(body["change"], "CHG-000042");
    assert_eq!(body["repository"], "acme/payments-api");
    assert_eq!(body["commit"], sent.commit.as_deref().unwrap());
    assert_eq!(body["environment"], "production");
    assert_eq!(body["reasons"], json!(sent.reasons));
    assert_eq!(body["at"], "2026-03-01T12:00:00Z");
    assert_eq!(body["link"], sent.link.as_deref().unwrap());
    let round_trip: Notification = serde_json::from_value(body).unwrap();
    assert_eq!(round_trip, sent);

    assert_eq!(header(r, "content-type"), Some("application/json"));
    assert_eq!(
        header(r, "user-agent"),
        Some(concat!("changegate/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(header(r, "x-changegate-event"), Some("unauthorized_change"));
    assert_eq!(header(r, "x-changegate-delivery"), Some("ntf-1"));

    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        header(r, "x-changegate-signature-256"),
        Some(expected.as_str())
    );

    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (1, 0, 0));
}

#[tokio::test]
async fn slack_webhook_has_text_and_blocks_and_no_signature_without_a_secret() {
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let mut target = webhook(receiver.url("/services/T000/B000/XXXX"));
    target.format = WebhookFormat::Slack;
    let notifier = Notifier::start(config(vec![target], quick_retry(3))).unwrap();

    notifier.send(notification(NotificationKind::Exception, "ntf-2"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(header(r, "x-changegate-signature-256"), None);
    assert_eq!(header(r, "x-changegate-event"), Some("exception"));
    let body = body_json(r);
    let text = body["text"].as_str().expect("slack bodies have text");
    assert!(
        text.contains("Unauthorized change on payments-api"),
        "{text}"
    );
    assert!(text.contains("without an approved change"), "{text}");
    let blocks = body["blocks"].as_array().expect("blocks");
    let all = serde_json::to_string(blocks).unwrap();
    assert!(all.contains("CHG-000042"), "{all}");
    assert!(all.contains("acme/payments-api"), "{all}");
    // Slack's mrkdwn control characters are escaped inside the blocks.
    assert!(all.contains("&lt;bob&gt; &amp; merged"), "{all}");
    assert!(!all.contains("<bob>"), "{all}");
}

#[tokio::test]
async fn each_webhook_gets_only_the_kinds_it_asked_for() {
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let all = webhook(receiver.url("/all"));
    let mut deploys = webhook(receiver.url("/deploys"));
    deploys.events = vec![NotificationKind::Deployed];
    let notifier = Notifier::start(config(vec![all, deploys], quick_retry(3))).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-merged"));
    notifier.send(notification(NotificationKind::Deployed, "ntf-deployed"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let mut seen: Vec<(String, String)> = receiver
        .requests()
        .iter()
        .map(|r| {
            let id = header(r, "x-changegate-delivery").unwrap().to_string();
            (r.path.clone(), id)
        })
        .collect();
    seen.sort();
    let expected = [
        ("/all", "ntf-deployed"),
        ("/all", "ntf-merged"),
        ("/deploys", "ntf-deployed"),
    ]
    .map(|(p, i)| (p.to_string(), i.to_string()));
    assert_eq!(seen, expected);
    assert_eq!(notifier.stats().delivered, 3);
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_body_and_delivery_id() {
    let receiver = Receiver::start(
        &[Reply::Status(500), Reply::Status(502)],
        Reply::Status(200),
    )
    .await;
    let mut target = webhook(receiver.url("/hook"));
    target.secret = Some("k".to_string());
    let notifier = Notifier::start(config(vec![target], quick_retry(5))).unwrap();

    notifier.send(notification(NotificationKind::Deployed, "ntf-3"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests[1..] {
        assert_eq!(r.body, requests[0].body);
        assert_eq!(header(r, "x-changegate-delivery"), Some("ntf-3"));
        assert_eq!(
            header(r, "x-changegate-signature-256"),
            header(&requests[0], "x-changegate-signature-256")
        );
    }
    let stats = notifier.stats();
    assert_eq!(
        (stats.delivered, stats.failed, stats.retried, stats.dropped),
        (1, 0, 2, 0)
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let receiver = Receiver::start(&[], Reply::Status(400)).await;
    let target = webhook(receiver.url("/hook"));
    let notifier = Notifier::start(config(vec![target], quick_retry(5))).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-4"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    assert_eq!(receiver.requests().len(), 1);
    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 0));
}

#[tokio::test]
async fn a_closed_port_is_given_up_after_the_configured_attempts() {
    let port = free_port();
    let target = webhook(format!("http://127.0.0.1:{port}/hook"));
    let notifier = Notifier::start(config(vec![target], quick_retry(3))).unwrap();

    let started = Instant::now();
    notifier.send(notification(NotificationKind::Merged, "ntf-5"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 2));
    // Two waits of the backoff: 10 ms, then 20 ms.
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let receiver = Receiver::start(&[], Reply::Hang).await;
    let target = webhook(receiver.url("/hook"));
    let retry = RetryConfig {
        timeout_ms: 200,
        ..quick_retry(2)
    };
    let notifier = Notifier::start(config(vec![target], retry)).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-6"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    assert_eq!(receiver.requests().len(), 2);
    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 1));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start(&[Reply::RetryAfter(429, 1)], Reply::Status(200)).await;
    let target = webhook(receiver.url("/hook"));
    let retry = RetryConfig {
        max_delay_ms: 5_000,
        ..quick_retry(3)
    };
    let notifier = Notifier::start(config(vec![target], retry)).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-7"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.retried), (1, 1));
}

#[tokio::test]
async fn retry_after_is_capped_by_the_longest_wait() {
    let receiver = Receiver::start(&[Reply::RetryAfter(503, 3_600)], Reply::Status(200)).await;
    let target = webhook(receiver.url("/hook"));
    let notifier = Notifier::start(config(vec![target], quick_retry(3))).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-8"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(200), "waited {waited:?}");
    assert_eq!(notifier.stats().delivered, 1);
}

#[tokio::test]
async fn a_full_queue_drops_without_blocking_and_counts_the_drops() {
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    let target = webhook(receiver.url("/hook"));
    let mut config = config(vec![target], quick_retry(3));
    config.queue_capacity = 4;
    let notifier = Notifier::start(config).unwrap();

    // On this single-threaded runtime the worker cannot take anything off the queue until
    // the test awaits, so the first four fit and the other sixteen find it full.
    let started = Instant::now();
    for i in 0..20 {
        notifier.send(notification(NotificationKind::Merged, &format!("ntf-q{i}")));
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(notifier.stats().dropped, 16);

    assert!(notifier.flush(Duration::from_secs(10)).await);
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| header(r, "x-changegate-delivery").unwrap().to_string())
        .collect();
    assert_eq!(ids, ["ntf-q0", "ntf-q1", "ntf-q2", "ntf-q3"]);
    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.dropped), (4, 16));
}

#[tokio::test]
async fn flush_gives_up_at_its_timeout_while_a_delivery_is_in_flight() {
    let receiver = Receiver::start(&[], Reply::Hang).await;
    let target = webhook(receiver.url("/hook"));
    let retry = RetryConfig {
        timeout_ms: 30_000,
        ..quick_retry(1)
    };
    let notifier = Notifier::start(config(vec![target], retry)).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-9"));
    let started = Instant::now();
    assert!(!notifier.flush(Duration::from_millis(300)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_disabled_notifier_accepts_everything_and_sends_nothing() {
    let notifier = Notifier::disabled();
    notifier.send(notification(NotificationKind::Merged, "ntf-10"));
    assert!(notifier.flush(Duration::from_millis(10)).await);
    assert_eq!(notifier.stats(), Default::default());
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error() {
    let config = config(vec![webhook("http://127.0.0.1:9/".into())], quick_retry(1));
    assert!(matches!(
        Notifier::start(config),
        Err(NotifyError::NoRuntime)
    ));
}

#[derive(Deserialize)]
struct ConfigFile {
    notify: NotifyConfig,
}

fn parse(text: &str) -> Result<NotifyConfig, String> {
    toml::from_str::<ConfigFile>(text)
        .map(|f| f.notify)
        .map_err(|e| e.to_string())
}

#[test]
fn config_defaults() {
    let c = parse(
        r#"
        [notify]
        [[notify.webhooks]]
        url = "https://hooks.example.com/changegate"
        [notify.smtp]
        host = "mail.example.com"
        port = 587
        from = "changegate@example.com"
        to = ["ops@example.com"]
        "#,
    )
    .unwrap();
    assert_eq!(c.webhooks[0].format, WebhookFormat::Json);
    assert!(c.webhooks[0].events.is_empty());
    assert!(c.webhooks[0].secret.is_none());
    let smtp = c.smtp.unwrap();
    assert_eq!(smtp.tls, SmtpTls::Starttls);
    assert!(smtp.events.is_empty());
    assert_eq!(
        (
            c.retry.attempts,
            c.retry.base_delay_ms,
            c.retry.max_delay_ms
        ),
        (5, 1_000, 60_000)
    );
    assert_eq!(c.retry.multiplier, 2.0);
    assert_eq!(c.retry.timeout_ms, 10_000);
    assert_eq!(c.queue_capacity, 10_000);

    let empty = parse("[notify]").unwrap();
    assert!(empty.webhooks.is_empty() && empty.smtp.is_none());
}

#[test]
fn config_parses_formats_events_and_tls() {
    let c = parse(
        r#"
        [notify]
        retry = { attempts = 2, base_delay_ms = 5 }
        [[notify.webhooks]]
        url = "https://hooks.slack.com/services/T0/B0/X"
        format = "slack"
        secret = "k"
        events = ["unauthorized_change", "exception"]
        [notify.smtp]
        host = "127.0.0.1"
        port = 25
        from = "changegate <changegate@example.com>"
        to = ["ops@example.com"]
        tls = "none"
        events = ["merged", "deployed"]
        "#,
    )
    .unwrap();
    assert_eq!(c.webhooks[0].format, WebhookFormat::Slack);
    assert_eq!(
        c.webhooks[0].events,
        [
            NotificationKind::UnauthorizedChange,
            NotificationKind::Exception
        ]
    );
    let smtp = c.smtp.as_ref().unwrap();
    assert_eq!(smtp.tls, SmtpTls::None);
    assert_eq!(
        smtp.events,
        [NotificationKind::Merged, NotificationKind::Deployed]
    );
    assert_eq!((c.retry.attempts, c.retry.base_delay_ms), (2, 5));
    assert_eq!(c.retry.max_delay_ms, 60_000);
    // Secrets stay out of debug output.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("T0/B0") && !debug.contains("\"k\""),
        "{debug}"
    );
}

#[test]
fn config_rejects_unknown_fields_and_values() {
    for (text, expected) in [
        ("[notify]\nwebhook = []", "unknown field `webhook`"),
        (
            "[[notify.webhooks]]\nurl = \"https://x.example.com\"\nfromat = \"slack\"",
            "unknown field `fromat`",
        ),
        (
            "[[notify.webhooks]]\nurl = \"https://x.example.com\"\nformat = \"teams\"",
            "unknown variant `teams`",
        ),
        (
            "[[notify.webhooks]]\nurl = \"https://x.example.com\"\nevents = [\"pushed\"]",
            "unknown variant `pushed`",
        ),
        ("[notify.retry]\nattempt = 3", "unknown field `attempt`"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn config_errors_name_the_field() {
    let smtp = "[notify.smtp]\nhost = \"127.0.0.1\"\nport = 25\n";
    let cases = [
        (
            "[[notify.webhooks]]\nurl = \"not a url\"".to_string(),
            "`notify.webhooks[0].url`",
            "not a url",
        ),
        (
            "[[notify.webhooks]]\nurl = \"https://a.example.com\"\n\
             [[notify.webhooks]]\nurl = \"ftp://files.example.com/\""
                .to_string(),
            "`notify.webhooks[1].url`",
            "ftp://files.example.com/",
        ),
        (
            "[[notify.webhooks]]\nurl = \"https://a.example.com\"\nsecret = \"\"".to_string(),
            "`notify.webhooks[0].secret`",
            "empty",
        ),
        (
            format!("{smtp}from = \"nobody\"\nto = [\"ops@example.com\"]"),
            "`notify.smtp.from`",
            "nobody",
        ),
        (
            format!("{smtp}from = \"cg@example.com\"\nto = [\"ops@example.com\", \"ops at x\"]"),
            "`notify.smtp.to[1]`",
            "ops at x",
        ),
        (
            format!("{smtp}from = \"cg@example.com\"\nto = []"),
            "`notify.smtp.to`",
            "no address",
        ),
        (
            format!("{smtp}from = \"cg@example.com\"\nto = [\"o@example.com\"]\nusername = \"u\""),
            "`notify.smtp.password`",
            "username",
        ),
        (
            "[notify.retry]\nattempts = 0".to_string(),
            "`notify.retry.attempts`",
            "at least 1",
        ),
        (
            "[notify.retry]\nmultiplier = 0.5".to_string(),
            "`notify.retry.multiplier`",
            "at least 1",
        ),
        (
            "[notify]\nqueue_capacity = 0".to_string(),
            "`notify.queue_capacity`",
            "at least 1",
        ),
    ];
    for (text, field, detail) in cases {
        let config = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let err = match Notifier::start(config) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text}: accepted"),
        };
        assert!(err.contains(field), "{text}: {err}");
        assert!(err.contains(detail), "{text}: {err}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SMTP_RECEIVER: &str = r#"
import json, sys, threading
from aiosmtpd.controller import Controller

out, port = sys.argv[1], int(sys.argv[2])

class Record:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "content": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"

controller = Controller(Record(), hostname="127.0.0.1", port=port)
controller.start()
threading.Event().wait()
"#;

/// aiosmtpd in a child process, killed when dropped.
struct SmtpReceiver {
    child: Child,
    port: u16,
    out: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpReceiver {
    async fn start() -> SmtpReceiver {
        let missing = "the SMTP tests need Python 3 with aiosmtpd: `pip install aiosmtpd`";
        match Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(_) => panic!("{missing} (python3 cannot import aiosmtpd)"),
            Err(e) => panic!("{missing} (cannot run python3: {e})"),
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("receiver.py");
        std::fs::write(&script, SMTP_RECEIVER).unwrap();
        let out = dir.path().join("messages.jsonl");
        let log = dir.path().join("receiver.log");
        let port = free_port();
        let child = Command::new("python3")
            .arg(&script)
            .arg(&out)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut receiver = SmtpReceiver {
            child,
            port,
            out,
            log,
            _dir: dir,
        };
        receiver.wait_until_listening().await;
        receiver
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("aiosmtpd exited ({status}): {}", read(&self.log));
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on port {} in time: {}",
                self.port,
                read(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn messages(&self) -> Vec<Value> {
        if !self.out.exists() {
            return Vec::new();
        }
        read(&self.out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn smtp_config(port: u16, events: Vec<NotificationKind>) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".to_string(),
        port,
        from: "changegate <changegate@example.com>".to_string(),
        to: vec![
            "ops@example.com".to_string(),
            "Release Team <release@example.com>".to_string(),
        ],
        tls: SmtpTls::None,
        username: None,
        password: None,
        events,
    }
}

#[tokio::test]
async fn email_goes_to_every_recipient_with_the_fields_in_the_body() {
    let relay = SmtpReceiver::start().await;
    let mut config = config(Vec::new(), quick_retry(3));
    config.smtp = Some(smtp_config(
        relay.port,
        vec![NotificationKind::UnauthorizedChange],
    ));
    let notifier = Notifier::start(config).unwrap();

    notifier.send(notification(NotificationKind::Merged, "ntf-not-mailed"));
    notifier.send(notification(
        NotificationKind::UnauthorizedChange,
        "ntf-mail",
    ));
    assert!(notifier.flush(Duration::from_secs(15)).await);
    assert_eq!(notifier.stats().delivered, 1);

    let messages = relay.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["mail_from"], "changegate@example.com");
    assert_eq!(
        m["rcpt_tos"],
        json!(["ops@example.com", "release@example.com"])
    );
    let content = m["content"].as_str().unwrap().replace("\r\n", "\n");
    for expected in [
        "Subject: Unauthorized change on payments-api\n",
        "To: ops@example.com, \"Release Team\" <release@example.com>\n",
        "X-Changegate-Event: unauthorized_change\n",
        "X-Changegate-Delivery: ntf-mail\n",
        "Content-Type: text/plain; charset=utf-8\n",
        "A commit reached main without an approved change.\n",
        "Change: CHG-000042\n",
        "Repository: acme/payments-api\n",
        "Commit: 9fceb02d0ae598e95dc970b74767f19372d61af8\n",
        "Environment: production\n",
        "  - no approved change references the commit\n",
        "  - pushed by <bob> & merged without review\n",
        "Link: https://changegate.example.com/changes/CHG-000042\n",
    ] {
        assert!(
            content.contains(expected),
            "{expected:?} not in:\n{content}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_mail_relay_is_retried_then_given_up() {
    let mut config = config(Vec::new(), quick_retry(2));
    config.smtp = Some(smtp_config(free_port(), Vec::new()));
    let notifier = Notifier::start(config).unwrap();

    notifier.send(notification(NotificationKind::Deployed, "ntf-11"));
    assert!(notifier.flush(Duration::from_secs(10)).await);

    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 1, 1));
}
