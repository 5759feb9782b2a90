//! OSCAL assessment results of an engagement, validated against NIST's complete OSCAL 1.1.2
//! JSON schema (draft-07) with formats and Unicode patterns enforced.

mod common;

use common::{deployment, report, reviewed, row};

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;
use time::macros::datetime;

use audit::catalog::{Catalog, Control, Nature, Performed, Tailoring};
use audit::deficiency::{DeficiencyUpdate, Significance};
use audit::engagement::{run, Conclusion, Engagement, Plan};
use audit::oscal::{assessment_results, OscalMeta};
use audit::sampling::{Frequency, Sampling};
use audit::{Report, Verdict};

const SCHEMA: &str = include_str!("fixtures/oscal/oscal_complete_schema-1-1-2.json");

/// 100 commits (every tenth unauthorized, every seventh unreviewed, or all unreviewed with
/// `all_fail`) and two approved deployments.
fn period(all_fail: bool) -> Report {
    let mut events = Vec::new();
    for i in 0..100 {
        let id = format!("{i:040x}");
        if i % 10 == 0 && !all_fail {
            events.push(row(&id, Verdict::Unauthorized, vec![]));
        } else {
            events.push(reviewed(&id, !all_fail && i % 7 != 0));
        }
    }
    events.push(deployment("run-1"));
    events.push(deployment("run-2"));
    report(events)
}

/// The shipped catalog with CM-18 (emergency changes) disabled: R16 is left as a design
/// deficiency.
fn catalog() -> Catalog {
    let t = Tailoring {
        disabled: vec!["CM-18".into()],
        ..Tailoring::default()
    };
    Catalog::default().tailored(&t).unwrap()
}

fn engagement(catalog: &Catalog, all_fail: bool) -> Engagement {
    let sampling = Sampling::default();
    let plan = Plan {
        period: ("2026-05-01T00:00:00Z".into(), "2026-05-31T23:59:59Z".into()),
        seed: 42,
        catalog,
        sampling: &sampling,
        as_of: "2027-01-15T00:00:00Z".into(),
        sources: vec!["git main of acme/payments".into()],
    };
    run(&plan, &period(all_fail), &[], &[], &[]).unwrap()
}

fn meta() -> OscalMeta {
    OscalMeta {
        title: "Acme Payments change management, May 2026".into(),
        version: "2026-05".into(),
        generated: datetime!(2026-06-03 09:30:00 UTC),
        organization: "Acme Payments Ltd".into(),
        namespace: "https://acme.example/changegate".into(),
    }
}

fn document() -> Value {
    let catalog = catalog();
    assessment_results(&engagement(&catalog, false), &catalog, &meta()).unwrap()
}

/// The complete schema, formats asserted (draft-07 leaves that to the implementation).
fn complete() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| build(serde_json::from_str(SCHEMA).unwrap()))
}

/// The schema with its root narrowed to the assessment-results branch: the complete one
/// reports any error as one failed `oneOf`, this one says what is wrong.
fn assessment_results_only() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let mut schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let branches = schema["oneOf"].as_array().unwrap();
        let ar = branches
            .iter()
            .find(|b| b["required"][0] == "assessment-results")
            .unwrap()
            .clone();
        let root = schema.as_object_mut().unwrap();
        root.remove("oneOf");
        for (k, v) in ar.as_object().unwrap() {
            root.insert(k.clone(), v.clone());
        }
        build(schema)
    })
}

fn build(schema: Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the OSCAL schema compiles, its \\p{L} patterns included")
}

/// The schema's complaints, empty when the document is valid.
fn errors(doc: &Value) -> Vec<String> {
    if complete().is_valid(doc) {
        return vec![];
    }
    let mut out: Vec<String> = assessment_results_only()
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if out.is_empty() {
        out.push("invalid against the complete schema".into());
    }
    out
}

fn result(doc: &Value) -> &Value {
    &doc["assessment-results"]["results"][0]
}

fn finding<'a>(doc: &'a Value, title_start: &str) -> &'a Value {
    result(doc)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"].as_str().unwrap().starts_with(title_start))
        .unwrap_or_else(|| panic!("no finding titled `{title_start}…`"))
}

fn observation<'a>(doc: &'a Value, uuid: &Value) -> &'a Value {
    result(doc)["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["uuid"] == *uuid)
        .unwrap()
}

