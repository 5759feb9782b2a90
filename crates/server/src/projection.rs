//! An in-memory projection of the ledger for the questions that look across changes: which
//! change covers an artifact (the deployment gate), what evidence has arrived, and the
//! continuous reconciliation of production change events. It is rebuilt from the ledger
//! and brought up to date by reading only the entries appended since the last read, so every
//! server instance over one database sees the same state.
//!
//! Every read sees at least every entry committed before the read was asked for. Concurrent
//! reads share a catch-up: one that began after a read was asked for serves it too.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use audit::{CarriedCommit, CommitEvent, ProductionEvent, Rules};
use domain::{Change, ChangeEvent, Recorded};
use evidence::{Evidence, PullRequestState};
use store::{Store, StoreError, User};

/// The ledger entry kind of payloads that arrived but could not be read.
pub const UNPARSEABLE_KIND: &str = "evidence.unparseable";

/// The ledger entry kind of a test result or control performance recorded by hand.
pub const MANUAL_RESULT_KIND: &str = "audit.manual_result";

/// The ledger entry kind of what an auditor or management recorded about a deficiency.
pub const DEFICIENCY_UPDATE_KIND: &str = "audit.deficiency_update";

/// The ledger entry kind of a change record imported from another tool.
pub const IMPORTED_RECORD_KIND: &str = "evidence.change_record";

/// The ledger entry kind of a deployment gate decision.
pub const GATE_KIND: &str = "gate.decided";

/// The most user lookups remembered; past it the cache starts over. Names come from
/// requests, so the cache must not grow with whatever a caller sends.
const USER_CACHE_LIMIT: usize = 1024;

/// What the projection holds.
#[derive(Default)]
pub struct State {
    /// The next ledger seq to read.
    next: u64,
    /// When the last successful catch-up began reading: it saw every entry committed
    /// before then.
    fresh_as_of: Option<Instant>,
    pub changes: BTreeMap<String, Change>,
    pub evidence: Vec<Evidence>,
    /// Results recorded by hand, in ledger order.
    pub manual_results: Vec<audit::engagement::ManualResult>,
    /// What was recorded about deficiencies, in ledger order.
    pub deficiency_updates: Vec<audit::deficiency::DeficiencyUpdate>,
    /// Change records imported from other tools, each at its latest version, in the order
    /// first imported.
    pub imported: Vec<evidence::records::ImportedChange>,
    /// Users as the ledger's user events describe them, by name.
    pub recorded_users: BTreeMap<String, RecordedUser>,
    /// Entries recorded after this instant are left out (see [`Projection::as_of`]).
    until: Option<time::OffsetDateTime>,
    /// How many entries of each kind were left out for being recorded after `until`.
    pub left_out: BTreeMap<String, u64>,
    /// How many versions of each imported change (format, source id) were recorded.
    pub imported_versions: HashMap<(evidence::records::Format, String), u64>,
    /// Where each imported change (format, source id) is in `imported`.
    imported_at: HashMap<(evidence::records::Format, String), usize>,
    /// Artifact (lower case) → changes that name it in a deployment approval or an
    /// implementation.
    pub artifacts: HashMap<String, Vec<String>>,
    /// Users as the store holds them (`None`: no such user), looked up on first use.
    /// INVARIANT: the store changes a user only together with a ledger entry in the same
    /// transaction, and every entry the catch-up reads that is not of a kind known to be
    /// about something else empties this cache. An answer from it is therefore as fresh as
    /// the catch-up before it: a deactivation committed before a read is seen by that read,
    /// on this server or any other over the same database.
    users: RefCell<HashMap<String, Option<User>>>,
    /// Per change: its version and what the gate concluded from its approvals at that
    /// version (they depend only on the change and the server's fixed policy).
    approval_facts: RefCell<HashMap<String, (u64, ApprovalFacts)>>,
}

/// A change an artifact is linked to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLink {
    pub change: String,
    /// `None` when the change's own approval or implementation names the artifact; else
    /// when the evidence that links it happened (a merge, a push), RFC 3339, empty when the
    /// evidence did not say.
    pub evidence_at: Option<String>,
}

/// What the deployment gate concludes from a change's approvals alone. Computing it digests
/// the change's content once per approval step, so it is kept per change version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalFacts {
    /// The deployment approvals still cover the change's content.
    pub deployment_approved: bool,
    /// The change needs no test, or has a passing test of its current content.
    pub tested: bool,
}

