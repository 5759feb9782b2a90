//! Reconciliation verdicts on hand-built production change events: one test per attribute
//! and per fault case of the kinds approvals, identities, bypasses, linkage and
//! populations. Changes are built through the real lifecycle (`domain::decide`), so every
//! record here is one the server could have written.

use std::collections::BTreeMap;

use audit::{
    reconcile, CarriedCommit, CommitEvent, Inputs, ProductionEvent, Report, Rules, StandingChange,
    UserFacts, Verdict,
};
use domain::action::parse_instant;
use domain::{Action, Actor, Change, Context, NewChange, Policy, Role};
use evidence::{
    Check, Deployment, Evidence, Host, Identity, Person, ProtectionOverride, PullRequest,
    PullRequestState, Review, ReviewState,
};
use serde_json::json;

fn t(s: &str) -> time::OffsetDateTime {
    parse_instant("t", s).expect("test time")
}

fn actor(name: &str) -> Actor {
    let roles = match name {
        "alice" => vec![Role::Requester, Role::Engineer],
        "bob" => vec![Role::Engineer, Role::PeerReviewer],
        "carol" => vec![Role::PeerReviewer, Role::Engineer],
        "dave" => vec![Role::Tester, Role::PeerReviewer],
        "erin" => vec![Role::ChangeManager, Role::CabMember],
        "gina" => vec![Role::ReleaseManager],
        other => panic!("no test actor {other}"),
    };
    Actor {
        name: name.into(),
        roles,
        groups: vec![],
        machine: false,
    }
}

fn users() -> BTreeMap<String, UserFacts> {
    ["alice", "bob", "carol", "dave", "erin", "gina"]
        .into_iter()
        .map(|n| {
            let roles = actor(n)
                .roles
                .iter()
                .map(|r| r.as_str().to_string())
                .collect();
            (
                n.to_string(),
                UserFacts {
                    roles,
                    machine: false,
                    active: true,
                },
            )
        })
        .collect()
}

/// Builds a change by deciding each step through the lifecycle; panics on a refusal.
fn build(policy: &Policy, id: &str, steps: &[(&str, &str, serde_json::Value)]) -> Change {
    let (at0, who0, req) = &steps[0];
    let new: NewChange = serde_json::from_value(req.clone()).expect("request");
    let a0 = actor(who0);
    let ctx = Context {
        policy,
        actor: &a0,
        now: t(at0),
    };
    let event = domain::request(&new, &ctx).expect("request accepted");
    let rec = domain::Recorded {
        time: at0.to_string(),
        actor: who0.to_string(),
    };
    let mut change = Change::replay(id, [(rec, &event)]).expect("fold");
    for (at, who, action) in &steps[1..] {
        let action: Action = serde_json::from_value(action.clone()).expect("action");
        let a = actor(who);
        let ctx = Context {
            policy,
            actor: &a,
            now: t(at),
        };
        let event = domain::decide(&change, &action, &ctx)
            .unwrap_or_else(|r| panic!("{who} {action:?} at {at}: {} {}", r.code, r.message));
        change.apply(
            &domain::Recorded {
                time: at.to_string(),
                actor: who.to_string(),
            },
            &event,
        );
    }
    change
}

fn request(title: &str, ty: &str) -> serde_json::Value {
    json!({"title": title, "description": "d", "type": ty, "category": "application",
           "systems": ["payments"]})
}

/// A normal change authorized at 09:00 on 2026-03-02 with bob assigned.
fn authorized(policy: &Policy, id: &str) -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        (
            "2026-03-01T08:00:00Z",
            "alice",
            request("Refund fix", "normal"),
        ),
        (
            "2026-03-01T08:30:00Z",
            "erin",
            json!({"action": "evaluate", "risk": "medium", "priority": "medium", "impact": "i"}),
        ),
        (
            "2026-03-01T09:00:00Z",
            "erin",
            json!({"action": "authorize", "assignee": "bob"}),
        ),
    ]
    .into_iter()
    .inspect(|_| {
        let _ = (policy, id);
    })
    .collect()
}

/// Authorized, planned, reviewed by carol at `review_at`, tested.
fn reviewed_change(policy: &Policy, id: &str, review_at: &'static str) -> Change {
    let mut steps = authorized(policy, id);
    steps.push((
        "2026-03-01T09:10:00Z",
        "bob",
        json!({"action": "plan", "implementation_plan": "p", "test_plan": "t",
               "rollback_plan": "r"}),
    ));
    steps.push((
        review_at,
        "carol",
        json!({"action": "peer_review", "decision": "approved"}),
    ));
    steps.push((
        "2026-03-05T10:00:00Z",
        "dave",
        json!({"action": "test", "result": "passed", "evidence": "ci"}),
    ));
    build(policy, id, &steps)
}

fn person(name: &str) -> Person {
    Person {
        name: name.into(),
        email: format!("{name}@corp.example"),
    }
}

fn commit(id: &str, author: &str, at: &str, subject: &str) -> CommitEvent {
    CommitEvent {
        id: id.into(),
        parents: vec![],
        author: person(author),
        committer: person(author),
        author_time: at.into(),
        commit_time: at.into(),
        subject: subject.into(),
        pull_request: None,
        source_branch: None,
        change_ids: evidence::change_ids(subject),
        co_authors: vec![],
        reverts: None,
        carried: vec![],
        lossy: false,
    }
}

