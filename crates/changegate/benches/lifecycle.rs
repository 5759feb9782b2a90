//! Lifecycle benchmark of the real `changegate serve` process, against a one-insert floor.
//!
//! 1. The release binary runs as a separate process (`serve --data TMP --listen
//!    127.0.0.1:PORT`), first with `CHANGEGATE_LOG=warn`, then again on a fresh data
//!    directory with the default `info` logging (its JSON log goes to a file). At each
//!    concurrency level (1, 16, 64 clients) every client owns one keep-alive HTTP/1.1
//!    connection and drives its own changes through the whole lifecycle: `POST
//!    /api/v1/changes`, then evaluate, authorize, plan, peer_review, test,
//!    approve_deployment, implement, review_implementation, communicate and close — 11
//!    durable writes per change, each as the user whose role that action needs.
//! 2. The floor: this bench binary re-executes itself as `--floor-server PORT DB`, a minimal
//!    axum server whose `POST /rows` commits one SQLite row per request in its own
//!    transaction (WAL, `synchronous=FULL`, no batching). Same client, same levels.
//! 3. The ledger: with the server stopped, `changegate verify --data TMP` is timed (and
//!    `--ledger-only`), and the number of ledger rows is checked against the acknowledged
//!    writes.
//!
//! Prints figures and never asserts a timing. Any non-2xx answer, lost acknowledged write
//! or failed verification is printed loudly and makes the bench exit non-zero.
//!
//! Run: `cargo bench -p changegate --bench lifecycle`. Knobs (environment or arguments):
//! `BENCH_SECONDS` / `--seconds S` measured seconds per level (default 8),
//! `BENCH_WARMUP` / `--warmup S` (default 1), `BENCH_LEVELS` / `--levels 1,16,64`,
//! `BENCH_INFO=0` / `--no-info` (skip the info-logging pass), `BENCH_FLOOR=0` /
//! `--no-floor`, `BENCH_ENGINEERS` (engineer pool, default 8), `BENCH_KEEP=1` / `--keep`
//! (keep the data directories). Without the `--bench` argument that `cargo bench` passes
//! (as under `cargo test --benches`) it makes a short smoke run: levels 1 and 4, half a
//! second each, no info-logging pass. Only loopback traffic.

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FLOOR_FLAG: &str = "--floor-server";
const BIN: &str = env!("CARGO_BIN_EXE_changegate");
/// Non-2xx answers printed in full; the rest are only counted.
const SHOW_ERRORS: usize = 8;
static ERRORS_SHOWN: AtomicUsize = AtomicUsize::new(0);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == FLOOR_FLAG) {
        let port: u16 = args
            .get(i + 1)
            .and_then(|p| p.parse().ok())
            .expect("--floor-server PORT DB");
        let db = PathBuf::from(args.get(i + 2).expect("--floor-server PORT DB"));
        floor::serve(port, &db);
        return ExitCode::SUCCESS;
    }
    let config = Config::read(&args);
    bench(&config)
}

// ---------------------------------------------------------------------------------------
// Configuration

struct Config {
    /// Run without `--bench` (by `cargo test --benches`): short defaults.
    smoke: bool,
    seconds: f64,
    warmup: f64,
    levels: Vec<usize>,
    info_pass: bool,
    floor: bool,
    engineers: usize,
    keep: bool,
}

