//! Reconciliation: every production change event (a first-parent commit on a protected
//! branch, a deployment to a production environment) is linked to the change record that
//! authorized it, and tested on the attributes an auditor tests: authorized before work
//! started, reviewed and approved independently of every contributor after the last
//! commit, tested, approved for deployment before the deployment, deployed by an
//! authorized deployer inside the approved window, and, for emergency changes, approved
//! after the fact in time. Each attribute carries its result and the evidence that decided
//! it; a failed attribute is an exception with a stable reason code.
//!
//! Links are made from facts the platform records (a pull request's merge or squash commit,
//! an approved artifact), then from change ids in titles, branch names and trailers. A
//! pull request number in a commit message is a claim: it links only when the platform does
//! not contradict it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use domain::action::parse_instant;
use domain::{ActionKind, ApprovalStep, Change, ChangeType, Level, Policy, Stage};
use evidence::{
    Check, Deployment, Evidence, Person, ProtectionChange, ProtectionOverride, PullRequest,
    PullRequestState, Push, Review, ReviewState,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::identity::{is_bot, Aliases};

/// A commit that changed a protected branch: one first-parent commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEvent {
    pub id: String,
    pub parents: Vec<String>,
    pub author: Person,
    pub committer: Person,
    pub author_time: String,
    pub commit_time: String,
    pub subject: String,
    /// The pull or merge request the message names, a claim until the platform agrees.
    pub pull_request: Option<u64>,
    /// The source branch the message names (merge subjects).
    pub source_branch: Option<String>,
    /// Change ids from the subject, the source branch and the trailers.
    pub change_ids: Vec<String>,
    pub co_authors: Vec<Person>,
    pub reverts: Option<String>,
    /// For a merge commit, the commits it brought in (second-parent side), newest first.
    pub carried: Vec<CarriedCommit>,
    /// The message was not valid UTF-8 and was read lossily.
    pub lossy: bool,
}

/// A commit carried into the branch by a merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedCommit {
    pub id: String,
    pub author: Person,
    pub committer: Person,
    pub commit_time: String,
    pub co_authors: Vec<Person>,
}

pub type DeploymentEvent = Deployment;

/// One production change event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ProductionEvent {
    Commit(CommitEvent),
    Deployment(DeploymentEvent),
}

impl ProductionEvent {
    /// The commit id, or the deployed artifact.
    pub fn key(&self) -> &str {
        match self {
            ProductionEvent::Commit(c) => &c.id,
            ProductionEvent::Deployment(d) => &d.artifact,
        }
    }
}

/// A changegate user as reconciliation needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFacts {
    pub roles: Vec<String>,
    pub machine: bool,
    pub active: bool,
}

/// A standing standard change that covers the work of named authors (dependency bots),
/// so their changes follow policy without a record per change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingChange {
    pub change: String,
    pub authors: Vec<String>,
}

/// How an organization reconciles: tunable, with defaults an auditor would expect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Independent human approvals each code change needs.
    pub required_approvals: usize,
    /// Co-authors named in trailers count as contributors (their approval does not count).
    pub coauthors_are_contributors: bool,
    /// Environment names that are production; a trailing `*` matches any suffix.
    pub production_environments: Vec<String>,
    /// Accounts that are automation besides `*[bot]` names.
    pub bots: Vec<String>,
    /// changegate user → other spellings of the same person.
    pub aliases: BTreeMap<String, Vec<String>>,
    pub standing_changes: Vec<StandingChange>,
    /// An emergency change requested this many hours before it went out, at low risk and
    /// naming no incident, is flagged as a suspected way around the CAB.
    pub emergency_suspect_hours: i64,
    /// The repository the git history belongs to (`owner/name`), to match pull requests by
    /// number; without it a number matches when only one repository has it.
    pub repository: Option<String>,
    /// Branches whose commits are production change events when pushed or merged to.
    pub protected_branches: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            required_approvals: 1,
            coauthors_are_contributors: true,
            production_environments: vec![
                "production".into(),
                "prod".into(),
                "prod-*".into(),
                "production-*".into(),
                "live".into(),
            ],
            bots: Vec::new(),
            aliases: BTreeMap::new(),
            standing_changes: Vec::new(),
            emergency_suspect_hours: 48,
            repository: None,
            protected_branches: vec!["main".into(), "master".into()],
        }
    }
}

impl Rules {
    /// Whether an environment is production-tier, by the configured names and patterns.
    pub fn is_production(&self, environment: &str) -> bool {
        let env = environment.trim().to_lowercase();
        self.production_environments.iter().any(|p| {
            let p = p.trim().to_lowercase();
            match p.strip_suffix('*') {
                Some(prefix) => env.starts_with(prefix),
                None => env == p,
            }
        })
    }
}

/// Everything a reconciliation reads.
pub struct Inputs<'a> {
    /// The population, newest first (the order `git rev-list` prints).
    pub events: &'a [ProductionEvent],
    pub evidence: &'a [Evidence],
    pub changes: &'a BTreeMap<String, Change>,
    pub users: &'a BTreeMap<String, UserFacts>,
    pub policy: &'a Policy,
    pub rules: &'a Rules,
    /// The instant the report is as of (emergency approval deadlines are judged at it).
    pub as_of: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Exception,
    Unauthorized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeResult {
    Pass,
    Fail,
    NotApplicable,
}

/// One tested attribute of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub result: AttributeResult,
    /// The reason codes of a failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// What decided the result, in words an auditor can check.
    pub evidence: String,
}

/// One production change event and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRow {
    /// The commit id (for a deployment: the deployed artifact).
    pub commit: String,
    pub change: Option<String>,
    pub verdict: Verdict,
    /// Reason codes, one per failed test, in a stable order.
    pub exceptions: Vec<String>,
    /// `commit` or `deployment`.
    pub source: String,
    /// For a deployment: its system and id, `payments/run-8812`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub at: String,
    pub subject: String,
    pub author: String,
    pub pull_request: Option<u64>,
    /// How the event was linked to its change: `platform`, `change_id`, `artifact`,
    /// `standing_change`, `revert`, `claimed`, or none.
    pub linked_by: Option<String>,
    pub reverts: Option<String>,
    pub environment: Option<String>,
    pub attributes: Vec<Attribute>,
    pub notes: Vec<String>,
}

