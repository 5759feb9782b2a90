//! Deployment gate benchmark of the real `changegate serve` process: gate decisions per
//! second and their latency at 1, 16 and 64 concurrent keep-alive clients, with two
//! baselines measured in the same run at 64 clients: `GET /healthz` (the HTTP floor: the
//! same server, router, middleware and client, no work) and the deny path (an artifact no
//! change covers). Every gate decision is a durable ledger entry (`gate.decided`), so the
//! bench checks after each level that the ledger grew by exactly the answers it got, and at
//! the end that `changegate verify` passes.
//!
//! Setup: a temporary data directory; users added with `changegate users add` (alice
//! requester, frank change_manager, bob engineer, dave peer_reviewer, erin tester, ci a
//! release_manager machine identity); the release binary started as
//! `serve --data TMP --listen 127.0.0.1:PORT`; one normal application change driven over
//! HTTP through request, evaluate, authorize (assignee bob), plan, peer_review, test and
//! approve_deployment of a 40-hex commit id, in a window from an hour ago to a day ahead.
//! Then `POST /api/v1/gate` as `ci` for that artifact in `production` is the allow path.
//!
//! Run: `cargo bench -p changegate --bench gate`. Knobs: `BENCH_SECONDS` (seconds per
//! level, default 8), `BENCH_LOG` (the server's `CHANGEGATE_LOG`, default `info`, the
//! server's own default; the JSON log goes to a file in the data directory),
//! `BENCH_KEEP=1` (keep the data directory). Without the `--bench` argument that
//! `cargo bench` passes (as under `cargo test --benches`) it makes a smoke run: levels 1
//! and 4, half a second each. Prints figures and never asserts a timing; a failed request,
//! a ledger that does not match the answers or a failed verification is printed loudly and
//! makes the bench exit non-zero. Loopback traffic only.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_changegate");
/// The approved artifact: a full commit id.
const ARTIFACT: &str = "4f1c2a9e0b7d5c3a9e0b7d5c3a4f1c2a9e0b7d5c";
/// A commit id no change names: the deny path.
const UNKNOWN_ARTIFACT: &str = "0123456789abcdef0123456789abcdef01234567";
const SYSTEM: &str = "payments";
/// Error answers printed in full; the rest are only counted.
const ERRORS_SHOWN: usize = 5;

static ERRORS_PRINTED: AtomicUsize = AtomicUsize::new(0);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let secs = env("BENCH_SECONDS")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(if smoke { 0.5 } else { 8.0 });
    let log = env("BENCH_LOG").unwrap_or_else(|| "info".into());
    let keep = env("BENCH_KEEP").is_some_and(|v| v == "1");
    let levels: &[usize] = if smoke { &[1, 4] } else { &[1, 16, 64] };
    bench(secs, &log, keep, levels)
}

// ---------------------------------------------------------------------------------------
// The bench

/// What the clients of a level send.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `POST /api/v1/gate` for the approved artifact; the answer must be `allow`.
    Allow,
    /// `POST /api/v1/gate` for an artifact no change covers; the answer must be `deny`.
    Deny,
    /// `GET /healthz`.
    Health,
}

impl Probe {
    fn label(self) -> &'static str {
        match self {
            Probe::Allow => "gate allow",
            Probe::Deny => "gate deny",
            Probe::Health => "healthz",
        }
    }

    /// Whether an answer of this probe is recorded in the ledger.
    fn records(self) -> bool {
        self != Probe::Health
    }
}

/// Figures of one level.
struct Level {
    probe: Probe,
    clients: usize,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
    rss_kb: u64,
    hwm_kb: u64,
    server_cpu: f64,
    /// Cores other processes than the server and this bench kept busy meanwhile: a figure
    /// measured while other work shared the machine is not worth much.
    others_cores: f64,
    /// Ledger entries and signed checkpoints (one per committed batch) written meanwhile.
    entries: u64,
    commits: u64,
}

impl Level {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies.last().copied().unwrap_or_default() as f64 / 1000.0
    }

    fn cpu_micros_per_request(&self) -> f64 {
        self.server_cpu * 1e6 / (self.ok.max(1) as f64)
    }

    fn per_commit(&self) -> Option<f64> {
        (self.probe.records() && self.commits > 0)
            .then(|| self.entries as f64 / self.commits as f64)
    }
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies: Vec<u32>,
}

