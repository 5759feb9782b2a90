//! `changegate audit` end to end on a git repository built in the test: the population ties
//! to git's own list, the same seed writes the same samples, another seed other ones, and
//! an output directory that already holds files is refused with nothing written.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_changegate"))
        .args(args)
        .output()
        .expect("changegate runs")
}

fn git(dir: &Path, args: &[&str], at: &str) -> String {
    let out = Command::new("git")
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "alice")
        .env("GIT_AUTHOR_EMAIL", "alice@corp.example")
        .env("GIT_COMMITTER_NAME", "alice")
        .env("GIT_COMMITTER_EMAIL", "alice@corp.example")
        .env("GIT_AUTHOR_DATE", at)
        .env("GIT_COMMITTER_DATE", at)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// 40 direct pushes in May 2026, one a day at most apart, and one in June.
fn repository(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"], "2026-04-30T00:00:00Z");
    for i in 0..40 {
        let at = format!("2026-05-{:02}T{:02}:00:00Z", 1 + i / 2, 8 + i % 2);
        git(
            dir,
            &["commit", "-q", "--allow-empty", "-m", &format!("fix {i}")],
            &at,
        );
    }
    git(
        dir,
        &["commit", "-q", "--allow-empty", "-m", "june"],
        "2026-06-02T08:00:00Z",
    );
}

fn audit(repo: &Path, out: &Path, seed: &str) -> Output {
    run(&[
        "audit",
        "--from",
        "2026-05-01",
        "--to",
        "2026-05-31",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--branch",
        "main",
        "--as-of",
        "2026-06-01T00:00:00Z",
    ])
}

/// One control's entry in `summary.json`.
fn summary_control(summary: &Value, id: &str) -> Value {
    summary["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no control {id} in the summary"))
        .clone()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn an_engagement_over_a_git_history_is_reproducible_from_its_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);

    let first = tmp.path().join("first");
    let out = audit(&repo, &first, "42");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CM-16"), "{stdout}");
    let report = read(&first.join("report.html"));
    assert!(report.starts_with("<!doctype html>"));
    assert!(
        report.contains("id=\"CM-16\""),
        "the report has a section per tested control"
    );
    assert!(!report.contains("<script"), "the report runs nothing");

    let summary: Value = serde_json::from_str(&read(&first.join("summary.json"))).unwrap();
    let cm16 = &summary_control(&summary, "CM-16");
    let listed = git(
        &repo,
        &[
            "rev-list",
            "--first-parent",
            "--since=2026-05-01T00:00:00Z",
            "--until=2026-05-31T23:59:59Z",
            "--count",
            "main",
        ],
        "2026-06-03T00:00:00Z",
    );
    assert_eq!(cm16["population"].to_string(), listed);
    assert_eq!(cm16["population"], 40);
    assert_eq!(cm16["sample"], 25, "per change, lower risk: 25 of 40");
    assert_eq!(cm16["exceptions_by_code"]["no_change_record"], 40);

    // The CSV files are for spreadsheets: a byte order mark, then the header.
    let samples = read(&first.join("samples.csv"));
    assert!(samples.starts_with("\u{feff}control,item,population,seed,rank\n"));
    assert!(read(&first.join("risk-control-matrix.csv")).starts_with("\u{feff}risk,"));

    // The same seed draws the same samples; another seed other ones.
    let again = tmp.path().join("again");
    assert!(audit(&repo, &again, "42").status.success());
    assert_eq!(
        read(&first.join("samples.csv")),
        read(&again.join("samples.csv"))
    );
    assert_eq!(
        read(&first.join("summary.json")),
        read(&again.join("summary.json"))
    );
    let other = tmp.path().join("other");
    assert!(audit(&repo, &other, "43").status.success());
    assert_ne!(
        read(&first.join("samples.csv")),
        read(&other.join("samples.csv"))
    );

    for file in [
        "engagement.json",
        "reconciliation.json",
        "risk-control-matrix.csv",
        "workpapers.xlsx",
        "assessment-results.json",
        "report.html",
    ] {
        assert!(first.join(file).is_file(), "{file}");
    }
}