/// A finding about a repository or its configuration rather than one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: String,
    pub repository: String,
    pub actor: String,
    pub at: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub events: u64,
    pub matched: u64,
    pub unauthorized: u64,
    /// Events whose verdict is `exception`.
    pub exceptions: u64,
    /// Reason code → number of events failing with it.
    pub exceptions_by_code: BTreeMap<String, u64>,
}

/// The population tested, with what proves it complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    pub count: u64,
    /// SHA-256 over the events' `commit` values, one per line with a trailing newline, in
    /// report order: for a git range, the same bytes `git rev-list --first-parent` prints.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub summary: Summary,
    pub population: Population,
    pub events: Vec<VerdictRow>,
    pub findings: Vec<Finding>,
}

/// The population hash of a list of event keys.
pub fn population_hash<'a>(keys: impl IntoIterator<Item = &'a str>) -> Population {
    let mut h = Sha256::new();
    let mut count = 0;
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"\n");
        count += 1;
    }
    Population {
        count,
        sha256: hex::encode(h.finalize()),
    }
}

/// Who contributed to a production change event.
struct Contributors {
    /// Canonical names.
    people: BTreeSet<String>,
    /// How each was found, for the evidence text.
    described: Vec<String>,
    /// Why the list may be short: the pull request declares more commits than are known.
    incomplete: Option<String>,
}

/// Evidence indexed for lookups.
struct Index<'a> {
    pr_by_sha: HashMap<String, &'a PullRequest>,
    prs_by_number: HashMap<u64, Vec<&'a PullRequest>>,
    reviews: HashMap<(String, u64), Vec<&'a Review>>,
    pushes_by_commit: HashMap<String, Vec<&'a Push>>,
    /// Artifact (trimmed, lower case) → the first change, in id order, whose deployment
    /// approval or implementation names it.
    changes_by_artifact: HashMap<String, &'a Change>,
    /// (repository, full ref) → the pushes to that branch.
    pushes_by_branch: HashMap<(String, String), Vec<&'a Push>>,
    checks_by_sha: HashMap<String, Vec<&'a Check>>,
    overrides_by_commit: HashMap<String, Vec<&'a ProtectionOverride>>,
    protection_changes: Vec<&'a ProtectionChange>,
    overrides: Vec<&'a ProtectionOverride>,
}

impl<'a> Index<'a> {
    fn new(evidence: &'a [Evidence], changes: &'a BTreeMap<String, Change>) -> Self {
        let mut ix = Index {
            pr_by_sha: HashMap::new(),
            prs_by_number: HashMap::new(),
            reviews: HashMap::new(),
            pushes_by_commit: HashMap::new(),
            pushes_by_branch: HashMap::new(),
            changes_by_artifact: HashMap::new(),
            checks_by_sha: HashMap::new(),
            overrides_by_commit: HashMap::new(),
            protection_changes: Vec::new(),
            overrides: Vec::new(),
        };
        // Later snapshots of a pull request replace earlier ones; a merged snapshot is never
        // replaced by an earlier-state one that arrived late.
        let mut latest: HashMap<(String, u64), &'a PullRequest> = HashMap::new();
        for e in evidence {
            match e {
                Evidence::PullRequest(pr) => {
                    let key = (pr.repository.clone(), pr.number);
                    let keep_old = latest.get(&key).is_some_and(|old| {
                        old.state == PullRequestState::Merged
                            && pr.state != PullRequestState::Merged
                    });
                    if !keep_old {
                        latest.insert(key, pr);
                    }
                }
                Evidence::Review(r) => ix
                    .reviews
                    .entry((r.repository.clone(), r.number))
                    .or_default()
                    .push(r),
                Evidence::Push(p) => {
                    ix.pushes_by_branch
                        .entry((p.repository.clone(), p.git_ref.clone()))
                        .or_default()
                        .push(p);
                    for c in &p.commits {
                        ix.pushes_by_commit.entry(c.id.clone()).or_default().push(p);
                    }
                    if !p.commits.iter().any(|c| c.id == p.after) {
                        ix.pushes_by_commit
                            .entry(p.after.clone())
                            .or_default()
                            .push(p);
                    }
                }
                Evidence::Check(c) => ix.checks_by_sha.entry(c.sha.clone()).or_default().push(c),
                Evidence::ProtectionOverride(o) => {
                    if let Some(c) = &o.commit {
                        ix.overrides_by_commit.entry(c.clone()).or_default().push(o);
                    }
                    ix.overrides.push(o);
                }
                Evidence::ProtectionChange(p) => ix.protection_changes.push(p),
                Evidence::Deployment(_) | Evidence::DeploymentStatus(_) => {}
            }
        }
        for pr in latest.into_values() {
            if pr.state == PullRequestState::Merged {
                for sha in [&pr.merge_commit_sha, &pr.squash_commit_sha]
                    .into_iter()
                    .flatten()
                {
                    ix.pr_by_sha.insert(sha.clone(), pr);
                }
            }
            ix.prs_by_number.entry(pr.number).or_default().push(pr);
        }
        for c in changes.values() {
            let named = [
                c.approved_artifact.as_deref(),
                c.deployment.as_ref().map(|d| d.artifact.as_str()),
            ];
            for a in named.into_iter().flatten() {
                ix.changes_by_artifact
                    .entry(a.trim().to_lowercase())
                    .or_insert(c);
            }
        }
        ix
    }

    fn pr_by_number(&self, number: u64, repository: Option<&str>) -> Option<&'a PullRequest> {
        let prs = self.prs_by_number.get(&number)?;
        match repository {
            Some(repo) => prs.iter().copied().find(|p| p.repository == repo),
            None if prs.len() == 1 => prs.first().copied(),
            None => None,
        }
    }
}

/// Whether two references name the same commit or artifact: equal, in any case. An
/// abbreviation is not taken to name a longer id: a commit whose id starts with given digits
/// can be made at will.
fn same_commit(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}

