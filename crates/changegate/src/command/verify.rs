//! `changegate verify`: recompute the hash chain, the Merkle tree and every signed
//! checkpoint over the whole ledger, check that the signed log ends where the ledger head
//! says, and check the tables derived from the ledger (entry index columns, users, the
//! change listing, its system index and the change counter) against it. Names the first
//! bad event. Opens the store without writing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use serde::Deserialize;

use crate::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The ed25519 public key (hex) the checkpoints must be signed with, as published by
    /// `GET /api/v1/ledger/checkpoint`; without it the key in the data directory is used.
    #[arg(long)]
    public_key: Option<String>,
    /// Check the ledger alone (chain, tree, checkpoints, index columns) and skip the
    /// comparison of the users table, the change listing, its system index and the change
    /// counter with it.
    #[arg(long)]
    ledger_only: bool,
}

/// The fields of an entry that its index columns repeat; the payload is skipped.
#[derive(Deserialize)]
struct Indexed<'a> {
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    subject: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
}

/// What the ledger says a user is.
#[derive(Debug, Default, PartialEq)]
struct UserFacts {
    roles: Vec<String>,
    groups: Vec<String>,
    machine: bool,
    active: bool,
}

/// A failed check: the event it names (if any) and why.
struct Failure {
    seq: Option<u64>,
    message: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = store::open_existing(&args.store.data, args.store.database_url.as_deref())
        .with_context(|| format!("cannot open the store in `{}`", args.store.data.display()))?;
    let key = match &args.public_key {
        None => store.verifying_key(),
        Some(hex_key) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut bytes)
                .context("`--public-key` must be 64 hex digits")?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .context("`--public-key` is not an ed25519 public key")?
        }
    };
    let started = Instant::now();
    match check(store.as_ref(), key, !args.ledger_only) {
        Ok(summary) => {
            println!("{summary} ({:.2}s)", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            match f.seq {
                Some(seq) => eprintln!("ledger broken at event {seq}: {}", f.message),
                None => eprintln!("ledger broken: {}", f.message),
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn check(
    store: &dyn store::Store,
    key: ed25519_dalek::VerifyingKey,
    tables: bool,
) -> Result<String, Failure> {
    let fail = |seq: Option<u64>, message: String| Failure { seq, message };
    let backend = |e: store::StoreError| fail(None, e.to_string());
    let checkpoints = store.checkpoints().map_err(backend)?;
    // Signatures are checked on another core while this one walks the log.
    let signatures = {
        let checkpoints = checkpoints.clone();
        std::thread::spawn(move || ledger::verify_signatures(&key, &checkpoints))
    };
    let mut verifier = ledger::Verifier::new(key, checkpoints).signatures_checked_elsewhere();
    let mut first: Option<Failure> = None;
    let mut users: BTreeMap<String, UserFacts> = BTreeMap::new();
    let mut changes: HashMap<String, domain::Change> = HashMap::new();
    store
        .for_each_indexed(0, &mut |e, index| {
            let seq = e.seq;
            if let Err(fault) = verifier.push(e) {
                first = Some(fail(Some(fault.seq), fault.message));
                return false;
            }
            match index_mismatch(e.bytes, &index) {
                Ok(()) => {}
                Err(message) => {
                    first = Some(fail(Some(seq), message));
                    return false;
                }
            }
            if let Some(subject) = index.subject.filter(|s| tables && s.starts_with("CHG-")) {
                if let Err(message) = fold_into(&mut changes, subject, e.bytes) {
                    first = Some(fail(Some(seq), message));
                    return false;
                }
            }
            if index.kind.starts_with("user.") {
                if let Err(message) = replay_user(e.bytes, &mut users) {
                    first = Some(fail(Some(seq), message));
                    return false;
                }
            }
            true
        })
        .map_err(backend)?;
    let walked = match first {
        Some(f) => Err(f),
        None => verifier.finish().map_err(|f| fail(Some(f.seq), f.message)),
    };
    let signed = signatures
        .join()
        .map_err(|_| fail(None, "the signature check stopped unexpectedly".into()))?
        .map_err(|f| fail(Some(f.seq), f.message));
    // Report whichever fault comes first in the log.
    let summary = match (walked, signed) {
        (Ok(summary), Ok(())) => summary,
        (Err(a), Err(b)) if b.seq < a.seq => return Err(b),
        (Err(a), _) => return Err(a),
        (Ok(_), Err(b)) => return Err(b),
    };
    // Checkpoints are signed with every committed batch, so the signed log ends where the
    // ledger does; anything past the last checkpoint was added or kept without signing.
    let signed = summary.last_checkpoint.unwrap_or(0);
    if signed != summary.entries {
        return Err(fail(
            Some(signed),
            format!(
                "events {signed} to {} are not covered by any signed checkpoint (checkpoints \
                 were deleted, or entries were added without signing)",
                summary.entries.saturating_sub(1)
            ),
        ));
    }
    let head = store.ledger_size().map_err(backend)?;
    if head != summary.entries {
        return Err(fail(
            None,
            format!(
                "the ledger head records {head} events but {} are stored",
                summary.entries
            ),
        ));
    }
    if !tables {
        return Ok(format!(
            "ledger intact: {} events, root {}, {} signed checkpoints verified (key {}); \
             tables not compared",
            summary.entries,
            hex::encode(summary.root),
            summary.checkpoints_verified,
            ledger::key_id(&key),
        ));
    }
    check_users(store, &users)?;
    check_changes(store, &changes)?;
    check_system_index(store, &changes)?;
    check_counter(store, &changes)?;
    Ok(format!(
        "ledger intact: {} events, root {}, {} signed checkpoints verified (key {}); \
         {} users and {} changes agree with it",
        summary.entries,
        hex::encode(summary.root),
        summary.checkpoints_verified,
        ledger::key_id(&key),
        users.len(),
        changes.len()
    ))
}

/// Compares the index columns of an entry with the fields its hashed bytes record.
fn index_mismatch(bytes: &[u8], index: &store::IndexColumns<'_>) -> Result<(), String> {
    let e: Indexed<'_> =
        serde_json::from_slice(bytes).map_err(|err| format!("the entry cannot be read: {err}"))?;
    let columns = [
        ("subject", index.subject, e.subject.as_deref()),
        ("kind", Some(index.kind), Some(&*e.kind)),
        ("actor", Some(index.actor), Some(&*e.actor)),
        ("time", Some(index.time), Some(&*e.time)),
    ];
    for (name, column, recorded) in columns {
        if column != recorded {
            return Err(format!(
                "its `{name}` column says {column:?} but the signed entry records {recorded:?}"
            ));
        }
    }
    Ok(())
}

fn replay_user(bytes: &[u8], users: &mut BTreeMap<String, UserFacts>) -> Result<(), String> {
    let entry =
        ledger::decode_entry(bytes).map_err(|e| format!("the entry cannot be read: {e}"))?;
    let p = &entry.payload;
    let name = p["name"]
        .as_str()
        .ok_or("a user event names no user")?
        .to_string();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let facts = users.entry(name).or_default();
    match entry.kind.as_str() {
        "user.added" => {
            *facts = UserFacts {
                roles: strings(&p["roles"]),
                groups: strings(&p["groups"]),
                machine: p["machine"].as_bool().unwrap_or(false),
                active: true,
            };
        }
        "user.deactivated" => facts.active = false,
        "user.updated" => {
            facts.roles = strings(&p["roles"]);
            facts.groups = strings(&p["groups"]);
            facts.active = p["active"].as_bool().unwrap_or(facts.active);
        }
        other => return Err(format!("unknown user event `{other}`")),
    }
    Ok(())
}

fn check_users(
    store: &dyn store::Store,
    expected: &BTreeMap<String, UserFacts>,
) -> Result<(), Failure> {
    let users = store.users().map_err(|e| Failure {
        seq: None,
        message: e.to_string(),
    })?;
    for u in &users {
        let stored = UserFacts {
            roles: u.roles.clone(),
            groups: u.groups.clone(),
            machine: u.machine,
            active: u.active,
        };
        match expected.get(&u.name) {
            Some(facts) if *facts == stored => {}
            Some(facts) => {
                return Err(Failure {
                    seq: None,
                    message: format!(
                        "user `{}` is stored as {stored:?} but the ledger records {facts:?}",
                        u.name
                    ),
                })
            }
            None => {
                return Err(Failure {
                    seq: None,
                    message: format!("user `{}` exists but the ledger never added it", u.name),
                })
            }
        }
    }
    if let Some(missing) = expected
        .keys()
        .find(|n| !users.iter().any(|u| &u.name == *n))
    {
        return Err(Failure {
            seq: None,
            message: format!("user `{missing}` is in the ledger but was deleted from the table"),
        });
    }
    Ok(())
}

/// Folds one change event into the change it belongs to, as the server does on load.
fn fold_into(
    changes: &mut HashMap<String, domain::Change>,
    id: &str,
    bytes: &[u8],
) -> Result<(), String> {
    let entry =
        ledger::decode_entry(bytes).map_err(|e| format!("the entry cannot be read: {e}"))?;
    let event: domain::ChangeEvent = serde_json::from_value(entry.payload)
        .map_err(|e| format!("the event of `{id}` cannot be read: {e}"))?;
    let at = domain::Recorded {
        time: entry.time,
        actor: entry.actor,
    };
    match (changes.get_mut(id), &event.action) {
        (None, domain::Action::Request(new)) => {
            changes.insert(id.to_string(), domain::Change::requested(id, &at, new));
        }
        (None, _) => return Err(format!("the first event of `{id}` is not its request")),
        (Some(_), domain::Action::Request(_)) => {
            return Err(format!("`{id}` is requested a second time"))
        }
        (Some(change), _) => change.apply(&at, &event),
    }
    Ok(())
}

/// Compares the change listing, an index outside the hash, with the changes rebuilt from
/// their events: a row that says otherwise would let a filtered listing show a change in a
/// stage it never reached.
fn check_changes(
    store: &dyn store::Store,
    changes: &HashMap<String, domain::Change>,
) -> Result<(), Failure> {
    let failure = |message: String| Failure { seq: None, message };
    let rows = store
        .list_changes(&store::ChangeFilter::default())
        .map_err(|e| failure(e.to_string()))?;
    for row in &rows {
        let Some(change) = changes.get(&row.id) else {
            return Err(failure(format!(
                "change `{}` is listed but the ledger holds no event for it",
                row.id
            )));
        };
        if change.version != row.version {
            return Err(failure(format!(
                "change `{}` is listed at version {} but the ledger holds {} events for it",
                row.id, row.version, change.version
            )));
        }
        let derived = server::service::columns(change);
        let listed = store::ChangeColumns {
            stage: row.stage.clone(),
            change_type: row.change_type.clone(),
            category: row.category.clone(),
            title: row.title.clone(),
            requester: row.requester.clone(),
            assignee: row.assignee.clone(),
            risk: row.risk.clone(),
            systems: row.systems.clone(),
        };
        if listed != derived {
            return Err(failure(format!(
                "change `{}` is listed as {listed:?} but its events make it {derived:?}",
                row.id
            )));
        }
    }
    if rows.len() != changes.len() {
        let listed: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let missing = changes
            .keys()
            .find(|id| !listed.contains(id.as_str()))
            .cloned();
        return Err(failure(format!(
            "change `{}` is in the ledger but missing from the listing",
            missing.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Compares the system index (`GET /changes?system=…` filters on it) with the systems each
/// change's events give it: a row that says otherwise would show a change under a system it
/// does not touch, or hide it from one it does. The store files a change once under each
/// system its columns list, so the comparison is of sets.
fn check_system_index(
    store: &dyn store::Store,
    changes: &HashMap<String, domain::Change>,
) -> Result<(), Failure> {
    let failure = |message: String| Failure { seq: None, message };
    let mut index = store.system_index().map_err(|e| failure(e.to_string()))?;
    let mut ids: Vec<&String> = changes.keys().collect();
    ids.sort_by_key(|id| (id.len(), id.as_str()));
    for id in ids {
        let indexed = index.remove(id.as_str()).unwrap_or_default();
        let derived: BTreeSet<String> = server::service::columns(&changes[id])
            .systems
            .into_iter()
            .collect();
        if indexed != derived {
            return Err(failure(format!(
                "change `{id}` is indexed under systems {indexed:?} but its events give it \
                 {derived:?}"
            )));
        }
    }
    if let Some((id, systems)) = index.into_iter().next() {
        return Err(failure(format!(
            "change `{id}` is indexed under systems {systems:?} but the ledger holds no event \
             for it"
        )));
    }
    Ok(())
}

/// Checks that the change counter has reached every allocated change number in the ledger:
/// set back, it would hand new changes ids already in use, and each would be refused.
fn check_counter(
    store: &dyn store::Store,
    changes: &HashMap<String, domain::Change>,
) -> Result<(), Failure> {
    let failure = |message: String| Failure { seq: None, message };
    let counter = store.change_counter().map_err(|e| failure(e.to_string()))?;
    let highest = changes
        .keys()
        .filter_map(|id| store::change_number(id).map(|n| (n, id)))
        .max();
    match (counter, highest) {
        (None, _) => Err(failure(
            "the change counter is missing, so no new change can be given an id".into(),
        )),
        (Some(counter), Some((n, id))) if counter < n => Err(failure(format!(
            "the change counter is at {counter} but the ledger holds change `{id}` (number \
             {n}): new changes would be given ids already in use"
        ))),
        _ => Ok(()),
    }
}