#[test]
fn an_output_directory_with_files_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("notes.txt"), "mine").unwrap();
    let out = audit(&repo, &out_dir, "1");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds files"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(names.len(), 1);
    // No staging directory was left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());

    let out = run(&[
        "audit",
        "--from",
        "2026-05-01",
        "--to",
        "2026-05-31",
        "--seed",
        "1",
        "--out",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to audit"));
}

#[test]
fn lifecycle_controls_and_imported_records_are_tested_from_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let demo = run(&["demo", "--data", data.to_str().unwrap()]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let excerpt = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../evidence/tests/fixtures/bpic2014/detail_change.excerpt.csv"
    );
    let import = run(&[
        "import",
        "changes",
        excerpt,
        "--format",
        "bpic2014",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    // The demo quarter is 2026 Q3; the excerpt's records are from 2013.
    let out_dir = tmp.path().join("q3");
    let out = run(&[
        "audit",
        "--from",
        "2026-07-01",
        "--to",
        "2026-09-30",
        "--seed",
        "5",
        "--out",
        out_dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(&read(&out_dir.join("summary.json"))).unwrap();
    let control = |id: &str| summary_control(&summary, id);
    // Post-implementation review, communication and segregation of duties are tested on
    // every change implemented in the quarter.
    let reviewed = control("CM-20");
    assert!(reviewed["population"].as_u64().unwrap() > 20, "{reviewed}");
    assert_eq!(reviewed["population"], control("CM-21")["population"]);
    assert_eq!(reviewed["population"], control("CM-02")["population"]);
    // The system enforced segregation of duties on every decision.
    assert_eq!(control("CM-02")["exceptions"], 0);
    // No pipeline reported the demo's deployments: the lifecycle's own implementations
    // are the production change events, every one linked to its change.
    assert_eq!(control("CM-16")["population"], reviewed["population"]);
    assert_eq!(control("CM-16")["exceptions"], 0);
    // Manual controls nobody recorded are overdue.
    assert_eq!(
        control("CM-01")["exceptions_by_code"]["manual_control_overdue"],
        1
    );
    assert_eq!(summary["imported_changes"]["population"], 0);

    let older = tmp.path().join("2013");
    let out = run(&[
        "audit",
        "--from",
        "2013-01-01",
        "--to",
        "2013-12-31",
        "--seed",
        "5",
        "--out",
        older.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(&read(&older.join("summary.json"))).unwrap();
    let imported = &summary["imported_changes"];
    assert!(imported["population"].as_u64().unwrap() > 20, "{imported}");
    let by_code = imported["exceptions_by_code"].as_object().unwrap();
    for code in ["outside_planned_window", "not_implemented"] {
        assert!(
            by_code.get(code).and_then(Value::as_u64).unwrap_or(0) > 0,
            "{code}: {imported}"
        );
    }
    let per_record: Value =
        serde_json::from_str(&read(&older.join("imported-changes.json"))).unwrap();
    assert_eq!(
        per_record["results"].as_array().unwrap().len() as u64,
        imported["population"].as_u64().unwrap()
    );
}

#[test]
fn a_firms_sampling_file_sets_sizes_rates_and_plans_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    let sampling = tmp.path().join("sampling.toml");
    std::fs::write(
        &sampling,
        r#"
tolerable_rate = 0.1
higher_risk = ["CM-16"]

[sizes]
per_change = { low = 10, high = 30 }

[attribute_sampling.CM-06]
confidence = 0.9
tolerable = 0.1
expected = 0
"#,
    )
    .unwrap();
    let with = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--from",
            "2026-05-01",
            "--to",
            "2026-05-31",
            "--seed",
            "3",
            "--repo",
            repo.to_str().unwrap(),
            "--branch",
            "main",
            "--as-of",
            "2026-06-01T00:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        run(&args)
    };
    let sample = |out: &Path, id: &str| -> (u64, f64) {
        let e: Value = serde_json::from_str(&read(&out.join("engagement.json"))).unwrap();
        let t = e["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["control"] == id)
            .unwrap()
            .clone();
        (
            t["sample_size"]["size"].as_u64().unwrap(),
            t["tolerable_rate"].as_f64().unwrap(),
        )
    };

    let out = tmp.path().join("firm");
    let o = with(&out, &["--sampling", sampling.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Higher risk: the top of the firm's per-change range; its own tolerable rate.
    assert_eq!(sample(&out, "CM-16"), (30, 0.1));
    // 90 % confidence, 10 % tolerable, none expected: 22 items by the binomial.
    assert_eq!(sample(&out, "CM-06").0, 22);
    let inputs: Value = serde_json::from_str(&read(&out.join("inputs.json"))).unwrap();
    assert_eq!(inputs["sampling"]["sizes"]["per_change"]["high"], 30);

    // A flag overrides the file's rate.
    let out = tmp.path().join("flag");
    let o = with(
        &out,
        &[
            "--sampling",
            sampling.to_str().unwrap(),
            "--tolerable-rate",
            "0.02",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sample(&out, "CM-16"), (30, 0.02));

    // Settings no engagement can use are refused, naming the file and the setting, and
    // nothing is written.
    for (text, needle) in [
        ("tolerable_rate = 1.5", "tolerable_rate"),
        ("higher_risk = [\"CM-99\"]", "CM-99"),
        ("[sizes]\nweekly = { low = 9, high = 3 }", "weekly"),
        (
            "[attribute_sampling.CM-01]\nconfidence = 0.95\ntolerable = 0.05\nexpected = 0",
            "CM-01",
        ),
        (
            "[attribute_sampling.CM-06]\nconfidence = 0.95\ntolerable = 0.05\nexpected = 0.2",
            "expected",
        ),
        ("sample_everything = true", "sample_everything"),
        ("[sizes]\ndaily = { low = 2, high = 4, mid = 3 }", "mid"),
    ] {
        std::fs::write(&sampling, text).unwrap();
        let out = tmp.path().join("refused");
        let o = with(&out, &["--sampling", sampling.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains("sampling.toml"), "{text}: {stderr}");
        assert!(stderr.contains(needle), "{text}: {stderr}");
        assert!(!out.exists());
    }
}

/// BR-25: the same seed written two ways draws the same sample; the same seed over a
/// population that changed since is labelled a new sample, not a rerun.
#[test]
fn a_rerun_over_a_changed_population_is_labelled_a_new_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    let data = tmp.path().join("data");
    let o = run(&[
        "users",
        "add",
        "olivia",
        "--role",
        "auditor",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let audit = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        let o = run(&[
            "audit",
            "--from",
            "2026-05-01",
            "--to",
            "2026-05-31",
            "--seed",
            seed,
            "--repo",
            repo.to_str().unwrap(),
            "--branch",
            "main",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
        let codes: Vec<String> = summary["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].as_str().unwrap().to_string())
            .collect();
        (read(&out.join("samples.csv")), codes, summary)
    };
    let (first, codes, summary) = audit("first", "20261204");
    assert!(codes.is_empty(), "{codes:?}");
    // Its package, commits from git and nothing from the ledger, verifies.
    let o = run(&["verify-package", tmp.path().join("first").to_str().unwrap()]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(summary["algorithm"], "changegate-sample-v1");
    // The same seed with a leading zero is the same number: the same sample, a rerun.
    let (again, codes, _) = audit("again", "020261204");
    assert_eq!(first, again);
    assert!(codes.is_empty(), "{codes:?}");

    // A late change lands in the period: the population changed.
    git(
        &repo,
        &["commit", "-q", "--allow-empty", "-m", "late"],
        "2026-05-30T12:00:00Z",
    );
    let (_, codes, summary) = audit("late", "20261204");
    assert!(
        codes.contains(&"population_changed_since_earlier_run".to_string()),
        "{codes:?}"
    );
    let message = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "population_changed_since_earlier_run")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("CM-16") && message.contains("new sample"),
        "{message}"
    );

    // On a read-only copy: no package, and nothing written to the ledger.
    let ledger = || {
        let o = run(&["verify", "--data", data.to_str().unwrap()]);
        String::from_utf8_lossy(&o.stdout)
            .split(',')
            .next()
            .unwrap()
            .to_string()
    };
    let before = ledger();
    assert!(before.starts_with("ledger intact"), "{before}");
    let out = tmp.path().join("readonly");
    let o = run(&[
        "audit",
        "--from",
        "2026-05-01",
        "--to",
        "2026-05-31",
        "--seed",
        "1",
        "--data",
        data.to_str().unwrap(),
        "--no-package",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("summary.json").is_file() && !out.join("package").exists());
    assert_eq!(ledger(), before);
}

/// An engagement judged before the period ends tests only what happened by then, whatever
/// the period says.
#[test]
fn what_happened_after_as_of_is_not_in_the_population() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    repository(&repo);
    let out = tmp.path().join("out");
    let o = run(&[
        "audit",
        "--from",
        "2026-05-01",
        "--to",
        "2026-06-30",
        "--seed",
        "1",
        "--repo",
        repo.to_str().unwrap(),
        "--branch",
        "main",
        "--as-of",
        "2026-06-01T00:00:00Z",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    let cm16 = &summary_control(&summary, "CM-16");
    // The 40 May commits; the one of 2 June is after --as-of.
    assert_eq!(cm16["population"], 40);
    assert!(String::from_utf8_lossy(&o.stderr).contains("only what happened by then"));
}