impl Config {
    fn read(args: &[String]) -> Config {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let arg = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let off = |k: &str| env(k).is_some_and(|v| v == "0" || v.eq_ignore_ascii_case("false"));
        let on = |k: &str| env(k).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then a short
        // smoke run checks that every request succeeds without measuring anything worth
        // reading. Explicit knobs still apply.
        let smoke = !has("--bench");
        let seconds = arg("--seconds")
            .or_else(|| env("BENCH_SECONDS"))
            .map(|v| v.parse::<f64>().expect("BENCH_SECONDS must be a number"))
            .unwrap_or(if smoke { 0.5 } else { 8.0 });
        let warmup = arg("--warmup")
            .or_else(|| env("BENCH_WARMUP"))
            .map(|v| v.parse::<f64>().expect("BENCH_WARMUP must be a number"))
            .unwrap_or(if smoke { 0.2 } else { 1.0 });
        let levels = arg("--levels")
            .or_else(|| env("BENCH_LEVELS"))
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().parse::<usize>().expect("BENCH_LEVELS: 1,16,64"))
                    .filter(|n| *n > 0)
                    .collect()
            })
            .unwrap_or_else(|| if smoke { vec![1, 4] } else { vec![1, 16, 64] });
        let engineers = env("BENCH_ENGINEERS")
            .map(|v| {
                v.parse::<usize>()
                    .expect("BENCH_ENGINEERS must be a number")
            })
            .unwrap_or(8)
            .max(1);
        Config {
            smoke,
            seconds,
            warmup,
            levels,
            info_pass: !(has("--no-info") || off("BENCH_INFO") || (smoke && !on("BENCH_INFO"))),
            floor: !(has("--no-floor") || off("BENCH_FLOOR")),
            engineers,
            keep: has("--keep") || on("BENCH_KEEP"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The run

fn bench(config: &Config) -> ExitCode {
    println!("lifecycle bench: binary {BIN}");
    if config.smoke {
        println!("smoke run (no `--bench` argument): short defaults, figures not meaningful");
    }
    println!(
        "levels {:?}, {} s per level (+{} s warm-up per server), engineer pool {}, info pass {}, floor {}",
        config.levels, config.seconds, config.warmup, config.engineers, config.info_pass, config.floor
    );
    let machine = Machine::read();
    println!("machine: {} cores, {}", machine.cores, machine.cpu);
    println!("load average at start: {}", load_average());
    let root = tempfile::Builder::new()
        .prefix("changegate-lifecycle-bench-")
        .tempdir()
        .expect("temporary directory");
    println!("scratch: {}", root.path().display());
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    let mut passes: Vec<Pass> = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    let mut kinds = vec![ServerKind::Changegate { info_log: false }];
    if config.info_pass {
        kinds.push(ServerKind::Changegate { info_log: true });
    }
    if config.floor {
        kinds.push(ServerKind::Floor);
    }
    for kind in kinds {
        let pass = run_pass(config, &client_rt, root.path(), kind);
        failures.extend(pass.failures.iter().cloned());
        passes.push(pass);
    }

    report(config, &machine, &passes);

    if config.keep {
        let kept = root.keep();
        println!("data kept in {}", kept.display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!!! BENCH FAILURE");
        for f in &failures {
            eprintln!("!!!   {f}");
        }
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        ExitCode::FAILURE
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ServerKind {
    Changegate { info_log: bool },
    Floor,
}

impl ServerKind {
    fn label(self) -> &'static str {
        match self {
            ServerKind::Changegate { info_log: false } => "changegate (warn log)",
            ServerKind::Changegate { info_log: true } => "changegate (info log)",
            ServerKind::Floor => "floor (1 insert/req)",
        }
    }
}

/// Everything measured against one server process.
struct Pass {
    kind: ServerKind,
    levels: Vec<Level>,
    verify: Option<VerifyReport>,
    log_bytes: Option<u64>,
    failures: Vec<String>,
}

fn run_pass(config: &Config, rt: &tokio::runtime::Runtime, root: &Path, kind: ServerKind) -> Pass {
    let dir = root.join(match kind {
        ServerKind::Changegate { info_log: false } => "changegate-warn",
        ServerKind::Changegate { info_log: true } => "changegate-info",
        ServerKind::Floor => "floor",
    });
    std::fs::create_dir_all(&dir).expect("pass directory");
    let data = dir.join("data");
    let log = dir.join("server.log");
    println!();
    println!("=== {} ===", kind.label());

    let (mut server, workload) = match kind {
        ServerKind::Changegate { info_log } => {
            let started = Instant::now();
            let team = Team::create(&data, config.engineers);
            println!(
                "added {} users with `changegate users add` in {:.1} s",
                team.count,
                started.elapsed().as_secs_f64()
            );
            let server = Server::start_changegate(&data, &log, info_log);
            (server, Workload::Lifecycle(Arc::new(team)))
        }
        ServerKind::Floor => {
            std::fs::create_dir_all(&data).expect("floor data directory");
            let server = Server::start_floor(&data.join("floor.db"), &log);
            (server, Workload::Floor)
        }
    };
    let users = match &workload {
        Workload::Lifecycle(team) => team.count as u64,
        Workload::Floor => 0,
    };
    println!("server pid {} on {}", server.pid(), server.addr);

    let mut failures = Vec::new();
    let mut acknowledged: u64 = 0;
    if config.warmup > 0.0 {
        let warm = rt.block_on(run_level(
            kind,
            server.addr,
            &workload,
            4,
            Duration::from_secs_f64(config.warmup),
        ));
        acknowledged += warm.ok;
        println!(
            "warm-up: {} writes at 4 clients, {} errors",
            warm.ok, warm.errors
        );
        if warm.errors > 0 {
            failures.push(format!(
                "{}: {} non-2xx answers during warm-up",
                kind.label(),
                warm.errors
            ));
        }
    }

    let mut levels = Vec::new();
    for &clients in &config.levels {
        let server_cpu = cpu_seconds(server.pid());
        let client_cpu = cpu_seconds(std::process::id());
        let machine_cpu = machine_busy_seconds();
        let commits = commit_count(kind, &data);
        let mut level = rt.block_on(run_level(
            kind,
            server.addr,
            &workload,
            clients,
            Duration::from_secs_f64(config.seconds),
        ));
        let (rss, hwm) = server.memory_kb();
        level.rss_kb = rss;
        level.hwm_kb = hwm;
        level.server_cpu = cpu_seconds(server.pid()) - server_cpu;
        level.client_cpu = cpu_seconds(std::process::id()) - client_cpu;
        level.machine_cpu = machine_busy_seconds() - machine_cpu;
        level.commits = match (commits, commit_count(kind, &data)) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        acknowledged += level.ok;
        println!("{}", level.line());
        println!("    {}", level.cpu_line());
        if kind != ServerKind::Floor {
            println!("    mean latency per step: {}", level.step_means());
        }
        if level.errors > 0 {
            eprintln!(
                "!!! {} at {} clients: {} NON-2xx ANSWERS (errors) — bench failure",
                kind.label(),
                clients,
                level.errors
            );
            failures.push(format!(
                "{} at {} clients: {} non-2xx answers",
                kind.label(),
                clients,
                level.errors
            ));
        }
        levels.push(level);
    }

    let stopped = server.stop();
    if !stopped {
        println!("(the server did not stop on SIGINT within 15 s and was killed)");
    }
    let log_bytes = std::fs::metadata(&log).map(|m| m.len()).ok();

    let mut verify = None;
    if let ServerKind::Changegate { .. } = kind {
        let report = verify_ledger(&data);
        // Every acknowledged write, every user and the one `policy.activated` entry.
        let expected = acknowledged + users + 1;
        if report.events < expected {
            failures.push(format!(
                "{}: the ledger holds {} entries but {} were acknowledged (writes + users + policy): acknowledged writes are missing",
                kind.label(),
                report.events,
                expected
            ));
        } else if report.events > expected {
            println!(
                "note: the ledger holds {} entries, {} more than acknowledged writes + users + policy ({expected})",
                report.events,
                report.events - expected
            );
        } else {
            println!(
                "ledger holds exactly the {} acknowledged entries (writes + users + policy)",
                report.events
            );
        }
        if !report.full.ok {
            failures.push(format!(
                "{}: `changegate verify` failed: {}",
                kind.label(),
                report.full.output.trim()
            ));
        }
        if !report.ledger_only.ok {
            failures.push(format!(
                "{}: `changegate verify --ledger-only` failed: {}",
                kind.label(),
                report.ledger_only.output.trim()
            ));
        }
        println!("{}", report.line());
        verify = Some(report);
    }

    Pass {
        kind,
        levels,
        verify,
        log_bytes,
        failures,
    }
}

// ---------------------------------------------------------------------------------------
// Users and their tokens

/// The users of the lifecycle and their API tokens.
struct Team {
    requester: HeaderValue,
    engineers: Vec<(String, HeaderValue)>,
    peer_reviewer: HeaderValue,
    tester: HeaderValue,
    change_manager: HeaderValue,
    cab_member: HeaderValue,
    release_manager: HeaderValue,
    /// The approved deployment window: from an hour ago to a day ahead.
    window: (String, String),
    count: usize,
}

impl Team {
    fn create(data: &Path, engineers: usize) -> Team {
        let add = |name: &str, role: &str| -> HeaderValue {
            let out = Command::new(BIN)
                .args(["users", "add", name, "--role", role, "--data"])
                .arg(data)
                .env_remove("CHANGEGATE_DATABASE_URL")
                .env("CHANGEGATE_LOG", "warn")
                .stdin(Stdio::null())
                .output()
                .expect("run `changegate users add`");
            if !out.status.success() {
                panic!(
                    "`changegate users add {name} --role {role}` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let token = stdout
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_else(|| panic!("no token printed for `{name}`"));
            HeaderValue::from_str(&format!("Bearer {token}")).expect("token header")
        };
        let requester = add("rita.requester", "requester");
        let engineers = (1..=engineers)
            .map(|i| {
                let name = format!("eng{i:02}");
                let token = add(&name, "engineer");
                (name, token)
            })
            .collect::<Vec<_>>();
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339")
        };
        let count = 6 + engineers.len();
        Team {
            requester,
            peer_reviewer: add("pete.reviewer", "peer_reviewer"),
            tester: add("tess.tester", "tester"),
            change_manager: add("manny.manager", "change_manager"),
            cab_member: add("cora.cab", "cab_member"),
            release_manager: add("reid.release", "release_manager"),
            engineers,
            window: (
                fmt(now - time::Duration::hours(1)),
                fmt(now + time::Duration::days(1)),
            ),
            count,
        }
    }

    /// The 11 requests of one change, for one client: the first is the creation, the others
    /// are actions. The client's engineer comes from the pool, round robin.
    fn steps(&self, client: usize) -> Vec<Step> {
        let (engineer, engineer_token) = &self.engineers[client % self.engineers.len()];
        let step = |label: &'static str, token: &HeaderValue, body: String| Step {
            label,
            token: token.clone(),
            body: Bytes::from(body),
        };
        let (start, end) = &self.window;
        vec![
            step(
                "request",
                &self.requester,
                format!(
                    r#"{{"title":"Rotate TLS certificates on billing-api (client {client})","description":"The certificates expire next month.","type":"normal","category":"application","systems":["billing-api","edge-proxy"],"testable":true}}"#
                ),
            ),
            step(
                "evaluate",
                &self.cab_member,
                r#"{"action":"evaluate","risk":"low","priority":"medium","impact":"billing-api restarts one pod at a time"}"#.into(),
            ),
            step(
                "authorize",
                &self.change_manager,
                format!(r#"{{"action":"authorize","assignee":"{engineer}","comment":"routine rotation"}}"#),
            ),
            step(
                "plan",
                engineer_token,
                r#"{"action":"plan","implementation_plan":"Roll the new certificate secret, then restart pods one by one.","test_plan":"Check the TLS handshake and expiry date in staging.","rollback_plan":"Restore the previous secret and restart."}"#.into(),
            ),
            step(
                "peer_review",
                &self.peer_reviewer,
                r#"{"action":"peer_review","decision":"approved","comment":"plan and rollback look right"}"#.into(),
            ),
            step(
                "test",
                &self.tester,
                r#"{"action":"test","result":"passed","evidence":"staging run 4711: handshake ok, expiry 2027"}"#.into(),
            ),
            step(
                "approve_deployment",
                &self.cab_member,
                format!(
                    r#"{{"action":"approve_deployment","window_start":"{start}","window_end":"{end}","comment":"ok for today"}}"#
                ),
            ),
            step(
                "implement",
                &self.release_manager,
                r#"{"action":"implement","environment":"production","artifact":"billing-api-certs@2026.1"}"#.into(),
            ),
            step(
                "review_implementation",
                &self.change_manager,
                r#"{"action":"review_implementation","outcome":"successful","comment":"no errors in the rollout"}"#.into(),
            ),
            step(
                "communicate",
                &self.release_manager,
                r#"{"action":"communicate","release_notes":"billing-api certificates rotated; no customer impact."}"#.into(),
            ),
            step(
                "close",
                &self.change_manager,
                r#"{"action":"close","comment":"done"}"#.into(),
            ),
        ]
    }
}

struct Step {
    label: &'static str,
    token: HeaderValue,
    body: Bytes,
}

const STEP_LABELS: [&str; 11] = [
    "request",
    "evaluate",
    "authorize",
    "plan",
    "peer_review",
    "test",
    "approve_deployment",
    "implement",
    "review_implementation",
    "communicate",
    "close",
];

enum Workload {
    Lifecycle(Arc<Team>),
    Floor,
}

// ---------------------------------------------------------------------------------------
// Server processes

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start_changegate(data: &Path, log: &Path, info_log: bool) -> Server {
        let addr = free_addr();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--data"])
            .arg(data)
            .arg("--listen")
            .arg(addr.to_string())
            .env_remove("CHANGEGATE_DATABASE_URL")
            .env_remove("CHANGEGATE_POLICY")
            .env_remove("CHANGEGATE_LISTEN");
        if info_log {
            // The server's own default (`info`): one JSON line per request plus one per
            // recorded action, written to a file as a service manager would.
            cmd.env_remove("CHANGEGATE_LOG");
        } else {
            cmd.env("CHANGEGATE_LOG", "warn");
        }
        Server::spawn(cmd, addr, log)
    }

    fn start_floor(db: &Path, log: &Path) -> Server {
        let addr = free_addr();
        let mut cmd = Command::new(std::env::current_exe().expect("bench executable"));
        cmd.arg(FLOOR_FLAG).arg(addr.port().to_string()).arg(db);
        Server::spawn(cmd, addr, log)
    }

    fn spawn(mut cmd: Command, addr: SocketAddr, log: &Path) -> Server {
        let file = std::fs::File::create(log).expect("server log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the server process");
        let mut server = Server {
            child,
            addr,
            log: log.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the server exited before serving ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if healthz(self.addr) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the server on {} did not answer /healthz in 60 s",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` and `VmHWM` of the server process, in kB.
    fn memory_kb(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// SIGINT (graceful shutdown), then a kill after 15 s. True when it stopped by itself.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds of a process so far (`/proc/PID/stat`), 0 when unreadable.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = clock_ticks();
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
    (field(14) + field(15)) / ticks
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

/// Transactions committed so far: changegate signs one checkpoint per committed batch, the
/// floor commits one row per transaction. Read through a separate read-only connection (WAL
/// lets it read beside the server's writer).
fn commit_count(kind: ServerKind, data: &Path) -> Option<u64> {
    let (file, query) = match kind {
        ServerKind::Changegate { .. } => ("changegate.db", "SELECT count(*) FROM checkpoints"),
        ServerKind::Floor => ("floor.db", "SELECT count(*) FROM rows"),
    };
    let conn = rusqlite::Connection::open_with_flags(
        data.join(file),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row(query, [], |r| r.get::<_, i64>(0))
        .ok()
        .map(|n| n as u64)
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut stream) = StdStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

// ---------------------------------------------------------------------------------------
// The load

/// The figures of one level against one server.
struct Level {
    kind: ServerKind,
    clients: usize,
    ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Microseconds of every answered request (2xx or not), sorted.
    latencies: Vec<u32>,
    step_count: [u64; 11],
    step_micros: [u64; 11],
    rss_kb: u64,
    hwm_kb: u64,
    /// CPU seconds (user + system) the server and the bench's client spent in the level.
    server_cpu: f64,
    client_cpu: f64,
    /// CPU seconds all processes of the machine spent (from `/proc/stat`): what is beyond
    /// server + client was taken by other work on the machine.
    machine_cpu: f64,
    /// Transactions the server committed during the level (changegate: one signed
    /// checkpoint per batch), when they could be counted.
    commits: Option<u64>,
}

impl Level {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank quantile, in milliseconds.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[i] as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies.last().map_or(0.0, |m| *m as f64 / 1000.0)
    }

    fn line(&self) -> String {
        format!(
            "{:>3} clients: {:>8.0} durable writes/s ({} in {:.2} s), p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, errors {}, RSS {:.1} MB, HWM {:.1} MB",
            self.clients,
            self.per_second(),
            self.ok,
            self.elapsed.as_secs_f64(),
            self.quantile_ms(0.50),
            self.quantile_ms(0.99),
            self.max_ms(),
            self.errors,
            self.rss_kb as f64 / 1024.0,
            self.hwm_kb as f64 / 1024.0,
        )
    }

    /// Cores that processes other than the server and this bench used during the level.
    fn others_cores(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        ((self.machine_cpu - self.server_cpu - self.client_cpu) / secs).max(0.0)
    }

    fn cpu_line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut line = format!(
            "CPU: server {:.2} cores busy = {:.0} µs per durable write; bench client {:.2} cores busy = {:.0} µs per request; other processes {:.2} cores; machine idle {:.2} of {} cores",
            self.server_cpu / secs,
            self.server_cpu * 1e6 / self.ok.max(1) as f64,
            self.client_cpu / secs,
            self.client_cpu * 1e6 / (self.ok + self.errors).max(1) as f64,
            self.others_cores(),
            (cores() as f64 - self.machine_cpu / secs).max(0.0),
            cores(),
        );
        if let (Some(n), Some(per)) = (self.commits, self.writes_per_commit()) {
            line += &format!(
                "\n    commits: {n} = {:.0}/s, {per:.1} writes per commit",
                n as f64 / secs
            );
        }
        line
    }

    fn writes_per_commit(&self) -> Option<f64> {
        self.commits
            .filter(|n| *n > 0)
            .map(|n| self.ok as f64 / n as f64)
    }

    fn step_means(&self) -> String {
        STEP_LABELS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.step_count[*i] > 0)
            .map(|(i, label)| {
                format!(
                    "{label} {:.2}",
                    self.step_micros[i] as f64 / self.step_count[i] as f64 / 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
            + " (ms)"
    }
}

/// What one client did.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies: Vec<u32>,
    step_count: [u64; 11],
    step_micros: [u64; 11],
}

impl Tally {
    fn record(&mut self, step: usize, took: Duration) {
        let micros = took.as_micros().min(u32::MAX as u128) as u32;
        self.latencies.push(micros);
        self.step_count[step] += 1;
        self.step_micros[step] += micros as u64;
    }
}

async fn run_level(
    kind: ServerKind,
    addr: SocketAddr,
    workload: &Workload,
    clients: usize,
    duration: Duration,
) -> Level {
    // Every connection is open before the clock starts.
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connect(addr).await.expect("connect to the server"));
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for (client, conn) in conns.into_iter().enumerate() {
        let task = match workload {
            Workload::Lifecycle(team) => {
                let steps = team.steps(client);
                tokio::spawn(lifecycle_client(kind, addr, conn, steps, deadline))
            }
            Workload::Floor => tokio::spawn(floor_client(kind, addr, conn, client, deadline)),
        };
        tasks.push(task);
    }
    let mut level = Level {
        kind,
        clients,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        step_count: [0; 11],
        step_micros: [0; 11],
        rss_kb: 0,
        hwm_kb: 0,
        server_cpu: 0.0,
        client_cpu: 0.0,
        machine_cpu: 0.0,
        commits: None,
    };
    for task in tasks {
        let tally = task.await.expect("client task");
        level.ok += tally.ok;
        level.errors += tally.errors;
        level.latencies.extend(tally.latencies);
        for i in 0..11 {
            level.step_count[i] += tally.step_count[i];
            level.step_micros[i] += tally.step_micros[i];
        }
    }
    level.elapsed = started.elapsed();
    level.latencies.sort_unstable();
    level
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Conn, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one POST and reads the whole answer.
async fn post(
    conn: &mut Conn,
    path: &str,
    token: &HeaderValue,
    body: Bytes,
) -> Result<(u16, Bytes), BoxError> {
    conn.ready().await?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, "127.0.0.1")
        .header(AUTHORIZATION, token.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let response = conn.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn show_error(kind: ServerKind, what: &str, detail: &str) {
    if ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < SHOW_ERRORS {
        eprintln!("!!! ERROR from {}: {what}: {detail}", kind.label());
    }
}

/// One client: its connection and what it has measured so far.
struct Client {
    kind: ServerKind,
    addr: SocketAddr,
    conn: Conn,
    tally: Tally,
}

impl Client {
    fn new(kind: ServerKind, addr: SocketAddr, conn: Conn) -> Client {
        Client {
            kind,
            addr,
            conn,
            tally: Tally {
                latencies: Vec::with_capacity(64 * 1024),
                ..Tally::default()
            },
        }
    }

    /// Sends one request and books it. `Some(body)` only for a 2xx answer; a transport
    /// failure also replaces the connection.
    async fn send(
        &mut self,
        index: usize,
        path: &str,
        token: &HeaderValue,
        body: Bytes,
    ) -> Option<Bytes> {
        let sent = Instant::now();
        match post(&mut self.conn, path, token, body).await {
            Ok((status, answer)) => {
                self.tally.record(index, sent.elapsed());
                if (200..300).contains(&status) {
                    self.tally.ok += 1;
                    Some(answer)
                } else {
                    self.tally.errors += 1;
                    show_error(
                        self.kind,
                        &format!("{} {path} answered {status}", STEP_LABELS[index]),
                        &String::from_utf8_lossy(&answer),
                    );
                    None
                }
            }
            Err(e) => {
                self.tally.errors += 1;
                show_error(
                    self.kind,
                    &format!("{} {path}", STEP_LABELS[index]),
                    &e.to_string(),
                );
                match connect(self.addr).await {
                    Ok(fresh) => self.conn = fresh,
                    Err(e) => show_error(self.kind, "reconnect", &e.to_string()),
                }
                None
            }
        }
    }
}

async fn lifecycle_client(
    kind: ServerKind,
    addr: SocketAddr,
    conn: Conn,
    steps: Vec<Step>,
    deadline: Instant,
) -> Tally {
    let mut client = Client::new(kind, addr, conn);
    'changes: while Instant::now() < deadline {
        let create = &steps[0];
        let Some(answer) = client
            .send(0, "/api/v1/changes", &create.token, create.body.clone())
            .await
        else {
            continue;
        };
        let id = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string));
        let Some(id) = id else {
            client.tally.errors += 1;
            show_error(
                kind,
                "a created change without `id`",
                &String::from_utf8_lossy(&answer),
            );
            continue;
        };
        let path = format!("/api/v1/changes/{id}/actions");
        for (i, action) in steps.iter().enumerate().skip(1) {
            debug_assert_eq!(action.label, STEP_LABELS[i]);
            if Instant::now() >= deadline {
                break 'changes;
            }
            let done = client
                .send(i, &path, &action.token, action.body.clone())
                .await;
            if done.is_none() {
                // The change is stuck at this stage; start another.
                continue 'changes;
            }
        }
    }
    client.tally
}

async fn floor_client(
    kind: ServerKind,
    addr: SocketAddr,
    conn: Conn,
    index: usize,
    deadline: Instant,
) -> Tally {
    let mut client = Client::new(kind, addr, conn);
    // About the size of a lifecycle action body, with a bearer header like the real one.
    let token = HeaderValue::from_static(
        "Bearer cg_0000000000000000000000000000000000000000000000000000000000000000",
    );
    let body = Bytes::from(format!(
        r#"{{"action":"implement","environment":"production","artifact":"billing-api-certs@2026.1","client":{index}}}"#
    ));
    while Instant::now() < deadline {
        client.send(0, "/rows", &token, body.clone()).await;
    }
    client.tally
}

// ---------------------------------------------------------------------------------------
// Ledger verification

struct VerifyRun {
    ok: bool,
    wall: Duration,
    /// The time `changegate verify` reports for its own checks, when it prints one.
    inner: Option<f64>,
    output: String,
}

struct VerifyReport {
    events: u64,
    db_bytes: u64,
    full: VerifyRun,
    ledger_only: VerifyRun,
}

impl VerifyReport {
    fn rate(&self, secs: f64) -> f64 {
        self.events as f64 / secs.max(1e-9)
    }

    fn line(&self) -> String {
        let inner = |r: &VerifyRun| match r.inner {
            Some(s) => format!(", checks alone {s:.2} s = {:.0} events/s", self.rate(s)),
            None => String::new(),
        };
        format!(
            "verify: {} events ({:.1} MB database); full: {:.2} s wall = {:.0} events/s{}; --ledger-only: {:.2} s wall = {:.0} events/s{}\n    verify said: {}",
            self.events,
            self.db_bytes as f64 / 1e6,
            self.full.wall.as_secs_f64(),
            self.rate(self.full.wall.as_secs_f64()),
            inner(&self.full),
            self.ledger_only.wall.as_secs_f64(),
            self.rate(self.ledger_only.wall.as_secs_f64()),
            inner(&self.ledger_only),
            self.full.output.trim(),
        )
    }
}

fn verify_ledger(data: &Path) -> VerifyReport {
    let db = data.join("changegate.db");
    let events = {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open the database read-only");
        conn.query_row("SELECT count(*) FROM ledger_entries", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("count the ledger entries") as u64
    };
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let run = |extra: &[&str]| {
        let started = Instant::now();
        let out = Command::new(BIN)
            .arg("verify")
            .arg("--data")
            .arg(data)
            .args(extra)
            .env_remove("CHANGEGATE_DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run `changegate verify`");
        let wall = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        VerifyRun {
            ok: out.status.success(),
            wall,
            inner: reported_seconds(&stdout),
            output: if out.status.success() {
                stdout
            } else {
                format!("{stdout}{stderr}")
            },
        }
    };
    // Warm the page cache the same way for both runs.
    let full = run(&[]);
    let ledger_only = run(&["--ledger-only"]);
    VerifyReport {
        events,
        db_bytes,
        full,
        ledger_only,
    }
}

/// The `(1.23s)` at the end of `changegate verify`'s summary.
fn reported_seconds(stdout: &str) -> Option<f64> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let inner = line.strip_suffix("s)")?;
    let open = inner.rfind('(')?;
    inner[open + 1..].parse().ok()
}

// ---------------------------------------------------------------------------------------
// The report

struct Machine {
    cores: usize,
    cpu: String,
}

impl Machine {
    fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cores: cores(),
            cpu,
        }
    }
}

fn report(config: &Config, machine: &Machine, passes: &[Pass]) {
    println!();
    println!("==================================================================================================");
    println!(
        "RESULTS — {} cores, {}; {} s per level",
        machine.cores, machine.cpu, config.seconds
    );
    println!(
        "| {:<22} | {:>7} | {:>16} | {:>6} | {:>6} | {:>7} | {:>6} | {:>6} | {:>6} | {:>10} | {:>10} | {:>9} |",
        "server",
        "clients",
        "durable writes/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "RSS MB",
        "HWM MB",
        "µs CPU/wr",
        "others CPU",
        "wr/commit"
    );
    println!(
        "|{:-<24}|{:->9}|{:->18}|{:->8}|{:->8}|{:->9}|{:->8}|{:->8}|{:->8}|{:->12}|{:->12}|{:->11}|",
        "", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":"
    );
    for pass in passes {
        for l in &pass.levels {
            println!(
                "| {:<22} | {:>7} | {:>16.0} | {:>6.2} | {:>6.2} | {:>7.1} | {:>6} | {:>6.1} | {:>6.1} | {:>10.0} | {:>10.2} | {:>9} |",
                l.kind.label(),
                l.clients,
                l.per_second(),
                l.quantile_ms(0.5),
                l.quantile_ms(0.99),
                l.max_ms(),
                l.errors,
                l.rss_kb as f64 / 1024.0,
                l.hwm_kb as f64 / 1024.0,
                l.server_cpu * 1e6 / l.ok.max(1) as f64,
                l.others_cores(),
                l.writes_per_commit()
                    .map_or("-".to_string(), |w| format!("{w:.1}"))
            );
        }
    }
    println!(
        "(µs CPU/wr: server CPU time per durable write; others CPU: cores other processes on the machine used meanwhile; wr/commit: durable writes per committed transaction)"
    );

    let find = |kind: ServerKind| passes.iter().find(|p| p.kind == kind);
    let warn = find(ServerKind::Changegate { info_log: false });
    let info = find(ServerKind::Changegate { info_log: true });
    let floor = find(ServerKind::Floor);
    if let (Some(cg), Some(fl)) = (warn, floor) {
        println!();
        println!("| clients | changegate/floor writes/s | changegate/floor p99 |");
        println!("|--------:|--------------------------:|---------------------:|");
        for (a, b) in cg.levels.iter().zip(&fl.levels) {
            println!(
                "| {:>7} | {:>25.2} | {:>20.2} |",
                a.clients,
                a.per_second() / b.per_second().max(1e-9),
                a.quantile_ms(0.99) / b.quantile_ms(0.99).max(1e-9)
            );
        }
    }
    if let (Some(w), Some(i)) = (warn, info) {
        println!();
        println!("| clients | info-log/warn-log writes/s | info-log/warn-log p99 |");
        println!("|--------:|---------------------------:|----------------------:|");
        for (a, b) in i.levels.iter().zip(&w.levels) {
            println!(
                "| {:>7} | {:>26.2} | {:>21.2} |",
                a.clients,
                a.per_second() / b.per_second().max(1e-9),
                a.quantile_ms(0.99) / b.quantile_ms(0.99).max(1e-9)
            );
        }
        if let Some(bytes) = i.log_bytes {
            let requests: u64 = i.levels.iter().map(|l| l.ok + l.errors).sum();
            println!(
                "info log written: {:.1} MB ({:.0} bytes per measured request, warm-up included in the size)",
                bytes as f64 / 1e6,
                bytes as f64 / requests.max(1) as f64
            );
        }
    }
    println!();
    for pass in passes {
        if let Some(v) = &pass.verify {
            println!("{}: {}", pass.kind.label(), v.line());
        }
    }

    // The targets, stated; nothing here fails the bench.
    println!();
    println!(
        "load average at the end: {} (other work on the machine shares its cores with server and client)",
        load_average()
    );
    println!("targets (printed, not asserted):");
    let at64 = warn.and_then(|p| p.levels.iter().find(|l| l.clients == 64));
    match at64 {
        Some(l) => {
            let met = |b: bool| if b { "MET" } else { "NOT MET" };
            println!(
                "  >= 10,000 durable actions/s at 64 clients: {:.0}/s — {}",
                l.per_second(),
                met(l.per_second() >= 10_000.0)
            );
            println!(
                "  p99 < 20 ms at 64 clients: {:.2} ms — {}",
                l.quantile_ms(0.99),
                met(l.quantile_ms(0.99) < 20.0)
            );
        }
        None => println!("  (no 64-client level was run)"),
    }
    if let Some(w) = warn {
        let hwm = w.levels.iter().map(|l| l.hwm_kb).max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "  server RSS < 100 MB: peak {:.1} MB — {}",
            hwm,
            if hwm < 100.0 { "MET" } else { "NOT MET" }
        );
        if let Some(v) = &w.verify {
            let wall = v.rate(v.full.wall.as_secs_f64());
            println!(
                "  verification >= 1,000,000 events/s: {:.0} events/s (whole `changegate verify` process) — {}",
                wall,
                if wall >= 1_000_000.0 { "MET" } else { "NOT MET" }
            );
        }
    }
    println!("==================================================================================================");
}

// ---------------------------------------------------------------------------------------
// The floor server

mod floor {
    use super::*;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use rusqlite::{params, Connection, TransactionBehavior};

    type Db = Arc<Mutex<Connection>>;

    /// A minimal durable endpoint: `POST /rows` commits its body as one row, one
    /// transaction (and one WAL fsync) per request. The runtime has the same shape as the
    /// server's: a multi-threaded runtime, blocking work on the blocking pool.
    pub fn serve(port: u16, path: &Path) {
        let conn = Connection::open(path).expect("open the floor database");
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("WAL mode");
        assert!(mode.eq_ignore_ascii_case("wal"), "journal mode {mode}");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("synchronous=FULL");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, \
             body BLOB NOT NULL)",
        )
        .expect("create the floor table");
        let db: Db = Arc::new(Mutex::new(conn));
        let blocking = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(blocking)
            .build()
            .expect("floor runtime");
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route("/rows", post(insert))
                .with_state(db);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind the floor port");
            axum::serve(listener, app)
                .tcp_nodelay(true)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .expect("serve the floor");
        });
    }

    async fn insert(State(db): State<Db>, body: axum::body::Bytes) -> (StatusCode, String) {
        let written = tokio::task::spawn_blocking(move || -> rusqlite::Result<i64> {
            let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            tx.prepare_cached("INSERT INTO rows (at, body) VALUES (?1, ?2)")?
                .execute(params![at, &body[..]])?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
        .await;
        match written {
            Ok(Ok(id)) => (StatusCode::CREATED, format!("{{\"id\":{id}}}")),
            Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}