/// An instant to the whole second. Git and most pipelines record whole seconds while
/// changegate records fractions, so every comparison is made at the coarser resolution:
/// within one second, neither can be shown to come first, and no exception is raised on it.
fn instant(s: &str) -> Option<OffsetDateTime> {
    let t = parse_instant("time", s).ok()?;
    t.replace_nanosecond(0).ok()
}

/// Runs the reconciliation.
pub fn reconcile(inputs: &Inputs<'_>) -> Report {
    let ix = Index::new(inputs.evidence, inputs.changes);
    let aliases = Aliases(inputs.rules.aliases.clone());
    let ctx = || Ctx {
        inputs,
        ix: &ix,
        aliases: &aliases,
        valid: RefCell::default(),
        met: RefCell::default(),
    };
    let n = inputs.events.len();
    // A revert is judged after the commit it reverts, and a deployment after the commits it
    // carries (events are newest first, so oldest first is backwards). Every other commit
    // stands alone: those are judged first, on every core.
    let needs_prior = |e: &ProductionEvent| match e {
        ProductionEvent::Commit(c) => c.reverts.is_some(),
        ProductionEvent::Deployment(_) => true,
    };
    let mut rows: Vec<Option<VerdictRow>> = vec![None; n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let no_commits: HashMap<String, usize> = HashMap::new();
    std::thread::scope(|scope| {
        let no_rows: &[Option<VerdictRow>] = &[];
        let no_commits = &no_commits;
        for (k, part) in rows.chunks_mut(chunk).enumerate() {
            let ctx = &ctx;
            let needs_prior = &needs_prior;
            scope.spawn(move || {
                let c = ctx();
                for (j, slot) in part.iter_mut().enumerate() {
                    if let ProductionEvent::Commit(e) = &inputs.events[k * chunk + j] {
                        if !needs_prior(&inputs.events[k * chunk + j]) {
                            *slot = Some(c.commit(e, no_rows, no_commits));
                        }
                    }
                }
            });
        }
    });
    let ctx = ctx();
    let mut by_commit: HashMap<String, usize> = HashMap::new();
    for i in (0..n).rev() {
        if rows[i].is_none() {
            let row = match &inputs.events[i] {
                ProductionEvent::Commit(c) => ctx.commit(c, &rows, &by_commit),
                ProductionEvent::Deployment(d) => ctx.deployment(d, &rows, &by_commit),
            };
            rows[i] = Some(row);
        }
        if let ProductionEvent::Commit(c) = &inputs.events[i] {
            // Lower case: commit references match in any case (see `same_commit`).
            by_commit.insert(c.id.trim().to_ascii_lowercase(), i);
        }
    }
    let events: Vec<VerdictRow> = rows.into_iter().flatten().collect();
    let mut summary = Summary {
        events: events.len() as u64,
        matched: 0,
        unauthorized: 0,
        exceptions: 0,
        exceptions_by_code: BTreeMap::new(),
    };
    for row in &events {
        match row.verdict {
            Verdict::Ok => summary.matched += 1,
            Verdict::Exception => {
                summary.matched += 1;
                summary.exceptions += 1;
            }
            Verdict::Unauthorized => summary.unauthorized += 1,
        }
        for code in &row.exceptions {
            *summary.exceptions_by_code.entry(code.clone()).or_default() += 1;
        }
    }
    let population = population_hash(events.iter().map(|r| r.commit.as_str()));
    let mut findings = Vec::new();
    for p in &ix.protection_changes {
        if !p.weakened.is_empty() {
            findings.push(Finding {
                code: "protection_weakened".into(),
                repository: p.repository.clone(),
                actor: p.actor.login.clone(),
                at: p.at.clone(),
                detail: format!(
                    "branch protection `{}` {}: weakened {}",
                    p.pattern,
                    p.action,
                    p.weakened.join(", ")
                ),
            });
        }
    }
    for o in &ix.overrides {
        findings.push(Finding {
            code: "protection_bypassed".into(),
            repository: o.repository.clone(),
            actor: o.actor.login.clone(),
            at: o.at.clone(),
            detail: format!(
                "branch `{}` protection bypassed by {} ({}){}",
                o.branch,
                o.actor.login,
                o.mechanism,
                o.commit
                    .as_ref()
                    .map(|c| format!(" for commit {c}"))
                    .unwrap_or_default()
            ),
        });
    }
    Report {
        summary,
        population,
        events,
        findings,
    }
}

/// A change's valid approvals of one step, shared from the cache.
type ValidApprovals = Rc<Vec<domain::Approval>>;

struct Ctx<'a, 'b> {
    inputs: &'a Inputs<'b>,
    ix: &'a Index<'b>,
    aliases: &'a Aliases,
    /// Each change's valid approvals per step, and whether its requirements are met per
    /// action: both digest the change's content, so they are worked out once per change.
    /// Keyed by the change's address: every change outlives the reconciliation.
    valid: RefCell<HashMap<(usize, ApprovalStep), ValidApprovals>>,
    met: RefCell<HashMap<(usize, ActionKind), bool>>,
}

/// How an event found its change.
struct Link<'c> {
    change: Option<&'c Change>,
    by: Option<&'static str>,
    notes: Vec<String>,
    /// Change ids named that do not exist.
    unknown: Vec<String>,
}

/// One approving decision considered for independent review.
struct Decision {
    who: String,
    at: String,
    commit: Option<String>,
    source: &'static str,
    bot: bool,
}

impl<'a, 'b> Ctx<'a, 'b> {
    /// The change's valid approvals of a step (see [`Change::valid_approvals`]).
    fn valid(&self, change: &Change, step: ApprovalStep) -> ValidApprovals {
        let key = (std::ptr::from_ref(change) as usize, step);
        if let Some(v) = self.valid.borrow().get(&key) {
            return v.clone();
        }
        let v: Rc<Vec<domain::Approval>> = Rc::new(change.valid_approvals(step).cloned().collect());
        self.valid.borrow_mut().insert(key, v.clone());
        v
    }

    /// Whether the change's approvals meet the policy's requirements for an action.
    fn met(&self, change: &Change, kind: ActionKind) -> bool {
        let key = (std::ptr::from_ref(change) as usize, kind);
        if let Some(m) = self.met.borrow().get(&key) {
            return *m;
        }
        let m = domain::decide::requirement_met(change, self.inputs.policy, kind);
        self.met.borrow_mut().insert(key, m);
        m
    }

