//! The evidence package: what an auditor takes away to check an engagement without access
//! to changegate. `changegate audit --data` writes it to `OUT/package/`: the result files,
//! the ledger entries the results rest on with their RFC 6962 inclusion proofs against the
//! latest signed checkpoint, the checkpoint and its public key, and a manifest of SHA-256
//! digests. `changegate verify-package OUT` checks it offline.
//!
//! Writing a package **seals** it in the ledger: one entry of kind `audit.package_sealed`
//! holds the SHA-256 of the list of entries the package includes (seq and leaf hash, one
//! per line) and the digests of the result files. The package's proofs are against the
//! checkpoint that covers the seal, and the seal is itself in the package, so an entry
//! taken out of it, or a result file rewritten, no longer matches what the signed ledger
//! says the package held.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The audit's result files copied into the package, byte for byte.
const RESULT_FILES: [&str; 5] = [
    "summary.json",
    "samples.csv",
    "engagement.json",
    "reconciliation.json",
    INPUTS,
];
/// What the engagement was computed from besides the ledger entries.
const INPUTS: &str = "inputs.json";
/// The audit's other outputs, beside the package: not copied into it, but sealed, so that
/// `verify-package OUT` can tell whether they are the ones the audit wrote.
const OUTPUT_FILES: [&str; 5] = [
    "workpapers.xlsx",
    "assessment-results.json",
    "report.html",
    "imported-changes.json",
    "risk-control-matrix.csv",
];

/// `inputs.json`: the plan of the engagement and the inputs of its reconciliation that the
/// ledger does not hold (the production change events read from git, the users, the
/// policy), so that the package alone is enough to compute the results again.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub period: (String, String),
    pub seed: u64,
    pub as_of: String,
    pub sampling: audit::sampling::Sampling,
    pub catalog: audit::catalog::Catalog,
    pub sources: Vec<String>,
    /// The policy file's text.
    pub policy: String,
    pub rules: audit::Rules,
    pub users: BTreeMap<String, audit::UserFacts>,
    pub events: Vec<audit::ProductionEvent>,
}
const EVENTS: &str = "events.jsonl";
const PROOFS: &str = "proofs.jsonl";
const CHECKPOINT: &str = "checkpoint.json";
const MANIFEST: &str = "manifest.json";
/// The ledger entry kind of a package's seal.
pub const SEAL_KIND: &str = "audit.package_sealed";

/// The SHA-256 of the entries a package includes, one `SEQ LEAF_HASH\n` line each in seq
/// order: what the seal commits to.
fn entries_digest<'a>(entries: impl Iterator<Item = (u64, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (seq, leaf) in entries {
        h.update(format!("{seq} {leaf}\n").as_bytes());
    }
    hex::encode(h.finalize())
}

/// One line of `events.jsonl`: an entry's canonical bytes and their leaf hash.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    seq: u64,
    canonical: String,
    leaf_hash: String,
}

/// One line of `proofs.jsonl`: the audit path of entry `seq`, deepest sibling first.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofLine {
    seq: u64,
    proof: Vec<String>,
}

/// `checkpoint.json`: the signed checkpoint the proofs are against, and the key it names.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    checkpoint: ledger::Checkpoint,
    public_key: String,
    key_id: String,
}

/// `manifest.json`: the SHA-256 of every other file of the package.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    files: BTreeMap<String, String>,
}

