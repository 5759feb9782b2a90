//! HTTP benchmark of `changegate serve`: durable writes per second and their latency at 1, 16
//! and 64 concurrent keep-alive clients, each driving its own changes through the whole
//! lifecycle (11 durable writes per change), against a floor: a minimal axum server that
//! commits one SQLite row per request (WAL, synchronous=FULL, no batching). Then the ledger
//! is verified with `changegate verify`. Prints figures only; never asserts timings.
//!
//! Run: `cargo bench -p changegate --bench http` (`BENCH_SECONDS` = seconds per level,
//! default 8). Loopback traffic only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

const LEVELS: [usize; 3] = [1, 16, 64];
/// Upper bound on requests per level, shared among its clients (the time bound comes first
/// on any plausible machine).
const MAX_REQUESTS_PER_LEVEL: usize = 2_000_000;
/// Error answers printed in full.
const ERRORS_SHOWN: usize = 5;
const FLOOR_ARG: &str = "--floor-server";

static ERRORS_PRINTED: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(FLOOR_ARG) {
        let port: u16 = args[2].parse().expect("floor server port");
        floor_server(port, Path::new(&args[3]));
        return;
    }
    bench();
}

// ---------------------------------------------------------------------------------------
// The bench

/// Figures of one level against one server.
struct Level {
    clients: usize,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    rss_kb: u64,
    hwm_kb: u64,
}

impl Level {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[i]
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

/// What the clients of a level send.
enum Workload {
    /// Create a change as alice, then take its 10 actions; `steps` are (token, body).
    Lifecycle {
        requester: String,
        create: Bytes,
        steps: Vec<(String, Bytes)>,
    },
    /// POST one fixed body to the floor server.
    Floor { body: Bytes },
}

/// What one client measured.
#[derive(Default)]
struct ClientResult {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
}

fn seconds_per_level() -> f64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(8.0)
}