impl State {
    /// A user as the store holds it now (as of this state's catch-up), from the cache when
    /// no entry since the cached lookup could have changed it.
    pub fn user(&self, store: &dyn Store, name: &str) -> Result<Option<User>, StoreError> {
        if let Some(user) = self.users.borrow().get(name) {
            return Ok(user.clone());
        }
        let user = store.user(name)?;
        let mut users = self.users.borrow_mut();
        if users.len() >= USER_CACHE_LIMIT {
            users.clear();
        }
        users.insert(name.to_string(), user.clone());
        Ok(user)
    }

    /// The approval facts of `change` (a change of this state), computed by `compute` once
    /// per version of the change.
    pub fn approval_facts(
        &self,
        change: &Change,
        compute: impl FnOnce(&Change) -> ApprovalFacts,
    ) -> ApprovalFacts {
        if let Some((version, facts)) = self.approval_facts.borrow().get(&change.id) {
            if *version == change.version {
                return *facts;
            }
        }
        let facts = compute(change);
        self.approval_facts
            .borrow_mut()
            .insert(change.id.clone(), (change.version, facts));
        facts
    }

    /// The changes whose approval, implementation or linked pull request names exactly this
    /// artifact (a commit id or a digest, in any case), and those named by the message of a
    /// commit with this id pushed, not forced, to one of the `protected` branches.
    pub fn changes_for_artifact(&self, artifact: &str, protected: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for link in self.artifact_links(artifact, protected) {
            if !out.contains(&link.change) {
                out.push(link.change);
            }
        }
        out
    }

    /// How each change is linked to this artifact (see [`State::changes_for_artifact`]).
    pub fn artifact_links(&self, artifact: &str, protected: &[String]) -> Vec<ArtifactLink> {
        let a = artifact.trim().to_lowercase();
        let mut out: Vec<ArtifactLink> = Vec::new();
        for id in self.artifacts.get(&a).into_iter().flatten() {
            out.push(ArtifactLink {
                change: id.clone(),
                evidence_at: None,
            });
        }
        let mut add = |ids: Vec<String>, at: Option<&String>| {
            for id in ids.into_iter().filter(|id| self.changes.contains_key(id)) {
                out.push(ArtifactLink {
                    change: id,
                    evidence_at: Some(at.cloned().unwrap_or_default()),
                });
            }
        };
        for e in &self.evidence {
            if let Evidence::PullRequest(pr) = e {
                let landed = [&pr.merge_commit_sha, &pr.squash_commit_sha]
                    .into_iter()
                    .flatten()
                    .any(|s| same_ref(&s.to_lowercase(), &a));
                if pr.state == PullRequestState::Merged && landed {
                    let mut ids = evidence::change_ids(&pr.title);
                    ids.extend(evidence::change_ids(&pr.head_ref));
                    add(ids, pr.merged_at.as_ref());
                }
            }
            if let Evidence::Push(p) = e {
                let branch = p.git_ref.strip_prefix("refs/heads/").unwrap_or("");
                // A forced push rewrote the branch: what it claims links nothing.
                if p.deleted || p.forced || !protected.iter().any(|b| b == branch) {
                    continue;
                }
                for c in p
                    .commits
                    .iter()
                    .filter(|c| same_ref(&c.id.to_lowercase(), &a))
                {
                    add(
                        evidence::change_ids(&c.subject),
                        c.at.as_ref().or(p.at.as_ref()),
                    );
                }
            }
        }
        out
    }

    /// The implementations recorded in the lifecycle (`implement`) to production that no
    /// pipeline or code host reported: changegate's own record is then the evidence that the
    /// change went out, and it is tested like any reported deployment.
    pub fn lifecycle_deployments(
        &self,
        reported: &[ProductionEvent],
        rules: &Rules,
    ) -> Vec<ProductionEvent> {
        let known: std::collections::HashSet<(String, String)> = reported
            .iter()
            .filter_map(|e| match e {
                ProductionEvent::Deployment(d) => Some((
                    d.artifact.trim().to_ascii_lowercase(),
                    d.environment.trim().to_ascii_lowercase(),
                )),
                ProductionEvent::Commit(_) => None,
            })
            .collect();
        let mut out = Vec::new();
        for change in self.changes.values() {
            let Some(d) = &change.deployment else {
                continue;
            };
            let key = (
                d.artifact.trim().to_ascii_lowercase(),
                d.environment.trim().to_ascii_lowercase(),
            );
            if !rules.is_production(&d.environment) || known.contains(&key) {
                continue;
            }
            out.push(ProductionEvent::Deployment(evidence::Deployment {
                host: evidence::Host::Pipeline,
                id: format!("{}-implementation", change.id),
                system: change.systems.first().cloned().unwrap_or_default(),
                environment: d.environment.clone(),
                artifact: d.artifact.clone(),
                actor: evidence::Identity {
                    login: d.by.clone(),
                    bot: false,
                },
                at: d.at.clone(),
                status: Some("success".into()),
                commits: vec![],
                description: Some(format!(
                    "implementation of {} recorded in changegate",
                    change.id
                )),
            }));
        }
        out
    }

