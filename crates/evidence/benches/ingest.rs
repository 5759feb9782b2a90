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
//! - changegate: [`first_parent_history`] over the whole branch, opening the repository and
//!   dropping the history included.
//! - git: `git log --first-parent -z --format=<the same fields>` as a child process whose
//!   output is read to the end through a pipe, process start included. Rounds of changegate
//!   and git alternate, so that a busy machine slows both alike; each keeps its best round.
//! - PyDriller has no first-parent walk. The closest equivalent that yields the same commits is
//!   `Repository(path, only_in_branch=BRANCH, only_commits=<the first-parent ids>)`, reading
//!   the same fields of each commit: it goes through every commit reachable from the branch
//!   and keeps those listed. Its rate walking every reachable commit without the list is
//!   printed too. Its time is taken inside Python: the interpreter's start and imports are
//!   not counted against it.

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

/// Prints `<commits> <seconds>` for the best of `rounds` traversals.
const PYDRILLER: &str = r#"
import sys, time
from pydriller import Repository
path, branch, id_file, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kwargs = {}
if id_file != "-":
    kwargs["only_commits"] = [line.strip() for line in open(id_file) if line.strip()]
best, n = None, 0
for _ in range(rounds):
    start = time.perf_counter()
    n = 0
    for c in Repository(path, only_in_branch=branch, **kwargs).traverse_commits():
        (c.hash, c.parents, c.author.name, c.author.email, c.author_date,
         c.committer.name, c.committer.email, c.committer_date, c.msg)
        n += 1
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
print(n, best)
"#;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, python_rounds, histories) = if full {
        (20, 5, &HISTORIES[..])
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
        "{:<17} {:>6} {:>15} {:>9} {:>6} {:>14} {:>6}   pydriller, every commit of the branch",
        "repo", "events", "changegate ev/s", "git ev/s", "ratio", "pydriller ev/s", "ratio",
    );
    for (name, branch) in histories {
        let repo = repos.join(name);
        replay(&shared, name, branch, &repo);

        let mut ours = Duration::MAX;
        let mut git = Duration::MAX;
        let mut events = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let history = first_parent_history(&repo, branch, &Range::all()).expect("history");
            events = history.commits.len();
            drop(history);
            ours = ours.min(start.elapsed());

            let start = Instant::now();
            let printed = git_log(&repo, branch);
            git = git.min(start.elapsed());
            assert_eq!(printed, events, "{name}: git log and changegate disagree");
        }
        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
        let ratio = |d: Duration| d.as_secs_f64() / ours.as_secs_f64();

        let (same, every) = if python_rounds == 0 {
            (format!("{:>14} {:>6}", "-", "-"), "-".to_owned())
        } else {
            let ids = first_parent_ids(&repo, branch);
            let same = match pydriller(&repo, branch, Some(&ids), python_rounds) {
                Ok((n, d)) => {
                    assert_eq!(n, events, "{name}: PyDriller yielded other commits");
                    format!("{:>14.0} {:>5.0}x", rate(n, d), ratio(d))
                }
                Err(why) => format!("{why:>14} {:>6}", "-"),
            };
            let every = match pydriller(&repo, branch, None, python_rounds) {
                Ok((n, d)) => format!("{:.0} ev/s ({n} commits)", rate(n, d)),
                Err(why) => why,
            };
            (same, every)
        };
        println!(
            "{:<17} {:>6} {:>15.0} {:>9.0} {:>5.2}x {}   {}",
            name,
            events,
            rate(events, ours),
            rate(events, git),
            ratio(git),
            same,
            every
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

fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    cmd
}

/// Runs `git log` and reads all it writes; returns the number of commits it printed.
fn git_log(repo: &Path, branch: &str) -> usize {
    let mut child = git(repo)
        .args(["log", "--first-parent", "-z", GIT_FORMAT, branch])
        .stdout(Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut out = Vec::with_capacity(1 << 20);
    let mut stdout = child.stdout.take().expect("a pipe");
    stdout.read_to_end(&mut out).expect("git's output");
    assert!(child.wait().expect("git exits").success());
    // `--format` is `--pretty=tformat:`, so with `-z` each record ends with a NUL.
    out.iter().filter(|b| **b == 0).count()
}

/// Writes the branch's first-parent ids to a file for PyDriller's `only_commits`.
fn first_parent_ids(repo: &Path, branch: &str) -> PathBuf {
    let out = git(repo)
        .args(["rev-list", "--first-parent", branch])
        .output()
        .expect("git runs");
    assert!(out.status.success());
    let file = repo.join(".git/changegate-bench-ids");
    std::fs::write(&file, &out.stdout).expect("writing the id list");
    file
}

/// PyDriller's commit count and best time, or why there is none.
fn pydriller(
    repo: &Path,
    branch: &str,
    ids: Option<&Path>,
    rounds: usize,
) -> Result<(usize, Duration), String> {
    let out = Command::new("python3")
        .args(["-c", PYDRILLER])
        .arg(repo)
        .arg(branch)
        .arg(ids.map_or(Path::new("-"), |p| p))
        .arg(rounds.to_string())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = if stderr.contains("No module named") {
            "not installed"
        } else {
            "failed"
        };
        return Err(why.to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let n = parts.next().and_then(|n| n.parse().ok());
    let secs = parts.next().and_then(|s| s.parse().ok());
    match (n, secs) {
        (Some(n), Some(secs)) => Ok((n, Duration::from_secs_f64(secs))),
        _ => Err(format!("unreadable output `{}`", text.trim())),
    }
}