fn bench(secs: f64, log: &str, keep: bool, levels: &[usize]) -> ExitCode {
    let baseline_clients = *levels.last().expect("a level");
    println!(
        "changegate gate bench: {secs} s per level, allow at {levels:?} clients, healthz and \
         deny at {baseline_clients}; server log level `{log}`; binary {BIN}"
    );
    let mut failures: Vec<String> = Vec::new();

    // A 1-worker client runtime: the machine may have only 2 cores; keep the client light.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    let data = tempfile::tempdir().expect("temp dir");
    let users = [
        ("alice", "requester", false),
        ("frank", "change_manager", false),
        ("bob", "engineer", false),
        ("dave", "peer_reviewer", false),
        ("erin", "tester", false),
        ("ci", "release_manager", true),
    ];
    let mut tokens = std::collections::HashMap::new();
    for (name, role, machine) in users {
        tokens.insert(name, add_user(data.path(), name, role, machine));
    }
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log_file = std::fs::File::create(data.path().join("server.log")).expect("log file");
    let mut server = Command::new(BIN)
        .args(["serve", "--data"])
        .arg(data.path())
        .args(["--listen", &addr.to_string()])
        .env("CHANGEGATE_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start changegate serve");
    let pid = server.id();
    rt.block_on(wait_healthy(addr, &mut server));
    println!("server pid {pid} at {addr}");

    let change = rt.block_on(approve_change(addr, &tokens));
    println!("{change} approved for deployment of {ARTIFACT} to {SYSTEM}");

    let ci = HeaderValue::from_str(&format!("Bearer {}", tokens["ci"])).expect("header");
    let mut plan: Vec<(Probe, usize)> = levels.iter().map(|&c| (Probe::Allow, c)).collect();
    plan.push((Probe::Deny, baseline_clients));
    plan.push((Probe::Health, baseline_clients));
    let db = data.path().join(store::SQLITE_FILE);
    let mut measured = Vec::new();
    for (probe, clients) in plan {
        let (size0, commits0) = ledger_counts(&db);
        let cpu0 = cpu_seconds(pid);
        let own0 = cpu_seconds(std::process::id());
        let busy0 = machine_busy_seconds();
        let mut level = rt.block_on(run_level(addr, probe, &ci, clients, secs));
        level.server_cpu = cpu_seconds(pid) - cpu0;
        let own = cpu_seconds(std::process::id()) - own0;
        let others = machine_busy_seconds() - busy0 - level.server_cpu - own;
        level.others_cores = (others / level.elapsed.as_secs_f64()).max(0.0);
        let (size1, commits1) = ledger_counts(&db);
        (level.entries, level.commits) = (size1 - size0, commits1 - commits0);
        (level.rss_kb, level.hwm_kb) = memory(pid);
        print_level(&level);
        let expected = if probe.records() { level.ok } else { 0 };
        if level.entries != expected {
            failures.push(format!(
                "{} at {clients} clients: the ledger grew by {} entries for {expected} \
                 recorded answers",
                probe.label(),
                level.entries
            ));
        }
        if level.errors > 0 {
            failures.push(format!(
                "{} at {clients} clients: {} requests failed",
                probe.label(),
                level.errors
            ));
        }
        measured.push(level);
    }
    stop(&mut server);

    // --- the ledger: one `gate.decided` entry per answer, and a chain that verifies
    let answered: u64 = measured
        .iter()
        .filter(|l| l.probe.records())
        .map(|l| l.ok)
        .sum();
    let decided = count_kind(&db, "gate.decided");
    println!("ledger: {decided} gate.decided entries for {answered} gate answers");
    if decided != answered {
        failures.push(format!(
            "the ledger holds {decided} gate.decided entries for {answered} gate answers"
        ));
    }
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["verify", "--data"])
        .arg(data.path())
        .output()
        .expect("run changegate verify");
    let verify_time = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = parse_events(&stdout);
    match events {
        Some(n) if out.status.success() => println!(
            "verify: ledger intact, {n} events in {:.2} s",
            verify_time.as_secs_f64()
        ),
        _ => failures.push(format!(
            "changegate verify failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }

    // --- the table
    println!();
    println!(
        "| workload   | clients | answers/s | p50 ms | p99 ms | max ms | errors | server µs CPU / answer | entries / commit | RSS MB | HWM MB | others' cores |"
    );
    println!(
        "|------------|--------:|----------:|-------:|-------:|-------:|-------:|-----------------------:|-----------------:|-------:|-------:|--------------:|"
    );
    for l in &measured {
        println!(
            "| {:<10} | {:>7} | {:>9.0} | {:>6.2} | {:>6.2} | {:>6.1} | {:>6} | {:>22.0} | {:>16} | {:>6.1} | {:>6.1} | {:>13.2} |",
            l.probe.label(),
            l.clients,
            l.per_second(),
            l.quantile_ms(0.50),
            l.quantile_ms(0.99),
            l.max_ms(),
            l.errors,
            l.cpu_micros_per_request(),
            l.per_commit().map_or("-".to_string(), |n| format!("{n:.1}")),
            l.rss_kb as f64 / 1024.0,
            l.hwm_kb as f64 / 1024.0,
            l.others_cores,
        );
    }
    println!();
    if let Some(allow) = measured
        .iter()
        .find(|l| l.probe == Probe::Allow && l.clients == baseline_clients)
    {
        println!(
            "target at {baseline_clients} clients: 20,000 decisions/s and p99 < 5 ms; measured \
             {:.0}/s, p99 {:.2} ms",
            allow.per_second(),
            allow.quantile_ms(0.99)
        );
    }
    if keep {
        let kept = data.keep();
        println!("data kept in {}", kept.display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("!!! BENCH FAILURE: {f}");
        }
        ExitCode::FAILURE
    }
}

fn print_level(l: &Level) {
    println!(
        "{:<10} clients={:<3} ok={:<7} errors={:<4} {:>8.0}/s  p50={:.2} ms p99={:.2} ms \
         max={:.1} ms  cpu={:.0} µs/answer  entries={} commits={}  RSS={:.1} MB HWM={:.1} MB \
         others={:.2} cores",
        l.probe.label(),
        l.clients,
        l.ok,
        l.errors,
        l.per_second(),
        l.quantile_ms(0.50),
        l.quantile_ms(0.99),
        l.max_ms(),
        l.cpu_micros_per_request(),
        l.entries,
        l.commits,
        l.rss_kb as f64 / 1024.0,
        l.hwm_kb as f64 / 1024.0,
        l.others_cores,
    );
}

// ---------------------------------------------------------------------------------------
// The server

/// `changegate users add`; the token is the last line of its output.
fn add_user(data: &Path, name: &str, role: &str, machine: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["users", "add", name, "--role", role, "--data"])
        .arg(data);
    if machine {
        cmd.arg("--machine");
    }
    let out = cmd.output().expect("run changegate users add");
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

/// User + system CPU seconds of a process so far (`/proc/PID/stat`), 0 when unreadable.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count fields after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the file, utime 14 and stime 15.
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds the whole machine has spent busy (not idle, not waiting for I/O), from the
/// `cpu` line of `/proc/stat`.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy / clock_ticks()
}

fn read_only(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the database read-only");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// The ledger size and the number of signed checkpoints (one per committed batch), read
/// beside the running server through a read-only connection (WAL allows it).
fn ledger_counts(db: &Path) -> (u64, u64) {
    let conn = read_only(db);
    let one = |q: &str| {
        conn.query_row(q, [], |r| r.get::<_, i64>(0))
            .expect("read the ledger counts") as u64
    };
    (
        one("SELECT size FROM ledger_head WHERE id = 1"),
        one("SELECT count(*) FROM checkpoints"),
    )
}

fn count_kind(db: &Path, kind: &str) -> u64 {
    read_only(db)
        .query_row(
            "SELECT count(*) FROM ledger_entries WHERE kind = ?1",
            [kind],
            |r| r.get::<_, i64>(0),
        )
        .expect("count ledger entries") as u64
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

// ---------------------------------------------------------------------------------------
// The client

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
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
    conn: &mut Conn,
    method: Method,
    path: &str,
    token: Option<&HeaderValue>,
    body: Bytes,
) -> Result<(u16, Bytes), hyper::Error> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "127.0.0.1");
    if !body.is_empty() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, token.clone());
    }
    let request = request.body(Full::new(body)).expect("valid request");
    conn.ready().await?;
    let response = conn.send_request(request).await?;
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
        if let Ok(mut conn) = connect(addr).await {
            if let Ok((200, _)) = send(&mut conn, Method::GET, "/healthz", None, Bytes::new()).await
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {addr} did not become healthy within 30 s");
}