    /// The production change events the evidence shows: commits pushed or merged to a
    /// protected branch, and deployments to production-tier environments, newest first.
    /// The state the given ledger entries (canonical bytes, in seq order) fold into, as a
    /// catch-up over them would leave it: for checking what an evidence package says the
    /// ledger held.
    pub fn replay<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<State, String> {
        let mut state = State::default();
        for bytes in entries {
            let entry = ledger::decode_entry(bytes).map_err(|e| e.to_string())?;
            let kind = entry.kind.as_str();
            if kind == "user.added" || kind == "user.deactivated" {
                record_user(&mut state, bytes)?;
            } else if kind.starts_with("change.")
                || kind.starts_with("evidence.")
                || kind == MANUAL_RESULT_KIND
                || kind == DEFICIENCY_UPDATE_KIND
            {
                apply(&mut state, bytes).map_err(|e| format!("entry {}: {e}", entry.seq))?;
            }
        }
        Ok(state)
    }

    pub fn production_events(&self, rules: &Rules) -> Vec<ProductionEvent> {
        let protected = &rules.protected_branches;
        let mut merges: HashMap<&str, &evidence::PullRequest> = HashMap::new();
        for e in &self.evidence {
            if let Evidence::PullRequest(pr) = e {
                if pr.state == PullRequestState::Merged && protected.contains(&pr.base_ref) {
                    for s in [&pr.merge_commit_sha, &pr.squash_commit_sha]
                        .into_iter()
                        .flatten()
                    {
                        merges.insert(s.as_str(), pr);
                    }
                }
            }
        }
        let succeeded: Vec<(&str, &str)> = self
            .evidence
            .iter()
            .filter_map(|e| match e {
                Evidence::DeploymentStatus(s) if s.state == "success" => {
                    Some((s.repository.as_str(), s.deployment_id.as_str()))
                }
                _ => None,
            })
            .collect();
        // The commits a merge brought in, as the push of the merge to a protected branch
        // lists them besides the merge commit itself.
        let mut brought_in: HashMap<&str, Vec<CarriedCommit>> = HashMap::new();
        for e in &self.evidence {
            if let Evidence::Push(p) = e {
                if !merges.contains_key(p.after.as_str()) {
                    continue;
                }
                let list = brought_in.entry(p.after.as_str()).or_default();
                for c in p.commits.iter().filter(|c| c.id != p.after) {
                    if list.iter().any(|k| k.id == c.id) {
                        continue;
                    }
                    list.push(CarriedCommit {
                        id: c.id.clone(),
                        author: c.author.clone(),
                        committer: c.committer.clone().unwrap_or_else(|| c.author.clone()),
                        commit_time: c.at.clone().or_else(|| p.at.clone()).unwrap_or_default(),
                        co_authors: vec![],
                    });
                }
            }
        }
        let carried = |sha: &str| brought_in.get(sha).cloned().unwrap_or_default();
        let mut events: Vec<(String, ProductionEvent)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for e in &self.evidence {
            match e {
                Evidence::Push(p) => {
                    let branch = p.git_ref.strip_prefix("refs/heads/").unwrap_or("");
                    if p.deleted || !protected.iter().any(|b| b == branch) {
                        continue;
                    }
                    let merged_pr = merges.contains_key(p.after.as_str());
                    for c in &p.commits {
                        // The commits a merge brings in are the pull request's, not events
                        // of their own.
                        if merged_pr && c.id != p.after {
                            continue;
                        }
                        if !seen.insert(c.id.clone()) {
                            continue;
                        }
                        let at = c.at.clone().or_else(|| p.at.clone()).unwrap_or_default();
                        events.push((
                            at.clone(),
                            ProductionEvent::Commit(CommitEvent {
                                id: c.id.clone(),
                                parents: vec![],
                                author: c.author.clone(),
                                committer: c.committer.clone().unwrap_or_else(|| c.author.clone()),
                                author_time: at.clone(),
                                commit_time: at,
                                subject: c.subject.clone(),
                                pull_request: None,
                                source_branch: None,
                                change_ids: evidence::change_ids(&c.subject),
                                co_authors: vec![],
                                reverts: None,
                                carried: carried(&c.id),
                                lossy: false,
                            }),
                        ));
                    }
                }
                Evidence::PullRequest(pr) => {
                    let Some(sha) = pr
                        .merge_commit_sha
                        .as_ref()
                        .or(pr.squash_commit_sha.as_ref())
                    else {
                        continue;
                    };
                    if !merges.contains_key(sha.as_str()) || !seen.insert(sha.clone()) {
                        continue;
                    }
                    let at = pr.merged_at.clone().unwrap_or_default();
                    let who = pr.merged_by.as_ref().unwrap_or(&pr.author);
                    let person = evidence::Person {
                        name: who.login.clone(),
                        email: String::new(),
                    };
                    events.push((
                        at.clone(),
                        ProductionEvent::Commit(CommitEvent {
                            id: sha.clone(),
                            parents: vec![],
                            author: person.clone(),
                            committer: person,
                            author_time: at.clone(),
                            commit_time: at,
                            subject: pr.title.clone(),
                            pull_request: Some(pr.number),
                            source_branch: Some(pr.head_ref.clone()),
                            change_ids: evidence::change_ids(&pr.title),
                            co_authors: vec![],
                            reverts: None,
                            carried: carried(sha),
                            lossy: false,
                        }),
                    ));
                }
                Evidence::Deployment(d) => {
                    if !rules.is_production(&d.environment) {
                        continue;
                    }
                    let done = match d.host {
                        evidence::Host::Github => {
                            succeeded.contains(&(d.system.as_str(), d.id.as_str()))
                        }
                        _ => d.status.as_deref().is_none_or(|s| {
                            matches!(
                                s,
                                "success" | "succeeded" | "successful" | "finished" | "deployed"
                            )
                        }),
                    };
                    if done {
                        events.push((d.at.clone(), ProductionEvent::Deployment(d.clone())));
                    }
                }
                _ => {}
            }
        }
        // Newest first; times are RFC 3339 UTC, so they sort as text.
        events.sort_by(|a, b| b.0.cmp(&a.0));
        events.into_iter().map(|(_, e)| e).collect()
    }
}