fn carried(id: &str, author: &str, at: &str) -> CarriedCommit {
    CarriedCommit {
        id: id.into(),
        author: person(author),
        committer: person(author),
        commit_time: at.into(),
        co_authors: vec![],
    }
}

fn login(l: &str) -> Identity {
    Identity {
        login: l.into(),
        bot: l.ends_with("[bot]"),
    }
}

fn pr(number: u64, author: &str, title: &str, head: &str, merge: &str) -> Evidence {
    Evidence::PullRequest(PullRequest {
        host: Host::Github,
        repository: "acme/payments".into(),
        number,
        action: "closed".into(),
        title: title.into(),
        author: login(author),
        head_ref: format!("{author}/work"),
        head_sha: head.into(),
        base_ref: "main".into(),
        state: PullRequestState::Merged,
        created_at: "2026-03-02T09:30:00Z".into(),
        updated_at: None,
        merged_at: Some("2026-03-06T12:05:00Z".into()),
        merged_by: Some(login(author)),
        merge_commit_sha: Some(merge.into()),
        squash_commit_sha: None,
        commits: None,
        labels: vec![],
        url: None,
    })
}

fn review(number: u64, who: &str, state: ReviewState, commit: &str, at: &str) -> Evidence {
    Evidence::Review(Review {
        host: Host::Github,
        repository: "acme/payments".into(),
        number,
        reviewer: login(who),
        state,
        commit: Some(commit.into()),
        at: at.into(),
        dismissed_by: None,
    })
}

struct World {
    policy: Policy,
    rules: Rules,
    changes: BTreeMap<String, Change>,
    evidence: Vec<Evidence>,
}

impl World {
    fn new() -> Self {
        World {
            policy: Policy::default(),
            rules: Rules::default(),
            changes: BTreeMap::new(),
            evidence: vec![],
        }
    }

    fn add(&mut self, c: Change) {
        self.changes.insert(c.id.clone(), c);
    }

    fn run(&self, events: Vec<ProductionEvent>) -> Report {
        let users = users();
        reconcile(&Inputs {
            events: &events,
            evidence: &self.evidence,
            changes: &self.changes,
            users: &users,
            policy: &self.policy,
            rules: &self.rules,
            as_of: t("2026-12-01T00:00:00Z"),
        })
    }

    fn one(&self, event: ProductionEvent) -> (Verdict, Vec<String>, Option<String>) {
        let r = self.run(vec![event]);
        let row = &r.events[0];
        (row.verdict, row.exceptions.clone(), row.change.clone())
    }
}

fn codes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn merge_of(
    id: &str,
    author: &str,
    subject: &str,
    carried_commits: Vec<CarriedCommit>,
) -> CommitEvent {
    let mut c = commit(id, author, "2026-03-06T12:05:00Z", subject);
    c.committer = Person {
        name: "GitHub".into(),
        email: "noreply@github.com".into(),
    };
    c.carried = carried_commits;
    c
}

#[test]
fn a_direct_push_with_no_change_record_is_unauthorized() {
    let w = World::new();
    let (v, e, ch) = w.one(ProductionEvent::Commit(commit(
        "p1",
        "alice",
        "2026-06-02T09:00:00Z",
        "quick fix",
    )));
    assert_eq!(
        (v, e, ch),
        (Verdict::Unauthorized, codes(&["no_change_record"]), None)
    );
}

#[test]
fn a_change_id_that_names_no_record_is_unauthorized_and_said_so() {
    let w = World::new();
    let (v, e, _) = w.one(ProductionEvent::Commit(commit(
        "p1",
        "alice",
        "2026-06-02T09:00:00Z",
        "CHG-000404 fix",
    )));
    assert_eq!(
        (v, e),
        (
            Verdict::Unauthorized,
            codes(&["no_change_record", "unknown_change"])
        )
    );
}

#[test]
fn an_authorized_reviewed_tested_merge_is_ok() {
    let mut w = World::new();
    w.add(reviewed_change(
        &w.policy,
        "CHG-000001",
        "2026-03-04T10:00:00Z",
    ));
    let merge = merge_of(
        "m1",
        "bob",
        "Merge pull request #12 from bob/CHG-000001-refund",
        vec![carried("a1", "bob", "2026-03-03T10:00:00Z")],
    );
    let r = w.run(vec![ProductionEvent::Commit(merge)]);
    let row = &r.events[0];
    assert_eq!(row.verdict, Verdict::Ok, "{row:#?}");
    assert_eq!(row.change.as_deref(), Some("CHG-000001"));
    assert_eq!(r.summary.matched, 1);
}

#[test]
fn a_review_before_the_last_commit_is_stale() {
    let mut w = World::new();
    w.add(reviewed_change(
        &w.policy,
        "CHG-000001",
        "2026-03-04T10:00:00Z",
    ));
    let merge = merge_of(
        "m1",
        "bob",
        "Merge pull request #12 from bob/CHG-000001-refund",
        vec![
            carried("a2", "bob", "2026-03-04T11:00:00Z"),
            carried("a1", "bob", "2026-03-03T10:00:00Z"),
        ],
    );
    let (v, e, _) = w.one(ProductionEvent::Commit(merge));
    assert_eq!(
        (v, e),
        (
            Verdict::Exception,
            codes(&["no_independent_review", "stale_approval"])
        )
    );
}