/// Drives one change to `approved_for_deployment` of [`ARTIFACT`]; returns its id.
async fn approve_change(
    addr: SocketAddr,
    tokens: &std::collections::HashMap<&str, String>,
) -> String {
    use time::format_description::well_known::Rfc3339;
    let mut conn = connect(addr).await.expect("connect for the setup");
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds");
    let start = (now - time::Duration::hours(1))
        .format(&Rfc3339)
        .expect("format time");
    let end = (now + time::Duration::days(1))
        .format(&Rfc3339)
        .expect("format time");
    let mut call = async |who: &str, path: &str, body: Value| -> Value {
        let token = HeaderValue::from_str(&format!("Bearer {}", tokens[who])).expect("header");
        let (status, answer) = send(
            &mut conn,
            Method::POST,
            path,
            Some(&token),
            Bytes::from(body.to_string()),
        )
        .await
        .expect("setup request");
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        assert!(
            (200..300).contains(&status),
            "setup {path} as {who} answered {status}: {answer}"
        );
        answer
    };
    let created = call(
        "alice",
        "/api/v1/changes",
        json!({"title": "gate bench change", "type": "normal", "category": "application",
               "systems": [SYSTEM]}),
    )
    .await;
    let id = created["id"].as_str().expect("a change id").to_string();
    let path = format!("/api/v1/changes/{id}/actions");
    let steps = [
        (
            "frank",
            json!({"action": "evaluate", "risk": "low", "priority": "low"}),
        ),
        ("frank", json!({"action": "authorize", "assignee": "bob"})),
        (
            "bob",
            json!({"action": "plan", "implementation_plan": "roll out", "test_plan": "ci"}),
        ),
        (
            "dave",
            json!({"action": "peer_review", "decision": "approved", "comment": "ok"}),
        ),
        (
            "erin",
            json!({"action": "test", "result": "passed", "evidence": "ci run"}),
        ),
        (
            "frank",
            json!({"action": "approve_deployment", "window_start": start, "window_end": end,
                   "artifact": ARTIFACT}),
        ),
    ];
    let mut last = Value::Null;
    for (who, body) in steps {
        last = call(who, &path, body).await;
    }
    assert_eq!(last["stage"], "approved_for_deployment", "{last}");
    id
}