/// The ledger projection, shared by the handlers.
#[derive(Default)]
pub struct Projection {
    state: Mutex<State>,
}

/// A user as the ledger's user events describe them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedUser {
    pub roles: Vec<String>,
    pub machine: bool,
    pub active: bool,
}

impl Projection {
    /// A projection of the entries recorded up to `until` (by their ledger time), as the
    /// ledger stood then: for judging an engagement as of an earlier instant.
    pub fn as_of(until: time::OffsetDateTime) -> Projection {
        Projection {
            state: Mutex::new(State {
                until: Some(until),
                ..State::default()
            }),
        }
    }

    /// Runs `f` on the state once it holds every entry committed before this call: it
    /// reads the entries appended since the last catch-up, unless a catch-up that began
    /// after this call was made (by a concurrent read) already did.
    pub fn read<R>(&self, store: &dyn Store, f: impl FnOnce(&State) -> R) -> Result<R, StoreError> {
        let asked = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.fresh_as_of.is_none_or(|t| t <= asked) {
            catch_up(&mut state, store)?;
        }
        Ok(f(&state))
    }
}

fn catch_up(state: &mut State, store: &dyn Store) -> Result<(), StoreError> {
    let mut failure = None;
    let from = state.next;
    let started = Instant::now();
    store.for_each_indexed(from, &mut |stored, columns| {
        let kind = columns.kind;
        if let Some(until) = state.until {
            let later =
                domain::action::parse_instant("time", columns.time).map_or(true, |t| t > until);
            if later {
                *state.left_out.entry(kind.to_string()).or_default() += 1;
                state.next = stored.seq + 1;
                return true;
            }
        }
        if kind == "user.added" || kind == "user.deactivated" {
            if let Err(e) = record_user(state, stored.bytes) {
                failure = Some(StoreError::Corrupt(format!("entry {}: {e}", stored.seq)));
                return false;
            }
        }
        let about_changes = kind.starts_with("change.")
            || kind.starts_with("evidence.")
            || kind == MANUAL_RESULT_KIND
            || kind == DEFICIENCY_UPDATE_KIND;
        if about_changes {
            if let Err(e) = apply(state, stored.bytes) {
                failure = Some(StoreError::Corrupt(format!("entry {}: {e}", stored.seq)));
                return false;
            }
        } else if kind != GATE_KIND {
            // User events, and kinds this projection does not know: the cached users may
            // be out of date.
            state.users.get_mut().clear();
        }
        state.next = stored.seq + 1;
        true
    })?;
    match failure {
        Some(e) => Err(e),
        None => {
            state.fresh_as_of = Some(started);
            Ok(())
        }
    }
}

