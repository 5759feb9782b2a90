//! Outgoing notifications: webhooks (JSON or Slack-compatible, optionally signed) and
//! email, for merges to protected branches, deployments, unauthorized changes and
//! exceptions.
//!
//! Delivery runs off the request path. Each target (every webhook, and the mail relay) has
//! its own bounded queue and its own worker task, so a slow or dead receiver delays only
//! its own deliveries; when its queue is full, new notifications for it are dropped and
//! counted rather than held in memory or pushed back onto the caller.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Notify};

/// The `[notify]` section of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookTarget>,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// How many notifications may wait for each target before new ones are dropped.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

fn default_queue_capacity() -> usize {
    10_000
}

/// What a configuration without a `[notify]` section (or without any file) means: no
/// targets, and the same queue capacity as an empty section. A derived `Default` would give
/// a capacity of 0, which the validation refuses, so `serve` could not start without a file.
impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhooks: Vec::new(),
            smtp: None,
            retry: RetryConfig::default(),
            queue_capacity: default_queue_capacity(),
        }
    }
}

/// A receiver of HTTP POSTs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    /// When set, each body is signed: `X-Changegate-Signature-256: sha256=<hex HMAC>`.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub format: WebhookFormat,
    /// The kinds this target wants; empty means all.
    #[serde(default)]
    pub events: Vec<NotificationKind>,
}

/// The shape of a webhook body. Both carry a plain-text `text`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The notification as JSON.
    #[default]
    Json,
    /// A Slack incoming-webhook message: `text` plus `blocks`.
    Slack,
}

/// A mail relay and who gets the mail.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The kinds mailed; empty means all.
    #[serde(default)]
    pub events: Vec<NotificationKind>,
}

/// How the connection to the mail relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP, for a relay on the same host or network.
    None,
    /// Upgrade with STARTTLS, which the relay must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; each later wait is `multiplier` times longer.
    pub base_delay_ms: u64,
    pub multiplier: f64,
    /// The longest wait between attempts, also the cap on a receiver's `Retry-After`.
    pub max_delay_ms: u64,
    /// How long one attempt may take.
    pub timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 5,
            base_delay_ms: 1_000,
            multiplier: 2.0,
            max_delay_ms: 60_000,
            timeout_ms: 10_000,
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `failed + 1`, after `failed` failures: exponential, capped,
    /// plus up to a tenth more so that many senders do not retry in step.
    fn backoff(&self, failed: u32) -> Duration {
        let exp = self.multiplier.powi(failed.saturating_sub(1) as i32);
        let base = (self.base_delay_ms as f64 * exp).min(self.max_delay_ms as f64) as u64;
        let jitter = rand::thread_rng().gen_range(0..=base / 10);
        Duration::from_millis((base + jitter).min(self.max_delay_ms))
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Merged,
    Deployed,
    UnauthorizedChange,
    Exception,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Merged => "merged",
            NotificationKind::Deployed => "deployed",
            NotificationKind::UnauthorizedChange => "unauthorized_change",
            NotificationKind::Exception => "exception",
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing to tell people about. This is also the body of a `json` webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Notification {
    pub kind: NotificationKind,
    /// Unique and stable: receivers use it to recognise a redelivery.
    pub id: String,
    pub title: String,
    /// Plain text.
    pub text: String,
    pub change: Option<String>,
    pub repository: Option<String>,
    pub commit: Option<String>,
    pub environment: Option<String>,
    pub reasons: Vec<String>,
    /// RFC 3339, UTC.
    pub at: String,
    pub link: Option<String>,
}

/// Counts since the notifier started, over all targets: one per delivery to one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotifyStats {
    pub delivered: u64,
    /// Given up: a refusal, or every attempt failed.
    pub failed: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Not queued because the target's queue was full.
    pub dropped: u64,
}

/// A configuration that cannot work, or no runtime to deliver on.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("notifications are delivered by a task on a tokio runtime, and none is running")]
    NoRuntime,
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Sends notifications in the background. Cheap to clone; when the last clone is
/// dropped, the workers finish what is queued and stop.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    routes: Vec<Route>,
    shared: Arc<Shared>,
}

/// The way to one target's worker.
struct Route {
    name: String,
    events: Vec<NotificationKind>,
    queue: mpsc::Sender<Arc<Notification>>,
}

/// What the workers and the handle share.
#[derive(Default)]
struct Shared {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    /// Deliveries queued or in flight.
    pending: AtomicU64,
    idle: Notify,
}

