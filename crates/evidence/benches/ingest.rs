//! Reading the first-parent history of real branches: changegate against `git log` and
//! PyDriller on the same repositories, in the same run.
//!
//! The repositories are rebuilt from the histories in `shared/data/git-histories` with
//! `shared/tools/replay-history.py`, into a temporary directory, or into
//! `$CHANGEGATE_BENCH_REPOS` where they are kept for the next run.
//!
//! `cargo bench -p changegate-evidence --bench ingest` measures all three repositories;
//! without `--bench` (as `cargo test --all-targets` runs it) one round on one repository
//! checks that the comparison still runs.
//!
//! - changegate: [`first_parent_history`] over the whole branch, repository opening included.
//! - git: `git log --first-parent -z --format=<the same fields>` as a child process whose
//!   output is read to the end through a pipe, process start included.
//! - PyDriller: `Repository(path, only_in_branch=BRANCH, only_commits=<the first-parent ids>)`
//!   reading the same fields from each commit. PyDriller cannot walk first parents only: it
//!   lists every commit reachable from the branch and keeps those named in `only_commits`,
//!   so this yields the same commits. Its time is taken inside Python, so the interpreter's
//!   start and imports are not counted against it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evidence::git::{first_parent_history, Range};

const HISTORIES: [(&str, &str); 3] = [
    ("flask", "main"),
    ("cargo", "master"),
    ("gnome-calculator", "main"),
];

const GIT_FORMAT: &str = "--format=%H %P%n%an%n%ae%n%aI%n%cn%n%ce%n%cI%n%B";

const PYDRILLER: &str = r#"
import sys, time
from pydriller import Repository
path, branch, id_file = sys.argv[1], sys.argv[2], sys.argv[3]
ids = [line.strip() for line in open(id_file) if line.strip()]
start = time.perf_counter()
n = 0
for c in Repository(path, only_in_branch=branch, only_commits=ids).traverse_commits():
    (c.hash, c.parents, c.author.name, c.author.email, c.author_date,
     c.committer.name, c.committer.email, c.committer_date, c.msg)
    n += 1
print(n, time.perf_counter() - start)
"#;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, python_rounds, histories) = if full {
        (15, 3, &HISTORIES[..])
    } else {
        (1, 0, &HISTORIES[..1])
    };

    let shared = shared_dir();
    let _tmp;
    let repos = match std::env::var_os("CHANGEGATE_BENCH_REPOS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            _tmp = tempfile::TempDir::new().expect("a temporary directory");
            _tmp.path().to_owned()
        }
    };

    println!(
        "{:<18} {:>7} {:>15} {:>13} {:>7} {:>15} {:>9}",
        "repo", "events", "changegate ev/s", "git ev/s", "ratio", "pydriller ev/s", "ratio"
    );
    for (name, branch) in histories {
        let repo = repos.join(name);
        replay(&shared, name, branch, &repo);

        let mut events = 0;
        let ours = best_of(rounds, || {
            let h = first_parent_history(&repo, branch, &Range::all()).expect("the history");
            events = h.commits.len();
            events
        });
        let git = best_of(rounds, || git_log(&repo, branch));
        assert_eq!(
            git.1, events,
            "{name}: git log and changegate disagree on the count"
        );
        let rate = |d: Duration| events as f64 / d.as_secs_f64();

        let pydriller =
            (python_rounds > 0).then(|| pydriller(&repo, branch, python_rounds, events));
        let (py_rate, py_ratio) = match pydriller {
            Some(Ok(d)) => (
                format!("{:.0}", rate(d)),
                format!("{:.0}x", d.as_secs_f64() / ours.0.as_secs_f64()),
            ),
            Some(Err(why)) => (why, "-".to_owned()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<18} {:>7} {:>15.0} {:>13.0} {:>6.2}x {:>15} {:>9}",
            name,
            events,
            rate(ours.0),
            rate(git.0),
            git.0.as_secs_f64() / ours.0.as_secs_f64(),
            py_rate,
            py_ratio
        );
    }
}

fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("CHANGEGATE_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    assert!(
        dir.join("tools/replay-history.py").is_file(),
        "shared data not found at {} (set CHANGEGATE_SHARED)",
        dir.display()
    );
    dir
}

/// Rebuilds the repository unless a previous run left it complete.
fn replay(shared: &Path, name: &str, branch: &str, dest: &Path) {
    let done = dest.join(".git/changegate-bench-replayed");
    if done.is_file() {
        return;
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).expect("removing a partial replay");
    }
    let status = Command::new("python3")
        .arg(shared.join("tools/replay-history.py"))
        .arg(shared.join(format!("data/git-histories/{name}.jsonl.gz")))
        .arg(dest)
        .arg(branch)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .status()
        .expect("python3 runs");
    assert!(status.success(), "replaying {name} failed");
    std::fs::write(done, b"").expect("marking the replay done");
}

/// The fastest of `rounds` runs of `f`, and what the last run returned.
fn best_of<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one round"))
}

/// Runs `git log` and reads all it writes; returns the number of commits it printed.
fn git_log(repo: &Path, branch: &str) -> usize {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["log", "--first-parent", "-z", GIT_FORMAT, branch])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut out = Vec::with_capacity(1 << 20);
    child
        .stdout
        .take()
        .expect("a pipe")
        .read_to_end(&mut out)
        .expect("git's output");
    assert!(child.wait().expect("git exits").success());
    // `--format` is `--pretty=tformat:`, so with `-z` each record ends with a NUL.
    out.iter().filter(|b| **b == 0).count()
}

/// PyDriller's best time, or why there is none.
fn pydriller(repo: &Path, branch: &str, rounds: usize, events: usize) -> Result<Duration, String> {
    let ids = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-list", "--first-parent", branch])
        .output()
        .expect("git runs");
    let id_file = repo.join(".git/changegate-bench-ids");
    std::fs::write(&id_file, &ids.stdout).expect("writing the id list");
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let out = Command::new("python3")
            .args(["-c", PYDRILLER])
            .arg(repo)
            .arg(branch)
            .arg(&id_file)
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(if stderr.contains("No module named") {
                "not installed"
            } else {
                "failed"
            }
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let n: usize = parts
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("no count")?;
        let secs: f64 = parts.next().and_then(|s| s.parse().ok()).ok_or("no time")?;
        assert_eq!(n, events, "PyDriller yielded a different number of commits");
        best = best.min(Duration::from_secs_f64(secs));
    }
    Ok(best)
}