async fn run_level(
    addr: SocketAddr,
    probe: Probe,
    token: &HeaderValue,
    clients: usize,
    secs: f64,
) -> Level {
    // Every connection is open before the clock starts.
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connect(addr).await.expect("connect to the server"));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(client(conn, probe, token.clone(), deadline)))
        .collect();
    let mut level = Level {
        probe,
        clients,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        rss_kb: 0,
        hwm_kb: 0,
        server_cpu: 0.0,
        others_cores: 0.0,
        entries: 0,
        commits: 0,
    };
    for task in tasks {
        let tally = task.await.expect("client task");
        level.ok += tally.ok;
        level.errors += tally.errors;
        level.latencies.extend(tally.latencies);
    }
    level.elapsed = started.elapsed();
    level.latencies.sort_unstable();
    level
}

/// One keep-alive connection sending requests one after the other until the deadline.
async fn client(mut conn: Conn, probe: Probe, token: HeaderValue, deadline: Instant) -> Tally {
    let (method, path, token, body, expect): (_, _, _, _, &[u8]) = match probe {
        Probe::Allow | Probe::Deny => {
            let artifact = if probe == Probe::Allow {
                ARTIFACT
            } else {
                UNKNOWN_ARTIFACT
            };
            let body = json!({"system": SYSTEM, "environment": "production",
                              "artifact": artifact});
            let expect: &[u8] = if probe == Probe::Allow {
                br#""decision":"allow""#
            } else {
                br#""decision":"deny""#
            };
            (
                Method::POST,
                "/api/v1/gate",
                Some(token),
                Bytes::from(body.to_string()),
                expect,
            )
        }
        Probe::Health => (Method::GET, "/healthz", None, Bytes::new(), b"\"ok\""),
    };
    let mut tally = Tally {
        latencies: Vec::with_capacity(200_000),
        ..Tally::default()
    };
    while Instant::now() < deadline {
        let t = Instant::now();
        let answer = send(
            &mut conn,
            method.clone(),
            path,
            token.as_ref(),
            body.clone(),
        )
        .await;
        let took = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        tally.latencies.push(took);
        let failure = match &answer {
            Ok((200, body)) if contains(body, expect) => {
                tally.ok += 1;
                continue;
            }
            Ok((status, body)) => format!("HTTP {status}: {}", String::from_utf8_lossy(body)),
            Err(e) => format!("connection error: {e}"),
        };
        tally.errors += 1;
        if ERRORS_PRINTED.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
            eprintln!("!!! BENCH REQUEST FAILED ({}): {failure}", probe.label());
        }
        if answer.is_err() {
            break;
        }
    }
    tally
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