impl Shared {
    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Notifier {
    /// Checks the configuration and starts one worker per target on the current tokio
    /// runtime.
    pub fn start(config: NotifyConfig) -> Result<Notifier, NotifyError> {
        validate(&config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let retry = Arc::new(config.retry.clone());
        let mut targets: Vec<(String, Vec<NotificationKind>, Target)> = Vec::new();
        if !config.webhooks.is_empty() {
            let client = reqwest::Client::builder()
                .user_agent(concat!("changegate/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_millis(retry.timeout_ms))
                // A redirected POST turns into a GET elsewhere: better to say it failed.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| NotifyError::Client(e.to_string()))?;
            for (i, w) in config.webhooks.iter().enumerate() {
                let url = reqwest::Url::parse(&w.url).expect("validated");
                // The path and query of a webhook URL are often its secret: logs name
                // only the host.
                let name = format!("webhook {i} ({})", url.host_str().unwrap_or_default());
                let target = Target::Webhook {
                    client: client.clone(),
                    url,
                    secret: w.secret.clone(),
                    format: w.format,
                };
                targets.push((name, w.events.clone(), target));
            }
        }
        if let Some(smtp) = &config.smtp {
            let name = format!("smtp ({}:{})", smtp.host, smtp.port);
            targets.push((name, smtp.events.clone(), mail_target(smtp, &retry)?));
        }

        let shared = Arc::new(Shared::default());
        let mut routes = Vec::new();
        for (name, events, target) in targets {
            let (tx, rx) = mpsc::channel(config.queue_capacity);
            let worker = Worker {
                name: name.clone(),
                target,
                retry: retry.clone(),
                shared: shared.clone(),
            };
            runtime.spawn(worker.run(rx));
            routes.push(Route {
                name,
                events,
                queue: tx,
            });
        }
        Ok(Notifier {
            inner: Arc::new(Inner { routes, shared }),
        })
    }

    /// A notifier with no targets: `send` does nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            inner: Arc::new(Inner {
                routes: Vec::new(),
                shared: Arc::default(),
            }),
        }
    }

    /// Queues `n` for every target that wants its kind. Never waits and never fails:
    /// a target whose queue is full misses it, and the miss is counted and logged.
    pub fn send(&self, n: Notification) {
        let n = Arc::new(n);
        let shared = &self.inner.shared;
        for route in &self.inner.routes {
            if !route.events.is_empty() && !route.events.contains(&n.kind) {
                continue;
            }
            shared.pending.fetch_add(1, Ordering::AcqRel);
            let Err(e) = route.queue.try_send(n.clone()) else {
                continue;
            };
            shared.done();
            let dropped = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The worker stops only with the runtime it ran on.
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "notification queue full, dropping",
                mpsc::error::TrySendError::Closed(_) => "notification worker stopped, dropping",
            };
            // One line per hundred: a stuck target must not also flood the log.
            if dropped % 100 == 1 {
                tracing::warn!(target_name = %route.name, notification.id = %n.id, dropped,
                    "{why}");
            }
        }
    }

    pub fn stats(&self) -> NotifyStats {
        let s = &self.inner.shared;
        NotifyStats {
            delivered: s.delivered.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
        }
    }

    /// Waits until every queued notification has been delivered or given up, or until
    /// `timeout` has passed; true when nothing is left.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Created before the check, so a wake-up in between is not lost.
            let idle = shared.idle.notified();
            if shared.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return shared.pending.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// Checks a `[notify]` section without starting anything, so that a bad one stops a start
/// before it writes.
pub fn validate(config: &NotifyConfig) -> Result<(), NotifyError> {
    for (i, w) in config.webhooks.iter().enumerate() {
        let field = format!("notify.webhooks[{i}].url");
        let url = reqwest::Url::parse(&w.url)
            .map_err(|e| invalid(&field, format!("`{}` is not a URL: {e}", w.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                field,
                format!("`{}` is not an http or https URL", w.url),
            ));
        }
        if w.secret.as_deref() == Some("") {
            return Err(invalid(
                format!("notify.webhooks[{i}].secret"),
                "is empty; leave it out to send unsigned",
            ));
        }
    }
    if let Some(smtp) = &config.smtp {
        if smtp.host.trim().is_empty() {
            return Err(invalid("notify.smtp.host", "is empty"));
        }
        if smtp.port == 0 {
            return Err(invalid("notify.smtp.port", "is 0"));
        }
        mailbox("notify.smtp.from", &smtp.from)?;
        if smtp.to.is_empty() {
            return Err(invalid("notify.smtp.to", "names no address"));
        }
        for (i, to) in smtp.to.iter().enumerate() {
            mailbox(&format!("notify.smtp.to[{i}]"), to)?;
        }
        match (&smtp.username, &smtp.password) {
            (Some(_), None) => {
                return Err(invalid("notify.smtp.password", "is needed with `username`"))
            }
            (None, Some(_)) => {
                return Err(invalid("notify.smtp.username", "is needed with `password`"))
            }
            _ => {}
        }
    }
    let r = &config.retry;
    if r.attempts == 0 {
        return Err(invalid("notify.retry.attempts", "must be at least 1"));
    }
    if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
        return Err(invalid(
            "notify.retry.multiplier",
            "must be a number of at least 1",
        ));
    }
    if r.base_delay_ms > r.max_delay_ms {
        return Err(invalid(
            "notify.retry.base_delay_ms",
            format!("is more than `max_delay_ms` ({})", r.max_delay_ms),
        ));
    }
    if r.timeout_ms == 0 {
        return Err(invalid("notify.retry.timeout_ms", "must be more than 0"));
    }
    if config.queue_capacity == 0 {
        return Err(invalid("notify.queue_capacity", "must be at least 1"));
    }
    Ok(())
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox, NotifyError> {
    text.parse::<Mailbox>()
        .map_err(|e| invalid(field, format!("`{text}` is not an email address: {e}")))
}