fn prop<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["props"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["value"].as_str())
}

#[test]
fn assessment_results_are_valid_against_the_oscal_1_1_2_schema() {
    let catalog = catalog();
    let e = engagement(&catalog, false);
    let conclusion = |id: &str| {
        e.controls
            .iter()
            .find(|t| t.control == id)
            .unwrap()
            .conclusion
    };
    // What the document must show: one control of each conclusion and a design deficiency.
    assert_eq!(conclusion("CM-08"), Conclusion::Effective);
    assert_eq!(conclusion("CM-06"), Conclusion::Deficient);
    // Per change, decided neither by the reconciliation nor by change records, and no
    // manual result recorded.
    assert_eq!(conclusion("CM-03"), Conclusion::NotTested);
    assert_eq!(conclusion("CM-18"), Conclusion::Disabled);
    assert_eq!(e.design_deficiencies.len(), 1);

    let doc = assessment_results(&e, &catalog, &meta()).unwrap();
    let errors = errors(&doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));

    // A document of many failed items stays valid too.
    let failing = engagement(&catalog, true);
    let doc = assessment_results(&failing, &catalog, &meta()).unwrap();
    let errors = self::errors(&doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
}

#[test]
fn an_added_control_whose_id_is_no_token_still_gives_a_valid_document() {
    let t = Tailoring {
        added: vec![Control {
            id: "2nd Review/QA".into(),
            description: "A second reviewer looks at each change.".into(),
            nature: Nature::Preventive,
            performed: Performed::Automated,
            frequency: Frequency::PerChange,
            owner: "qa lead".into(),
            risks: vec!["R06".into()],
            criteria: vec![" CC8.1\n".into()],
            attributes: vec!["independent_review".into()],
            enabled: true,
        }],
        ..Tailoring::default()
    };
    let catalog = Catalog::default().tailored(&t).unwrap();
    let doc = assessment_results(&engagement(&catalog, false), &catalog, &meta()).unwrap();
    let errors = errors(&doc);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
    let added = finding(&doc, "2nd Review/QA ");
    assert_eq!(added["target"]["target-id"], "_2nd-review-qa_obj");
    assert_eq!(prop(added, "control-id"), Some("2nd Review/QA"));
}

#[test]
fn the_validator_accepts_nists_own_assessment_results() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/oscal/examples/ifa_assessment-results-example.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} is absent", path.display());
        return;
    };
    let example: Value = serde_json::from_str(&text).unwrap();
    let errors = errors(&example);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
}

/// A part of the error the schema must report, and the mutation that breaks the document.
type Mutation = (&'static str, fn(&mut Value));

#[test]
fn the_validator_rejects_broken_documents() {
    let valid = document();
    assert!(complete().is_valid(&valid));
    let broken: Vec<Mutation> = vec![
        // A uuid of version 1.
        (
            "/assessment-results/uuid: \"d3b07384-d113-1ec4-8b2c-3b0f2b8a4b9e\" does not match",
            |d| {
                d["assessment-results"]["uuid"] = "d3b07384-d113-1ec4-8b2c-3b0f2b8a4b9e".into();
            },
        ),
        (
            "/assessment-results/metadata: \"title\" is a required property",
            |d| {
                let metadata = d["assessment-results"]["metadata"].as_object_mut().unwrap();
                metadata.remove("title");
            },
        ),
        (
            "/results/0: \"reviewed-controls\" is a required property",
            |d| {
                let result = d["assessment-results"]["results"][0]
                    .as_object_mut()
                    .unwrap();
                result.remove("reviewed-controls");
            },
        ),
        (
            "/results/0/start: \"2026-13-01T00:00:00Z\" does not match",
            |d| {
                d["assessment-results"]["results"][0]["start"] = "2026-13-01T00:00:00Z".into();
            },
        ),
        // No time zone.
        (
            "/last-modified: \"2026-06-03T09:30:00\" does not match",
            |d| {
                d["assessment-results"]["metadata"]["last-modified"] = "2026-06-03T09:30:00".into();
            },
        ),
        ("/status/state: \"not-tested\" is not one of", |d| {
            let finding = &mut d["assessment-results"]["results"][0]["findings"][0];
            finding["target"]["status"]["state"] = "not-tested".into();
        }),
        ("/methods/0: \" TEST\" is not valid under any of", |d| {
            let observation = &mut d["assessment-results"]["results"][0]["observations"][0];
            observation["methods"][0] = " TEST".into();
        }),
        // The token pattern, `\p{L}` and all.
        ("/control-id: \"cm 06\" does not match \"^(\\p{L}|_)", |d| {
            *control_id(d) = "cm 06".into();
        }),
        ("/control-id: \"6cm\" does not match", |d| {
            *control_id(d) = "6cm".into();
        }),
        // URI references have a format and no pattern: only format checking catches this.
        (
            "/import-ap/href: \"#a b\" is not a \"uri-reference\"",
            |d| {
                d["assessment-results"]["import-ap"]["href"] = "#a b".into();
            },
        ),
        ("/props/0/ns: \"changegate\" is not a \"uri\"", |d| {
            d["assessment-results"]["results"][0]["props"][0]["ns"] = "changegate".into();
        }),
        (
            "/results/0: Additional properties are not allowed ('verdict' was unexpected)",
            |d| {
                d["assessment-results"]["results"][0]["verdict"] = "ok".into();
            },
        ),
    ];
    for (expected, mutate) in broken {
        let mut doc = valid.clone();
        mutate(&mut doc);
        assert!(!complete().is_valid(&doc), "accepted: {expected}");
        let errors = errors(&doc);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected `{expected}`, got:\n{}",
            errors.join("\n")
        );
    }

    // The token pattern is Unicode-aware: `\p{L}` takes any letter, not only ASCII.
    let mut doc = valid.clone();
    *control_id(&mut doc) = "änderung-06".into();
    assert!(complete().is_valid(&doc), "a non-ASCII letter is a token");
}