fn bench() {
    let secs = seconds_per_level();
    let bin = env!("CARGO_BIN_EXE_changegate");
    println!("changegate HTTP bench: {secs} s per level, levels {LEVELS:?}");

    // A 1-worker client runtime: the machine may have only 2 cores; keep the client light.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    // --- changegate
    let data = tempfile::tempdir().expect("temp dir");
    let mut tokens = HashMap::new();
    for (name, role) in [
        ("alice", "requester"),
        ("bob", "engineer"),
        ("dave", "peer_reviewer"),
        ("erin", "tester"),
        ("frank", "change_manager"),
        ("ivan", "release_manager"),
    ] {
        tokens.insert(name, add_user(bin, data.path(), name, role));
    }
    let users = tokens.len() as u64;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = Command::new(bin)
        .args(["serve", "--data"])
        .arg(data.path())
        .args(["--listen", &addr.to_string()])
        .env("CHANGEGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start changegate serve");
    rt.block_on(wait_healthy(addr, &mut server));

    let mut changegate = Vec::new();
    for clients in LEVELS {
        let workload = Arc::new(lifecycle_workload(&tokens));
        let mut level = rt.block_on(run_level(addr, clients, workload, secs));
        (level.rss_kb, level.hwm_kb) = memory(server.id());
        print_level("changegate", &level);
        changegate.push(level);
    }
    stop(&mut server);

    // --- ledger verification
    let written: u64 = changegate.iter().map(|l| l.ok).sum();
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["verify", "--data"])
        .arg(data.path())
        .output()
        .expect("run changegate verify");
    let verify_time = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = parse_events(&stdout);
    if !out.status.success() || events.is_none() {
        eprintln!(
            "!!! VERIFY FAILED ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = events.unwrap_or(0);
    println!(
        "verify: {events} events (successful writes {written} + users {users} + policy 1 = {}) \
         in {:.3} s = {:.0} events/s",
        written + users + 1,
        verify_time.as_secs_f64(),
        events as f64 / verify_time.as_secs_f64()
    );

    // --- floor
    let floor_dir = tempfile::tempdir().expect("temp dir");
    let floor_port = free_port();
    let floor_addr: SocketAddr = ([127, 0, 0, 1], floor_port).into();
    let mut floor = Command::new(std::env::current_exe().expect("own path"))
        .arg(FLOOR_ARG)
        .arg(floor_port.to_string())
        .arg(floor_dir.path().join("floor.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start floor server");
    rt.block_on(wait_healthy(floor_addr, &mut floor));
    let mut floors = Vec::new();
    for clients in LEVELS {
        let workload = Arc::new(floor_workload());
        let mut level = rt.block_on(run_level(floor_addr, clients, workload, secs));
        (level.rss_kb, level.hwm_kb) = memory(floor.id());
        print_level("floor", &level);
        floors.push(level);
    }
    let _ = floor.kill();
    let _ = floor.wait();

    // --- final table
    println!();
    println!(
        "| server     | clients | durable writes/s | p50 ms | p99 ms | max ms | errors | RSS MB | HWM MB |"
    );
    println!(
        "|------------|--------:|-----------------:|-------:|-------:|-------:|-------:|-------:|-------:|"
    );
    for (name, levels) in [("changegate", &changegate), ("floor", &floors)] {
        for l in levels.iter() {
            println!(
                "| {name:<10} | {:>7} | {:>16.0} | {:>6.2} | {:>6.2} | {:>6.1} | {:>6} | {:>6.1} | {:>6.1} |",
                l.clients,
                l.per_second(),
                ms(l.quantile(0.50)),
                ms(l.quantile(0.99)),
                ms(l.max()),
                l.errors,
                l.rss_kb as f64 / 1024.0,
                l.hwm_kb as f64 / 1024.0,
            );
        }
    }
    println!();
    println!("| clients | changegate/floor writes/s | changegate/floor p99 |");
    println!("|--------:|--------------------------:|---------------------:|");
    for (c, f) in changegate.iter().zip(&floors) {
        println!(
            "| {:>7} | {:>25.2} | {:>20.2} |",
            c.clients,
            c.per_second() / f.per_second(),
            ms(c.quantile(0.99)) / ms(f.quantile(0.99)).max(1e-9),
        );
    }
    println!();
    println!(
        "ledger verification: {events} events in {:.3} s = {:.0} events/s",
        verify_time.as_secs_f64(),
        events as f64 / verify_time.as_secs_f64()
    );
    let errors: u64 = changegate.iter().chain(&floors).map(|l| l.errors).sum();
    if errors > 0 {
        eprintln!("!!! {errors} REQUESTS FAILED (non-2xx or connection errors); see above");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_level(name: &str, l: &Level) {
    println!(
        "{name:<10} clients={:<3} ok={:<7} errors={:<4} {:>8.0} writes/s  p50={:.2} ms p99={:.2} ms \
         max={:.1} ms  RSS={:.1} MB HWM={:.1} MB",
        l.clients,
        l.ok,
        l.errors,
        l.per_second(),
        ms(l.quantile(0.50)),
        ms(l.quantile(0.99)),
        ms(l.max()),
        l.rss_kb as f64 / 1024.0,
        l.hwm_kb as f64 / 1024.0,
    );
}

/// `changegate users add`; the token is the last line of its output.
fn add_user(bin: &str, data: &Path, name: &str, role: &str) -> String {
    let out = Command::new(bin)
        .args(["users", "add", name, "--role", role, "--data"])
        .arg(data)
        .output()
        .expect("run changegate users add");
    assert!(
        out.status.success(),
        "users add {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("a token line")
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// VmRSS and VmHWM of a process, in kB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Stops the server with SIGINT (its graceful shutdown), killing it after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("!!! server did not stop within 10 s of SIGINT; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

fn parse_events(stdout: &str) -> Option<u64> {
    let rest = stdout.split("ledger intact: ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn lifecycle_workload(tokens: &HashMap<&str, String>) -> Workload {
    use time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds");
    let start = (now - time::Duration::hours(1))
        .format(&Rfc3339)
        .expect("format time");
    let end = (now + time::Duration::days(1))
        .format(&Rfc3339)
        .expect("format time");
    let t = |name: &str| tokens[name].clone();
    let b = |v: serde_json::Value| Bytes::from(v.to_string());
    use serde_json::json;
    Workload::Lifecycle {
        requester: t("alice"),
        create: b(json!({
            "title": "bench change", "type": "normal", "category": "application",
            "systems": ["bench"],
        })),
        steps: vec![
            (
                t("frank"),
                b(json!({"action": "evaluate", "risk": "low", "priority": "low"})),
            ),
            (
                t("frank"),
                b(json!({"action": "authorize", "assignee": "bob"})),
            ),
            (
                t("bob"),
                b(json!({"action": "plan", "implementation_plan": "x", "test_plan": "y"})),
            ),
            (
                t("dave"),
                b(json!({"action": "peer_review", "decision": "approved", "comment": "ok"})),
            ),
            (
                t("erin"),
                b(json!({"action": "test", "result": "passed", "evidence": "ci"})),
            ),
            (
                t("frank"),
                b(json!({
                    "action": "approve_deployment", "window_start": start, "window_end": end,
                })),
            ),
            (
                t("ivan"),
                b(json!({"action": "implement", "environment": "production", "artifact": "a"})),
            ),
            (
                t("frank"),
                b(json!({"action": "review_implementation", "outcome": "successful"})),
            ),
            (
                t("ivan"),
                b(json!({"action": "communicate", "release_notes": "n"})),
            ),
            (t("frank"), b(json!({"action": "close"}))),
        ],
    }
}

/// A body of about the size of a lifecycle action's (~100 bytes).
fn floor_workload() -> Workload {
    let body = serde_json::json!({
        "action": "plan", "implementation_plan": "x", "test_plan": "y",
        "note": "padding to roughly one hundred bytes",
    });
    Workload::Floor {
        body: Bytes::from(body.to_string()),
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request; returns its status and body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Bytes,
) -> Result<(u16, Bytes), hyper::Error> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(body)).expect("valid request");
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Waits (up to 30 s) until GET /healthz answers 200.
async fn wait_healthy(addr: SocketAddr, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server at {addr} exited before answering: {status}");
        }
        if let Ok(mut sender) = connect(addr).await {
            if let Ok((200, _)) =
                send(&mut sender, Method::GET, "/healthz", None, Bytes::new()).await
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {addr} did not become healthy within 30 s");
}

async fn run_level(addr: SocketAddr, clients: usize, workload: Arc<Workload>, secs: f64) -> Level {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let cap = MAX_REQUESTS_PER_LEVEL / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(addr, workload.clone(), deadline, cap)))
        .collect();
    let mut level = Level {
        clients,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        rss_kb: 0,
        hwm_kb: 0,
    };
    for task in tasks {
        let r = task.await.expect("client task");
        level.ok += r.ok;
        level.errors += r.errors;
        level.latencies.extend(r.latencies);
    }
    level.elapsed = started.elapsed();
    level.latencies.sort_unstable();
    level
}

/// Records one answer; prints the first few failures in full.
fn record(
    result: &mut ClientResult,
    latency: Duration,
    answer: &Result<(u16, Bytes), hyper::Error>,
) -> bool {
    result.latencies.push(latency);
    let failure = match answer {
        Ok((status, _)) if (200..300).contains(status) => {
            result.ok += 1;
            return true;
        }
        Ok((status, body)) => format!("HTTP {status}: {}", String::from_utf8_lossy(body)),
        Err(e) => format!("connection error: {e}"),
    };
    result.errors += 1;
    if ERRORS_PRINTED.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
        eprintln!("!!! BENCH REQUEST FAILED: {failure}");
    }
    false
}

/// One keep-alive connection sending requests one after the other until the deadline or
/// `cap` requests.
async fn client(
    addr: SocketAddr,
    workload: Arc<Workload>,
    deadline: Instant,
    cap: usize,
) -> ClientResult {
    let mut result = ClientResult {
        latencies: Vec::with_capacity(cap.min(100_000)),
        ..ClientResult::default()
    };
    let mut sender = match connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("!!! BENCH CLIENT CANNOT CONNECT: {e}");
            result.errors += 1;
            return result;
        }
    };
    let more = |r: &ClientResult| Instant::now() < deadline && r.latencies.len() < cap;
    match &*workload {
        Workload::Floor { body } => {
            while more(&result) {
                let t = Instant::now();
                let answer = send(&mut sender, Method::POST, "/rows", None, body.clone()).await;
                if !record(&mut result, t.elapsed(), &answer) && answer.is_err() {
                    break;
                }
            }
        }
        Workload::Lifecycle {
            requester,
            create,
            steps,
        } => {
            'changes: while more(&result) {
                let t = Instant::now();
                let answer = send(
                    &mut sender,
                    Method::POST,
                    "/api/v1/changes",
                    Some(requester),
                    create.clone(),
                )
                .await;
                if !record(&mut result, t.elapsed(), &answer) {
                    if answer.is_err() {
                        break;
                    }
                    continue;
                }
                let id = answer
                    .ok()
                    .and_then(|(_, body)| serde_json::from_slice::<serde_json::Value>(&body).ok())
                    .and_then(|v| v["id"].as_str().map(str::to_string));
                let Some(id) = id else {
                    eprintln!("!!! BENCH: created change without an id");
                    result.errors += 1;
                    break;
                };
                let path = format!("/api/v1/changes/{id}/actions");
                for (token, body) in steps {
                    if !more(&result) {
                        break 'changes;
                    }
                    let t = Instant::now();
                    let answer =
                        send(&mut sender, Method::POST, &path, Some(token), body.clone()).await;
                    if !record(&mut result, t.elapsed(), &answer) {
                        if answer.is_err() {
                            break 'changes;
                        }
                        continue 'changes;
                    }
                }
            }
        }
    }
    result
}

// ---------------------------------------------------------------------------------------
// The floor server

/// A minimal axum server: POST /rows commits the body as one SQLite row in its own
/// transaction (WAL, synchronous=FULL), no batching; GET /healthz.
fn floor_server(port: u16, db: &Path) {
    let conn = rusqlite::Connection::open(db).expect("open floor database");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("WAL mode");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )
    .expect("floor schema");
    let db = Arc::new(Mutex::new(conn));
    // The same runtime shape as `changegate serve`: multi-thread, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("floor runtime");
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/rows", axum::routing::post(insert_row))
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .with_state(db);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("floor listen");
        axum::serve(listener, app).await.expect("floor serve");
    });
}

async fn insert_row(
    axum::extract::State(db): axum::extract::State<Arc<Mutex<rusqlite::Connection>>>,
    body: Bytes,
) -> axum::http::StatusCode {
    let done = tokio::task::spawn_blocking(move || -> rusqlite::Result<()> {
        let mut conn = db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        tx.execute("INSERT INTO rows (body) VALUES (?1)", [&body[..]])?;
        tx.commit()
    })
    .await;
    match done {
        Ok(Ok(())) => axum::http::StatusCode::OK,
        _ => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
    }
}
