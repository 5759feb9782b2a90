//! First-parent histories read from real repositories that the `git` CLI builds in temporary
//! directories, checked against what `git rev-list` and `git log` say about the same
//! repositories.

use std::path::{Path, PathBuf};
use std::process::Command;

use evidence::git::{
    first_parent_history, for_each_first_parent, EarlyStop, GitCommit, GitError, History, Merges,
    Range,
};
use evidence::message::{PullRef, PullVia};
use evidence::Person;
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Runs git with no system or user configuration.
fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ]);
    cmd
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = git_cmd(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository under construction in a temporary directory of its own.
struct Repo {
    _dir: TempDir,
    path: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("work");
        std::fs::create_dir(&path).unwrap();
        git(&path, &["init", "-q"]);
        Repo { _dir: dir, path }
    }

    /// Commits with author and committer dates given as git's raw `seconds offset`.
    fn commit_at(&self, message: &str, author_date: &str, commit_date: &str) -> String {
        let env = [
            ("GIT_AUTHOR_NAME", "Alice Author"),
            ("GIT_AUTHOR_EMAIL", "alice@example.com"),
            ("GIT_COMMITTER_NAME", "Carl Committer"),
            ("GIT_COMMITTER_EMAIL", "carl@example.com"),
            ("GIT_AUTHOR_DATE", author_date),
            ("GIT_COMMITTER_DATE", commit_date),
        ];
        git_env(
            &self.path,
            &["commit", "-q", "--allow-empty", "-m", message],
            &env,
        );
        self.rev("HEAD")
    }

    fn commit(&self, message: &str, seconds: i64) -> String {
        let date = format!("{seconds} +0000");
        self.commit_at(message, &date, &date)
    }

    /// `n` commits `c0`..`c{n-1}` on `main`, one second apart, written by `git fast-import`.
    fn fast_import_linear(&self, n: i64) {
        let mut stream = String::new();
        for i in 0..n {
            let message = format!("c{i}");
            stream.push_str(&format!(
                "commit refs/heads/main\ncommitter Tester <t@example.com> {} +0000\n\
                 data {}\n{message}\n",
                T0 + i,
                message.len()
            ));
        }
        let mut child = git_cmd(&self.path)
            .args(["fast-import", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stream.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    fn rev(&self, name: &str) -> String {
        self.git(&["rev-parse", name]).trim().to_owned()
    }

    /// `git rev-list --first-parent` with extra arguments, newest first.
    fn rev_list(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["rev-list", "--first-parent"];
        args.extend_from_slice(extra);
        args.push("main");
        self.git(&args).lines().map(str::to_owned).collect()
    }

    fn history(&self) -> History {
        first_parent_history(&self.path, "main", &Range::all()).unwrap()
    }
}

fn ids(history: &History) -> Vec<String> {
    history.commits.iter().map(|c| c.id.clone()).collect()
}

const T0: i64 = 1_700_000_000;

#[test]
fn linear_history_is_read_newest_first_with_people_and_times() {
    let repo = Repo::new();
    let first = repo.commit_at("Initial", "1700000000 +0200", "1700000100 +0200");
    let second = repo.commit_at(
        "Second\n\nBody text",
        "1700003600 -0930",
        "1700003700 +0000",
    );
    let third = repo.commit("Third", T0 + 7200);

    let history = repo.history();
    assert_eq!(
        ids(&history),
        vec![third.clone(), second.clone(), first.clone()]
    );
    assert_eq!(history.head, third);
    assert_eq!(history.branch, "refs/heads/main");
    let canonical = std::fs::canonicalize(&repo.path).unwrap();
    assert_eq!(history.repository, canonical.to_string_lossy());

    let c = &history.commits[1];
    assert_eq!(c.parents, vec![first.clone()]);
    assert_eq!(
        c.author,
        Person {
            name: "Alice Author".into(),
            email: "alice@example.com".into()
        }
    );
    assert_eq!(c.committer.name, "Carl Committer");
    assert_eq!(c.author_time, "2023-11-14T23:13:20Z");
    assert_eq!(c.commit_time, "2023-11-14T23:15:00Z");
    assert_eq!(c.author_offset, "-09:30");
    assert_eq!(c.message.subject, "Second");
    assert!(c.message.utf8);
    assert_eq!(history.commits[2].author_offset, "+02:00");
    assert!(history.commits[2].parents.is_empty());

    // The times agree with git's own rendering, converted to UTC.
    let git_times = repo.git(&["log", "--format=%aI %cI", "main"]);
    for (line, commit) in git_times.lines().zip(&history.commits) {
        let (a, c) = line.split_once(' ').unwrap();
        assert_eq!(utc(a), commit.author_time);
        assert_eq!(utc(c), commit.commit_time);
    }
}

fn utc(iso: &str) -> String {
    let at = OffsetDateTime::parse(iso, &Rfc3339)
        .unwrap()
        .to_offset(time::UtcOffset::UTC);
    at.format(&Rfc3339).unwrap()
}

#[test]
fn a_merge_keeps_its_second_parent_commits_off_the_chain() {
    let repo = Repo::new();
    let base = repo.commit("Base", T0);
    repo.git(&["checkout", "-q", "-b", "CHG-000007-login"]);
    let f1 = repo.commit("Login form", T0 + 10);
    let f2 = repo.commit("Login handler", T0 + 20);
    repo.git(&["checkout", "-q", "main"]);
    let direct = repo.commit("Direct push", T0 + 30);
    let env = [
        ("GIT_COMMITTER_DATE", "1700000040 +0000"),
        ("GIT_AUTHOR_DATE", "1700000040 +0000"),
    ];
    let msg = "Merge pull request #12 from alice/CHG-000007-login\n\nAdd login";
    git_env(
        &repo.path,
        &["merge", "-q", "--no-ff", "-m", msg, "CHG-000007-login"],
        &env,
    );
    let merge = repo.rev("HEAD");

    let history = repo.history();
    assert_eq!(ids(&history), vec![merge.clone(), direct.clone(), base]);
    assert_eq!(ids(&history), repo.rev_list(&[]));
    assert!(!ids(&history).contains(&f1) && !ids(&history).contains(&f2));

    let m = &history.commits[0];
    assert_eq!(m.parents, vec![direct, f2]);
    assert_eq!(
        m.message.pull_request,
        Some(PullRef {
            number: 12,
            via: PullVia::GithubMerge
        })
    );
    assert_eq!(m.message.source_branch.as_deref(), Some("CHG-000007-login"));
    assert_eq!(m.message.change_ids, vec!["CHG-000007"]);
}

#[test]
fn a_merge_brought_in_what_its_first_parent_cannot_reach() {
    let repo = Repo::new();
    let base = repo.commit("Base", T0);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    let f1 = repo.commit("Form\n\nCo-authored-by: Dave <dave@example.com>", T0 + 10);
    repo.git(&["checkout", "-q", "main"]);
    // Already on main before the merge: reachable from the first parent, so not brought in.
    repo.git(&["merge", "-q", "--ff-only", "feature"]);
    repo.git(&["checkout", "-q", "feature"]);
    let f2 = repo.commit("Handler", T0 + 20);
    let f3 = repo.commit("Tests", T0 + 30);
    repo.git(&["checkout", "-q", "main"]);
    let direct = repo.commit("Direct push", T0 + 40);
    git(
        &repo.path,
        &["merge", "-q", "--no-ff", "-m", "Merge feature", "feature"],
    );

    let history = repo.history();
    let mut merges = Merges::open(&repo.path).unwrap();
    let merge = &history.commits[0];
    let merged = merges.brought_in(merge).unwrap();
    let mut got: Vec<String> = merged.commits.iter().map(|c| c.id.clone()).collect();
    got.sort();
    let mut want: Vec<String> = repo
        .git(&["rev-list", &format!("{}..{}", direct, f3)])
        .lines()
        .map(str::to_owned)
        .collect();
    want.sort();
    assert_eq!(got, want);
    let mut both = vec![f2.clone(), f3.clone()];
    both.sort();
    assert_eq!(got, both);
    assert!(!merged.truncated);
    assert!(!got.contains(&f1) && !got.contains(&base));
    assert_eq!(merged.commits[0].author.name, "Alice Author");

    // A commit with one parent brought nothing in.
    let single = &history.commits[1];
    assert_eq!(single.id, direct);
    assert!(merges.brought_in(single).unwrap().commits.is_empty());
}

#[test]
fn host_conventions_in_subjects_and_trailers() {
    let repo = Repo::new();
    repo.commit("Add login (#13)", T0);
    let gitlab =
        "Merge branch 'chg-21-cache' into 'main'\n\nCache\n\nSee merge request group/app!4";
    repo.commit(gitlab, T0 + 1);
    repo.commit("Auto merge of #77 - bob:fix-build, r=carol,dave", T0 + 2);
    let trailers = "Tune pool\n\nLonger text about CHG-99.\n\n\
                    Co-authored-by: Bob Builder <bob@example.com>\n\
                    Reviewed-by: Carol <carol@example.com>\n\
                    Signed-off-by: Alice Author <alice@example.com>\n\
                    Change-Id: CHG-000031";
    repo.commit(trailers, T0 + 3);

    let h = repo.history();
    let [t, bors, gl, squash] = &h.commits[..] else {
        panic!("4 commits expected")
    };
    assert_eq!(
        squash.message.pull_request,
        Some(PullRef {
            number: 13,
            via: PullVia::GithubSquash
        })
    );
    assert_eq!(
        gl.message.pull_request,
        Some(PullRef {
            number: 4,
            via: PullVia::GitlabMerge
        })
    );
    assert_eq!(gl.message.source_branch.as_deref(), Some("chg-21-cache"));
    assert_eq!(gl.message.change_ids, vec!["CHG-000021"]);
    assert_eq!(
        bors.message.pull_request,
        Some(PullRef {
            number: 77,
            via: PullVia::Bors
        })
    );
    assert_eq!(bors.message.source_branch.as_deref(), Some("fix-build"));
    assert_eq!(bors.message.reviewed_by, vec!["carol", "dave"]);

    assert_eq!(
        t.message.co_authors,
        vec![Person {
            name: "Bob Builder".into(),
            email: "bob@example.com".into()
        }]
    );
    assert_eq!(t.message.reviewed_by, vec!["Carol <carol@example.com>"]);
    assert_eq!(
        t.message.signed_off_by,
        vec!["Alice Author <alice@example.com>"]
    );
    assert_eq!(t.message.trailers.len(), 4);
    // CHG-99 is in the prose, not in the subject or a trailer.
    assert_eq!(t.message.change_ids, vec!["CHG-000031"]);

    // git reads the same trailers.
    let git_trailers = repo.git(&["log", "-1", "--format=%(trailers:only,unfold)", "main"]);
    let ours: Vec<String> = t
        .message
        .trailers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    assert_eq!(git_trailers.trim_end().lines().collect::<Vec<_>>(), ours);
}

#[test]
fn trailers_are_the_ones_git_interpret_trailers_finds() {
    let messages = [
        "Subject\n\nBody\n\nKey: v\nOther-Key: w\n",
        "Subject\n\nKey: v\n  continued\n",
        "Subject\n\nnot a trailer\nSigned-off-by: A <a@x>\n",
        "Subject\n\nfoo\nbar\nbaz\nqux\nAcked-by: B\n",
        "Subject\n\nfoo\nbar\nSigned-off-by: A\nAcked-by: B\n",
        "Subject\n\nA: 1\nnot\nnot\nnot\nSigned-off-by: x\n",
        "Subject\n\nA: 1\nnot\nnot\nnot\nnot\nSigned-off-by: x\n",
        "Subject\n\n(cherry picked from commit abc)\nSigned-off-by: X\n",
        "Key: v\n",
        "Subject\nsecond subject line\n\nKey: v\n",
        "Subject\n\nhttp://example.com\n",
        "Subject\n\nKey : v\nKey2\t: w\n",
        "Subject\n\n# comment\nKey: v\n",
        "Subject\n\n  indented first\nKey: v\n",
        "Subject\n\nKey:v\n\n\n",
        "Subject\n\nKey: v\n---\nOther: x\n",
        "Subject\n\nFixes #12\n",
        "Subject\n\nSee merge request group/app!4\n",
        "Subject\n\nKey: \n  folded\n\tagain\nNext: 1\n",
        "Subject\n\nno-colon-here\nKey: v\n",
        "Subject\n\n:leading colon\n",
    ];
    for message in messages {
        let mut child = git_cmd(Path::new("."))
            .args(["interpret-trailers", "--parse", "--no-divider"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, message.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let expected: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let parsed = evidence::message::parse(message.as_bytes());
        let ours: Vec<String> = parsed
            .trailers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert_eq!(ours, expected, "{message:?}");
    }
}

#[test]
fn a_revert_names_the_reverted_commit() {
    let repo = Repo::new();
    std::fs::write(repo.path.join("f"), "one\n").unwrap();
    repo.git(&["add", "f"]);
    let original = repo.commit("Add f", T0);
    repo.git(&["revert", "--no-edit", "HEAD"]);
    let h = repo.history();
    assert_eq!(h.commits[0].message.subject, "Revert \"Add f\"");
    assert_eq!(
        h.commits[0].message.reverts.as_deref(),
        Some(original.as_str())
    );
    assert_eq!(h.commits[1].message.reverts, None);
}

#[test]
fn a_message_that_is_not_utf8_is_read_lossily() {
    let repo = Repo::new();
    // `git commit` converts a Latin-1 message to UTF-8 when no `i18n.commitEncoding` is set,
    // so the commit object is written directly, as other tools and older gits wrote them.
    let tree = repo.git(&["write-tree"]);
    let mut object = format!(
        "tree {}\nauthor Ren\u{e9} <rene@example.com> 1700000000 +0100\n\
         committer Tester <tester@example.com> 1700000000 +0100\n\n",
        tree.trim()
    )
    .into_bytes();
    object.extend_from_slice(b"Caf\xe9 cr\xe8me\n\nSigned-off-by: Ren\xe9 <rene@example.com>\n");
    let file = repo.path.join("../object");
    std::fs::write(&file, &object).unwrap();
    let id = repo.git(&["hash-object", "-t", "commit", "-w", file.to_str().unwrap()]);
    repo.git(&["update-ref", "refs/heads/main", id.trim()]);
    let raw = git_cmd(&repo.path)
        .args(["cat-file", "commit", "main"])
        .output()
        .unwrap()
        .stdout;
    assert!(
        std::str::from_utf8(&raw).is_err(),
        "the stored message is not UTF-8"
    );

    let h = repo.history();
    assert_eq!(h.commits.len(), 1);
    assert_eq!(h.commits[0].id, id.trim());
    assert_eq!(h.commits[0].author.name, "Ren\u{e9}");
    let m = &h.commits[0].message;
    assert!(!m.utf8);
    assert_eq!(m.subject, "Caf\u{fffd} cr\u{fffd}me");
    assert_eq!(m.signed_off_by, vec!["Ren\u{fffd} <rene@example.com>"]);
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

fn iso(seconds: i64) -> String {
    at(seconds).format(&Rfc3339).unwrap()
}

/// Committer dates that go backwards and forwards along the chain, with a merge whose
/// second parent is newer than everything.
fn out_of_order_repo() -> Repo {
    let repo = Repo::new();
    for offset in [1000, 3000, 2000, 4000] {
        repo.commit(&format!("c{offset}"), T0 + offset);
    }
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.commit("side 9000", T0 + 9000);
    repo.git(&["checkout", "-q", "main"]);
    repo.commit("c1500", T0 + 1500);
    let env = [
        ("GIT_COMMITTER_DATE", "1700005000 +0000"),
        ("GIT_AUTHOR_DATE", "1700005000 +0000"),
    ];
    git_env(
        &repo.path,
        &["merge", "-q", "--no-ff", "-m", "merge side", "side"],
        &env,
    );
    repo.commit("c2500", T0 + 2500);
    repo.commit("c2500 again", T0 + 2500);
    repo
}

#[test]
fn since_and_until_select_what_git_rev_list_selects() {
    let repo = out_of_order_repo();
    let bounds = [
        (None, None),
        (Some(1800), None),
        (Some(1500), None),
        (Some(1501), None),
        (Some(2500), None),
        (Some(2501), None),
        (Some(999), None),
        (None, Some(2500)),
        (None, Some(2499)),
        (None, Some(4999)),
        (None, Some(5000)),
        (None, Some(999)),
        (Some(1000), Some(3000)),
        (Some(1400), Some(2000)),
        (Some(3000), Some(2000)),
        (Some(2500), Some(2500)),
    ];
    let mut nonempty = 0;
    for (since, until) in bounds {
        let range = Range {
            since: since.map(|s| at(T0 + s)),
            until: until.map(|u| at(T0 + u)),
        };
        let mut args = Vec::new();
        if let Some(s) = since {
            args.push(format!("--since={}", iso(T0 + s)));
        }
        if let Some(u) = until {
            args.push(format!("--until={}", iso(T0 + u)));
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected = repo.rev_list(&arg_refs);
        let mut count_args = vec!["--count"];
        count_args.extend_from_slice(&arg_refs);
        let count: usize = repo.rev_list(&count_args)[0].parse().unwrap();
        assert_eq!(count, expected.len());

        let history = first_parent_history(&repo.path, "main", &range).unwrap();
        assert_eq!(ids(&history), expected, "since {since:?} until {until:?}");
        nonempty += usize::from(!expected.is_empty());
    }
    assert!(nonempty >= 10, "the ranges should mostly select something");

    // The claims the module makes, checked on this repository: the walk stops at the first
    // commit older than `since` even though newer commits lie behind it...
    let subjects = |range: Range| -> Vec<String> {
        let h = first_parent_history(&repo.path, "main", &range).unwrap();
        h.commits
            .iter()
            .map(|c| c.message.subject.clone())
            .collect()
    };
    let since_1800 = Range {
        since: Some(at(T0 + 1800)),
        until: None,
    };
    assert_eq!(
        subjects(since_1800),
        vec!["c2500 again", "c2500", "merge side"]
    );
    // ...and a commit newer than `until` is skipped while the walk goes on.
    let until_3000 = Range {
        since: None,
        until: Some(at(T0 + 3000)),
    };
    assert_eq!(
        subjects(until_3000),
        vec!["c2500 again", "c2500", "c1500", "c2000", "c3000", "c1000"]
    );
}

/// Seconds since the epoch of an RFC 3339 time.
fn secs(iso: &str) -> i64 {
    OffsetDateTime::parse(iso, &Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// A 2026 history with one commit back-dated to 2019 in the middle of January: newest
/// first `feb 2`, `jan 20`, `back-dated`, `jan 10`, `jan 5`, `dec 20`.
fn back_dated_repo() -> (Repo, [String; 6]) {
    let repo = Repo::new();
    let commit = |subject: &str, iso: &str| repo.commit(subject, secs(iso));
    let dec20 = commit("dec 20", "2025-12-20T10:00:00Z");
    let jan5 = commit("jan 5", "2026-01-05T10:00:00Z");
    let jan10 = commit("jan 10", "2026-01-10T10:00:00Z");
    let back = commit("back-dated", "2019-03-01T10:00:00Z");
    let jan20 = commit("jan 20", "2026-01-20T10:00:00Z");
    let feb2 = commit("feb 2", "2026-02-02T10:00:00Z");
    (repo, [feb2, jan20, back, jan10, jan5, dec20])
}

#[test]
fn a_back_dated_commit_that_ends_the_walk_is_reported() {
    let (repo, [feb2, jan20, back, jan10, _jan5, _dec20]) = back_dated_repo();
    let since = |iso: &str| Range {
        since: Some(OffsetDateTime::parse(iso, &Rfc3339).unwrap()),
        until: None,
    };
    let january = Range {
        until: Some(OffsetDateTime::parse("2026-01-31T23:59:59Z", &Rfc3339).unwrap()),
        ..since("2026-01-01T00:00:00Z")
    };
    let h = first_parent_history(&repo.path, "main", &january).unwrap();
    // The walk is still git's: it ends at the back-dated commit, leaving out `jan 10` and
    // `jan 5`...
    let expected = repo.rev_list(&[
        "--since=2026-01-01T00:00:00Z",
        "--until=2026-01-31T23:59:59Z",
    ]);
    assert_eq!(ids(&h), expected);
    assert_eq!(ids(&h), vec![jan20.clone()]);
    // ...and says where it ended and what lies behind.
    let stop = EarlyStop {
        commit: back.clone(),
        commit_time: "2019-03-01T10:00:00Z".into(),
        parent: jan10.clone(),
        parent_time: "2026-01-10T10:00:00Z".into(),
    };
    assert_eq!(h.stopped_early.as_ref(), Some(&stop));
    // The streaming walk reports it on its tip.
    let tip =
        for_each_first_parent(&repo.path, "main", &january, |_| Ok::<(), GitError>(())).unwrap();
    assert_eq!(tip.stopped_early, Some(stop));
    // A period the parent is not in: the walk stops where it should, nothing to report.
    let h = first_parent_history(&repo.path, "main", &since("2026-01-15T00:00:00Z")).unwrap();
    assert_eq!(ids(&h), vec![feb2.clone(), jan20.clone()]);
    assert_eq!(h.stopped_early, None);
    // Without `since` nothing ends the walk early.
    let h = repo.history();
    assert_eq!(h.commits.len(), 6);
    assert_eq!(h.stopped_early, None);
    let h = first_parent_history(
        &repo.path,
        "main",
        &Range {
            since: None,
            until: january.until,
        },
    )
    .unwrap();
    assert_eq!(h.stopped_early, None);
    // It is serialized only when set.
    let json = serde_json::to_value(&h).unwrap();
    assert!(json.get("stopped_early").is_none(), "{json}");
    let json =
        serde_json::to_value(first_parent_history(&repo.path, "main", &january).unwrap()).unwrap();
    assert_eq!(json["stopped_early"]["parent"], jan10.as_str());
}

#[test]
fn a_walk_in_date_order_does_not_stop_early() {
    let repo = Repo::new();
    for n in 0..6 {
        repo.commit(&format!("c{n}"), T0 + 100 * n);
    }
    for since in [-1, 0, 250, 300, 500, 501] {
        let range = Range {
            since: Some(at(T0 + since)),
            until: None,
        };
        let h = first_parent_history(&repo.path, "main", &range).unwrap();
        let expected = repo.rev_list(&[&format!("--since={}", iso(T0 + since))]);
        assert_eq!(ids(&h), expected, "since {since}");
        assert_eq!(h.stopped_early, None, "since {since}");
    }
    // Dates that go backwards, but not across `since`: the stop is where it should be.
    let repo = out_of_order_repo();
    for since in [999, 2501, 5001] {
        let range = Range {
            since: Some(at(T0 + since)),
            until: None,
        };
        let h = first_parent_history(&repo.path, "main", &range).unwrap();
        assert_eq!(h.stopped_early, None, "since {since}");
    }
    // Across it: `c1500` ends the walk in front of `c4000`.
    let range = Range {
        since: Some(at(T0 + 1800)),
        until: None,
    };
    let h = first_parent_history(&repo.path, "main", &range).unwrap();
    let stop = h
        .stopped_early
        .expect("c1500 ends the walk in front of c4000");
    assert_eq!(
        (stop.commit_time, stop.parent_time),
        (iso(T0 + 1500), iso(T0 + 4000))
    );
    assert_eq!(stop.parent, repo.rev(":/c4000"));
}

#[test]
fn a_back_dated_commit_at_a_shallow_boundary_is_not_looked_behind() {
    let (repo, [_, _, back, ..]) = back_dated_repo();
    let parent = repo.path.parent().unwrap();
    let url = format!("file://{}", repo.path.display());
    git(
        parent,
        &[
            "clone", "-q", "--depth", "3", "--branch", "main", &url, "shallow",
        ],
    );
    let shallow = parent.join("shallow");
    assert_eq!(git(&shallow, &["rev-parse", "HEAD~2"]).trim(), back);
    let range = Range {
        since: Some(OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap()),
        until: None,
    };
    let h = first_parent_history(&shallow, "main", &range).unwrap();
    assert_eq!(h.commits.len(), 2);
    assert_eq!(h.stopped_early, None);
    // The full repository, where the parent is at hand, reports it.
    let h = first_parent_history(&repo.path, "main", &range).unwrap();
    assert_eq!(h.stopped_early.map(|s| s.commit), Some(back));
}

#[derive(Debug)]
enum Stop {
    Enough(usize),
    Git(GitError),
}

impl From<GitError> for Stop {
    fn from(err: GitError) -> Self {
        Stop::Git(err)
    }
}

#[test]
fn the_streaming_walk_stops_when_the_callback_says_so() {
    let repo = Repo::new();
    // More commits than the walk queues up, so that it has to notice it is not wanted.
    repo.fast_import_linear(3000);
    let mut seen = Vec::new();
    let err = for_each_first_parent(&repo.path, "main", &Range::all(), |c| {
        seen.push(c.message.subject);
        if seen.len() == 300 {
            return Err(Stop::Enough(seen.len()));
        }
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(err, Stop::Enough(300)), "{err:?}");
    assert_eq!(seen.first().map(String::as_str), Some("c2999"));
    assert_eq!(seen.last().map(String::as_str), Some("c2700"));

    let mut count = 0;
    let tip = for_each_first_parent(&repo.path, "main", &Range::all(), |_| {
        count += 1;
        Ok::<(), Stop>(())
    })
    .unwrap();
    assert_eq!(count, 3000);
    assert_eq!(tip.head, repo.rev("main"));
    let err = for_each_first_parent(&repo.path, "nope", &Range::all(), |_| Ok::<(), Stop>(()));
    assert!(matches!(err, Err(Stop::Git(GitError::NoSuchBranch { .. }))));
}

#[test]
fn a_commit_serializes_with_its_message_fields_inline() {
    let repo = Repo::new();
    repo.commit("Add login (#13)\n\nRefs: CHG-5", T0);
    let commit = repo.history().commits.remove(0);
    let json = serde_json::to_value(&commit).unwrap();
    assert_eq!(json["subject"], "Add login (#13)");
    assert_eq!(json["pull_request"]["via"], "github_squash");
    assert_eq!(json["change_ids"][0], "CHG-000005");
    assert_eq!(json["author_offset"], "+00:00");
    let back: GitCommit = serde_json::from_value(json).unwrap();
    assert_eq!(back, commit);
}

#[test]
fn a_missing_repository_or_branch_is_named() {
    let dir = TempDir::new().unwrap();
    let err = first_parent_history(dir.path(), "main", &Range::all()).unwrap_err();
    assert!(
        matches!(&err, GitError::NotARepository(p) if p == dir.path()),
        "{err:?}"
    );
    let missing = dir.path().join("nope");
    let err = first_parent_history(&missing, "main", &Range::all()).unwrap_err();
    assert!(matches!(err, GitError::NotARepository(_)), "{err:?}");

    let repo = Repo::new();
    repo.commit("One", T0);
    repo.git(&["branch", "release"]);
    let err = first_parent_history(&repo.path, "mian", &Range::all()).unwrap_err();
    match &err {
        GitError::NoSuchBranch { branch, available } => {
            assert_eq!(branch, "mian");
            assert_eq!(available, &vec!["main".to_owned(), "release".to_owned()]);
        }
        other => panic!("expected NoSuchBranch, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "no branch `mian` (local branches: `main`, `release`)"
    );
    // A tag is not a branch.
    repo.git(&["tag", "v1"]);
    for name in ["v1", "refs/tags/v1", "HEAD", "bad..name"] {
        let err = first_parent_history(&repo.path, name, &Range::all()).unwrap_err();
        assert!(
            matches!(err, GitError::NoSuchBranch { .. }),
            "{name}: {err:?}"
        );
    }
    // A subdirectory of a working tree is not the repository.
    std::fs::create_dir(repo.path.join("sub")).unwrap();
    let err = first_parent_history(&repo.path.join("sub"), "main", &Range::all()).unwrap_err();
    assert!(matches!(err, GitError::NotARepository(_)), "{err:?}");
}

#[test]
fn a_missing_commit_is_corruption() {
    let repo = Repo::new();
    repo.commit("One", T0);
    repo.commit("Two", T0 + 1);
    // Loose objects: remove the first commit's.
    let first = repo.rev("HEAD~1");
    let object = repo
        .path
        .join(".git/objects")
        .join(&first[..2])
        .join(&first[2..]);
    std::fs::remove_file(object).unwrap();
    let err = first_parent_history(&repo.path, "main", &Range::all()).unwrap_err();
    match err {
        GitError::Corrupt(message) => assert!(message.contains(&first), "{message}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn bare_clones_worktrees_and_remote_tracking_branches() {
    let repo = Repo::new();
    repo.commit("One", T0);
    repo.commit("Two", T0 + 1);
    repo.git(&["branch", "feature"]);
    repo.commit("Three", T0 + 2);
    let expected = ids(&repo.history());
    let parent = repo.path.parent().unwrap();

    git(parent, &["clone", "-q", "--bare", "work", "bare.git"]);
    let bare = parent.join("bare.git");
    for name in ["main", "refs/heads/main"] {
        let h = first_parent_history(&bare, name, &Range::all()).unwrap();
        assert_eq!(ids(&h), expected);
        let canonical = std::fs::canonicalize(&bare).unwrap();
        assert_eq!(h.repository, canonical.to_string_lossy());
    }
    let h = first_parent_history(&repo.path.join(".git"), "main", &Range::all()).unwrap();
    assert_eq!(ids(&h), expected);

    git(
        parent,
        &["clone", "-q", "--branch", "main", "work", "clone"],
    );
    let clone = parent.join("clone");
    let h = first_parent_history(&clone, "origin/feature", &Range::all()).unwrap();
    assert_eq!(h.branch, "refs/remotes/origin/feature");
    assert_eq!(ids(&h), expected[1..]);
    let h = first_parent_history(&clone, "refs/remotes/origin/main", &Range::all()).unwrap();
    assert_eq!(ids(&h), expected);
    let err = first_parent_history(&clone, "feature", &Range::all()).unwrap_err();
    assert!(
        matches!(err, GitError::NoSuchBranch { .. }),
        "only the remote-tracking one exists"
    );

    repo.git(&["worktree", "add", "-q", "../linked", "feature"]);
    let linked = parent.join("linked");
    let h = first_parent_history(&linked, "main", &Range::all()).unwrap();
    assert_eq!(ids(&h), expected);
    assert_eq!(
        h.repository,
        std::fs::canonicalize(&linked).unwrap().to_string_lossy()
    );
}

#[test]
fn replace_refs_are_ignored() {
    let repo = Repo::new();
    repo.commit("c1", T0);
    let c2 = repo.commit("c2", T0 + 1);
    repo.commit("c3", T0 + 2);
    let tree = repo.rev("HEAD~1^{tree}");
    let replacement = repo.git(&["commit-tree", "-m", "replacement", &tree]);
    repo.git(&["replace", &c2, replacement.trim()]);
    // git itself now shows c2's id with the replacement's content, and no c1.
    assert_eq!(repo.rev_list(&[]).len(), 2);

    let h = repo.history();
    let subjects: Vec<&str> = h
        .commits
        .iter()
        .map(|c| c.message.subject.as_str())
        .collect();
    assert_eq!(subjects, vec!["c3", "c2", "c1"]);
    let unreplaced = repo.git(&["--no-replace-objects", "rev-list", "--first-parent", "main"]);
    assert_eq!(ids(&h), unreplaced.lines().collect::<Vec<_>>());
}

#[test]
fn a_shallow_clone_ends_where_git_ends() {
    let repo = Repo::new();
    for n in 0..5 {
        repo.commit(&format!("c{n}"), T0 + n);
    }
    let parent = repo.path.parent().unwrap();
    let url = format!("file://{}", repo.path.display());
    git(
        parent,
        &[
            "clone", "-q", "--depth", "2", "--branch", "main", &url, "shallow",
        ],
    );
    let shallow = parent.join("shallow");
    let h = first_parent_history(&shallow, "main", &Range::all()).unwrap();
    let count: usize = git(&shallow, &["rev-list", "--first-parent", "--count", "main"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count, 2);
    assert_eq!(h.commits.len(), count);
    // The boundary commit still names the parent it has, which the clone does not hold.
    assert_eq!(h.commits[1].parents.len(), 1);
}

/// The shared folder beside the project (`CHANGEGATE_SHARED` to point elsewhere), when it
/// holds the replay tool; a checkout without it skips the tests that need it, saying so.
fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CHANGEGATE_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("tools/replay-history.py").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: shared data not found at {} (set CHANGEGATE_SHARED)",
            dir.display()
        );
        None
    }
}

#[test]
fn a_replayed_flask_history_matches_git() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let dest = tmp.path().join("flask");
    let status = Command::new("python3")
        .arg(shared.join("tools/replay-history.py"))
        .arg(shared.join("data/git-histories/flask.jsonl.gz"))
        .arg(&dest)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let h = first_parent_history(&dest, "main", &Range::all()).unwrap();
    let count: usize = git(&dest, &["rev-list", "--first-parent", "--count", "main"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(h.commits.len(), count);
    assert_eq!(count, 2261, "the README's first-parent count");

    // Pull request numbers, counted independently from git's subjects.
    let subjects = git(&dest, &["log", "--first-parent", "--format=%s", "main"]);
    let mut merges_by_git = Vec::new();
    let mut squashes_by_git = 0;
    for subject in subjects.lines() {
        if let Some(rest) = subject.strip_prefix("Merge pull request #") {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest[digits.len()..].starts_with(" from ") {
                merges_by_git.push(digits.parse::<u64>().unwrap());
            }
        } else if subject.ends_with(')')
            && subject.rsplit_once("(#").is_some_and(|(_, n)| {
                n.len() > 1 && n[..n.len() - 1].chars().all(|c| c.is_ascii_digit())
            })
        {
            squashes_by_git += 1;
        }
    }
    let merges: Vec<u64> = h
        .commits
        .iter()
        .filter_map(|c| c.message.pull_request)
        .filter(|p| p.via == PullVia::GithubMerge)
        .map(|p| p.number)
        .collect();
    assert!(
        merges_by_git.len() > 500,
        "flask has many merge commits: {}",
        merges_by_git.len()
    );
    assert_eq!(merges, merges_by_git);
    let squashes = h
        .commits
        .iter()
        .filter(|c| {
            c.message
                .pull_request
                .is_some_and(|p| p.via == PullVia::GithubSquash)
        })
        .count();
    assert_eq!(squashes, squashes_by_git);
    assert!(squashes > 0);

    // Every commit carries the replay's `Original-commit` trailer, so every trailer block
    // was found.
    assert!(h.commits.iter().all(|c| c
        .message
        .trailers
        .iter()
        .any(|(k, _)| k == "Original-commit")));
    let signed = h
        .commits
        .iter()
        .filter(|c| !c.message.signed_off_by.is_empty())
        .count();
    let signed_by_git = git(
        &dest,
        &[
            "log",
            "--first-parent",
            "--format=%(trailers:key=Signed-off-by,valueonly,separator=%x2C)",
            "main",
        ],
    )
    .lines()
    .filter(|l| !l.is_empty())
    .count();
    assert_eq!(signed, signed_by_git);
}
