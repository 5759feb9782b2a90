//! `changegate import changes FILE --format FORMAT [--mapping FILE]`: record change records
//! exported from another change system, so that an auditor can test them
//! (`audit::imported`).
//!
//! Each change becomes one ledger entry of kind `evidence.change_record`. A change whose
//! record, as read (without its line numbers), is the one recorded last for it adds
//! nothing: importing the same file again, or a later export that repeats a change
//! unchanged. One that differs from it is recorded as its newer version, which audits use
//! from then on, even when it equals an older one (an export that went back). Each version
//! is written once only, under the subject `imported:<format>:<source id>@<digest>#<n>`
//! (16 hex digits of SHA-256, and the version's number), so that two imports of the same
//! file at once record it once. Nothing is written when the file or the mapping cannot be read;
//! single bad rows are rejected, reported and skipped.
//!
//! Exit status: 0 when every row was imported or already present, 1 when a row was
//! rejected, 2 when nothing could be read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use evidence::records::{self, Format, ImportedChange, Mapping};
use sha2::{Digest, Sha256};
use store::{NewEntry, StoreError, Target, Write};

use crate::StoreArgs;

/// Changes per `apply` call: one transaction and one signed checkpoint each.
const BATCH: usize = 1_000;

/// Rejected rows and warnings printed one by one; the rest are counted.
const SHOWN: usize = 20;

/// The ledger entry kind of an imported change record.
pub const KIND: &str = server::projection::IMPORTED_RECORD_KIND;

#[derive(clap::Args)]
pub struct ChangesArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The exported file.
    file: PathBuf,
    /// `bpic2014` (the BPI Challenge 2014 change file), `servicenow` (a change_request CSV
    /// export) or `csv` (any CSV, read through `--mapping`).
    #[arg(long, value_parser = ["bpic2014", "servicenow", "csv"])]
    format: String,
    /// A TOML file: delimiter, zone, date formats, columns and value translations
    /// (required for `csv`; for `servicenow`, overrides its built-in layout).
    #[arg(long)]
    mapping: Option<PathBuf>,
}

pub fn run(args: ChangesArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args.format.parse()?;
    let mapping = match &args.mapping {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the mapping `{}`", path.display()))?;
            Some(
                Mapping::from_toml(&text)
                    .with_context(|| format!("in the mapping `{}`", path.display()))?,
            )
        }
    };
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let imported = records::parse(format, &bytes, mapping.as_ref())
        .with_context(|| format!("cannot import `{}`", args.file.display()))?;
    let report = imported.report;
    let digest = hex::encode(Sha256::digest(&bytes));

    println!("file: {} (sha256 {digest})", args.file.display());
    println!("format: {format}; times read in {}", report.zone_rule);
    println!("rows read: {}", report.rows_read);
    println!("changes found: {}", report.changes);

    let store = crate::command::open_store(&args.store)?;
    let source = Source {
        format,
        digest: &digest,
        zone: &report.zone,
    };
    let known: std::collections::HashMap<String, (String, u64)> =
        server::projection::Projection::default()
            .read(store.as_ref(), |s| {
                s.imported
                    .iter()
                    .filter(|r| r.format == format)
                    .map(|r| {
                        let key = (r.format, r.source_id.clone());
                        let versions = s.imported_versions.get(&key).copied().unwrap_or(1);
                        Ok((r.source_id.clone(), (content_digest(r)?, versions)))
                    })
                    .collect::<anyhow::Result<_>>()
            })
            .context("cannot read the changes imported before")??;
    let counts = record(store.as_ref(), &source, imported.changes, &known)?;
    println!("changes imported: {}", counts.added);
    println!(
        "changes updated (a newer version recorded): {}",
        counts.updated
    );
    println!("changes already present: {}", counts.present);

    println!("rejected rows: {}", report.rejected.len());
    for r in report.rejected.iter().take(SHOWN) {
        println!("  line {}: {}", r.line, r.reason);
    }
    if report.rejected.len() > SHOWN {
        println!("  … and {} more", report.rejected.len() - SHOWN);
    }
    println!("warnings: {}", report.warnings.len());
    for w in report.warnings.iter().take(SHOWN) {
        println!("  {w}");
    }
    if report.warnings.len() > SHOWN {
        println!("  … and {} more", report.warnings.len() - SHOWN);
    }
    Ok(if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What every entry of one import says of its file.
struct Source<'a> {
    format: Format,
    digest: &'a str,
    /// The zone local times were read in: the reading's one assumption.
    zone: &'a str,
}

/// What an import recorded.
#[derive(Default)]
struct Counts {
    /// Changes not imported before.
    added: u64,
    /// Changes imported before whose record differs: a newer version was recorded.
    updated: u64,
    /// Changes imported before exactly as they are.
    present: u64,
}

/// The SHA-256 (16 hex digits) of a record as read, without the lines it was read from (a
/// later export moves them).
fn content_digest(change: &ImportedChange) -> anyhow::Result<String> {
    let content = ImportedChange {
        rows: Vec::new(),
        ..change.clone()
    };
    let digest = hex::encode(Sha256::digest(serde_json::to_vec(&content)?));
    Ok(digest[..16].to_string())
}

/// Writes the changes that differ from their last recorded version, in batches. `known`
/// holds, for each change of this format imported before, the digest of its last version
/// and how many versions were recorded.
fn record(
    store: &dyn store::Store,
    source: &Source<'_>,
    changes: Vec<ImportedChange>,
    known: &std::collections::HashMap<String, (String, u64)>,
) -> anyhow::Result<Counts> {
    let now = crate::command::now_text();
    let mut counts = Counts::default();
    let mut changes = changes.into_iter().peekable();
    while changes.peek().is_some() {
        let mut writes = Vec::new();
        let mut seen = Vec::new();
        for change in changes.by_ref().take(BATCH) {
            let digest = content_digest(&change)?;
            let last = known.get(&change.source_id);
            if last.is_some_and(|(d, _)| *d == digest) {
                counts.present += 1;
                continue;
            }
            seen.push(last.is_some());
            // The version's number makes its subject unique: the same file imported twice
            // at once records it once, and a record may go back and forth.
            let subject = format!(
                "imported:{}:{}@{digest}#{}",
                source.format,
                change.source_id,
                last.map_or(0, |(_, n)| *n) + 1
            );
            writes.push(entry(source, &now, change, subject)?);
        }
        if writes.is_empty() {
            continue;
        }
        for (result, seen) in store.apply(writes).into_iter().zip(seen) {
            match result {
                Ok(_) if seen => counts.updated += 1,
                Ok(_) => counts.added += 1,
                Err(StoreError::Duplicate { .. }) => counts.present += 1,
                Err(e) => return Err(e).context("cannot record the imported changes"),
            }
        }
    }
    Ok(counts)
}

fn entry(
    source: &Source<'_>,
    now: &str,
    change: ImportedChange,
    subject: String,
) -> anyhow::Result<Write> {
    let payload = serde_json::json!({
        "source": {
            "format": source.format,
            "file_sha256": source.digest,
            "row_numbers": change.rows,
            "zone": source.zone,
        },
        "imported": true,
        "record": serde_json::to_value(&change)?,
    });
    Ok(Write {
        target: Target::Once { subject },
        entries: vec![NewEntry {
            time: now.to_string(),
            actor: "changegate-import".into(),
            roles: vec![],
            kind: KIND.into(),
            subject: None,
            payload,
        }],
        columns: None,
    })
}
