//! `changegate audit`: run an engagement over a period. The production change events of
//! the period (a branch's first-parent history with `--repo`, and the deployments and
//! merges the ledger recorded) are reconciled against the change records, then every
//! control in scope gets its population, a seeded sample and its attribute results.
//!
//! Everything is written to a fresh output directory, or nothing is: the files are first
//! written to a sibling directory that is renamed into place at the end, and removed if
//! any write fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use audit::catalog::{Catalog, Tailoring};
use audit::engagement::{self, csv_field, Conclusion, ManualResult, Plan};
use audit::sampling::{AttributePlan, Sampling};
use audit::{Inputs, ProductionEvent};
use evidence::git::Range;
use evidence::records::ImportedChange;
use time::OffsetDateTime;

use super::reconcile::{fmt, git_events, out_of_order_warning, parse_bound, Warning};

#[derive(clap::Args)]
pub struct Args {
    /// First day (`2026-01-01`, from 00:00:00Z) or instant (RFC 3339) of the period.
    #[arg(long)]
    from: String,
    /// Last day (`2026-12-31`, through 23:59:59Z) or instant of the period.
    #[arg(long)]
    to: String,
    /// The sampling seed; the same seed and inputs draw the same samples.
    #[arg(long)]
    seed: u64,
    /// The directory to write the workpapers to; it must not exist yet or be empty.
    #[arg(long)]
    out: PathBuf,
    /// A changegate data directory: change records, evidence, deployments.
    #[arg(long)]
    data: Option<PathBuf>,
    /// PostgreSQL URL holding the records, instead of the data directory's SQLite.
    #[arg(long, env = "CHANGEGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// A git repository whose protected branch's history is part of the population.
    #[arg(long, requires = "branch")]
    repo: Option<PathBuf>,
    /// The protected branch of `--repo`.
    #[arg(long, requires = "repo")]
    branch: Option<String>,
    /// Policy file the changes were decided under.
    #[arg(long, env = "CHANGEGATE_POLICY")]
    policy: Option<PathBuf>,
    /// Config file with the `[reconcile]` rules.
    #[arg(long, env = "CHANGEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// The organization's tailoring of the control catalog (TOML: `disabled`, `changed`,
    /// `added`, `added_risks`).
    #[arg(long)]
    controls: Option<PathBuf>,
    /// Judge deadlines as of this instant instead of now, to reperform an earlier run; it is
    /// also the time the OSCAL document says it was generated.
    #[arg(long)]
    as_of: Option<String>,
    /// Write no evidence package (and so record no seal in the ledger), for a read-only
    /// copy of the data directory.
    #[arg(long)]
    no_package: bool,
    /// The organization whose controls are tested, as the OSCAL document names it.
    #[arg(long, default_value = "The service organization")]
    organization: String,
    /// The audit firm's sampling settings (TOML: `tolerable_rate`, `higher_risk`,
    /// `[sizes]`, `[attribute_sampling.CONTROL]`); the flags below add to or override it.
    #[arg(long, env = "CHANGEGATE_SAMPLING")]
    sampling: Option<PathBuf>,
    /// A control judged at higher risk: the upper end of its sample-size range (repeat).
    #[arg(long = "higher-risk", value_name = "CONTROL")]
    higher_risk: Vec<String>,
    /// The deviation rate above which a control is deficient (a fraction, e.g. 0.05;
    /// default 0.05 or the sampling file's).
    #[arg(long)]
    tolerable_rate: Option<f64>,
    /// Attribute sampling for a per-change control: `CONTROL:CONFIDENCE:TOLERABLE:EXPECTED`,
    /// e.g. `CM-06:0.95:0.05:0` (repeat).
    #[arg(long = "attribute-sampling", value_name = "PLAN")]
    attribute_sampling: Vec<String>,
}

