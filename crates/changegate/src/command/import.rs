//! `changegate import github|gitlab FILE…`: record exported code-host payloads as evidence,
//! for organizations that export deliveries or API answers instead of sending webhooks.
//! Each file is one write: recorded whole or not at all, and once only (a file imported
//! again is recognized by the digest of its bytes).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use store::{NewEntry, StoreError, Target, Write};

use crate::StoreArgs;

use super::import_changes as changes;

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// GitHub webhook payloads, REST answers (a pull request, its reviews) or NDJSON of
    /// `{"event": …, "payload": …}` records.
    Github(Files),
    /// GitLab webhook payloads.
    Gitlab(Files),
    /// Change records exported from another change system (BPIC 2014, ServiceNow, CSV).
    Changes(changes::ChangesArgs),
}

#[derive(clap::Args)]
pub struct Files {
    #[command(flatten)]
    store: StoreArgs,
    /// The files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(cmd: ImportCommand) -> anyhow::Result<ExitCode> {
    let (host, files) = match cmd {
        ImportCommand::Github(f) => ("github", f),
        ImportCommand::Gitlab(f) => ("gitlab", f),
        ImportCommand::Changes(args) => return changes::run(args),
    };
    let store = super::open_store(&files.store)?;
    let mut failed = 0;
    for path in &files.files {
        match import_one(store.as_ref(), host, path) {
            Ok(line) => println!("{}: {line}", path.display()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn import_one(store: &dyn store::Store, host: &str, path: &PathBuf) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).context("cannot read the file")?;
    let items = match host {
        "github" => evidence::github::parse_export(&bytes),
        _ => evidence::gitlab::parse(None, &bytes),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if items.is_empty() {
        return Ok("no evidence in this file (nothing recorded)".into());
    }
    let digest = hex::encode(Sha256::digest(&bytes));
    let now = super::now_text();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries: Vec<NewEntry> = items
        .iter()
        .map(|e| NewEntry {
            time: now.clone(),
            actor: "changegate-import".into(),
            roles: vec![],
            kind: e.ledger_kind().into(),
            subject: None,
            payload: serde_json::json!({
                "source": {"host": host, "file": file_name, "body_sha256": digest},
                "evidence": e,
            }),
        })
        .collect();
    let count = entries.len();
    let write = Write {
        target: Target::Once {
            subject: format!("import:{host}:sha256:{digest}"),
        },
        entries,
        columns: None,
    };
    let result = store.apply(vec![write]).pop();
    match result {
        Some(Ok(w)) => Ok(format!(
            "{count} evidence item(s) recorded at entries {}..={}",
            w.seqs.first().copied().unwrap_or_default(),
            w.seqs.last().copied().unwrap_or_default()
        )),
        Some(Err(StoreError::Duplicate { seq, .. })) => {
            Ok(format!("already imported (entry {seq}); nothing recorded"))
        }
        Some(Err(e)) => Err(e.into()),
        None => anyhow::bail!("the store returned no result"),
    }
}