fn control_id(doc: &mut Value) -> &mut Value {
    let reviewed = &mut doc["assessment-results"]["results"][0]["reviewed-controls"];
    &mut reviewed["control-selections"][0]["include-controls"][0]["control-id"]
}

#[test]
fn the_same_engagement_gives_byte_identical_json() {
    let a = serde_json::to_vec_pretty(&document()).unwrap();
    let b = serde_json::to_vec_pretty(&document()).unwrap();
    assert_eq!(a, b);

    // The UUIDs come from the namespace: another one gives other UUIDs, same content.
    let catalog = catalog();
    let e = engagement(&catalog, false);
    let other = OscalMeta {
        namespace: "https://other.example/changegate".into(),
        ..meta()
    };
    let c = assessment_results(&e, &catalog, &other).unwrap();
    let d = document();
    assert_ne!(
        c["assessment-results"]["uuid"],
        d["assessment-results"]["uuid"]
    );
    assert_eq!(
        result(&c)["findings"].as_array().unwrap().len(),
        result(&d)["findings"].as_array().unwrap().len()
    );
}

#[test]
fn uuids_are_version_5_of_the_documented_names() {
    let doc = document();
    // Recomputed with Python's uuid module:
    // ns = uuid5(NAMESPACE_URL, "https://acme.example/changegate")
    // uuid5(ns, "changegate-oscal-v1\0" "2026-05-01T00:00:00Z\0" "2026-05-31T23:59:59Z\0"
    //           "finding\0" "CM-06\0")
    let cm06 = finding(&doc, "CM-06 ");
    assert_eq!(cm06["uuid"], "d1907a2e-56a6-5f27-81f2-ea3b38f2b6a4");

    // Every UUID in the document is distinct, and every reference resolves.
    let mut uuids = BTreeSet::new();
    let r = result(&doc);
    for key in ["observations", "findings", "risks"] {
        for o in r[key].as_array().unwrap() {
            assert!(uuids.insert(o["uuid"].as_str().unwrap()), "duplicate uuid");
        }
    }
    for f in r["findings"].as_array().unwrap() {
        for o in f["related-observations"].as_array().unwrap() {
            assert!(uuids.contains(o["observation-uuid"].as_str().unwrap()));
        }
        for risk in f["related-risks"].as_array().into_iter().flatten() {
            assert!(uuids.contains(risk["risk-uuid"].as_str().unwrap()));
        }
    }
    let ar = &doc["assessment-results"];
    let plan = ar["import-ap"]["href"].as_str().unwrap();
    assert_eq!(
        Some(plan.trim_start_matches('#')),
        ar["back-matter"]["resources"][0]["uuid"].as_str()
    );
    let party = &ar["metadata"]["parties"][0];
    assert_eq!(party["name"], "Acme Payments Ltd");
    assert_eq!(
        ar["metadata"]["responsible-parties"][0]["party-uuids"][0],
        party["uuid"]
    );
}