#[test]
fn work_started_before_authorization_is_an_exception() {
    let mut w = World::new();
    w.add(reviewed_change(
        &w.policy,
        "CHG-000001",
        "2026-03-04T10:00:00Z",
    ));
    let merge = merge_of(
        "m1",
        "bob",
        "Merge pull request #12 from bob/CHG-000001-refund",
        vec![carried("a1", "bob", "2026-02-28T10:00:00Z")],
    );
    let (v, e, _) = w.one(ProductionEvent::Commit(merge));
    assert_eq!(
        (v, e),
        (
            Verdict::Exception,
            codes(&["authorized_after_work_started"])
        )
    );
}

#[test]
fn br01_approval_of_an_older_head_does_not_cover_the_merge() {
    let mut w = World::new();
    let mut steps = authorized(&w.policy, "CHG-000001");
    steps.push((
        "2026-03-01T09:10:00Z",
        "bob",
        json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
    ));
    w.add(build(&w.policy, "CHG-000001", &steps));
    w.evidence = vec![
        pr(101, "alice", "CHG-000001 refund", "a2", "m1"),
        review(
            101,
            "bob",
            ReviewState::Approved,
            "a1",
            "2026-03-02T11:00:00Z",
        ),
        Evidence::Check(Check {
            host: Host::Github,
            repository: "acme/payments".into(),
            sha: "a2".into(),
            name: "ci".into(),
            status: "completed".into(),
            conclusion: Some("success".into()),
            at: "2026-03-02T12:03:00Z".into(),
        }),
    ];
    let (v, e, ch) = w.one(ProductionEvent::Commit(merge_of(
        "m1",
        "alice",
        "Merge pull request #101",
        vec![],
    )));
    assert_eq!(ch.as_deref(), Some("CHG-000001"));
    assert_eq!(
        (v, e),
        (
            Verdict::Exception,
            codes(&["no_independent_review", "stale_approval"])
        )
    );
}

fn planned(w: &World, id: &str) -> Change {
    let mut steps = authorized(&w.policy, id);
    steps.push((
        "2026-03-01T09:10:00Z",
        "bob",
        json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
    ));
    steps.push((
        "2026-03-05T10:00:00Z",
        "dave",
        json!({"action": "test", "result": "passed", "evidence": "ci"}),
    ));
    // Testing needs peer review first in the default model; record it by erin's team.
    let _ = steps.pop();
    build(&w.policy, id, &steps)
}

#[test]
fn br05_a_committer_approving_does_not_count_and_another_reviewer_does() {
    let mut w = World::new();
    w.add(planned(&w, "CHG-000001"));
    let mut m = merge_of(
        "m105",
        "alice",
        "Merge pull request #105",
        vec![
            carried("a2", "bob", "2026-03-02T10:00:00Z"),
            carried("a1", "alice", "2026-03-02T09:40:00Z"),
        ],
    );
    m.change_ids = vec!["CHG-000001".into()];
    w.evidence = vec![
        pr(105, "alice", "refund", "a2", "m105"),
        review(
            105,
            "bob",
            ReviewState::Approved,
            "a2",
            "2026-03-03T09:00:00Z",
        ),
    ];
    let r = w.run(vec![ProductionEvent::Commit(m.clone())]);
    let row = &r.events[0];
    assert!(
        row.exceptions
            .contains(&"approved_by_contributor".to_string()),
        "{row:#?}"
    );
    assert!(row
        .exceptions
        .contains(&"no_independent_review".to_string()));
    let review_attr = row
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap();
    assert!(
        review_attr
            .evidence
            .contains("bob (pull request review): not counted, a contributor"),
        "{}",
        review_attr.evidence
    );

    // Scenario B: carol committed, dave approves as well; dave counts.
    w.evidence.push(review(
        105,
        "dave",
        ReviewState::Approved,
        "a2",
        "2026-03-03T09:30:00Z",
    ));
    let r = w.run(vec![ProductionEvent::Commit(m)]);
    let attr = r.events[0]
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap();
    assert_eq!(
        attr.result,
        audit::AttributeResult::Pass,
        "{}",
        attr.evidence
    );
}

#[test]
fn br06_a_claimed_co_author_cannot_approve() {
    let mut w = World::new();
    w.add(planned(&w, "CHG-000001"));
    let mut c1 = carried("s1", "alice", "2026-03-02T10:00:00Z");
    c1.co_authors = vec![person("carol")];
    let mut m = merge_of("m107", "alice", "Merge pull request #107", vec![c1]);
    m.change_ids = vec!["CHG-000001".into()];
    w.evidence = vec![
        pr(107, "alice", "x", "s1", "m107"),
        review(
            107,
            "carol",
            ReviewState::Approved,
            "s1",
            "2026-03-03T09:00:00Z",
        ),
    ];
    let r = w.run(vec![ProductionEvent::Commit(m.clone())]);
    let attr = r.events[0]
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap();
    assert!(
        attr.evidence.contains("claimed co-author carol"),
        "{}",
        attr.evidence
    );
    assert!(r.events[0]
        .exceptions
        .contains(&"approved_by_contributor".to_string()));
    // An organization that lets suggestion co-authors approve says so in its rules.
    w.rules.coauthors_are_contributors = false;
    let r = w.run(vec![ProductionEvent::Commit(m)]);
    let attr = r.events[0]
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap();
    assert_eq!(
        attr.result,
        audit::AttributeResult::Pass,
        "{}",
        attr.evidence
    );
}