/// `CM-06:0.95:0.05:0` as a control and its plan.
fn attribute_plan(text: &str) -> anyhow::Result<(String, AttributePlan)> {
    let parts: Vec<&str> = text.split(':').collect();
    let [control, confidence, tolerable, expected] = parts.as_slice() else {
        anyhow::bail!(
            "--attribute-sampling `{text}`: write CONTROL:CONFIDENCE:TOLERABLE:EXPECTED, e.g. \
             CM-06:0.95:0.05:0"
        );
    };
    let rate = |name: &str, v: &str| -> anyhow::Result<f64> {
        v.trim().parse::<f64>().map_err(|_| {
            anyhow::anyhow!("--attribute-sampling `{text}`: {name} `{v}` is not a number")
        })
    };
    let plan = AttributePlan {
        confidence: rate("confidence", confidence)?,
        tolerable: rate("tolerable", tolerable)?,
        expected: rate("expected", expected)?,
    };
    audit::sampling::attribute_size(&plan)
        .map_err(|e| anyhow::anyhow!("--attribute-sampling `{text}`: {e}"))?;
    Ok((control.trim().to_string(), plan))
}

/// The firm's sampling settings: the sampling file's, then the flags over them, checked
/// against the catalog.
fn sampling_settings(args: &Args, catalog: &Catalog) -> anyhow::Result<Sampling> {
    let mut sampling = match &args.sampling {
        None => Sampling::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the sampling file `{}`", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("in the sampling file `{}`", path.display()))?
        }
    };
    let known = |id: &str| catalog.control(id).map(|c| c.frequency);
    if let Some(path) = &args.sampling {
        sampling
            .validate(known)
            .with_context(|| format!("in the sampling file `{}`", path.display()))?;
    }
    if let Some(rate) = args.tolerable_rate {
        if !(rate > 0.0 && rate < 1.0) {
            anyhow::bail!("--tolerable-rate must be a fraction between 0 and 1, not {rate}");
        }
        sampling.tolerable_rate = rate;
    }
    for id in &args.higher_risk {
        if catalog.control(id).is_none() {
            anyhow::bail!("--higher-risk: no control `{id}`");
        }
        if !sampling.higher_risk.contains(id) {
            sampling.higher_risk.push(id.clone());
        }
    }
    let mut given = std::collections::BTreeSet::new();
    for text in &args.attribute_sampling {
        let (control, plan) = attribute_plan(text)?;
        match catalog.control(&control) {
            Some(c) if c.frequency == audit::sampling::Frequency::PerChange => {}
            Some(_) => anyhow::bail!(
                "--attribute-sampling: `{control}` is not a per-change control; its sample \
                 follows its frequency"
            ),
            None => anyhow::bail!("--attribute-sampling: no control `{control}`"),
        }
        if !given.insert(control.clone()) {
            anyhow::bail!("--attribute-sampling: `{control}` is given twice");
        }
        sampling.attribute_sampling.insert(control, plan);
    }
    Ok(sampling)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let from = parse_bound("--from", &args.from, false)?;
    let to = parse_bound("--to", &args.to, true)?;
    if to < from {
        anyhow::bail!("--to ({}) is before --from ({})", fmt(to), fmt(from));
    }
    if args.repo.is_none() && args.data.is_none() {
        anyhow::bail!(
            "nothing to audit: give --data (a changegate data directory), --repo and --branch \
             (a git history), or both"
        );
    }
    let now = OffsetDateTime::now_utc();
    let as_of = match &args.as_of {
        Some(t) => domain::action::parse_instant("--as-of", t).map_err(anyhow::Error::msg)?,
        None => now,
    };
    if as_of > now {
        anyhow::bail!(
            "--as-of ({}) is in the future: an engagement is judged on what has happened",
            fmt(as_of)
        );
    }
    check_out(&args.out)?;
    let policy = super::load_policy(args.policy.as_deref())?;
    let data_dir = args.data.clone().unwrap_or_else(|| PathBuf::from("."));
    let (config, _) = crate::config::load(args.config.as_deref(), &data_dir)?;
    let rules = config.reconcile;
    let catalog = match &args.controls {
        None => Catalog::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let tailoring: Tailoring = toml::from_str(&text)
                .with_context(|| format!("in the controls file `{}`", path.display()))?;
            Catalog::default()
                .tailored(&tailoring)
                .with_context(|| format!("in the controls file `{}`", path.display()))?
        }
    };

    let sampling = sampling_settings(&args, &catalog)?;
    let mut sources = Vec::new();
    let mut warnings = Vec::new();
    if as_of < to {
        let when = match &args.as_of {
            Some(_) => format!("--as-of ({})", fmt(as_of)),
            None => format!("now ({})", fmt(as_of)),
        };
        warnings.push(Warning {
            code: "as_of_before_period_end",
            message: format!(
                "the period ends ({}) after {when}: only what happened by then is tested",
                fmt(to)
            ),
        });
    }
    // Nothing that happened after the engagement is judged belongs to it, whatever time an
    // event claims.
    let upper = to.min(as_of);
    let mut events: Vec<ProductionEvent> = Vec::new();
    if let (Some(repo), Some(branch)) = (&args.repo, &args.branch) {
        let range = Range {
            since: Some(from),
            until: Some(upper),
        };
        let git = git_events(repo, branch, &range)?;
        if let Some(stop) = &git.history.stopped_early {
            warnings.push(out_of_order_warning(stop, &fmt(from)));
        }
        warnings.extend(git.warnings);
        sources.push(format!(
            "git: first-parent history of {} in {} at {}, {} commits",
            git.history.branch,
            git.history.repository,
            git.history.head,
            git.events.len()
        ));
        events.extend(git.events);
    }
    let mut imported = Vec::new();
    let mut manual = Vec::new();
    let mut updates = Vec::new();
    let records = match &args.data {
        Some(dir) => {
            // The ledger as it stood at --as-of: what was recorded later is left out.
            let LedgerFacts {
                events: recorded,
                imported: records,
                manual: results,
                deficiency_updates,
                checkpoint,
                records: ledger_records,
                left_out,
            } = ledger_events(dir, args.database_url.as_deref(), &rules, as_of)?;
            updates = deficiency_updates;
            if !left_out.is_empty() {
                let total: u64 = left_out.values().sum();
                let kinds: Vec<String> = left_out
                    .iter()
                    .map(|(kind, n)| format!("{n} {kind}"))
                    .collect();
                warnings.push(Warning {
                    code: "recorded_after_as_of",
                    message: format!(
                        "{total} ledger entries recorded after --as-of ({}) are left out: {}",
                        fmt(as_of),
                        kinds.join(", ")
                    ),
                });
            }
            // Only what was performed and recorded by the time the engagement is judged.
            manual = results
                .into_iter()
                .filter(|m| engagement::known_by(m, as_of))
                .collect();
            imported = records
                .into_iter()
                .filter(|r| imported_in_period(r, from, upper))
                .collect();
            let in_period: Vec<ProductionEvent> = recorded
                .into_iter()
                .filter(|e| in_period(e, from, upper))
                // With a git history, its commits are the commit population; the ledger
                // adds what git cannot show: deployments.
                .filter(|e| args.repo.is_none() || matches!(e, ProductionEvent::Deployment(_)))
                .collect();
            sources.push(format!(
                "ledger: {} production change events recorded in {}, {checkpoint}",
                in_period.len(),
                dir.display()
            ));
            events.extend(in_period);
            ledger_records
        }
        None => Default::default(),
    };
    let (changes, found_evidence, users) = records;
    let report = audit::reconcile(&Inputs {
        events: &events,
        evidence: &found_evidence,
        changes: &changes,
        users: &users,
        policy: &policy,
        rules: &rules,
        as_of,
    });
    let plan = Plan {
        period: (fmt(from), fmt(to)),
        seed: args.seed,
        catalog: &catalog,
        sampling: &sampling,
        as_of: fmt(as_of),
        sources,
    };
    let implemented: Vec<&domain::Change> = changes
        .values()
        .filter(|c| {
            c.deployment.as_ref().is_some_and(|d| {
                domain::action::parse_instant("at", &d.at)
                    .is_ok_and(|t| engagement::within(t, from, upper))
            })
        })
        .collect();
    let e = engagement::run(&plan, &report, &implemented, &manual, &updates)
        .context("cannot draw the samples")?;
    let mut e = e;
    e.warnings = warnings
        .iter()
        .map(|w| engagement::Warning {
            code: w.code.to_string(),
            message: w.message.clone(),
        })
        .collect();
    e.warnings
        .extend(engagement::manual_warnings(&catalog, &manual));
    e.warnings.extend(engagement::update_warnings(&e, &updates));
    if let Some(dir) = &args.data {
        // The same period and seed drawn again: the same sample only over the same
        // populations. Say so when they changed, so that nobody takes a new sample for a
        // rerun of the earlier one.
        let earlier = super::package::earlier_runs(
            dir,
            args.database_url.as_deref(),
            &e.period,
            e.seed,
            as_of,
        )?;
        if let Some(run) = earlier.last() {
            let changed: Vec<&str> = e
                .controls
                .iter()
                .filter(|t| run.populations.get(&t.control) != Some(&t.population.sha256))
                .map(|t| t.control.as_str())
                .collect();
            if !changed.is_empty() || run.algorithm != e.algorithm {
                e.warnings.push(engagement::Warning {
                    code: "population_changed_since_earlier_run".into(),
                    message: format!(
                        "an earlier audit of this period with seed {} (sealed at ledger entry \
                         {}) drew from other populations for {}: these samples are a new \
                         sample, not a rerun of that one",
                        e.seed,
                        run.seal,
                        if changed.is_empty() {
                            format!("every control (algorithm `{}`)", run.algorithm)
                        } else {
                            changed.join(", ")
                        }
                    ),
                });
            }
        }
    }

    for w in &e.warnings {
        eprintln!("warning: {}", w.message);
    }
    let imported = test_imported(&imported, policy.emergency_approval_window_hours);
    let mut summary = engagement::summary(&e);
    summary["warnings"] = serde_json::to_value(&e.warnings)?;
    summary["imported_changes"] = serde_json::json!({
        "population": imported["population"],
        "exceptions": imported["exceptions"],
        "exceptions_by_code": imported["exceptions_by_code"],
    });
    let workbook = audit::workbook::workbook(&e, &catalog).context("cannot build the workbook")?;
    let oscal = audit::oscal::assessment_results(
        &e,
        &catalog,
        &audit::oscal::OscalMeta {
            title: format!(
                "Change management controls, {} to {}",
                e.period.0, e.period.1
            ),
            version: format!("seed-{}", e.seed),
            generated: as_of,
            organization: args.organization.clone(),
            namespace: format!("changegate:{}", args.organization),
        },
    )
    .context("cannot build the OSCAL assessment results")?;
    let policy_text = match &args.policy {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy file `{}`", path.display()))?,
        None => domain::policy::DEFAULT_POLICY_TOML.to_string(),
    };
    // Everything the engagement was computed from that the ledger does not hold, so that
    // `verify-package` can compute it again from the package alone.
    let inputs = super::package::Inputs {
        period: e.period.clone(),
        seed: e.seed,
        as_of: fmt(as_of),
        sampling: sampling.clone(),
        catalog: catalog.clone(),
        sources: plan.sources.clone(),
        policy: policy_text,
        rules: rules.clone(),
        users: users.clone(),
        events: events.clone(),
    };
    let staging = staging_dir(&args.out)?;
    let written = (|| -> anyhow::Result<()> {
        write_json(&staging.join("summary.json"), &summary)?;
        write_json(&staging.join("imported-changes.json"), &imported)?;
        write_json(&staging.join("assessment-results.json"), &oscal)?;
        write_json(&staging.join("inputs.json"), &inputs)?;
        write_text(
            &staging.join("report.html"),
            audit::report::html(
                &e,
                &catalog,
                &format!("Change management controls of {}", args.organization),
            ),
        )?;
        write_text(&staging.join("workpapers.xlsx"), &workbook)?;
        write_json(&staging.join("engagement.json"), &e)?;
        write_json(
            &staging.join("reconciliation.json"),
            &serde_json::json!({"warnings": warnings, "report": report}),
        )?;
        write_text(
            &staging.join("samples.csv"),
            format!("{}{}", engagement::CSV_BOM, engagement::samples_csv(&e)),
        )?;
        write_text(
            &staging.join("risk-control-matrix.csv"),
            matrix_csv(&catalog),
        )?;
        if let Some(dir) = args.data.as_ref().filter(|_| !args.no_package) {
            super::package::write(&staging, dir, args.database_url.as_deref())
                .context("cannot write the evidence package")?;
        }
        check_out(&args.out)?;
        if args.out.exists() {
            std::fs::remove_dir(&args.out)
                .with_context(|| format!("cannot replace `{}`", args.out.display()))?;
        }
        std::fs::File::open(&staging)
            .and_then(|d| d.sync_all())
            .ok();
        std::fs::rename(&staging, &args.out).with_context(|| {
            format!(
                "cannot move the workpapers from `{}` to `{}`",
                staging.display(),
                args.out.display()
            )
        })?;
        if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent).and_then(|d| d.sync_all()).ok();
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    print_summary(&e, &args.out);
    if imported["population"].as_u64().unwrap_or(0) > 0 {
        println!(
            "imported change records: {} in the period, {} with exceptions {}",
            imported["population"], imported["exceptions"], imported["exceptions_by_code"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses an output directory that holds anything: no earlier workpaper may be mixed
/// with these.
fn check_out(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let empty = out
            .read_dir()
            .with_context(|| format!("`{}` is not a directory", out.display()))?
            .next()
            .is_none();
        if !empty {
            anyhow::bail!(
                "`{}` already holds files: give a new directory, so that no earlier \
                 workpaper is mixed with these",
                out.display()
            );
        }
    }
    Ok(())
}

/// A fresh directory beside `out` to write into.
fn staging_dir(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("`{}` names no directory", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // A run that was killed leaves its staging directory behind: remove those whose
    // process is gone (on systems without /proc, they stay for the user to delete).
    let prefix = format!(".{}.partial-", name.to_string_lossy());
    if Path::new("/proc/self").exists() {
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let staging = parent.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create `{}`", staging.display()))?;
    Ok(staging)
}

/// The production change events the ledger shows, and the checkpoint they were read at.
fn ledger_events(
    dir: &Path,
    url: Option<&str>,
    rules: &audit::Rules,
    as_of: OffsetDateTime,
) -> anyhow::Result<LedgerFacts> {
    let store = store::open_existing(dir, url)
        .with_context(|| format!("cannot open the records in `{}`", dir.display()))?;
    let projection = server::projection::Projection::as_of(as_of);
    let (events, imported, manual, deficiency_updates, records, left_out) = projection
        .read(store.as_ref(), |s| {
            let mut events = s.production_events(rules);
            events.extend(s.lifecycle_deployments(&events, rules));
            let users = s
                .recorded_users
                .iter()
                .map(|(name, u)| {
                    (
                        name.clone(),
                        audit::UserFacts {
                            roles: u.roles.clone(),
                            machine: u.machine,
                            active: u.active,
                        },
                    )
                })
                .collect();
            (
                events,
                s.imported.clone(),
                s.manual_results.clone(),
                s.deficiency_updates.clone(),
                (s.changes.clone(), s.evidence.clone(), users),
                s.left_out.clone(),
            )
        })
        .context("cannot read the ledger")?;
    let checkpoint = match store.latest_checkpoint()? {
        Some(c) => format!(
            "ledger checkpoint of size {} and root {}",
            c.size,
            hex::encode(c.root)
        ),
        None => "no ledger checkpoint".to_string(),
    };
    Ok(LedgerFacts {
        events,
        imported,
        manual,
        deficiency_updates,
        records,
        left_out,
        checkpoint,
    })
}

/// What the ledger of a data directory holds for an engagement.
struct LedgerFacts {
    events: Vec<ProductionEvent>,
    imported: Vec<ImportedChange>,
    manual: Vec<ManualResult>,
    deficiency_updates: Vec<audit::deficiency::DeficiencyUpdate>,
    /// The change records, the evidence and the users.
    records: super::reconcile::Records,
    /// Entries left out for being recorded after --as-of, by kind.
    left_out: std::collections::BTreeMap<String, u64>,
    /// The checkpoint read at, in words.
    checkpoint: String,
}

/// An imported record belongs to the period when anything happened to it in the period:
/// it was opened, started, finished or closed then.
fn imported_in_period(r: &ImportedChange, from: OffsetDateTime, to: OffsetDateTime) -> bool {
    [&r.opened, &r.actual_start, &r.actual_end, &r.closed]
        .into_iter()
        .flatten()
        .filter_map(|t| domain::action::parse_instant("time", t).ok())
        .any(|t| engagement::within(t, from, to))
}

/// What testing the imported records of the period found: counts, and per record its codes.
fn test_imported(records: &[ImportedChange], window_hours: u32) -> serde_json::Value {
    let mut by_code: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut with_exceptions = 0u64;
    let mut results = Vec::new();
    for r in records {
        let codes = audit::imported::test_imported(r, window_hours);
        if !codes.is_empty() {
            with_exceptions += 1;
        }
        for c in &codes {
            *by_code.entry(c.as_str()).or_default() += 1;
        }
        results.push(serde_json::json!({
            "format": r.format,
            "id": r.source_id,
            "exceptions": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        }));
    }
    serde_json::json!({
        "population": records.len(),
        "exceptions": with_exceptions,
        "exceptions_by_code": by_code,
        "results": results,
    })
}

fn in_period(e: &ProductionEvent, from: OffsetDateTime, to: OffsetDateTime) -> bool {
    let at = match e {
        ProductionEvent::Commit(c) => &c.commit_time,
        ProductionEvent::Deployment(d) => &d.at,
    };
    domain::action::parse_instant("time", at).is_ok_and(|t| engagement::within(t, from, to))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, value)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    w.write_all(b"\n")?;
    let file = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {}", path.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Writes and syncs a file, so that the directory renamed into place holds whole files.
fn write_text(path: &Path, text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(text.as_ref())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn matrix_csv(catalog: &Catalog) -> String {
    let mut out = String::from(engagement::CSV_BOM);
    out.push_str("risk,description,controls,disabled_controls,design_deficiency\n");
    for row in catalog.matrix() {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            csv_field(&row.risk),
            csv_field(&row.description),
            csv_field(&row.controls.join(" ")),
            csv_field(&row.disabled.join(" ")),
            if row.controls.is_empty() { "yes" } else { "no" }
        ));
    }
    out
}

fn print_summary(e: &engagement::Engagement, out: &Path) {
    println!(
        "engagement {} .. {}, seed {}: {} controls",
        e.period.0,
        e.period.1,
        e.seed,
        e.controls.len()
    );
    println!(
        "{:<8} {:>10} {:>7} {:>10}  conclusion",
        "control", "population", "sample", "exceptions"
    );
    for t in &e.controls {
        let conclusion = match t.conclusion {
            Conclusion::Effective => "effective",
            Conclusion::Deficient => "deficient",
            Conclusion::NotTested => "not tested",
            Conclusion::Disabled => "disabled",
        };
        println!(
            "{:<8} {:>10} {:>7} {:>10}  {conclusion}",
            t.control,
            t.population.count,
            t.sample.len(),
            t.exceptions
        );
    }
    println!(
        "deficiencies: {} ({} of design)",
        e.deficiencies.len(),
        e.design_deficiencies.len()
    );
    for d in &e.deficiencies {
        let significance = d.significance.map_or("not assessed", |s| s.as_str());
        println!(
            "  {:<20} {significance}; {}",
            d.id,
            audit::workbook::status_text(d.status)
        );
    }
    println!("workpapers in {}", out.display());
}
