//! `changegate reconcile`: read the first-parent history of a protected branch over a
//! period, link every commit to the change record that authorized it, test it, and report.
//! The population hash equals the SHA-256 of `git rev-list --first-parent` over the same
//! range, so an auditor can check completeness with git alone. Where git's rule for
//! `--since` (stop at the first older commit) leaves out commits of the period because
//! committer dates are out of order, the report says so in its `warnings`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use audit::engagement::csv_field;
use audit::{CarriedCommit, CommitEvent, Inputs, ProductionEvent, Report, UserFacts, Verdict};
use evidence::git::{EarlyStop, GitCommit, Range};
use serde::Serialize;
use time::OffsetDateTime;

#[derive(clap::Args)]
pub struct Args {
    /// The git repository (a work tree or a bare repository).
    #[arg(long)]
    repo: PathBuf,
    /// The protected branch, e.g. `main`.
    #[arg(long)]
    branch: String,
    /// First day (`2026-07-01`, from 00:00:00Z) or instant (RFC 3339) of the period.
    #[arg(long)]
    since: Option<String>,
    /// Last day (`2026-09-30`, through 23:59:59Z) or instant of the period.
    #[arg(long)]
    until: Option<String>,
    /// A changegate data directory holding the change records and evidence; without it
    /// every commit is judged with no change record.
    #[arg(long)]
    data: Option<PathBuf>,
    /// PostgreSQL URL holding the change records, instead of the data directory's SQLite.
    #[arg(long, env = "CHANGEGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// Policy file the changes were decided under; the default policy without it.
    #[arg(long, env = "CHANGEGATE_POLICY")]
    policy: Option<PathBuf>,
    /// Config file with the `[reconcile]` rules.
    #[arg(long, env = "CHANGEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Write the full report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one row per event as CSV (spreadsheet-safe).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Judge deadlines as of this instant instead of now, to reperform an earlier report.
    #[arg(long)]
    as_of: Option<String>,
    /// Exit 1 when the reconciliation finds events of this verdict or worse:
    /// `unauthorized`, or `exception` (exceptions and unauthorized events), for a pipeline
    /// that must stop on them. The reports are written first.
    #[arg(long, value_parser = ["unauthorized", "exception"])]
    fail_on: Option<String>,
}

/// The report as written: what was asked, then the reconciliation.
#[derive(Serialize)]
struct Document<'a> {
    repository: String,
    branch: &'a str,
    head: String,
    since: Option<String>,
    until: Option<String>,
    as_of: String,
    /// What a reader must know about how the population was drawn; empty when nothing.
    warnings: Vec<Warning>,
    #[serde(flatten)]
    report: &'a Report,
}

/// One warning of the report.
#[derive(Serialize)]
pub struct Warning {
    /// Stable, for tools: `population_dates_out_of_order`, `merge_contributors_truncated`.
    pub code: &'static str,
    pub message: String,
}