#[test]
fn br10_bot_approvals_never_count_as_human_review() {
    let mut w = World::new();
    w.add(planned(&w, "CHG-000001"));
    let mut m = merge_of("m120", "dependabot[bot]", "bump serde (#120)", vec![]);
    m.author = Person {
        name: "dependabot[bot]".into(),
        email: "49699333+dependabot[bot]@users.noreply.github.com".into(),
    };
    m.change_ids = vec!["CHG-000001".into()];
    w.evidence = vec![
        pr(120, "dependabot[bot]", "bump serde", "h120", "m120"),
        review(
            120,
            "github-actions[bot]",
            ReviewState::Approved,
            "h120",
            "2026-03-03T07:00:00Z",
        ),
        review(
            120,
            "review-ai[bot]",
            ReviewState::Approved,
            "h120",
            "2026-03-03T07:01:00Z",
        ),
    ];
    let r = w.run(vec![ProductionEvent::Commit(m)]);
    let row = &r.events[0];
    assert!(
        row.exceptions
            .contains(&"no_independent_review".to_string()),
        "{row:#?}"
    );
    let attr = row
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap();
    assert!(attr
        .evidence
        .contains("github-actions[bot] (pull request review): not counted, automation"));
}

#[test]
fn br10_a_standing_standard_change_covers_a_bot_when_its_model_needs_no_review() {
    let mut w = World::new();
    w.policy = Policy::from_toml(
        "[[models]]\ntype = \"standard\"\nskip = [\"authorized\", \"peer_reviewed\", \"tested\"]\n",
    )
    .expect("policy");
    let standing = build(
        &w.policy,
        "CHG-000045",
        &[(
            "2026-01-05T08:00:00Z",
            "alice",
            request("Dependency patch updates", "standard"),
        )],
    );
    w.add(standing);
    w.rules.standing_changes = vec![StandingChange {
        change: "CHG-000045".into(),
        authors: vec!["dependabot[bot]".into()],
    }];
    let mut m = commit(
        "m120",
        "dependabot[bot]",
        "2026-06-04T07:10:00Z",
        "bump serde from 1.0.210 to 1.0.211 (#120)",
    );
    m.author.email = "49699333+dependabot[bot]@users.noreply.github.com".into();
    let (v, e, ch) = w.one(ProductionEvent::Commit(m));
    assert_eq!(
        (v, e, ch.as_deref()),
        (Verdict::Ok, vec![], Some("CHG-000045"))
    );
}