/// Writes `results/package/` from the result files already in `results` and the ledger in
/// `data`. Fails when the ledger does not agree with its own checkpoint: a package whose
/// proofs do not hold would only mislead.
pub fn write(results: &Path, data: &Path, url: Option<&str>) -> anyhow::Result<()> {
    let results_dir = results;
    let dir = results.join("package");
    std::fs::create_dir(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut written: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for name in RESULT_FILES {
        let bytes = std::fs::read(results.join(name))
            .with_context(|| format!("cannot read `{name}` for the evidence package"))?;
        written.insert(name.to_string(), bytes);
    }
    let engagement: Value = serde_json::from_slice(&written["engagement.json"])?;
    let reconciliation: Value = serde_json::from_slice(&written["reconciliation.json"])?;
    let changes = named_changes(&engagement, &reconciliation);

    // The records must exist (never create a ledger here), and the seal needs them writable.
    drop(
        store::open_existing(data, url)
            .with_context(|| format!("cannot open the records in `{}`", data.display()))?,
    );
    let store = store::open(data, url)
        .with_context(|| format!("cannot open the records in `{}`", data.display()))?;
    let latest = store
        .latest_checkpoint()?
        .context("the ledger has no signed checkpoint to prove the events against")?;

    // The entries the results rest on, as far as the latest checkpoint reaches.
    let mut chosen: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    store.for_each_entry(0, &mut |e| {
        if e.seq >= latest.size {
            return false;
        }
        match serde_json::from_slice::<Head>(e.bytes) {
            Ok(h) => {
                let wanted = h.kind == "audit.manual_result"
                    || h.kind == "audit.deficiency_update"
                    || h.kind.starts_with("evidence.")
                    || h.subject.is_some_and(|s| changes.contains(s.as_ref()));
                if wanted {
                    chosen.push((e.seq, e.bytes.to_vec()));
                }
                true
            }
            Err(err) => {
                failure = Some(anyhow::anyhow!("entry {} cannot be read: {err}", e.seq));
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }

    // The seal: what the package holds, recorded in the ledger itself.
    let leaves: Vec<String> = chosen
        .iter()
        .map(|(_, bytes)| hex::encode(ledger::leaf_hash(bytes)))
        .collect();
    let digest = entries_digest(
        chosen
            .iter()
            .zip(&leaves)
            .map(|((seq, _), l)| (*seq, l.as_str())),
    );
    let results: BTreeMap<&str, String> = written
        .iter()
        .map(|(name, bytes)| (name.as_str(), hex::encode(Sha256::digest(bytes))))
        .collect();
    let mut outputs: BTreeMap<&str, String> = BTreeMap::new();
    for name in OUTPUT_FILES {
        let bytes = std::fs::read(results_dir.join(name))
            .with_context(|| format!("cannot read `{name}` to seal it"))?;
        outputs.insert(name, hex::encode(Sha256::digest(&bytes)));
    }
    let seal = store::Write {
        target: store::Target::None,
        entries: vec![store::NewEntry {
            time: domain::action::format_instant(time::OffsetDateTime::now_utc()),
            actor: "changegate-audit".into(),
            roles: vec![],
            kind: SEAL_KIND.into(),
            subject: Some(format!("audit:package:{}", &digest[..16])),
            payload: serde_json::json!({
                "period": engagement["period"],
                "seed": engagement["seed"],
                "algorithm": engagement["algorithm"],
                "populations": populations(&engagement),
                "entries": chosen.len(),
                "entries_sha256": digest,
                "results": results,
                "outputs": outputs,
            }),
        }],
        columns: None,
    };
    let sealed = match store.apply(vec![seal]).pop() {
        Some(Ok(w)) => w,
        Some(Err(e)) => {
            return Err(anyhow::Error::new(e).context(
                "cannot seal the evidence package in the ledger (the audit records one entry, \
                 so the data directory must be writable; on a read-only copy, audit with \
                 --no-package)",
            ))
        }
        None => anyhow::bail!("the store returned no result for the seal"),
    };
    let seal_seq = sealed
        .seqs
        .first()
        .copied()
        .context("the seal has no seq")?;
    store.for_each_entry(seal_seq, &mut |e| {
        chosen.push((e.seq, e.bytes.to_vec()));
        false
    })?;
    let checkpoint = store
        .checkpoint_at(sealed.checkpoint_size)?
        .context("no signed checkpoint covers the seal")?;
    let key = store.verifying_key();
    checkpoint
        .verify(&key)
        .context("the ledger's checkpoint does not verify: run `changegate verify`")?;
    let tree = Tree::new(store.leaf_hashes(checkpoint.size)?);
    if tree.root(0, tree.size()) != checkpoint.root {
        anyhow::bail!(
            "the ledger's leaves do not give the root of its checkpoint of size {}: run \
             `changegate verify`",
            checkpoint.size
        );
    }

    let mut events = String::new();
    let mut proofs = String::new();
    for (seq, bytes) in &chosen {
        let leaf = ledger::leaf_hash(bytes);
        let (Ok(canonical), Some(true)) = (
            std::str::from_utf8(bytes),
            tree.leaf(*seq).map(|l| *l == leaf),
        ) else {
            anyhow::bail!("entry {seq} does not match the ledger's tree: run `changegate verify`");
        };
        let line = EventLine {
            seq: *seq,
            canonical: canonical.to_string(),
            leaf_hash: hex::encode(leaf),
        };
        let proof = ProofLine {
            seq: *seq,
            proof: tree.proof(*seq).iter().map(hex::encode).collect(),
        };
        for (out, value) in [
            (&mut events, serde_json::to_string(&line)),
            (&mut proofs, serde_json::to_string(&proof)),
        ] {
            // Serializing strings and numbers into memory cannot fail.
            out.push_str(&value.unwrap_or_default());
            out.push('\n');
        }
    }
    written.insert(EVENTS.into(), events.into_bytes());
    written.insert(PROOFS.into(), proofs.into_bytes());
    let mut checkpoint_json = serde_json::to_vec_pretty(&CheckpointFile {
        key_id: ledger::key_id(&key),
        public_key: hex::encode(key.as_bytes()),
        checkpoint,
    })?;
    checkpoint_json.push(b'\n');
    written.insert(CHECKPOINT.into(), checkpoint_json);

    let mut manifest = Manifest {
        files: BTreeMap::new(),
    };
    for (name, bytes) in &written {
        write_file(&dir.join(name), bytes)?;
        manifest
            .files
            .insert(name.clone(), hex::encode(Sha256::digest(bytes)));
    }
    let mut bytes = serde_json::to_vec_pretty(&manifest)?;
    bytes.push(b'\n');
    write_file(&dir.join(MANIFEST), &bytes)
}

/// Each control's population hash, by control id.
fn populations(engagement: &Value) -> BTreeMap<String, String> {
    engagement["controls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["control"].as_str()?.to_string(),
                c["population"]["sha256"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// An earlier audit of the same period with the same seed, as its seal recorded it.
pub struct EarlierRun {
    pub seal: u64,
    pub algorithm: String,
    /// Population hash by control id.
    pub populations: BTreeMap<String, String>,
}

/// The audits sealed in the ledger of `data` for this period and seed by `as_of`, oldest
/// first.
pub fn earlier_runs(
    data: &Path,
    url: Option<&str>,
    period: &(String, String),
    seed: u64,
    as_of: time::OffsetDateTime,
) -> anyhow::Result<Vec<EarlierRun>> {
    let store = store::open_existing(data, url)
        .with_context(|| format!("cannot open the records in `{}`", data.display()))?;
    let mut out = Vec::new();
    let mut failure = None;
    store.for_each_entry(0, &mut |e| {
        let Ok(h) = serde_json::from_slice::<Head>(e.bytes) else {
            return true;
        };
        if h.kind != SEAL_KIND {
            return true;
        }
        match ledger::decode_entry(e.bytes) {
            Ok(entry) => {
                let p = &entry.payload;
                let by_then =
                    domain::action::parse_instant("time", &entry.time).is_ok_and(|t| t <= as_of);
                let same = by_then
                    && p["period"] == serde_json::json!([period.0, period.1])
                    && p["seed"].as_u64() == Some(seed);
                if same {
                    let populations = p["populations"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect();
                    out.push(EarlierRun {
                        seal: entry.seq,
                        algorithm: p["algorithm"].as_str().unwrap_or_default().to_string(),
                        populations,
                    });
                }
                true
            }
            Err(err) => {
                failure = Some(anyhow::anyhow!("entry {} cannot be read: {err}", e.seq));
                false
            }
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The fields of an entry that decide whether the package holds it; the rest is skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    subject: Option<std::borrow::Cow<'a, str>>,
}

/// The change ids the results name: the items (and linked changes) of every control's
/// population, sample and results, and the change each reconciled event is linked to.
fn named_changes(engagement: &Value, reconciliation: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    if matches!(key.as_str(), "item" | "items" | "change") {
                        let ids = match value {
                            Value::Array(items) => items.iter().collect(),
                            other => vec![other],
                        };
                        out.extend(
                            ids.into_iter()
                                .filter_map(Value::as_str)
                                .filter(|s| store::change_number(s).is_some())
                                .map(str::to_string),
                        );
                    }
                    walk(value, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for control in engagement["controls"].as_array().into_iter().flatten() {
        for part in ["population", "sample", "results"] {
            walk(&control[part], &mut out);
        }
    }
    for event in reconciliation["report"]["events"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(id) = event["change"].as_str() {
            out.insert(id.to_string());
        }
    }
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// An RFC 6962 tree kept as the roots of its aligned power-of-two subtrees, level by level,
/// so that every proof is read off in O(log² n) instead of rehashing the tree per entry.
struct Tree {
    levels: Vec<Vec<ledger::Hash>>,
}

impl Tree {
    fn new(leaves: Vec<ledger::Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let up = below
                .chunks_exact(2)
                .map(|pair| ledger::node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(up);
        }
        Tree { levels }
    }

    fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    fn leaf(&self, seq: u64) -> Option<&ledger::Hash> {
        self.levels[0].get(usize::try_from(seq).ok()?)
    }

    /// The root of the `n` leaves from `start`, as RFC 6962's `MTH` computes it.
    fn root(&self, start: u64, n: u64) -> ledger::Hash {
        if n == 0 {
            return ledger::empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = split(n);
        ledger::node_hash(&self.root(start, k), &self.root(start + k, n - k))
    }

    /// RFC 6962 `PATH(seq, D[0:size])`.
    fn proof(&self, seq: u64) -> Vec<ledger::Hash> {
        let mut out = Vec::new();
        self.path(seq, 0, self.size(), &mut out);
        out
    }

    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<ledger::Hash>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.root(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.root(start, k));
        }
    }
}

/// The largest power of two below `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

#[derive(clap::Args)]
pub struct Args {
    /// The audit's output directory (the package is its `package/`), or the package itself.
    dir: PathBuf,
    /// The ed25519 public key (hex) the checkpoint must be signed with, as published by
    /// `GET /api/v1/ledger/checkpoint`; without it the key the package includes is trusted.
    #[arg(long)]
    public_key: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pinned = match &args.public_key {
        None => None,
        Some(text) => Some(parse_key(text).context("`--public-key`")?),
    };
    let dir = if args.dir.join(MANIFEST).is_file() {
        args.dir.clone()
    } else {
        args.dir.join("package")
    };
    if !dir.join(MANIFEST).is_file() {
        anyhow::bail!("`{}` holds no evidence package", args.dir.display());
    }
    // Given the audit's output directory, its files beside the package are checked too.
    let beside = (dir != args.dir).then_some(args.dir.as_path());
    let checked = match check(&dir, pinned.as_ref())? {
        Ok(summary) => match beside.map(|out| check_outputs(out, &dir)).transpose()? {
            Some(Err(problem)) => Err(problem),
            Some(Ok(())) => Ok(format!(
                "{summary}; the outputs beside it are the sealed ones"
            )),
            None => Ok(format!(
                "{summary}; give the audit's output directory to check the outputs beside it"
            )),
        },
        Err(problem) => Err(problem),
    };
    match checked {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            eprintln!("package broken: {problem}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Checks the files of the audit's output directory against the package: the result files
/// are the package's copies, and the other outputs the ones its seal recorded.
fn check_outputs(out: &Path, package: &Path) -> anyhow::Result<Result<(), String>> {
    let seal_line = std::fs::read_to_string(package.join(EVENTS))
        .with_context(|| format!("cannot read `{EVENTS}`"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<EventLine>(l).ok())
        .filter_map(|l| ledger::decode_entry(l.canonical.as_bytes()).ok())
        .find(|e| e.kind == SEAL_KIND);
    let Some(seal) = seal_line else {
        return Ok(Err(format!("`{EVENTS}` holds no seal")));
    };
    for name in RESULT_FILES {
        let beside = std::fs::read(out.join(name));
        let inside = std::fs::read(package.join(name))?;
        if beside.as_ref().ok() != Some(&inside) {
            return Ok(Err(format!(
                "`{name}` beside the package is missing or not the package's copy"
            )));
        }
    }
    for name in OUTPUT_FILES {
        let Some(sealed) = seal.payload["outputs"][name].as_str() else {
            return Ok(Err(format!("the seal records no `{name}`")));
        };
        let digest = std::fs::read(out.join(name))
            .map(|b| hex::encode(Sha256::digest(&b)))
            .unwrap_or_default();
        if digest != sealed {
            return Ok(Err(format!(
                "`{name}` beside the package is missing or not the one the seal (event {}) \
                 recorded",
                seal.seq
            )));
        }
    }
    Ok(Ok(()))
}

fn parse_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).context("a public key is 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).context("not an ed25519 public key")
}

/// Checks the package in `dir`: the outer error is an I/O failure, the inner one the first
/// problem found.
fn check(dir: &Path, pinned: Option<&VerifyingKey>) -> anyhow::Result<Result<String, String>> {
    let manifest_bytes = std::fs::read(dir.join(MANIFEST))
        .with_context(|| format!("cannot read `{}`", dir.join(MANIFEST).display()))?;
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&manifest_bytes) else {
        return Ok(Err(format!("`{MANIFEST}` is not a manifest")));
    };
    if let Some(name) = manifest
        .files
        .keys()
        .find(|n| n.contains(['/', '\\']) || n.starts_with('.'))
    {
        return Ok(Err(format!(
            "the manifest lists `{name}`, which is not a file of the package"
        )));
    }
    let mut present = BTreeSet::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != MANIFEST {
            present.insert(name);
        }
    }
    let required = RESULT_FILES.into_iter().chain([EVENTS, PROOFS, CHECKPOINT]);
    for name in required
        .map(str::to_string)
        .chain(manifest.files.keys().cloned())
    {
        if !manifest.files.contains_key(&name) {
            return Ok(Err(format!("`{name}` is not listed in the manifest")));
        }
        if !present.contains(&name) {
            return Ok(Err(format!(
                "`{name}` is listed in the manifest but missing"
            )));
        }
    }
    let known: BTreeSet<&str> = RESULT_FILES
        .into_iter()
        .chain([EVENTS, PROOFS, CHECKPOINT])
        .collect();
    if let Some(name) = manifest.files.keys().find(|n| !known.contains(n.as_str())) {
        return Ok(Err(format!(
            "the manifest lists `{name}`, which is no file of an evidence package"
        )));
    }
    if let Some(extra) = present.iter().find(|n| !manifest.files.contains_key(*n)) {
        return Ok(Err(format!(
            "`{extra}` is in the package but not in the manifest"
        )));
    }
    // Every file is as `changegate audit` writes it: a regular file, and the manifest,
    // checkpoint, events and proofs byte for byte in its own layout.
    let mut canonical = serde_json::to_vec_pretty(&manifest)?;
    canonical.push(b'\n');
    if canonical != manifest_bytes {
        return Ok(Err(format!(
            "`{MANIFEST}` is not laid out as the audit writes it"
        )));
    }
    let mut files = BTreeMap::new();
    for (name, digest) in &manifest.files {
        let path = dir.join(name);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
            return Ok(Err(format!("`{name}` is not a regular file")));
        }
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read `{name}`"))?;
        if hex::encode(Sha256::digest(&bytes)) != *digest {
            return Ok(Err(format!(
                "`{name}` does not match its SHA-256 in the manifest"
            )));
        }
        files.insert(name.as_str(), bytes);
    }
    Ok(check_contents(&files, pinned))
}

/// Checks the checkpoint, the events and their proofs, and reperforms the changes.
fn check_contents(
    files: &BTreeMap<&str, Vec<u8>>,
    pinned: Option<&VerifyingKey>,
) -> Result<String, String> {
    let cp: CheckpointFile = serde_json::from_slice(&files[CHECKPOINT])
        .map_err(|e| format!("`{CHECKPOINT}` cannot be read: {e}"))?;

    let key = parse_key(&cp.public_key).map_err(|e| format!("`{CHECKPOINT}`: {e:#}"))?;
    if let Some(pinned) = pinned {
        if pinned != &key {
            return Err(format!(
                "the checkpoint's key `{}` is not the key given with --public-key (`{}`)",
                ledger::key_id(&key),
                ledger::key_id(pinned)
            ));
        }
    }
    if cp.key_id != ledger::key_id(&key) {
        return Err(format!(
            "`{CHECKPOINT}` names key id `{}` for a key whose id is `{}`",
            cp.key_id,
            ledger::key_id(&key)
        ));
    }
    let checkpoint = &cp.checkpoint;
    checkpoint
        .verify(&key)
        .map_err(|e| format!("the checkpoint's signature does not verify: {e}"))?;

    let mut proofs: BTreeMap<u64, Vec<ledger::Hash>> = BTreeMap::new();
    // The files are as the audit writes them: one line per event, in seq order, each ended
    // by a line feed.
    for name in [EVENTS, PROOFS] {
        if files[name].contains(&b'\r') {
            return Err(format!(
                "`{name}` holds carriage returns: its lines were rewritten"
            ));
        }
    }
    let mut order = Vec::new();
    let mut proofs_as_written = String::new();
    for (n, line) in lines(&files[PROOFS]).enumerate() {
        let where_ = || format!("`{PROOFS}` line {}", n + 1);
        let p: ProofLine =
            serde_json::from_str(line).map_err(|e| format!("{} cannot be read: {e}", where_()))?;
        order.push(p.seq);
        let written = ProofLine {
            seq: p.seq,
            proof: p.proof.iter().map(|h| h.to_ascii_lowercase()).collect(),
        };
        proofs_as_written.push_str(&serde_json::to_string(&written).unwrap_or_default());
        proofs_as_written.push('\n');

        let hashes = p
            .proof
            .iter()
            .map(|h| ledger::parse_hash(h))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{} holds a hash that is not 64 hex digits", where_()))?;
        if proofs.insert(p.seq, hashes).is_some() {
            return Err(format!("{} repeats the proof of event {}", where_(), p.seq));
        }
    }
    let mut events_as_written = String::new();
    let mut canonical_entries: Vec<(u64, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    let mut leaves = Vec::new();
    for (n, line) in lines(&files[EVENTS]).enumerate() {
        let where_ = format!("`{EVENTS}` line {}", n + 1);
        let e: EventLine =
            serde_json::from_str(line).map_err(|e| format!("{where_} cannot be read: {e}"))?;
        events_as_written.push_str(&serde_json::to_string(&e).unwrap_or_default());
        events_as_written.push('\n');
        let at = format!("{where_} (event {})", e.seq);
        if !seen.insert(e.seq) {
            return Err(format!("{at} is in the package twice"));
        }
        if seen.last() != Some(&e.seq) {
            return Err(format!("{at} is out of seq order"));
        }
        if order.get(n) != Some(&e.seq) {
            return Err(format!(
                "{at}: `{PROOFS}` line {} is not its proof: the two files list events in the \
                 same order",
                n + 1
            ));
        }
        let leaf = ledger::leaf_hash(e.canonical.as_bytes());
        if e.leaf_hash != hex::encode(leaf) {
            return Err(format!(
                "{at}: its leaf hash is not the hash of its canonical bytes"
            ));
        }
        let entry =
            ledger::decode_entry(e.canonical.as_bytes()).map_err(|err| format!("{at}: {err}"))?;
        if entry.seq != e.seq {
            return Err(format!("{at} holds the entry of seq {}", entry.seq));
        }
        let proof = proofs
            .get(&e.seq)
            .ok_or_else(|| format!("{at} has no inclusion proof"))?;
        if !ledger::verify_inclusion(&leaf, e.seq, checkpoint.size, proof, &checkpoint.root) {
            return Err(format!(
                "{at}: its inclusion proof does not verify against the checkpoint of size {}",
                checkpoint.size
            ));
        }
        entries.push(entry);
        leaves.push((e.seq, hex::encode(leaf)));
        canonical_entries.push((e.seq, e.canonical.clone()));
    }
    // What is proven holds; the files must also be as the audit wrote them, byte for byte.
    let mut canonical = serde_json::to_vec_pretty(&cp).map_err(|e| e.to_string())?;
    canonical.push(b'\n');
    let lower = |s: &str| s.chars().all(|c| !c.is_ascii_uppercase());
    if canonical != files[CHECKPOINT] || !lower(&cp.public_key) || !lower(&cp.checkpoint.signature)
    {
        return Err(format!(
            "`{CHECKPOINT}` is not laid out as the audit writes it"
        ));
    }
    if proofs_as_written.as_bytes() != files[PROOFS].as_slice() {
        return Err(format!("`{PROOFS}` is not laid out as the audit writes it"));
    }
    if events_as_written.as_bytes() != files[EVENTS].as_slice() {
        return Err(format!("`{EVENTS}` is not laid out as the audit writes it"));
    }
    if let Some(seq) = proofs.keys().find(|s| !seen.contains(s)) {
        return Err(format!(
            "`{PROOFS}` proves event {seq}, which is missing from `{EVENTS}`"
        ));
    }
    let seal = check_seal(&entries, &leaves)?.clone();

    // The engagement was judged on the ledger as it stood at its `as_of`: entries the
    // package holds that were recorded later take no part in it.
    let inputs: Inputs = serde_json::from_slice(&files[INPUTS])
        .map_err(|e| format!("`{INPUTS}` cannot be read: {e}"))?;
    let as_of = domain::action::parse_instant("as_of", &inputs.as_of)
        .map_err(|e| format!("`{INPUTS}`: {e}"))?;
    let proven = entries.len();
    let judged: BTreeSet<u64> = entries
        .iter()
        .filter(|e| domain::action::parse_instant("time", &e.time).is_ok_and(|t| t <= as_of))
        .map(|e| e.seq)
        .collect();
    let entries: Vec<ledger::Entry> = entries
        .into_iter()
        .filter(|e| judged.contains(&e.seq))
        .collect();
    let judged_bytes: Vec<&[u8]> = canonical_entries
        .iter()
        .filter(|(seq, _)| judged.contains(seq))
        .map(|(_, c)| c.as_bytes())
        .collect();
    check_ledger_events(&inputs, &judged_bytes, as_of)?;
    let changes = reperform(&entries)?;
    let engagement: Value = serde_json::from_slice(&files["engagement.json"])
        .map_err(|e| format!("`engagement.json` cannot be read: {e}"))?;
    let reconciliation: Value = serde_json::from_slice(&files["reconciliation.json"])
        .map_err(|e| format!("`reconciliation.json` cannot be read: {e}"))?;
    let named = named_changes(&engagement, &reconciliation);
    if let Some(id) = named.iter().find(|id| !changes.contains_key(*id)) {
        return Err(format!(
            "the results name `{id}`, but none of its events are in `{EVENTS}`"
        ));
    }
    let reperformed = reperform_results(files, &entries, &changes, &reconciliation, &engagement)?;
    // Reperformance names what differs in a result file; the seal then rules out a result
    // file that was swapped for one that also reperforms (another seed, other inputs).
    for name in RESULT_FILES {
        let digest = hex::encode(Sha256::digest(&files[name]));
        if seal.payload["results"][name].as_str() != Some(digest.as_str()) {
            return Err(format!(
                "`{name}` is not the file the seal (event {}) recorded",
                seal.seq
            ));
        }
    }
    Ok(format!(
        "package intact: {} files, {proven} events proven against checkpoint of size {}, \
         sealed by event {} ({} recorded by its as-of; {} changes rebuilt; {reperformed}; key \
         {}, {})",
        files.len() + 1,
        checkpoint.size,
        seal.seq,
        entries.len(),
        changes.len(),
        ledger::key_id(&key),
        if pinned.is_some() {
            "pinned by --public-key"
        } else {
            "as the package includes it: pin it with --public-key"
        }
    ))
}

/// Checks the package's entries against its seal in the ledger: exactly one seal, after
/// every other entry, naming exactly the other entries. Gives the seal.
fn check_seal<'e>(
    entries: &'e [ledger::Entry],
    leaves: &[(u64, String)],
) -> Result<&'e ledger::Entry, String> {
    let seals: Vec<&ledger::Entry> = entries.iter().filter(|e| e.kind == SEAL_KIND).collect();
    let seal = match seals.as_slice() {
        [one] => *one,
        [] => return Err(format!("`{EVENTS}` holds no seal (`{SEAL_KIND}` entry)")),
        _ => return Err(format!("`{EVENTS}` holds {} seals", seals.len())),
    };
    let mut others: Vec<(u64, &str)> = leaves
        .iter()
        .filter(|(seq, _)| *seq != seal.seq)
        .map(|(seq, leaf)| (*seq, leaf.as_str()))
        .collect();
    others.sort_unstable();
    if others.last().is_some_and(|(seq, _)| *seq > seal.seq) {
        return Err(format!(
            "the package holds entries recorded after its seal (event {})",
            seal.seq
        ));
    }
    let payload = &seal.payload;
    if payload["entries"].as_u64() != Some(others.len() as u64) {
        return Err(format!(
            "the seal (event {}) says the package holds {} entries; `{EVENTS}` holds {} \
             besides it",
            seal.seq,
            payload["entries"],
            others.len()
        ));
    }
    if payload["entries_sha256"].as_str() != Some(entries_digest(others.into_iter()).as_str()) {
        return Err(format!(
            "the entries in `{EVENTS}` are not the ones the seal (event {}) lists",
            seal.seq
        ));
    }
    Ok(seal)
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    // A file that is not UTF-8 reads as one bad line.
    std::str::from_utf8(bytes)
        .unwrap_or("\u{fffd}")
        .lines()
        .filter(|l| !l.is_empty())
}

/// Checks that the production change events `inputs.json` says came from the ledger
/// (deployments reported, merges a code host reported, changes implemented that nobody
/// reported) are what the proven entries give, as `changegate audit` derives them: they
/// end the list, after the commits read from git.
fn check_ledger_events(
    inputs: &Inputs,
    entries: &[&[u8]],
    as_of: time::OffsetDateTime,
) -> Result<(), String> {
    let state = server::projection::State::replay(entries.iter().copied())
        .map_err(|e| format!("the proven entries cannot be folded: {e}"))?;
    let mut events = state.production_events(&inputs.rules);
    events.extend(state.lifecycle_deployments(&events, &inputs.rules));
    let bound = |t: &str, end| audit::engagement::period_bound("period", t, end);
    let (from, to) = (
        bound(&inputs.period.0, false).map_err(|e| format!("`{INPUTS}`: {e}"))?,
        bound(&inputs.period.1, true).map_err(|e| format!("`{INPUTS}`: {e}"))?,
    );
    let git = inputs.sources.iter().any(|s| s.starts_with("git: "));
    let from_ledger: Vec<audit::ProductionEvent> = events
        .into_iter()
        .filter(|e| {
            let at = match e {
                audit::ProductionEvent::Commit(c) => &c.commit_time,
                audit::ProductionEvent::Deployment(d) => &d.at,
            };
            domain::action::parse_instant("time", at)
                .is_ok_and(|t| audit::engagement::within(t, from, to.min(as_of)))
        })
        .filter(|e| !git || matches!(e, audit::ProductionEvent::Deployment(_)))
        .collect();
    let read_from_git = inputs.events.len().checked_sub(from_ledger.len());
    let matches = read_from_git.is_some_and(|n| {
        inputs.events[n..] == from_ledger[..]
            && (git || n == 0)
            && inputs.events[..n]
                .iter()
                .all(|e| matches!(e, audit::ProductionEvent::Commit(_)))
    });
    if !matches {
        return Err(format!(
            "the production change events `{INPUTS}` says came from the ledger are not the {} \
             the proven entries give",
            from_ledger.len()
        ));
    }
    Ok(())
}

/// Computes the reconciliation and the engagement again from the package alone (the proven
/// ledger entries and `inputs.json`) and compares them with the results it holds.
fn reperform_results(
    files: &BTreeMap<&str, Vec<u8>>,
    entries: &[ledger::Entry],
    changes: &BTreeMap<String, domain::Change>,
    reconciliation: &Value,
    engagement: &Value,
) -> Result<String, String> {
    let inputs: Inputs = serde_json::from_slice(&files[INPUTS])
        .map_err(|e| format!("`{INPUTS}` cannot be read: {e}"))?;
    let policy = domain::Policy::from_toml(&inputs.policy)
        .map_err(|e| format!("`{INPUTS}`: its policy cannot be read: {e}"))?;
    let as_of = domain::action::parse_instant("as_of", &inputs.as_of)
        .map_err(|e| format!("`{INPUTS}`: {e}"))?;
    let mut evidence = Vec::new();
    let mut manual = Vec::new();
    let mut updates = Vec::new();
    for entry in entries {
        if entry.kind == "audit.manual_result" {
            let result: audit::engagement::ManualResult = entry
                .payload
                .get("result")
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| {
                    format!("event {}: a manual result that cannot be read", entry.seq)
                })?;
            if audit::engagement::known_by(&result, as_of) {
                manual.push(result);
            }
        } else if entry.kind == "audit.deficiency_update" {
            let update: audit::deficiency::DeficiencyUpdate = entry
                .payload
                .get("update")
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| {
                    format!(
                        "event {}: a deficiency update that cannot be read",
                        entry.seq
                    )
                })?;
            let recorded = domain::action::parse_instant("recorded_at", &update.recorded_at);
            if recorded.is_ok_and(|t| t <= as_of) {
                updates.push(update);
            }
        } else if entry.kind.starts_with("evidence.") {
            if let Some(value) = entry.payload.get("evidence") {
                let e: evidence::Evidence = serde_json::from_value(value.clone()).map_err(|e| {
                    format!("event {}: evidence that cannot be read: {e}", entry.seq)
                })?;
                evidence.push(e);
            }
        }
    }
    let report = audit::reconcile(&audit::Inputs {
        events: &inputs.events,
        evidence: &evidence,
        changes,
        users: &inputs.users,
        policy: &policy,
        rules: &inputs.rules,
        as_of,
    });
    let recorded = reconciliation.get("report").cloned().unwrap_or(Value::Null);
    let again = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    if again != recorded {
        let rows = |v: &Value| v["events"].as_array().cloned().unwrap_or_default();
        let (a, b) = (rows(&again), rows(&recorded));
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let which = a
            .get(at)
            .or(b.get(at))
            .and_then(|r| r["commit"].as_str())
            .unwrap_or("its summary");
        return Err(format!(
            "the reconciliation computed again from the package differs from \
             `reconciliation.json` at event {at} ({which})"
        ));
    }
    let parse = |t: &str| domain::action::parse_instant("period", t).ok();
    let (from, to) = (parse(&inputs.period.0), parse(&inputs.period.1));
    let implemented: Vec<&domain::Change> = changes
        .values()
        .filter(|c| {
            c.deployment.as_ref().is_some_and(|d| {
                match (domain::action::parse_instant("at", &d.at).ok(), from, to) {
                    (Some(t), Some(from), Some(to)) => {
                        audit::engagement::within(t, from, to.min(as_of))
                    }
                    _ => false,
                }
            })
        })
        .collect();
    let plan = audit::engagement::Plan {
        period: inputs.period.clone(),
        seed: inputs.seed,
        catalog: &inputs.catalog,
        sampling: &inputs.sampling,
        as_of: inputs.as_of.clone(),
        sources: inputs.sources.clone(),
    };
    let mut e = audit::engagement::run(&plan, &report, &implemented, &manual, &updates)
        .map_err(|e| format!("the engagement cannot be computed again: {e}"))?;
    // The run's warnings come from reading git and the ledger, not from the results: they
    // are taken as recorded (the seal vouches for them), and those about the deficiency
    // updates must be among them.
    let recorded: Vec<audit::engagement::Warning> =
        serde_json::from_value(engagement["warnings"].clone()).unwrap_or_default();
    for w in audit::engagement::update_warnings(&e, &updates) {
        if !recorded.contains(&w) {
            return Err(format!(
                "`engagement.json` does not hold the warning `{}` the package gives: {}",
                w.code, w.message
            ));
        }
    }
    e.warnings = recorded;
    let samples = format!(
        "{}{}",
        audit::engagement::CSV_BOM,
        audit::engagement::samples_csv(&e)
    );
    if samples.as_bytes() != files["samples.csv"].as_slice() {
        return Err("the samples drawn again from the seed differ from `samples.csv`".into());
    }
    let again = serde_json::to_value(&e).map_err(|e| e.to_string())?;
    if &again != engagement {
        let controls = |v: &Value| v["controls"].as_array().cloned().unwrap_or_default();
        let which = controls(&again)
            .iter()
            .zip(controls(engagement).iter())
            .find(|(x, y)| x != y)
            .and_then(|(x, _)| x["control"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                let deficiencies =
                    |v: &Value| v["deficiencies"].as_array().cloned().unwrap_or_default();
                let (a, b) = (deficiencies(&again), deficiencies(engagement));
                let id = |d: Option<&Value>| d.and_then(|d| d["id"].as_str().map(str::to_string));
                let at = a.iter().zip(&b).position(|(x, y)| x != y);
                match at {
                    Some(i) => format!("deficiency {}", id(a.get(i)).unwrap_or_default()),
                    None if a.len() != b.len() => format!(
                        "its deficiencies ({} computed again, {} recorded)",
                        a.len(),
                        b.len()
                    ),
                    None => "its period or seed".into(),
                }
            });
        return Err(format!(
            "the engagement computed again from the package differs from `engagement.json` \
             at {which}"
        ));
    }
    Ok(format!(
        "{} events reconciled and {} controls tested again: identical results",
        report.events.len(),
        e.controls.len()
    ))
}

/// Rebuilds every change from its events in seq order, the way the server's projection
/// does, checking that each starts with its request and each event starts from the stage
/// the one before left it in (an event missing from the middle shows as a jump).
fn reperform(entries: &[ledger::Entry]) -> Result<BTreeMap<String, domain::Change>, String> {
    let mut changes: BTreeMap<String, domain::Change> = BTreeMap::new();
    for entry in entries {
        let Some(kind) = entry.kind.strip_prefix("change.") else {
            continue;
        };
        if kind.parse::<domain::ActionKind>().is_err() {
            continue;
        }
        let at = format!("event {}", entry.seq);
        let id = entry
            .subject
            .as_deref()
            .ok_or_else(|| format!("{at} is a change event without a subject"))?;
        let event: domain::ChangeEvent = serde_json::from_value(entry.payload.clone())
            .map_err(|e| format!("{at}: the event of `{id}` cannot be read: {e}"))?;
        let recorded = domain::Recorded {
            time: entry.time.clone(),
            actor: entry.actor.clone(),
        };
        match (changes.get_mut(id), &event.action) {
            (None, domain::Action::Request(new)) => {
                changes.insert(
                    id.to_string(),
                    domain::Change::requested(id, &recorded, new),
                );
            }
            (None, _) => {
                return Err(format!(
                    "{at}: the first event of `{id}` in the package is not its request"
                ))
            }
            (Some(_), domain::Action::Request(_)) => {
                return Err(format!("{at}: `{id}` is requested a second time"))
            }
            (Some(change), _) => {
                if change.stage != event.stage_from {
                    return Err(format!(
                        "{at}: `{id}` was at stage {:?}, but its next event in the package \
                         starts from {:?}: an event of it is missing",
                        change.stage, event.stage_from
                    ));
                }
                change.apply(&recorded, &event);
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_match_the_ledgers() {
        for size in 1..=40u64 {
            let leaves: Vec<ledger::Hash> = (0..size)
                .map(|i| ledger::leaf_hash(&i.to_be_bytes()))
                .collect();
            let tree = Tree::new(leaves.clone());
            assert_eq!(tree.root(0, size), ledger::root(&leaves), "size {size}");
            for seq in 0..size {
                let want = ledger::inclusion_proof(&leaves, seq).unwrap();
                assert_eq!(tree.proof(seq), want, "size {size}, seq {seq}");
            }
        }
    }
}
