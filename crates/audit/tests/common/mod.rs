//! Reconciliation rows built by hand, for the tests of what is made from a reconciliation
//! (engagements, workbooks, OSCAL documents).

#![allow(dead_code)]

use std::collections::BTreeMap;

use audit::{population_hash, Attribute, AttributeResult, Report, Summary, Verdict, VerdictRow};

pub fn attr(name: &str, result: AttributeResult, codes: &[&str]) -> Attribute {
    Attribute {
        name: name.into(),
        result,
        codes: codes.iter().map(|c| c.to_string()).collect(),
        evidence: format!("{name} evidence"),
    }
}

pub fn row(id: &str, verdict: Verdict, attributes: Vec<Attribute>) -> VerdictRow {
    let exceptions: Vec<String> = attributes
        .iter()
        .flat_map(|a| a.codes.iter().cloned())
        .collect();
    VerdictRow {
        commit: id.into(),
        change: (verdict != Verdict::Unauthorized).then(|| "CHG-000001".to_string()),
        verdict,
        exceptions: if verdict == Verdict::Unauthorized {
            vec!["no_change_record".into()]
        } else {
            exceptions
        },
        source: "commit".into(),
        deployment: None,
        at: "2026-05-01T10:00:00Z".into(),
        subject: "s".into(),
        author: "bob".into(),
        pull_request: None,
        linked_by: Some("change_id".into()),
        reverts: None,
        environment: None,
        attributes,
        notes: vec![],
    }
}

pub fn reviewed(id: &str, ok: bool) -> VerdictRow {
    use AttributeResult::*;
    let review = if ok {
        attr("independent_review", Pass, &[])
    } else {
        attr("independent_review", Fail, &["no_independent_review"])
    };
    row(
        id,
        if ok { Verdict::Ok } else { Verdict::Exception },
        vec![
            attr("authorized_before_work", Pass, &[]),
            review,
            attr("tests_passed", Pass, &[]),
        ],
    )
}

pub fn deployment(id: &str) -> VerdictRow {
    use AttributeResult::*;
    let mut r = row(
        "4f1c2a9e0b7d",
        Verdict::Ok,
        vec![
            attr("tests_passed", Pass, &[]),
            attr("approved_for_deployment", Pass, &[]),
            attr("inside_window", Pass, &[]),
            attr("authorized_deployer", Pass, &[]),
        ],
    );
    r.source = "deployment".into();
    r.deployment = Some(format!("payments/{id}"));
    r
}

pub fn report(events: Vec<VerdictRow>) -> Report {
    let population = population_hash(events.iter().map(|e| e.commit.as_str()));
    Report {
        summary: Summary {
            events: events.len() as u64,
            matched: 0,
            unauthorized: 0,
            exceptions: 0,
            exceptions_by_code: BTreeMap::new(),
        },
        population,
        events,
        findings: vec![],
    }
}