/// Folds a user event into the users the ledger describes.
fn record_user(state: &mut State, bytes: &[u8]) -> Result<(), String> {
    let entry = ledger::decode_entry(bytes).map_err(|e| e.to_string())?;
    let name = entry.payload["name"]
        .as_str()
        .ok_or("a user event without a name")?
        .to_string();
    if entry.kind == "user.added" {
        let roles = entry.payload["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let machine = entry.payload["machine"].as_bool().unwrap_or(false);
        state.recorded_users.insert(
            name,
            RecordedUser {
                roles,
                machine,
                active: true,
            },
        );
    } else if let Some(u) = state.recorded_users.get_mut(&name) {
        u.active = false;
    }
    Ok(())
}

fn apply(state: &mut State, bytes: &[u8]) -> Result<(), String> {
    let entry = ledger::decode_entry(bytes).map_err(|e| e.to_string())?;
    if let Some(kind) = entry.kind.strip_prefix("change.") {
        if kind.parse::<domain::ActionKind>().is_err() {
            return Ok(());
        }
        let id = entry
            .subject
            .clone()
            .ok_or("a change event without a subject")?;
        let event: ChangeEvent =
            serde_json::from_value(entry.payload).map_err(|e| e.to_string())?;
        let at = Recorded {
            time: entry.time,
            actor: entry.actor,
        };
        let artifact = match &event.action {
            domain::Action::ApproveDeployment(a) => a.artifact.clone(),
            domain::Action::Implement(i) => Some(i.artifact.clone()),
            _ => None,
        };
        match state.changes.get_mut(&id) {
            Some(change) => change.apply(&at, &event),
            None => {
                let change = Change::replay(&id, [(at, &event)]).map_err(|e| e.to_string())?;
                state.changes.insert(id.clone(), change);
            }
        }
        if let Some(a) = artifact {
            let ids = state.artifacts.entry(a.trim().to_lowercase()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        return Ok(());
    }
    if entry.kind == UNPARSEABLE_KIND {
        return Ok(());
    }
    if entry.kind == MANUAL_RESULT_KIND {
        let result = entry
            .payload
            .get("result")
            .ok_or("a manual result without its result")?;
        let result: audit::engagement::ManualResult =
            serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
        state.manual_results.push(result);
        return Ok(());
    }
    if entry.kind == DEFICIENCY_UPDATE_KIND {
        let update = entry
            .payload
            .get("update")
            .ok_or("a deficiency update without its update")?;
        let update: audit::deficiency::DeficiencyUpdate =
            serde_json::from_value(update.clone()).map_err(|e| e.to_string())?;
        state.deficiency_updates.push(update);
        return Ok(());
    }
    if entry.kind == IMPORTED_RECORD_KIND {
        let record = entry
            .payload
            .get("record")
            .ok_or("an imported change record without its record")?;
        let record: evidence::records::ImportedChange =
            serde_json::from_value(record.clone()).map_err(|e| e.to_string())?;
        // A later export's version of a change replaces the earlier one.
        let key = (record.format, record.source_id.clone());
        *state.imported_versions.entry(key.clone()).or_default() += 1;
        match state.imported_at.get(&key) {
            Some(&i) => state.imported[i] = record,
            None => {
                state.imported_at.insert(key, state.imported.len());
                state.imported.push(record);
            }
        }
        return Ok(());
    }
    if let Some(value) = entry.payload.get("evidence") {
        let evidence: Evidence =
            serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        state.evidence.push(evidence);
    }
    Ok(())
}

/// Whether two lower-case references name the same artifact: only when they are equal. An
/// abbreviated commit id is not taken to name a longer one, since a commit whose id starts
/// with given digits can be made at will (seven hex digits take about 2^28 tries).
pub fn same_ref(a: &str, b: &str) -> bool {
    !a.is_empty() && a == b
}