#[test]
fn findings_follow_the_conclusions_and_deficiencies_become_open_risks() {
    let catalog = catalog();
    let e = engagement(&catalog, false);
    let doc = assessment_results(&e, &catalog, &meta()).unwrap();
    let r = result(&doc);
    assert_eq!(r["start"], "2026-05-01T00:00:00Z");
    assert_eq!(r["end"], "2026-05-31T23:59:59Z");

    // Reviewed controls: the tested ones, lower-cased.
    let selected: Vec<&str> = r["reviewed-controls"]["control-selections"][0]["include-controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["control-id"].as_str().unwrap())
        .collect();
    assert!(selected.contains(&"cm-06") && selected.contains(&"cm-08"));
    assert!(!selected.contains(&"cm-03") && !selected.contains(&"cm-18"));

    // Effective: satisfied, no risk.
    let cm08 = finding(&doc, "CM-08 ");
    assert_eq!(cm08["target"]["target-id"], "cm-08_obj");
    assert_eq!(cm08["target"]["status"]["state"], "satisfied");
    assert!(cm08.get("related-risks").is_none());
    assert_eq!(prop(cm08, "control-id"), Some("CM-08"));

    // Deficient: not satisfied, its observation summarizes the testing, its risk is open.
    let cm06 = finding(&doc, "CM-06 ");
    assert_eq!(cm06["target"]["status"]["state"], "not-satisfied");
    let o = observation(&doc, &cm06["related-observations"][0]["observation-uuid"]);
    assert_eq!(o["methods"], serde_json::json!(["TEST"]));
    assert_eq!(prop(o, "population-count"), Some("100"));
    let test = e.controls.iter().find(|t| t.control == "CM-06").unwrap();
    assert_eq!(
        prop(o, "population-sha256"),
        Some(test.population.sha256.as_str())
    );
    assert_eq!(prop(o, "sample-size"), Some("25"));
    let evidence = serde_json::to_string(&o["relevant-evidence"]).unwrap();
    assert!(evidence.contains("Failed sampled items: `"));
    let risks = r["risks"].as_array().unwrap();
    assert_eq!(risks.len(), e.deficiencies.len());
    let risk = risks
        .iter()
        .find(|x| x["uuid"] == cm06["related-risks"][0]["risk-uuid"])
        .unwrap();
    assert_eq!(risk["status"], "open");
    assert!(risk["statement"]
        .as_str()
        .unwrap()
        .contains("R10: Testing is too thin"));

    // Design deficiency: a finding on the objective that R16 is addressed, linking its risk.
    let design = finding(&doc, "No enabled control addresses R16");
    assert_eq!(design["target"]["target-id"], "r16_obj");
    assert_eq!(design["target"]["status"]["state"], "not-satisfied");
    let risk = risks
        .iter()
        .find(|x| x["uuid"] == design["related-risks"][0]["risk-uuid"])
        .unwrap();
    assert!(risk["title"]
        .as_str()
        .unwrap()
        .starts_with("Design deficiency"));
    assert!(risk["description"].as_str().unwrap().contains("CM-18"));

    // Not tested and disabled: no finding, listed with the reason.
    let findings = serde_json::to_string(&r["findings"]).unwrap();
    assert!(!findings.contains("CM-03 ") && !findings.contains("\"cm-18_obj\""));
    let props = r["props"].as_array().unwrap();
    let listed = |name: &str, id: &str| {
        props
            .iter()
            .find(|p| p["name"] == name && p["value"] == id)
            .and_then(|p| p["remarks"].as_str())
            .map(str::to_string)
    };
    assert!(listed("control-not-tested", "CM-03")
        .unwrap()
        .contains("manual"));
    assert!(listed("control-disabled", "CM-18")
        .unwrap()
        .contains("tailoring"));
}

#[test]
fn failed_items_are_listed_by_id_up_to_ten_then_counted() {
    let catalog = catalog();
    let doc = assessment_results(&engagement(&catalog, true), &catalog, &meta()).unwrap();
    let cm06 = finding(&doc, "CM-06 ");
    let o = observation(&doc, &cm06["related-observations"][0]["observation-uuid"]);
    let failed = o["relevant-evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["description"].as_str())
        .find(|x| x.starts_with("Failed sampled items"))
        .unwrap();
    assert_eq!(failed.matches("no_independent_review").count(), 10);
    assert!(failed.ends_with("and 15 more."), "{failed}");
}

#[test]
fn what_oscal_cannot_hold_is_refused() {
    let catalog = catalog();
    let mut e = engagement(&catalog, false);
    e.period.1 = "end of May".into();
    let err = assessment_results(&e, &catalog, &meta()).unwrap_err();
    assert!(err.to_string().contains("`end of May`"), "{err}");
    e.period = ("2026-05-31".into(), "2026-05-01".into());
    assert!(assessment_results(&e, &catalog, &meta()).is_err());
    e.period = (
        "2026-05-01T00:00:00.5Z".into(),
        "2026-05-01T00:00:00Z".into(),
    );
    assert!(assessment_results(&e, &catalog, &meta()).is_err());
    e.period = ("1850-01-01".into(), "2026-05-31".into());
    assert!(assessment_results(&e, &catalog, &meta()).is_err());

    // Days are read as `changegate audit` reads them, and give the same document.
    e.period = ("2026-05-01".into(), "2026-05-31".into());
    let doc = assessment_results(&e, &catalog, &meta()).unwrap();
    assert_eq!(result(&doc)["end"], "2026-05-31T23:59:59Z");
    assert_eq!(
        document()["assessment-results"]["uuid"],
        doc["assessment-results"]["uuid"]
    );

    // A party name is one line.
    let two_lines = OscalMeta {
        organization: "Acme\nPayments".into(),
        ..meta()
    };
    let err = assessment_results(&e, &catalog, &two_lines).unwrap_err();
    assert!(err.to_string().contains("organization"), "{err}");
}

#[test]
fn a_deficiency_being_remediated_is_a_remediating_risk_with_its_deadline_and_response() {
    let catalog = catalog();
    let sampling = Sampling::default();
    let plan = Plan {
        period: ("2026-05-01T00:00:00Z".into(), "2026-05-31T23:59:59Z".into()),
        seed: 42,
        catalog: &catalog,
        sampling: &sampling,
        as_of: "2026-06-20T00:00:00Z".into(),
        sources: vec!["git main of acme/payments".into()],
    };
    let update = |f: &dyn Fn(&mut DeficiencyUpdate)| {
        let mut u = DeficiencyUpdate {
            deficiency: "CM-06:operating".into(),
            from: "2026-05-01".into(),
            to: "2026-05-31".into(),
            significance: None,
            rationale: None,
            management_response: None,
            owner: None,
            remediation_due: None,
            remediated_at: None,
            remediation: None,
            recorded_by: "ava".into(),
            recorded_at: "2026-06-02T09:00:00Z".into(),
        };
        f(&mut u);
        u
    };
    let updates = vec![
        update(&|u| u.significance = Some(Significance::MaterialWeakness)),
        update(&|u| {
            u.management_response = Some("Reviews are now required.\nBy the platform.".into());
            u.owner = Some("carol".into());
            u.remediation_due = Some("2026-06-30T23:59:59Z".into());
            u.remediated_at = Some("2026-05-20T00:00:00Z".into());
        }),
    ];
    let e = run(&plan, &period(false), &[], &[], &updates).unwrap();
    let doc = assessment_results(&e, &catalog, &meta()).unwrap();
    assert_eq!(errors(&doc), Vec::<String>::new());
    let cm06 = finding(&doc, "CM-06 ");
    let risk = result(&doc)["risks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["uuid"] == cm06["related-risks"][0]["risk-uuid"])
        .unwrap();
    assert_eq!(risk["status"], "remediating");
    assert_eq!(risk["deadline"], "2026-06-30T23:59:59Z");
    assert_eq!(prop(risk, "significance"), Some("material_weakness"));
    assert_eq!(prop(risk, "deficiency-status"), Some("awaiting-retest"));
    let remediation = &risk["remediations"][0];
    assert_eq!(remediation["lifecycle"], "completed");
    assert!(remediation["description"]
        .as_str()
        .unwrap()
        .contains("Owner: carol."));
}