/// The warning for a walk that `--since` ended in front of a commit committed at or after
/// it.
pub fn out_of_order_warning(stop: &EarlyStop, since: &str) -> Warning {
    Warning {
        code: "population_dates_out_of_order",
        message: format!(
            "the first-parent walk stopped at commit {} (committed {}, before --since {since}) \
             but its first parent {} was committed {}: committer dates are out of order, and \
             the commits behind {} are outside this population although their dates may fall \
             inside the period; rerun without --since, or check the history",
            stop.commit, stop.commit_time, stop.parent, stop.parent_time, stop.commit
        ),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_bound("--since", s, false))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_bound("--until", s, true))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            anyhow::bail!("--until ({}) is before --since ({})", fmt(u), fmt(s));
        }
    }
    let as_of = match &args.as_of {
        Some(t) => domain::action::parse_instant("--as-of", t).map_err(anyhow::Error::msg)?,
        None => OffsetDateTime::now_utc(),
    };
    let policy = super::load_policy(args.policy.as_deref())?;
    let data_dir = args.data.clone().unwrap_or_else(|| PathBuf::from("."));
    let (config, _) = crate::config::load(args.config.as_deref(), &data_dir)?;
    let rules = config.reconcile;

    let GitEvents {
        history,
        events,
        mut warnings,
    } = git_events(&args.repo, &args.branch, &Range { since, until })?;

    let (changes, found_evidence, users) = match &args.data {
        Some(dir) => load_records(dir, args.database_url.as_deref())?,
        None => Default::default(),
    };
    let report = audit::reconcile(&Inputs {
        events: &events,
        evidence: &found_evidence,
        changes: &changes,
        users: &users,
        policy: &policy,
        rules: &rules,
        as_of,
    });
    if let (Some(stop), Some(since)) = (&history.stopped_early, since) {
        warnings.push(out_of_order_warning(stop, &fmt(since)));
    }
    for w in &warnings {
        eprintln!("warning: {}", w.message);
    }
    let doc = Document {
        repository: history.repository.clone(),
        branch: &args.branch,
        head: history.head.clone(),
        since: since.map(fmt),
        until: until.map(fmt),
        as_of: fmt(as_of),
        warnings,
        report: &report,
    };
    if let Some(path) = &args.json {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut w, &doc).context("cannot write the JSON report")?;
        w.flush()
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &report)?;
    }
    print_summary(&doc);
    let s = &report.summary;
    let failing = match args.fail_on.as_deref() {
        Some("unauthorized") => s.unauthorized,
        Some(_) => s.unauthorized + s.exceptions,
        None => 0,
    };
    if failing > 0 {
        eprintln!(
            "failing: {failing} event(s) at or past `{}`",
            args.fail_on.as_deref().unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A branch's production change events over a range, read from git, with what a reader
/// of the report must know about how they were drawn.
pub struct GitEvents {
    pub history: evidence::git::History,
    pub events: Vec<ProductionEvent>,
    pub warnings: Vec<Warning>,
}

/// Reads the first-parent chain of `branch` over `range`, each merge with the commits it
/// brought in.
pub fn git_events(
    repo: &std::path::Path,
    branch: &str,
    range: &Range,
) -> anyhow::Result<GitEvents> {
    let history = evidence::git::first_parent_history(repo, branch, range)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut merges = evidence::git::Merges::open(repo).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut events = Vec::with_capacity(history.commits.len());
    let mut warnings = Vec::new();
    for c in &history.commits {
        let mut event = commit_event(c);
        if c.parents.len() > 1 {
            let merged = merges.brought_in(c).map_err(|e| anyhow::anyhow!("{e}"))?;
            if merged.truncated {
                warnings.push(Warning {
                    code: "merge_contributors_truncated",
                    message: format!(
                        "merge {} brought in more than {} commits; only the first {} were read \
                         for its contributors",
                        c.id,
                        evidence::git::MERGED_LIMIT,
                        evidence::git::MERGED_LIMIT
                    ),
                });
            }
            event.carried = merged.commits.iter().map(carried_commit).collect();
        }
        events.push(ProductionEvent::Commit(event));
    }
    Ok(GitEvents {
        history,
        events,
        warnings,
    })
}

/// Reads change records, evidence and users from a data directory, read-only.
pub type Records = (
    BTreeMap<String, domain::Change>,
    Vec<evidence::Evidence>,
    BTreeMap<String, UserFacts>,
);

pub fn load_records(dir: &std::path::Path, url: Option<&str>) -> anyhow::Result<Records> {
    let store = store::open_existing(dir, url)
        .with_context(|| format!("cannot open the change records in `{}`", dir.display()))?;
    let projection = server::projection::Projection::default();
    let (changes, evidence) = projection
        .read(store.as_ref(), |s| (s.changes.clone(), s.evidence.clone()))
        .context("cannot read the ledger")?;
    let users = store
        .users()?
        .into_iter()
        .map(|u| {
            (
                u.name,
                UserFacts {
                    roles: u.roles,
                    machine: u.machine,
                    active: u.active,
                },
            )
        })
        .collect();
    Ok((changes, evidence, users))
}

fn commit_event(c: &GitCommit) -> CommitEvent {
    let m = &c.message;
    CommitEvent {
        id: c.id.clone(),
        parents: c.parents.clone(),
        author: c.author.clone(),
        committer: c.committer.clone(),
        author_time: c.author_time.clone(),
        commit_time: c.commit_time.clone(),
        subject: m.subject.clone(),
        pull_request: m.pull_request.as_ref().map(|p| p.number),
        source_branch: m.source_branch.clone(),
        change_ids: m.change_ids.clone(),
        co_authors: m.co_authors.clone(),
        reverts: m.reverts.clone(),
        carried: Vec::new(),
        lossy: !m.utf8,
    }
}

fn carried_commit(c: &GitCommit) -> CarriedCommit {
    CarriedCommit {
        id: c.id.clone(),
        author: c.author.clone(),
        committer: c.committer.clone(),
        commit_time: c.commit_time.clone(),
        co_authors: c.message.co_authors.clone(),
    }
}

/// A day or an instant; a day means its first second for `--since` and its last for
/// `--until`, in UTC.
pub fn parse_bound(flag: &str, s: &str, end_of_day: bool) -> anyhow::Result<OffsetDateTime> {
    audit::engagement::period_bound(flag, s, end_of_day).map_err(anyhow::Error::msg)
}

pub fn fmt(t: OffsetDateTime) -> String {
    domain::action::format_instant(t)
}

fn print_summary(doc: &Document<'_>) {
    let r = doc.report;
    let s = &r.summary;
    println!(
        "{} {} ({}..{})",
        doc.repository,
        doc.branch,
        doc.since.as_deref().unwrap_or("beginning"),
        doc.until
            .as_deref()
            .unwrap_or(&doc.head[..doc.head.len().min(12)])
    );
    println!(
        "population: {} events, sha256 {}",
        r.population.count, r.population.sha256
    );
    println!(
        "matched: {}  ok: {}  exceptions: {}  unauthorized: {}",
        s.matched,
        s.matched - s.exceptions,
        s.exceptions,
        s.unauthorized
    );
    if !s.exceptions_by_code.is_empty() {
        println!("exceptions by kind:");
        let mut by: Vec<(&String, &u64)> = s.exceptions_by_code.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (code, n) in by {
            println!("  {n:>7}  {code}");
        }
    }
    if !r.findings.is_empty() {
        println!("findings: {}", r.findings.len());
    }
}

/// One row per event. Text cells that a spreadsheet would run as a formula are prefixed
/// with an apostrophe; the file starts with a UTF-8 byte order mark for spreadsheets.
fn write_csv(path: &std::path::Path, report: &Report) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut out = String::from(audit::engagement::CSV_BOM);
    out.push_str(
        "commit,change,verdict,exceptions,source,at,author,pull_request,linked_by,subject\n",
    );
    for e in &report.events {
        let verdict = match e.verdict {
            Verdict::Ok => "ok",
            Verdict::Exception => "exception",
            Verdict::Unauthorized => "unauthorized",
        };
        let cells = [
            e.commit.clone(),
            e.change.clone().unwrap_or_default(),
            verdict.to_string(),
            e.exceptions.join(";"),
            e.source.clone(),
            e.at.clone(),
            e.author.clone(),
            e.pull_request.map(|n| n.to_string()).unwrap_or_default(),
            e.linked_by.clone().unwrap_or_default(),
            e.subject.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    w.write_all(out.as_bytes())
        .and_then(|_| w.flush())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_cover_whole_days() {
        assert_eq!(
            fmt(parse_bound("--since", "2026-07-01", false).unwrap()),
            "2026-07-01T00:00:00Z"
        );
        assert_eq!(
            fmt(parse_bound("--until", "2026-09-30", true).unwrap()),
            "2026-09-30T23:59:59Z"
        );
        assert_eq!(
            fmt(parse_bound("--since", "2026-07-01T02:00:00+02:00", false).unwrap()),
            "2026-07-01T00:00:00Z"
        );
        let err = parse_bound("--since", "07/01/2026", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--since") && err.contains("07/01/2026"),
            "{err}"
        );
    }
}