    fn change(&self, id: &str) -> Option<&'b Change> {
        self.inputs.changes.get(id)
    }

    /// Finds the change named by ids, in order; ids that name nothing are reported.
    fn by_ids<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i String>,
        link: &mut Link<'b>,
        by: &'static str,
    ) {
        for id in ids {
            if link.change.is_some() {
                return;
            }
            match self.change(id) {
                Some(c) => {
                    link.change = Some(c);
                    link.by = Some(by);
                }
                None => {
                    if !link.unknown.contains(id) {
                        link.unknown.push(id.clone());
                    }
                }
            }
        }
    }

    fn by_artifact(&self, artifact: &str, link: &mut Link<'b>) {
        if link.change.is_some() {
            return;
        }
        let found = self
            .ix
            .changes_by_artifact
            .get(&artifact.trim().to_lowercase())
            .copied();
        if let Some(c) = found {
            link.change = Some(c);
            link.by = Some("artifact");
        }
    }

    fn by_standing(&self, people: &[String], link: &mut Link<'b>) {
        if link.change.is_some() {
            return;
        }
        for s in &self.inputs.rules.standing_changes {
            let covers = s
                .authors
                .iter()
                .any(|a| people.contains(&self.aliases.canonical(a)));
            if covers {
                if let Some(c) = self.change(&s.change) {
                    link.change = Some(c);
                    link.by = Some("standing_change");
                    return;
                }
            }
        }
    }

    /// The pull request of a commit: the platform's merge or squash commit first; a number
    /// in the message only when the platform does not contradict it.
    fn pull_request(
        &self,
        c: &CommitEvent,
        notes: &mut Vec<String>,
    ) -> (Option<&'b PullRequest>, Option<u64>) {
        if let Some(pr) = self.ix.pr_by_sha.get(&c.id) {
            return (Some(pr), Some(pr.number));
        }
        let Some(n) = c.pull_request else {
            return (None, None);
        };
        match self
            .ix
            .pr_by_number(n, self.inputs.rules.repository.as_deref())
        {
            Some(pr) => {
                let landed: Vec<&String> = [&pr.merge_commit_sha, &pr.squash_commit_sha]
                    .into_iter()
                    .flatten()
                    .collect();
                if pr.state == PullRequestState::Merged && !landed.is_empty() {
                    notes.push(format!(
                        "the message names #{n}, but the platform merged #{n} as {}: the claim is \
                         not trusted",
                        landed
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    (None, None)
                } else {
                    notes.push(format!("linked to #{n} by the commit message"));
                    (Some(pr), Some(n))
                }
            }
            None => (None, Some(n)),
        }
    }

    /// Everyone who contributed to `c`: authors, committers, claimed co-authors and pushers
    /// of the commit, of the commits a merge brought in and of the commits pushed to the pull
    /// request's branch up to its merge; with how each is known, and, when fewer commits are
    /// known than the pull request declares, what is missing.
    fn contributors(&self, c: &CommitEvent, pr: Option<&PullRequest>) -> Contributors {
        let mut people = BTreeSet::new();
        let mut described = Vec::new();
        let mut add = |names: Vec<String>, what: String| {
            if !names.is_empty() && !described.contains(&what) {
                described.push(what);
            }
            people.extend(names);
        };
        let git_person = |p: &Person| !is_web_flow(p);
        add(
            self.aliases.person(&c.author),
            format!("author {}", c.author.name),
        );
        if git_person(&c.committer) {
            add(
                self.aliases.person(&c.committer),
                format!("committer {}", c.committer.name),
            );
        }
        let mut carried_people = Vec::new();
        for k in &c.carried {
            carried_people.push((&k.author, "author"));
            if git_person(&k.committer) {
                carried_people.push((&k.committer, "committer"));
            }
            if self.inputs.rules.coauthors_are_contributors {
                for co in &k.co_authors {
                    carried_people.push((co, "claimed co-author"));
                }
            }
        }
        if self.inputs.rules.coauthors_are_contributors {
            for co in &c.co_authors {
                carried_people.push((co, "claimed co-author"));
            }
        }
        for (p, what) in carried_people {
            add(self.aliases.person(p), format!("{what} {}", p.name));
        }
        let mut known: BTreeSet<&str> = c.carried.iter().map(|k| k.id.as_str()).collect();
        let mut incomplete = None;
        if let Some(pr) = pr {
            add(
                vec![self.aliases.canonical(&pr.author.login)],
                format!("pull request author {}", pr.author.login),
            );
            // A branch name can be used again for later work: taking in its pushes from
            // before this pull request can only add contributors, never hide one.
            let branch = (pr.repository.clone(), format!("refs/heads/{}", pr.head_ref));
            let merged = pr.merged_at.as_deref().and_then(instant);
            for push in self.ix.pushes_by_branch.get(&branch).into_iter().flatten() {
                let pushed = push.at.as_deref().and_then(instant);
                if let (Some(pushed), Some(merged)) = (pushed, merged) {
                    if pushed > merged {
                        continue;
                    }
                }
                add(
                    vec![self.aliases.canonical(&push.pusher.login)],
                    format!("pusher {} to {}", push.pusher.login, pr.head_ref),
                );
                for k in &push.commits {
                    if !known.insert(k.id.as_str()) {
                        continue;
                    }
                    add(
                        self.aliases.person(&k.author),
                        format!("author {}", k.author.name),
                    );
                    if let Some(committer) = k.committer.as_ref().filter(|p| git_person(p)) {
                        add(
                            self.aliases.person(committer),
                            format!("committer {}", committer.name),
                        );
                    }
                }
            }
            if let Some(declared) = pr.commits {
                let found = known.iter().filter(|id| !same_commit(id, &c.id)).count() as u64;
                if found < declared {
                    incomplete = Some(format!(
                        "pull request #{} declares {declared} commit(s) and {found} are known, so \
                         not every contributor is known",
                        pr.number
                    ));
                }
            }
        }
        let mut ids: Vec<&str> = vec![c.id.as_str()];
        ids.extend(c.carried.iter().map(|k| k.id.as_str()));
        for id in ids {
            for push in self.ix.pushes_by_commit.get(id).into_iter().flatten() {
                add(
                    vec![self.aliases.canonical(&push.pusher.login)],
                    format!("pusher {}", push.pusher.login),
                );
            }
        }
        described.dedup();
        Contributors {
            people,
            described,
            incomplete,
        }
    }

    fn commit(
        &self,
        c: &CommitEvent,
        rows: &[Option<VerdictRow>],
        by_commit: &HashMap<String, usize>,
    ) -> VerdictRow {
        let mut notes = Vec::new();
        if c.lossy {
            notes.push("the commit message is not valid UTF-8 and was read lossily".into());
        }
        let (pr, pr_number) = self.pull_request(c, &mut notes);
        let mut link = Link {
            change: None,
            by: None,
            notes: Vec::new(),
            unknown: Vec::new(),
        };
        if let Some(pr) = pr {
            let mut ids = evidence::change_ids(&pr.title);
            ids.extend(evidence::change_ids(&pr.head_ref));
            self.by_ids(&ids, &mut link, "change_id");
            if link.change.is_some() && self.ix.pr_by_sha.contains_key(&c.id) {
                link.by = Some("platform");
            }
        }
        self.by_ids(&c.change_ids, &mut link, "change_id");
        self.by_artifact(&c.id, &mut link);
        let contributors = self.contributors(c, pr);
        let people: Vec<String> = contributors.people.iter().cloned().collect();
        self.by_standing(&people, &mut link);
        if link.change.is_none() {
            if let Some(reverted) = &c.reverts {
                let prior = by_commit
                    .get(&reverted.trim().to_ascii_lowercase())
                    .and_then(|i| rows[*i].as_ref());
                if let Some(change) = prior
                    .and_then(|r| r.change.as_deref())
                    .and_then(|id| self.change(id))
                {
                    link.change = Some(change);
                    link.by = Some("revert");
                    link.notes.push(format!(
                        "revert of {reverted}, tied to the change it reverts"
                    ));
                }
            }
        }
        notes.append(&mut link.notes);
        for id in &link.unknown {
            notes.push(format!("names `{id}`, which is not a change record"));
        }
        let mut row = VerdictRow {
            commit: c.id.clone(),
            change: link.change.map(|ch| ch.id.clone()),
            verdict: Verdict::Ok,
            exceptions: Vec::new(),
            source: "commit".into(),
            deployment: None,
            at: c.commit_time.clone(),
            subject: c.subject.clone(),
            author: c.author.name.clone(),
            pull_request: pr_number,
            linked_by: link.by.map(str::to_string),
            reverts: c.reverts.clone(),
            environment: None,
            attributes: Vec::new(),
            notes,
        };
        let mut codes = Vec::new();
        for o in self.ix.overrides_by_commit.get(&c.id).into_iter().flatten() {
            codes.push("protection_bypassed".to_string());
            row.notes.push(format!(
                "protection bypassed by {} ({})",
                o.actor.login, o.mechanism
            ));
        }
        for p in self.ix.pushes_by_commit.get(&c.id).into_iter().flatten() {
            if p.forced {
                codes.push("forced_push".to_string());
                row.notes
                    .push(format!("force-pushed by {}", p.pusher.login));
            }
        }
        let Some(change) = link.change else {
            codes.insert(0, "no_change_record".into());
            if !link.unknown.is_empty() {
                codes.insert(1, "unknown_change".into());
            }
            row.verdict = Verdict::Unauthorized;
            row.exceptions = dedup(codes);
            return row;
        };
        let model = self
            .inputs
            .policy
            .model(change.change_type, change.category, change.testable);
        let work_started = pr
            .map(|p| p.created_at.clone())
            .into_iter()
            .chain(std::iter::once(c.author_time.clone()))
            .chain(c.carried.iter().map(|k| k.commit_time.clone()))
            .filter_map(|t| instant(&t).map(|i| (i, t)))
            .min();
        row.attributes.push(self.authorized(
            change,
            &model,
            work_started.as_ref().map(|(_, t)| t.as_str()),
        ));
        row.attributes
            .push(self.reviewed(change, &model, c, pr, &contributors));
        row.attributes.push(self.tested(
            change,
            &model,
            &[Some(c.id.as_str()), pr.map(|p| p.head_sha.as_str())],
        ));
        if let Some(a) = self.emergency(change, instant(&c.commit_time)) {
            row.attributes.push(a);
        }
        self.finish(&mut row, codes);
        row
    }

    fn deployment(
        &self,
        d: &Deployment,
        rows: &[Option<VerdictRow>],
        by_commit: &HashMap<String, usize>,
    ) -> VerdictRow {
        let mut link = Link {
            change: None,
            by: None,
            notes: Vec::new(),
            unknown: Vec::new(),
        };
        let mut ids = Vec::new();
        if let Some(desc) = &d.description {
            ids.extend(evidence::change_ids(desc));
        }
        self.by_artifact(&d.artifact, &mut link);
        self.by_ids(&ids, &mut link, "change_id");
        // The change of the commit deployed, as this run or the platform linked it.
        let carried: Vec<&VerdictRow> = std::iter::once(&d.artifact)
            .chain(d.commits.iter())
            .filter_map(|sha| {
                by_commit
                    .get(&sha.trim().to_ascii_lowercase())
                    .and_then(|i| rows[*i].as_ref())
            })
            .collect();
        if link.change.is_none() {
            if let Some(id) = carried.first().and_then(|r| r.change.clone()) {
                link.change = self.change(&id);
                link.by = Some("commit");
            }
        }
        if link.change.is_none() {
            if let Some(pr) = self.ix.pr_by_sha.get(&d.artifact) {
                let mut ids = evidence::change_ids(&pr.title);
                ids.extend(evidence::change_ids(&pr.head_ref));
                self.by_ids(&ids, &mut link, "platform");
            }
        }
        let mut row = VerdictRow {
            commit: d.artifact.clone(),
            change: link.change.map(|c| c.id.clone()),
            verdict: Verdict::Ok,
            exceptions: Vec::new(),
            source: "deployment".into(),
            deployment: Some(format!("{}/{}", d.system, d.id)),
            at: d.at.clone(),
            subject: d
                .description
                .clone()
                .unwrap_or_else(|| format!("deployment {} of {}", d.id, d.system)),
            author: d.actor.login.clone(),
            pull_request: None,
            linked_by: link.by.map(str::to_string),
            reverts: None,
            environment: Some(d.environment.clone()),
            attributes: Vec::new(),
            notes: link.notes,
        };
        for id in &link.unknown {
            row.notes
                .push(format!("names `{id}`, which is not a change record"));
        }
        let mut codes = Vec::new();
        let unauthorized_inside: Vec<&str> = carried
            .iter()
            .filter(|r| r.verdict == Verdict::Unauthorized)
            .map(|r| r.commit.as_str())
            .collect();
        if !unauthorized_inside.is_empty() {
            codes.push("contains_unauthorized_commits".to_string());
            row.notes.push(format!(
                "carries unauthorized commits {}",
                unauthorized_inside.join(", ")
            ));
        }
        let Some(change) = link.change else {
            codes.insert(0, "no_change_record".into());
            row.verdict = Verdict::Unauthorized;
            row.exceptions = dedup(codes);
            return row;
        };
        let model = self
            .inputs
            .policy
            .model(change.change_type, change.category, change.testable);
        let at = instant(&d.at);
        if let Some(a) = system_covered(change, d) {
            row.attributes.push(a);
        }
        row.attributes
            .push(self.tested(change, &model, &[Some(d.artifact.as_str())]));
        if let Some(a) = self.emergency(change, at) {
            row.attributes.push(a);
        } else {
            row.attributes
                .push(self.deployment_approved(change, at, &d.at));
            row.attributes.push(self.in_window(change, at, &d.at));
        }
        row.attributes.push(self.deployer(change, d, &carried));
        self.finish(&mut row, codes);
        row
    }

    fn finish(&self, row: &mut VerdictRow, mut codes: Vec<String>) {
        for a in &row.attributes {
            codes.extend(a.codes.iter().cloned());
        }
        row.exceptions = dedup(codes);
        row.verdict = if row.exceptions.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Exception
        };
    }

    fn authorized(
        &self,
        change: &Change,
        model: &domain::policy::ChangeModel,
        work_started: Option<&str>,
    ) -> Attribute {
        let name = "authorized_before_work";
        if change.change_type == ChangeType::Emergency {
            return attr(
                name,
                AttributeResult::NotApplicable,
                "emergency change: approved after the fact (see emergency_approval)",
            );
        }
        if matches!(change.stage, Stage::Rejected | Stage::Cancelled) {
            return fail(
                name,
                "change_not_authorized",
                format!("`{}` was {}", change.id, change.stage),
            );
        }
        if !model.includes(Stage::Authorized) {
            return attr(
                name,
                AttributeResult::Pass,
                format!(
                    "`{}` is a {} change, authorized by its model",
                    change.id, change.change_type
                ),
            );
        }
        let approvals = self.valid(change, ApprovalStep::Authorization);
        if approvals.is_empty() || !self.met(change, ActionKind::Authorize) {
            return fail(
                name,
                "change_not_authorized",
                format!(
                    "`{}` has no authorization that covers its current content",
                    change.id
                ),
            );
        }
        let last = approvals
            .iter()
            .map(|a| a.at.as_str())
            .max()
            .unwrap_or_default();
        let by: Vec<&str> = approvals.iter().map(|a| a.by.as_str()).collect();
        match work_started {
            Some(start) if instant(last) > instant(start) => fail(
                name,
                "authorized_after_work_started",
                format!(
                    "authorized by {} at {last}, after work started at {start}",
                    by.join(", ")
                ),
            ),
            Some(start) => attr(
                name,
                AttributeResult::Pass,
                format!(
                    "authorized by {} at {last}, before work started at {start}",
                    by.join(", ")
                ),
            ),
            None => attr(
                name,
                AttributeResult::Pass,
                format!("authorized by {} at {last}", by.join(", ")),
            ),
        }
    }

    fn reviewed(
        &self,
        change: &Change,
        model: &domain::policy::ChangeModel,
        c: &CommitEvent,
        pr: Option<&PullRequest>,
        contributors: &Contributors,
    ) -> Attribute {
        let Contributors {
            people,
            described,
            incomplete,
        } = contributors;
        let name = "independent_review";
        if domain::decide::needs_retroactive_approval(change) {
            return attr(
                name,
                AttributeResult::NotApplicable,
                format!(
                    "`{}` went out as an emergency; its approval after the fact judges it",
                    change.id
                ),
            );
        }
        if !model.includes(Stage::PeerReviewed) {
            return attr(
                name,
                AttributeResult::NotApplicable,
                format!(
                    "the {} model of `{}` skips peer review",
                    change.category, change.id
                ),
            );
        }
        let mut decisions = Vec::new();
        if let Some(pr) = pr {
            decisions.extend(self.platform_approvals(pr));
        }
        for a in self.valid(change, ApprovalStep::PeerReview).iter() {
            let machine = self.inputs.users.get(&a.by).is_some_and(|u| u.machine);
            decisions.push(Decision {
                who: self.aliases.canonical(&a.by),
                at: a.at.clone(),
                commit: None,
                source: "changegate peer review",
                bot: machine || is_bot(&a.by, &self.inputs.rules.bots),
            });
        }
        // The last commit the approval must follow: the newest carried commit of a merge,
        // the commit itself otherwise (a squash commit is made at merge time, so its
        // pull request's head is judged by commit id instead).
        let last_commit = c
            .carried
            .iter()
            .map(|k| k.commit_time.as_str())
            .filter_map(|t| instant(t).map(|i| (i, t)))
            .max()
            .or_else(|| {
                if pr.is_some() {
                    None
                } else {
                    instant(&c.commit_time).map(|i| (i, c.commit_time.as_str()))
                }
            });
        let head = pr.map(|p| p.head_sha.as_str());
        let mut counted = Vec::new();
        let mut excluded = Vec::new();
        let mut codes = Vec::new();
        for d in &decisions {
            if d.bot {
                excluded.push(format!("{} ({}): not counted, automation", d.who, d.source));
                continue;
            }
            if people.contains(&d.who) {
                excluded.push(format!(
                    "{} ({}): not counted, a contributor",
                    d.who, d.source
                ));
                codes.push("approved_by_contributor");
                continue;
            }
            let stale_by_commit = match (&d.commit, head) {
                (Some(given), Some(head)) => !same_commit(given, head),
                _ => false,
            };
            let stale_by_time = d.commit.is_none()
                && last_commit.is_some_and(|(last, _)| instant(&d.at).is_some_and(|at| at < last));
            if stale_by_commit || stale_by_time {
                let why = if stale_by_commit {
                    format!(
                        "given on {}, not the merged head {}",
                        d.commit.as_deref().unwrap_or("?"),
                        head.unwrap_or("?")
                    )
                } else {
                    format!(
                        "given at {}, before the last commit at {}",
                        d.at,
                        last_commit.map(|(_, t)| t).unwrap_or("?")
                    )
                };
                excluded.push(format!(
                    "{} ({}): not counted, stale: {why}",
                    d.who, d.source
                ));
                codes.push("stale_approval");
                continue;
            }
            if !counted.contains(&d.who) {
                counted.push(d.who.clone());
            }
        }
        let required = self.inputs.rules.required_approvals.max(1);
        let mut text = format!(
            "{} independent approval(s) of {required} required{}; contributors: {}",
            counted.len(),
            if counted.is_empty() {
                String::new()
            } else {
                format!(" ({})", counted.join(", "))
            },
            if described.is_empty() {
                "none known".to_string()
            } else {
                described.join(", ")
            }
        );
        if !excluded.is_empty() {
            text.push_str("; ");
            text.push_str(&excluded.join("; "));
        }
        if let Some(missing) = incomplete {
            text.push_str("; ");
            text.push_str(missing);
        }
        if counted.len() >= required && incomplete.is_none() {
            attr(name, AttributeResult::Pass, text)
        } else {
            let mut all = vec![];
            if counted.len() < required {
                all.push("no_independent_review");
            }
            if incomplete.is_some() {
                all.push("contributors_incomplete");
            }
            all.extend(codes);
            fail(
                name,
                &dedup(all.into_iter().map(str::to_string).collect()).join("+"),
                text,
            )
        }
    }

    /// Approving decisions on a pull request: the latest decisive state of each reviewer.
    fn platform_approvals(&self, pr: &PullRequest) -> Vec<Decision> {
        let mut reviews: Vec<&Review> = self
            .ix
            .reviews
            .get(&(pr.repository.clone(), pr.number))
            .map(|v| v.to_vec())
            .unwrap_or_default();
        reviews.sort_by_key(|r| instant(&r.at));
        if let Some(merged) = pr.merged_at.as_deref().and_then(instant) {
            reviews.retain(|r| instant(&r.at).is_none_or(|at| at <= merged));
        }
        let mut standing: BTreeMap<String, Option<&Review>> = BTreeMap::new();
        for r in reviews {
            let who = self.aliases.canonical(&r.reviewer.login);
            match r.state {
                ReviewState::Approved => {
                    standing.insert(who, Some(r));
                }
                ReviewState::ChangesRequested
                | ReviewState::Dismissed
                | ReviewState::Unapproved => {
                    standing.insert(who, None);
                }
                ReviewState::Commented => {}
            }
        }
        standing
            .into_iter()
            .filter_map(|(who, r)| {
                r.map(|r| Decision {
                    bot: r.reviewer.bot || is_bot(&r.reviewer.login, &self.inputs.rules.bots),
                    who,
                    at: r.at.clone(),
                    commit: r.commit.clone(),
                    source: "pull request review",
                })
            })
            .collect()
    }

    fn tested(
        &self,
        change: &Change,
        model: &domain::policy::ChangeModel,
        shas: &[Option<&str>],
    ) -> Attribute {
        let name = "tests_passed";
        if !model.includes(Stage::Tested) {
            return attr(
                name,
                AttributeResult::NotApplicable,
                format!("`{}` is not testable; its model skips testing", change.id),
            );
        }
        if domain::decide::needs_retroactive_approval(change) {
            return attr(
                name,
                AttributeResult::NotApplicable,
                format!("`{}` went out as an emergency before testing; its approval after the fact judges it", change.id),
            );
        }
        if let Some(t) = self.valid(change, ApprovalStep::Test).first() {
            return attr(
                name,
                AttributeResult::Pass,
                format!("test passed, recorded by {} at {}", t.by, t.at),
            );
        }
        let checks: Vec<&Check> = shas
            .iter()
            .flatten()
            .filter_map(|s| self.ix.checks_by_sha.get(*s))
            .flatten()
            .copied()
            .collect();
        let failed: Vec<&Check> = checks
            .iter()
            .copied()
            .filter(|c| {
                matches!(
                    c.conclusion.as_deref(),
                    Some("failure" | "timed_out" | "cancelled" | "failed")
                )
            })
            .collect();
        let passed = checks
            .iter()
            .any(|c| matches!(c.conclusion.as_deref(), Some("success")) || c.status == "success");
        if passed && failed.is_empty() {
            return attr(
                name,
                AttributeResult::Pass,
                format!("{} passing check(s) on the commit", checks.len()),
            );
        }
        let text = if failed.is_empty() {
            format!(
                "`{}` has no passing test record and no passing check",
                change.id
            )
        } else {
            format!(
                "failing checks: {}",
                failed
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        fail(name, "tests_not_passed", text)
    }

    fn emergency(&self, change: &Change, at: Option<OffsetDateTime>) -> Option<Attribute> {
        if change.change_type != ChangeType::Emergency {
            return None;
        }
        let name = "emergency_approval";
        let found = domain::exceptions(change, self.inputs.policy, self.inputs.as_of);
        let mut codes: Vec<String> = found.iter().map(|e| e.code.clone()).collect();
        let mut text: Vec<String> = found.iter().map(|e| e.message.clone()).collect();
        let requested = instant(&change.created_at);
        let low = matches!(change.risk, None | Some(Level::Low));
        let planned_ahead = match (requested, at) {
            (Some(r), Some(a)) => {
                (a - r).whole_hours() >= self.inputs.rules.emergency_suspect_hours
            }
            _ => false,
        };
        let incident =
            has_incident_reference(&change.title) || has_incident_reference(&change.description);
        if low && planned_ahead && !incident {
            codes.push("suspect_emergency".into());
            text.push(format!(
                "requested {} hours or more before it went out, at low risk, naming no incident: \
                 an emergency used to skip the CAB?",
                self.inputs.rules.emergency_suspect_hours
            ));
        }
        if codes.is_empty() {
            let retro = change
                .retroactive_approval()
                .map(|a| format!("approved after the fact by {} at {}", a.by, a.at))
                .unwrap_or_else(|| "approved before deployment".into());
            return Some(attr(name, AttributeResult::Pass, retro));
        }
        Some(fail(name, &codes.join("+"), text.join("; ")))
    }

    fn deployment_approved(
        &self,
        change: &Change,
        at: Option<OffsetDateTime>,
        at_text: &str,
    ) -> Attribute {
        let name = "approved_for_deployment";
        let approvals = self.valid(change, ApprovalStep::Deployment);
        if approvals.is_empty() || !self.met(change, ActionKind::ApproveDeployment) {
            return fail(
                name,
                "deployment_not_approved",
                format!(
                    "`{}` has no deployment approval covering its content",
                    change.id
                ),
            );
        }
        let last = approvals
            .iter()
            .map(|a| a.at.as_str())
            .max()
            .unwrap_or_default();
        let by: Vec<&str> = approvals.iter().map(|a| a.by.as_str()).collect();
        match (instant(last), at) {
            (Some(l), Some(a)) if l > a => fail(
                name,
                "deployed_before_approval",
                format!(
                    "deployed at {at_text}, approved by {} only at {last}",
                    by.join(", ")
                ),
            ),
            _ => attr(
                name,
                AttributeResult::Pass,
                format!(
                    "approved by {} at {last}, deployed at {at_text}",
                    by.join(", ")
                ),
            ),
        }
    }

    fn in_window(&self, change: &Change, at: Option<OffsetDateTime>, at_text: &str) -> Attribute {
        let name = "inside_window";
        let Some(w) = &change.window else {
            return fail(
                name,
                "outside_window",
                format!("`{}` has no approved window", change.id),
            );
        };
        match (instant(&w.start), instant(&w.end), at) {
            (Some(s), Some(e), Some(a)) if (s..e).contains(&a) => attr(
                name,
                AttributeResult::Pass,
                format!("{at_text} is inside [{}, {})", w.start, w.end),
            ),
            _ => fail(
                name,
                "outside_window",
                format!(
                    "{at_text} is outside the approved window [{}, {})",
                    w.start, w.end
                ),
            ),
        }
    }

    fn deployer(&self, change: &Change, d: &Deployment, carried: &[&VerdictRow]) -> Attribute {
        let name = "authorized_deployer";
        let who = self.aliases.canonical(&d.actor.login);
        let may_implement: BTreeSet<String> = self
            .inputs
            .policy
            .roles_for(ActionKind::Implement)
            .map(|r| r.as_str().to_string())
            .collect();
        let user = self
            .inputs
            .users
            .iter()
            .find(|(n, _)| self.aliases.canonical(n) == who)
            .map(|(_, u)| u);
        let Some(user) =
            user.filter(|u| u.active && u.roles.iter().any(|r| may_implement.contains(r)))
        else {
            return fail(
                name,
                "deployer_not_authorized",
                format!(
                    "{} is not an active changegate user with a role that may implement",
                    d.actor.login
                ),
            );
        };
        let _ = user;
        let approved_deploy = self
            .valid(change, ApprovalStep::Deployment)
            .iter()
            .chain(self.valid(change, ApprovalStep::PeerReview).iter())
            .any(|a| self.aliases.canonical(&a.by) == who);
        let wrote_code = change
            .assignee
            .as_deref()
            .is_some_and(|a| self.aliases.canonical(a) == who)
            || carried
                .iter()
                .any(|r| self.aliases.canonical(&r.author) == who);
        if approved_deploy && wrote_code {
            return fail(
                name,
                "deployer_approved_own_code",
                format!("{} wrote, approved and deployed this change", d.actor.login),
            );
        }
        attr(
            name,
            AttributeResult::Pass,
            format!("deployed by {}, who may implement", d.actor.login),
        )
    }
}

/// Whether the change covers the system a pipeline says it deployed. Code hosts name a
/// repository, not a system, so their deployments are not judged on it.
fn system_covered(change: &Change, d: &Deployment) -> Option<Attribute> {
    if d.host != evidence::Host::Pipeline || change.systems.is_empty() {
        return None;
    }
    let name = "system_covered";
    Some(if change.systems.iter().any(|s| s == &d.system) {
        attr(
            name,
            AttributeResult::Pass,
            format!("`{}` covers `{}`", change.id, d.system),
        )
    } else {
        fail(
            name,
            "system_not_covered",
            format!(
                "`{}` covers {}, not `{}`",
                change.id,
                change.systems.join(", "),
                d.system
            ),
        )
    })
}

fn attr(name: &str, result: AttributeResult, evidence: impl Into<String>) -> Attribute {
    Attribute {
        name: name.to_string(),
        result,
        codes: Vec::new(),
        evidence: evidence.into(),
    }
}

/// A failed attribute with its reason codes (`+` separates several).
fn fail(name: &str, codes: &str, evidence: impl Into<String>) -> Attribute {
    Attribute {
        name: name.to_string(),
        result: AttributeResult::Fail,
        codes: codes.split('+').map(str::to_string).collect(),
        evidence: evidence.into(),
    }
}

fn dedup(codes: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in codes {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// GitHub's web-flow committer signs merges made in the web interface; it is not a person.
fn is_web_flow(p: &Person) -> bool {
    p.email.eq_ignore_ascii_case("noreply@github.com")
}

fn has_incident_reference(text: &str) -> bool {
    let upper = text.to_uppercase();
    upper.match_indices("INC").any(|(i, _)| {
        let rest = &upper[i + 3..];
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        rest.starts_with(|c: char| c.is_ascii_digit())
    })
}
