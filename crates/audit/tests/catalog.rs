//! The shipped risk and control catalog, its tailoring, and the design deficiencies the
//! risk-control matrix reveals.

use std::collections::BTreeSet;

use audit::catalog::{Catalog, ControlChange, Nature, Performed, Tailoring};
use audit::sampling::Frequency;

#[test]
fn the_shipped_catalog_covers_every_risk_with_well_formed_controls() {
    let c = Catalog::default();
    assert_eq!(c.risks.len(), 22);
    assert_eq!(c.controls.len(), 21);
    let risk_ids: BTreeSet<&str> = c.risks.iter().map(|r| r.id.as_str()).collect();
    let control_ids: BTreeSet<&str> = c.controls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(risk_ids.len(), c.risks.len(), "risk ids are unique");
    assert_eq!(
        control_ids.len(),
        c.controls.len(),
        "control ids are unique"
    );
    for control in &c.controls {
        assert!(
            !control.risks.is_empty(),
            "{} addresses no risk",
            control.id
        );
        assert!(
            !control.attributes.is_empty(),
            "{} tests nothing",
            control.id
        );
        assert!(
            control.risks.iter().all(|r| risk_ids.contains(r.as_str())),
            "{}",
            control.id
        );
        assert!(
            control.criteria.iter().all(|k| k.starts_with("CC")),
            "{}",
            control.id
        );
    }
    assert_eq!(c.design_deficiencies(), vec![]);
    // Most controls support CC8.1; access and monitoring ones their own criteria.
    let cc81 = c
        .controls
        .iter()
        .filter(|x| x.criteria.iter().any(|k| k == "CC8.1"));
    assert!(cc81.count() >= 18);
    let access = c.control("CM-14").unwrap();
    assert_eq!(access.criteria, vec!["CC6.1", "CC6.2"]);
    let policy = c.control("CM-01").unwrap();
    assert_eq!(
        (policy.nature, policy.performed, policy.frequency),
        (Nature::Preventive, Performed::Manual, Frequency::Annual)
    );
}

#[test]
fn disabling_the_only_control_of_a_risk_is_a_design_deficiency() {
    let t = Tailoring {
        disabled: vec!["CM-18".into()],
        ..Tailoring::default()
    };
    let c = Catalog::default().tailored(&t).unwrap();
    let d = c.design_deficiencies();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].risk, "R16");
    assert!(d[0].reason.contains("CM-18"), "{}", d[0].reason);
    let row = c.matrix().into_iter().find(|r| r.risk == "R16").unwrap();
    assert_eq!(
        (row.controls.len(), row.disabled),
        (0, vec!["CM-18".to_string()])
    );

    // Disabling one of two controls of a risk leaves it covered.
    let t = Tailoring {
        disabled: vec!["CM-13".into()],
        ..Tailoring::default()
    };
    let c = Catalog::default().tailored(&t).unwrap();
    assert_eq!(c.design_deficiencies(), vec![]);
    let row = c.matrix().into_iter().find(|r| r.risk == "R17").unwrap();
    assert_eq!(row.controls, vec!["CM-16".to_string()]);
}

#[test]
fn a_tailoring_file_changes_adds_and_disables() {
    let text = r#"
disabled = ["CM-10"]
added_risks = [{ id = "R23", description = "Feature flags flip in production unreviewed." }]

[changed.CM-14]
frequency = "monthly"
owner = "security_officer"

[[added]]
id = "ORG-01"
description = "Separate environments are checked by the platform team each month."
nature = "detective"
performed = "manual"
frequency = "monthly"
owner = "platform_lead"
risks = ["R18"]
criteria = ["CC8.1"]
attributes = ["environments_separate"]
"#;
    let t: Tailoring = toml::from_str(text).unwrap();
    let c = Catalog::default().tailored(&t).unwrap();
    assert!(!c.control("CM-10").unwrap().enabled);
    let access = c.control("CM-14").unwrap();
    assert_eq!(
        (access.frequency, access.owner.as_str()),
        (Frequency::Monthly, "security_officer")
    );
    let row = c.matrix().into_iter().find(|r| r.risk == "R18").unwrap();
    assert_eq!(
        row.controls,
        vec!["CM-01".to_string(), "ORG-01".to_string()]
    );
    // The organization's own risk has no control yet.
    let d = c.design_deficiencies();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].risk.as_str(), d[0].reason.as_str()),
        ("R23", "no control addresses this risk")
    );
}

#[test]
fn a_tailoring_that_names_nothing_is_refused() {
    let unknown = Tailoring {
        disabled: vec!["CM-99".into()],
        ..Tailoring::default()
    };
    let err = Catalog::default()
        .tailored(&unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CM-99") && err.contains("CM-01"), "{err}");

    let mut changed = Tailoring::default();
    changed.changed.insert(
        "CM-04".into(),
        ControlChange {
            risks: Some(vec!["R01".into(), "R77".into()]),
            ..ControlChange::default()
        },
    );
    let err = Catalog::default()
        .tailored(&changed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("R77") && err.contains("CM-04"), "{err}");

    let mut twice = Tailoring::default();
    twice
        .added
        .push(Catalog::default().control("CM-02").unwrap().clone());
    let err = Catalog::default().tailored(&twice).unwrap_err().to_string();
    assert!(
        err.contains("CM-02") && err.contains("already exists"),
        "{err}"
    );

    let typo = toml::from_str::<Tailoring>("disable = [\"CM-01\"]\n").unwrap_err();
    assert!(typo.to_string().contains("disable"), "{typo}");
}

#[test]
fn an_added_control_needs_an_id_that_names_its_deficiency_and_retest() {
    let control = |id: &str, description: &str| audit::catalog::Control {
        id: id.into(),
        description: description.into(),
        nature: Nature::Preventive,
        performed: Performed::Manual,
        frequency: Frequency::Annual,
        owner: "qa".into(),
        risks: vec!["R01".into()],
        criteria: vec!["CC8.1".into()],
        attributes: vec!["performed".into()],
        enabled: true,
    };
    for (id, description) in [
        ("", "empty"),
        ("CM-19/retest", "takes the name of CM-19's retest draw"),
        ("A:B", "the deficiency id's separator"),
        (" X", "surrounding space"),
        ("X\nY", "a line break"),
        ("QA-1", ""),
    ] {
        let t = Tailoring {
            added: vec![control(id, description)],
            ..Tailoring::default()
        };
        assert!(
            Catalog::default().tailored(&t).is_err(),
            "{id:?} {description:?}"
        );
    }
    let t = Tailoring {
        added: vec![control("2nd Review/QA", "a second look")],
        ..Tailoring::default()
    };
    assert!(Catalog::default().tailored(&t).is_ok());
}