fn mail_target(smtp: &SmtpConfig, retry: &RetryConfig) -> Result<Target, NotifyError> {
    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| invalid("notify.smtp.host", e.to_string()))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| invalid("notify.smtp.host", e.to_string()))?,
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(Duration::from_millis(retry.timeout_ms)));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        if smtp.tls == SmtpTls::None {
            tracing::warn!(smtp.host = %smtp.host, "SMTP credentials will be sent without TLS");
        }
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(Target::Mail {
        transport: builder.build(),
        from: mailbox("notify.smtp.from", &smtp.from)?,
        to: smtp
            .to
            .iter()
            .map(|to| mailbox("notify.smtp.to", to))
            .collect::<Result<_, _>>()?,
    })
}

/// Where a worker delivers.
enum Target {
    Webhook {
        client: reqwest::Client,
        url: reqwest::Url,
        secret: Option<String>,
        format: WebhookFormat,
    },
    Mail {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        to: Vec<Mailbox>,
    },
}

/// The outcome of one attempt.
enum Attempt {
    Delivered,
    /// Worth another try, after at least the given wait if the receiver named one.
    Retry(String, Option<Duration>),
    /// Another try would fail the same way.
    Refused(String),
}

struct Worker {
    name: String,
    target: Target,
    retry: Arc<RetryConfig>,
    shared: Arc<Shared>,
}

impl Worker {
    async fn run(self, mut queue: mpsc::Receiver<Arc<Notification>>) {
        while let Some(n) = queue.recv().await {
            self.deliver(&n).await;
            self.shared.done();
        }
    }

    async fn deliver(&self, n: &Notification) {
        let prepared = match self.prepare(n) {
            Ok(p) => p,
            Err(e) => {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target_name = %self.name, notification.id = %n.id,
                    error = %e, "cannot build the notification, giving up");
                return;
            }
        };
        let mut failed = 0;
        loop {
            let (reason, after) = match self.attempt(n, &prepared).await {
                Attempt::Delivered => {
                    self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target_name = %self.name, notification.id = %n.id,
                        attempts = failed + 1, "notification delivered");
                    return;
                }
                Attempt::Refused(reason) => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(target_name = %self.name, notification.id = %n.id,
                        error = %reason, "notification refused, giving up");
                    return;
                }
                Attempt::Retry(reason, after) => (reason, after),
            };
            failed += 1;
            if failed >= self.retry.attempts {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target_name = %self.name, notification.id = %n.id,
                    attempts = failed, error = %reason, "notification not delivered, giving up");
                return;
            }
            let max = Duration::from_millis(self.retry.max_delay_ms);
            let wait = match after {
                Some(after) => after.min(max),
                None => self.retry.backoff(failed),
            };
            self.shared.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target_name = %self.name, notification.id = %n.id, attempt = failed,
                error = %reason, retry_in_ms = wait.as_millis() as u64,
                "notification delivery failed, will retry");
            tokio::time::sleep(wait).await;
        }
    }

    /// Renders what every attempt sends: the same bytes, so a signature or a receiver's
    /// deduplication sees one delivery.
    fn prepare(&self, n: &Notification) -> Result<Prepared, String> {
        match &self.target {
            Target::Webhook { secret, format, .. } => {
                let body = match format {
                    WebhookFormat::Json => serde_json::to_vec(n),
                    WebhookFormat::Slack => serde_json::to_vec(&slack_body(n)),
                }
                .map_err(|e| e.to_string())?;
                let signature = secret.as_deref().map(|s| sign(s, &body));
                Ok(Prepared::Http { body, signature })
            }
            Target::Mail { from, to, .. } => {
                let mut message = Message::builder()
                    .from(from.clone())
                    .subject(n.title.clone())
                    .header(ContentType::TEXT_PLAIN)
                    .raw_header(HeaderValue::new(
                        HeaderName::new_from_ascii_str("X-Changegate-Event"),
                        n.kind.as_str().to_string(),
                    ))
                    .raw_header(HeaderValue::new(
                        HeaderName::new_from_ascii_str("X-Changegate-Delivery"),
                        n.id.clone(),
                    ));
                for to in to {
                    message = message.to(to.clone());
                }
                let message = message.body(mail_body(n)).map_err(|e| e.to_string())?;
                Ok(Prepared::Mail(Box::new(message)))
            }
        }
    }

    async fn attempt(&self, n: &Notification, prepared: &Prepared) -> Attempt {
        match (&self.target, prepared) {
            (Target::Webhook { client, url, .. }, Prepared::Http { body, signature }) => {
                let mut request = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Changegate-Event", n.kind.as_str())
                    .header("X-Changegate-Delivery", &n.id)
                    .body(body.clone());
                if let Some(signature) = signature {
                    request = request.header("X-Changegate-Signature-256", signature);
                }
                match request.send().await {
                    Err(e) => Attempt::Retry(error_chain(&e), None),
                    Ok(response) => classify(&response),
                }
            }
            (Target::Mail { transport, .. }, Prepared::Mail(message)) => {
                match transport.send((**message).clone()).await {
                    Ok(_) => Attempt::Delivered,
                    // A 5xx answer is final; connection faults and 4xx answers pass.
                    Err(e) if e.is_permanent() => Attempt::Refused(error_chain(&e)),
                    Err(e) => Attempt::Retry(error_chain(&e), None),
                }
            }
            _ => unreachable!("a worker prepares for its own target"),
        }
    }
}