#[test]
fn br11_the_latest_decisive_state_of_each_reviewer_counts() {
    let mut w = World::new();
    w.add(planned(&w, "CHG-000001"));
    let m = |n: u64| {
        let mut m = merge_of(
            &format!("m{n}"),
            "alice",
            &format!("Merge pull request #{n}"),
            vec![],
        );
        m.change_ids = vec!["CHG-000001".into()];
        m
    };
    w.evidence = vec![
        pr(130, "alice", "x", "h", "m130"),
        review(
            130,
            "bob",
            ReviewState::Commented,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        review(
            130,
            "carol",
            ReviewState::Commented,
            "h",
            "2026-03-03T09:01:00Z",
        ),
        pr(131, "alice", "x", "h", "m131"),
        review(
            131,
            "bob",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        review(
            131,
            "bob",
            ReviewState::Commented,
            "h",
            "2026-03-03T09:05:00Z",
        ),
        pr(132, "alice", "x", "h", "m132"),
        review(
            132,
            "bob",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        review(
            132,
            "bob",
            ReviewState::ChangesRequested,
            "h",
            "2026-03-03T09:05:00Z",
        ),
        pr(133, "alice", "x", "h", "m133"),
        review(
            133,
            "bob",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        review(
            133,
            "bob",
            ReviewState::Dismissed,
            "h",
            "2026-03-03T09:05:00Z",
        ),
    ];
    let r = w.run(
        vec![m(133), m(132), m(131), m(130)]
            .into_iter()
            .map(ProductionEvent::Commit)
            .collect(),
    );
    let review_ok = |i: usize| {
        r.events[i]
            .attributes
            .iter()
            .find(|a| a.name == "independent_review")
            .map(|a| a.result)
    };
    assert_eq!(
        review_ok(3),
        Some(audit::AttributeResult::Fail),
        "PR 130: comments only"
    );
    assert_eq!(
        review_ok(2),
        Some(audit::AttributeResult::Pass),
        "PR 131: comment keeps approval"
    );
    assert_eq!(
        review_ok(1),
        Some(audit::AttributeResult::Fail),
        "PR 132: changes requested last"
    );
    assert_eq!(
        review_ok(0),
        Some(audit::AttributeResult::Fail),
        "PR 133: dismissed"
    );
}

#[test]
fn br14_two_real_approvals_satisfy_a_two_approval_rule_and_the_author_is_not_one() {
    let mut w = World::new();
    w.rules.required_approvals = 2;
    w.add(planned(&w, "CHG-000001"));
    let m = |n: u64| {
        let mut m = merge_of(
            &format!("m{n}"),
            "alice",
            &format!("Merge pull request #{n}"),
            vec![],
        );
        m.change_ids = vec!["CHG-000001".into()];
        ProductionEvent::Commit(m)
    };
    w.evidence = vec![
        pr(150, "alice", "x", "h", "m150"),
        review(
            150,
            "bob",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        review(
            150,
            "carol",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        pr(151, "alice", "x", "h", "m151"),
        review(
            151,
            "alice",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
        review(
            151,
            "bob",
            ReviewState::Approved,
            "h",
            "2026-03-03T09:00:00Z",
        ),
    ];
    let r = w.run(vec![m(151), m(150)]);
    let attr = |i: usize| {
        r.events[i]
            .attributes
            .iter()
            .find(|a| a.name == "independent_review")
            .unwrap()
            .clone()
    };
    assert_eq!(
        attr(1).result,
        audit::AttributeResult::Pass,
        "{}",
        attr(1).evidence
    );
    assert_eq!(
        attr(0).codes,
        codes(&["no_independent_review", "approved_by_contributor"])
    );
    assert!(
        attr(0)
            .evidence
            .starts_with("1 independent approval(s) of 2 required"),
        "{}",
        attr(0).evidence
    );
}

#[test]
fn br15_an_admin_override_is_recorded_and_the_revert_is_tied_to_what_it_reverts() {
    let mut w = World::new();
    w.add(reviewed_change(
        &w.policy,
        "CHG-000001",
        "2026-03-04T10:00:00Z",
    ));
    w.evidence = vec![Evidence::ProtectionOverride(ProtectionOverride {
        host: Host::Github,
        repository: "acme/payments".into(),
        branch: "main".into(),
        actor: login("alice"),
        at: "2026-08-12T09:02:00Z".into(),
        mechanism: "admin_merge".into(),
        commit: Some("m160".into()),
    })];
    let m160 = commit(
        "m160",
        "alice",
        "2026-08-12T09:02:00Z",
        "CHG-000001 refund rework (#160)",
    );
    let mut m161 = commit(
        "m161",
        "alice",
        "2026-08-12T11:00:00Z",
        "Revert \"refund rework\"",
    );
    m161.reverts = Some("m160".into());
    let r = w.run(vec![
        ProductionEvent::Commit(m161),
        ProductionEvent::Commit(m160),
    ]);
    assert!(
        r.events[1]
            .exceptions
            .contains(&"protection_bypassed".to_string()),
        "{:#?}",
        r.events[1]
    );
    assert_eq!(r.events[0].change.as_deref(), Some("CHG-000001"));
    assert_eq!(r.events[0].linked_by.as_deref(), Some("revert"));
    assert_eq!(r.events[0].reverts.as_deref(), Some("m160"));
    assert_eq!(
        r.summary.events, 2,
        "the revert does not remove the bypass from the population"
    );
    assert!(r
        .findings
        .iter()
        .any(|f| f.code == "protection_bypassed" && f.actor == "alice"));
}

#[test]
fn br21_squash_commits_link_through_the_platform_and_a_message_claim_is_not_trusted() {
    let mut w = World::new();
    w.add(planned(&w, "CHG-000001"));
    let mut squash = pr(200, "alice", "CHG-000001 Feature X", "h3", "unused");
    if let Evidence::PullRequest(p) = &mut squash {
        p.merge_commit_sha = None;
        p.squash_commit_sha = Some("s1".into());
    }
    let rebase = pr(201, "carol", "CHG-000001 part two", "g2", "r2");
    w.evidence = vec![squash, rebase];
    let s1 = commit("s1", "alice", "2026-03-06T12:00:00Z", "Feature X (!200)");
    let mut z1 = commit("z1", "erin", "2026-03-07T12:00:00Z", "hotfix (#201)");
    z1.pull_request = Some(201);
    let r = w.run(vec![
        ProductionEvent::Commit(z1),
        ProductionEvent::Commit(s1),
    ]);
    assert_eq!(r.events[1].change.as_deref(), Some("CHG-000001"));
    assert_eq!(r.events[1].linked_by.as_deref(), Some("platform"));
    assert_eq!(
        r.events[0].verdict,
        Verdict::Unauthorized,
        "{:#?}",
        r.events[0]
    );
    assert_eq!(r.events[0].pull_request, None);
    assert!(r.events[0].notes.iter().any(|n| n.contains("not trusted")));
}

fn deployable(w: &World, id: &str, approve_at: &'static str, window: (&str, &str)) -> Change {
    let mut steps = authorized(&w.policy, id);
    steps.extend([
        (
            "2026-03-01T09:10:00Z",
            "bob",
            json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
        ),
        (
            "2026-03-02T10:00:00Z",
            "carol",
            json!({"action": "peer_review", "decision": "approved"}),
        ),
        (
            "2026-03-02T11:00:00Z",
            "dave",
            json!({"action": "test", "result": "passed", "evidence": "ci run 7"}),
        ),
        (
            approve_at,
            "erin",
            json!({"action": "approve_deployment", "window_start": window.0,
                                     "window_end": window.1, "artifact": "4f1c2a9e0b7d"}),
        ),
    ]);
    build(&w.policy, id, &steps)
}

fn deployment(artifact: &str, actor: &str, at: &str) -> ProductionEvent {
    ProductionEvent::Deployment(Deployment {
        host: Host::Pipeline,
        id: "run-1".into(),
        system: "payments".into(),
        environment: "production".into(),
        artifact: artifact.into(),
        actor: login(actor),
        at: at.into(),
        status: Some("success".into()),
        commits: vec![],
        description: None,
    })
}

#[test]
fn deployments_are_tested_on_approval_window_and_deployer() {
    let mut w = World::new();
    w.add(deployable(
        &w,
        "CHG-000001",
        "2026-03-02T12:00:00Z",
        ("2026-03-02T22:00:00Z", "2026-03-03T02:00:00Z"),
    ));
    let ok = w.one(deployment("4f1c2a9e0b7d", "gina", "2026-03-02T23:00:00Z"));
    assert_eq!(ok, (Verdict::Ok, vec![], Some("CHG-000001".into())));
    let late = w.one(deployment("4f1c2a9e0b7d", "gina", "2026-03-03T03:00:00Z"));
    assert_eq!(late.1, codes(&["outside_window"]));
    let early = w.one(deployment("4f1c2a9e0b7d", "gina", "2026-03-02T11:30:00Z"));
    assert_eq!(
        early.1,
        codes(&["deployed_before_approval", "outside_window"])
    );
    let by_engineer = w.one(deployment("4f1c2a9e0b7d", "bob", "2026-03-02T23:00:00Z"));
    assert_eq!(by_engineer.1, codes(&["deployer_not_authorized"]));
    let unknown = w.one(deployment("0000000aaaaaaa", "gina", "2026-03-02T23:00:00Z"));
    assert_eq!(unknown.0, Verdict::Unauthorized);
}

#[test]
fn br16_a_deployment_carrying_unreviewed_commits_is_an_exception() {
    let mut w = World::new();
    w.add(deployable(
        &w,
        "CHG-000001",
        "2026-03-02T12:00:00Z",
        ("2026-03-02T22:00:00Z", "2026-03-03T02:00:00Z"),
    ));
    let p3 = commit("p3a1b2c3d4e5f6", "alice", "2026-03-02T21:00:00Z", "direct");
    let mut d = deployment("4f1c2a9e0b7d", "gina", "2026-03-02T23:00:00Z");
    if let ProductionEvent::Deployment(d) = &mut d {
        d.commits = vec!["p3a1b2c3d4e5f6".into()];
    }
    let r = w.run(vec![d, ProductionEvent::Commit(p3)]);
    assert_eq!(r.events[1].verdict, Verdict::Unauthorized);
    assert_eq!(
        r.events[0].exceptions,
        codes(&["contains_unauthorized_commits"]),
        "{:#?}",
        r.events[0]
    );
}

#[test]
fn emergency_changes_are_judged_on_approval_after_the_fact() {
    let mut w = World::new();
    let steps = vec![
        (
            "2026-03-01T08:00:00Z",
            "alice",
            json!({"title": "Stop the bleeding INC-4411", "description": "d",
            "type": "emergency", "category": "application", "systems": ["payments"]}),
        ),
        (
            "2026-03-01T08:10:00Z",
            "gina",
            json!({"action": "implement", "environment": "production", "artifact": "e1e1e1e1e1e1"}),
        ),
    ];
    let open = build(&w.policy, "CHG-000002", &steps);
    w.add(open);
    let (v, e, _) = w.one(deployment("e1e1e1e1e1e1", "gina", "2026-03-01T08:10:00Z"));
    assert_eq!(v, Verdict::Exception);
    assert_eq!(e, codes(&["emergency_not_approved_in_time"]));

    // Approved after the fact inside the window: no exception.
    let mut steps = steps.clone();
    steps.push((
        "2026-03-02T08:00:00Z",
        "erin",
        json!({"action": "approve_retroactively"}),
    ));
    w.add(build(&w.policy, "CHG-000002", &steps));
    let (v, e, _) = w.one(deployment("e1e1e1e1e1e1", "gina", "2026-03-01T08:10:00Z"));
    assert_eq!((v, e), (Verdict::Ok, vec![]));

    // Approved after the window closed: a late approval is still an exception.
    let mut late = steps.clone();
    late.pop();
    late.push((
        "2026-03-10T08:00:00Z",
        "erin",
        json!({"action": "approve_retroactively"}),
    ));
    w.add(build(&w.policy, "CHG-000002", &late));
    let (v, e, _) = w.one(deployment("e1e1e1e1e1e1", "gina", "2026-03-01T08:10:00Z"));
    assert_eq!(
        (v, e),
        (Verdict::Exception, codes(&["emergency_approved_late"]))
    );
}

#[test]
fn an_emergency_planned_days_ahead_at_low_risk_is_suspect() {
    let mut w = World::new();
    let steps = vec![
        (
            "2026-03-01T08:00:00Z",
            "alice",
            json!({"title": "Upgrade the reporting library", "description": "d",
            "type": "emergency", "category": "application", "systems": ["payments"]}),
        ),
        (
            "2026-03-05T08:10:00Z",
            "gina",
            json!({"action": "implement", "environment": "production", "artifact": "e2e2e2e2e2e2"}),
        ),
        (
            "2026-03-05T09:00:00Z",
            "erin",
            json!({"action": "approve_retroactively"}),
        ),
    ];
    w.add(build(&w.policy, "CHG-000003", &steps));
    let (v, e, _) = w.one(deployment("e2e2e2e2e2e2", "gina", "2026-03-05T08:10:00Z"));
    assert_eq!((v, e), (Verdict::Exception, codes(&["suspect_emergency"])));
}

#[test]
fn population_hash_equals_the_hash_of_the_rev_list_output() {
    let w = World::new();
    let r = w.run(vec![
        ProductionEvent::Commit(commit("bbbb", "alice", "2026-06-02T09:00:00Z", "two")),
        ProductionEvent::Commit(commit("aaaa", "alice", "2026-06-01T09:00:00Z", "one")),
    ]);
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(b"bbbb\naaaa\n"));
    assert_eq!(r.population.sha256, expected);
    assert_eq!(r.population.count, 2);
    assert_eq!(r.summary.unauthorized, 2);
}

/// A change whose only changegate peer review was given before the work it is judged on,
/// so that only approvals on the code host can make the review pass.
fn stale_reviewed(w: &World, id: &str) -> Change {
    reviewed_change(&w.policy, id, "2026-03-02T08:00:00Z")
}

fn pr_with(
    number: u64,
    author: &str,
    title: &str,
    edit: impl FnOnce(&mut PullRequest),
) -> Evidence {
    let mut e = pr(
        number,
        author,
        title,
        &format!("h{number}"),
        &format!("m{number}"),
    );
    if let Evidence::PullRequest(p) = &mut e {
        edit(p);
    }
    e
}

fn merge_commit(number: u64, author: &str, carried_commits: Vec<CarriedCommit>) -> CommitEvent {
    let mut m = merge_of(
        &format!("m{number}"),
        author,
        &format!("Merge pull request #{number} from {author}/work"),
        carried_commits,
    );
    m.pull_request = Some(number);
    m
}

#[test]
fn br13_labels_are_not_approvals() {
    let mut w = World::new();
    w.add(stale_reviewed(&w, "CHG-000001"));
    w.evidence
        .push(pr_with(141, "alice", "CHG-000001 Refund fix", |p| {
            p.labels = vec!["approved".into(), "lgtm".into()];
            p.merged_by = Some(login("merge-bot[bot]"));
        }));
    let merge = merge_commit(
        141,
        "alice",
        vec![carried("h141", "alice", "2026-03-03T10:00:00Z")],
    );
    let r = w.run(vec![ProductionEvent::Commit(merge)]);
    let row = &r.events[0];
    assert_eq!(row.change.as_deref(), Some("CHG-000001"));
    assert_eq!(
        (row.verdict, row.exceptions.clone()),
        (
            Verdict::Exception,
            codes(&["no_independent_review", "stale_approval"])
        ),
        "{row:#?}"
    );
    let review = row
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap();
    assert!(
        review.evidence.starts_with("0 independent approval(s)"),
        "{}",
        review.evidence
    );
}

#[test]
fn br18_production_is_recognized_by_its_tier_not_its_exact_name() {
    let rules = Rules::default();
    for env in [
        "production",
        "prod",
        "Prod",
        "prod-eu",
        "production-us-east",
        " live ",
    ] {
        assert!(rules.is_production(env), "{env}");
    }
    for env in ["staging", "preprod", "dev", "production2", "qa-prod"] {
        assert!(!rules.is_production(env), "{env}");
    }
    // A deployment to an environment the platform created on first reference, with no
    // approval gate and no change behind it.
    let w = World::new();
    let mut d = deployment("180180180180", "gina", "2026-07-28T11:02:00Z");
    if let ProductionEvent::Deployment(d) = &mut d {
        d.environment = "prod".into();
    }
    let (v, e, ch) = w.one(d);
    assert_eq!(
        (v, e, ch),
        (Verdict::Unauthorized, codes(&["no_change_record"]), None)
    );
}

#[test]
fn br19_a_pull_request_merged_through_another_has_no_event_of_its_own() {
    let mut w = World::new();
    w.rules.required_approvals = 2;
    w.add(stale_reviewed(&w, "CHG-000001"));
    // 190 was closed as merged because 191 carried its commits: no merge commit of its own.
    w.evidence
        .push(pr_with(190, "alice", "CHG-000001 Part one", |p| {
            p.merge_commit_sha = None;
        }));
    w.evidence
        .push(pr_with(191, "bob", "CHG-000001 Parts one and two", |p| {
            p.merged_by = Some(login("bob"));
        }));
    for who in ["carol", "dave"] {
        w.evidence.push(review(
            191,
            who,
            ReviewState::Approved,
            "h191",
            "2026-03-05T10:00:00Z",
        ));
    }
    let merge = merge_commit(
        191,
        "bob",
        vec![
            carried("h191", "bob", "2026-03-04T10:00:00Z"),
            carried("c2", "alice", "2026-03-03T11:00:00Z"),
            carried("c1", "alice", "2026-03-03T10:00:00Z"),
        ],
    );
    let r = w.run(vec![ProductionEvent::Commit(merge.clone())]);
    assert_eq!(
        r.summary.events, 1,
        "only what reached the branch is an event"
    );
    let row = &r.events[0];
    assert_eq!(
        (row.verdict, row.exceptions.clone()),
        (Verdict::Ok, vec![]),
        "{row:#?}"
    );
    let review_text = &row
        .attributes
        .iter()
        .find(|a| a.name == "independent_review")
        .unwrap()
        .evidence;
    assert!(review_text.contains("author alice"), "{review_text}");

    // Had alice approved 191 in dave's place, she would not count: she wrote c1 and c2.
    w.evidence
        .retain(|e| !matches!(e, Evidence::Review(r) if r.reviewer.login == "dave"));
    w.evidence.push(review(
        191,
        "alice",
        ReviewState::Approved,
        "h191",
        "2026-03-05T10:00:00Z",
    ));
    let (v, e, _) = w.one(ProductionEvent::Commit(merge));
    assert_eq!(
        (v, e),
        (
            Verdict::Exception,
            codes(&[
                "no_independent_review",
                "approved_by_contributor",
                "stale_approval"
            ])
        )
    );
}

#[test]
fn br22_a_pull_request_with_more_commits_than_are_known_never_passes_review() {
    let mut w = World::new();
    w.add(stale_reviewed(&w, "CHG-000001"));
    w.evidence
        .push(pr_with(210, "alice", "CHG-000001 Big refactor", |p| {
            p.commits = Some(300);
        }));
    w.evidence.push(review(
        210,
        "bob",
        ReviewState::Approved,
        "h210",
        "2026-03-05T10:00:00Z",
    ));
    // What a capped listing returns: the first 250 commits, all alice's.
    let listed: Vec<CarriedCommit> = (0..250)
        .map(|i| carried(&format!("a{i:03}"), "alice", "2026-03-03T10:00:00Z"))
        .collect();
    let (v, e, _) = w.one(ProductionEvent::Commit(merge_commit(
        210,
        "alice",
        listed.clone(),
    )));
    assert_eq!(
        (v, e),
        (
            Verdict::Exception,
            codes(&["contributors_incomplete", "stale_approval"])
        ),
        "bob's approval counts among what is known (carol's is stale), but the list is short"
    );

    // The full list shows bob wrote commit 271: his approval does not count.
    let mut full = listed;
    full.extend((250..300).map(|i| {
        let who = if i == 270 { "bob" } else { "alice" };
        carried(&format!("a{i:03}"), who, "2026-03-03T10:00:00Z")
    }));
    let (v, e, _) = w.one(ProductionEvent::Commit(merge_commit(210, "alice", full)));
    assert_eq!(
        (v, e),
        (
            Verdict::Exception,
            codes(&[
                "no_independent_review",
                "approved_by_contributor",
                "stale_approval"
            ])
        )
    );
}

#[test]
fn within_one_second_neither_comes_first() {
    // The approval carries a fraction of a second; the pipeline reports whole seconds.
    let mut w = World::new();
    w.add(deployable(
        &w,
        "CHG-000001",
        "2026-03-02T12:00:00.700Z",
        ("2026-03-02T11:00:00Z", "2026-03-03T02:00:00Z"),
    ));
    let same_second = w.one(deployment("4f1c2a9e0b7d", "gina", "2026-03-02T12:00:00Z"));
    assert_eq!(
        same_second,
        (Verdict::Ok, vec![], Some("CHG-000001".into()))
    );
    let a_second_before = w.one(deployment("4f1c2a9e0b7d", "gina", "2026-03-02T11:59:59Z"));
    assert_eq!(
        (a_second_before.0, a_second_before.1),
        (Verdict::Exception, codes(&["deployed_before_approval"]))
    );
}

#[test]
fn an_abbreviated_or_extended_artifact_is_another_artifact() {
    let mut w = World::new();
    w.add(deployable(
        &w,
        "CHG-000001",
        "2026-03-02T12:00:00Z",
        ("2026-03-02T22:00:00Z", "2026-03-03T02:00:00Z"),
    ));
    for other in ["4f1c2a9", "4f1c2a9e0b7d00ff"] {
        let (v, e, ch) = w.one(deployment(other, "gina", "2026-03-02T23:00:00Z"));
        assert_eq!(
            (v, e, ch),
            (Verdict::Unauthorized, codes(&["no_change_record"]), None),
            "{other}"
        );
    }
    let (v, _, ch) = w.one(deployment("4F1C2A9E0B7D", "gina", "2026-03-02T23:00:00Z"));
    assert_eq!((v, ch.as_deref()), (Verdict::Ok, Some("CHG-000001")));
}