enum Prepared {
    Http {
        body: Vec<u8>,
        signature: Option<String>,
    },
    Mail(Box<Message>),
}

fn classify(response: &reqwest::Response) -> Attempt {
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let reason = format!("the receiver answered {status}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        // Only the delay-seconds form; an HTTP date falls back to the backoff.
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Attempt::Retry(reason, after)
    } else {
        Attempt::Refused(reason)
    }
}

/// `sha256=<hex>`, the HMAC-SHA256 of the body keyed with the secret, as GitHub signs.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The notification's fields that are set, as label and value.
fn fields(n: &Notification) -> Vec<(&'static str, &str)> {
    [
        ("Change", &n.change),
        ("Repository", &n.repository),
        ("Commit", &n.commit),
        ("Environment", &n.environment),
    ]
    .into_iter()
    .filter_map(|(label, v)| v.as_deref().map(|v| (label, v)))
    .collect()
}

fn mail_body(n: &Notification) -> String {
    let mut body = n.text.trim_end().to_string();
    body.push_str("\n\n");
    for (label, value) in fields(n) {
        body.push_str(&format!("{label}: {value}\n"));
    }
    if !n.reasons.is_empty() {
        body.push_str("Reasons:\n");
        for reason in &n.reasons {
            body.push_str(&format!("  - {reason}\n"));
        }
    }
    if let Some(link) = &n.link {
        body.push_str(&format!("Link: {link}\n"));
    }
    body.push_str(&format!("At: {}\n", n.at));
    body
}

/// A Slack incoming-webhook message. `text` is the fallback shown in notifications and
/// by receivers that only read `text`; `blocks` lay out the same facts.
fn slack_body(n: &Notification) -> Value {
    let title = match &n.link {
        Some(link) => format!("*<{}|{}>*", escape(link), escape(&n.title)),
        None => format!("*{}*", escape(&n.title)),
    };
    let mut blocks = vec![section(&format!("{title}\n{}", escape(&n.text)))];
    let fields: Vec<Value> = fields(n)
        .into_iter()
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": cut(&format!("*{label}*\n{}", escape(value)), 2000)})
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !n.reasons.is_empty() {
        let list: Vec<String> = n
            .reasons
            .iter()
            .map(|r| format!("• {}", escape(r)))
            .collect();
        blocks.push(section(&format!("*Reasons*\n{}", list.join("\n"))));
    }
    json!({
        "text": format!("{}: {}", n.title, n.text),
        "blocks": blocks,
    })
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, 3000)}})
}

/// Slack's mrkdwn gives `&`, `<` and `>` meaning.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, Slack's limit for a block's text.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if text.len() > i + 1 => format!("{}…", &text[..i]),
        _ => text.to_string(),
    }
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &"<redacted>")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("format", &self.format)
            .field("events", &self.events)
            .finish()
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("events", &self.events)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_the_multiplier_up_to_the_cap() {
        let r = RetryConfig {
            base_delay_ms: 100,
            multiplier: 2.0,
            max_delay_ms: 1_000,
            ..RetryConfig::default()
        };
        for (failed, low) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (30, 1_000),
        ] {
            let wait = r.backoff(failed).as_millis() as u64;
            assert!(
                wait >= low && wait <= (low + low / 10).min(1_000),
                "{failed}: {wait}"
            );
        }
    }

    #[test]
    fn cut_keeps_short_text_and_marks_a_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("ééééé", 3).chars().count(), 3);
    }
}
