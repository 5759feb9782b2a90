//! The risks of IT change management and the controls that address them, as changegate
//! ships them, and the risk-control matrix built from them.
//!
//! An organization tailors the catalog: it disables controls it does not operate, changes a
//! control's frequency, owner or risks, and adds controls of its own. The matrix then shows,
//! for every risk, the enabled controls that address it; a risk that no enabled control
//! addresses is a **design deficiency**: even operating perfectly, the controls in place
//! would not meet the objective for it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::sampling::Frequency;

/// A risk to the objective that changes to production are authorized, documented, tested,
/// approved and implemented as intended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub id: String,
    pub description: String,
}

/// Whether a control stops a fault before it happens or finds it after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nature {
    Preventive,
    Detective,
}

/// Whether a system or a person performs the control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Performed {
    Automated,
    Manual,
}

/// A control over changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub description: String,
    pub nature: Nature,
    pub performed: Performed,
    pub frequency: Frequency,
    /// The role that owns the control (a changegate role name or an organizational one).
    pub owner: String,
    /// The risks it addresses.
    pub risks: Vec<String>,
    /// The SOC 2 trust services criteria it supports.
    pub criteria: Vec<String>,
    /// The attributes tested on each sampled item; for automated tests, the names the
    /// reconciliation and the lifecycle report.
    pub attributes: Vec<String>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// Risks and controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub risks: Vec<Risk>,
    pub controls: Vec<Control>,
}

/// How an organization tailors the shipped catalog (the `[controls]` part of its policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tailoring {
    /// Controls the organization does not operate.
    pub disabled: Vec<String>,
    /// Changes to shipped controls, by id.
    pub changed: BTreeMap<String, ControlChange>,
    /// Controls of the organization's own.
    pub added: Vec<Control>,
    /// Risks of the organization's own.
    pub added_risks: Vec<Risk>,
}

/// The fields of a shipped control an organization may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlChange {
    pub description: Option<String>,
    pub frequency: Option<Frequency>,
    pub owner: Option<String>,
    pub risks: Option<Vec<String>>,
    pub criteria: Option<Vec<String>>,
}

/// A tailoring that does not fit the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("controls: {0}")]
pub struct CatalogError(pub String);

/// One row of the risk-control matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixRow {
    pub risk: String,
    pub description: String,
    /// Enabled controls that address the risk.
    pub controls: Vec<String>,
    /// Disabled controls that would address it.
    pub disabled: Vec<String>,
}

/// A risk no enabled control addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesignDeficiency {
    pub risk: String,
    pub description: String,
    /// Why: which controls would address it and are disabled, or that none exists.
    pub reason: String,
}

impl Catalog {
    /// The catalog with an organization's tailoring applied. Refuses ids that name
    /// nothing, added controls whose id is taken, and risks no risk of the catalog has.
    pub fn tailored(mut self, t: &Tailoring) -> Result<Catalog, CatalogError> {
        for r in &t.added_risks {
            if self.risks.iter().any(|x| x.id == r.id) {
                return Err(CatalogError(format!(
                    "added risk `{}` already exists",
                    r.id
                )));
            }
            self.risks.push(r.clone());
        }
        // An id names a deficiency (`ID:operating`), a retest's draw (`ID/retest`) and a
        // cell of the workpapers.
        let id_ok = |id: &str| {
            !id.is_empty()
                && id.len() <= 64
                && id.trim() == id
                && !id.contains(':')
                && !id.ends_with("/retest")
                && !id.chars().any(char::is_control)
        };
        for r in &t.added_risks {
            if !id_ok(&r.id) {
                return Err(CatalogError(format!(
                    "added risk id `{}` must be 1 to 64 bytes of text without `:`, control \
                     characters or surrounding space",
                    r.id
                )));
            }
        }
        for c in &t.added {
            if !id_ok(&c.id) {
                return Err(CatalogError(format!(
                    "added control id `{}` must be 1 to 64 bytes of text without `:`, control \
                     characters or surrounding space, not ending in `/retest`",
                    c.id
                )));
            }
            if c.description.trim().is_empty() {
                return Err(CatalogError(format!(
                    "added control `{}` needs a description",
                    c.id
                )));
            }
            if self.controls.iter().any(|x| x.id == c.id) {
                return Err(CatalogError(format!(
                    "added control `{}` already exists",
                    c.id
                )));
            }
            self.controls.push(c.clone());
        }
        for id in &t.disabled {
            let c = self.control_mut(id, "disabled")?;
            c.enabled = false;
        }
        for (id, change) in &t.changed {
            let c = self.control_mut(id, "changed")?;
            if let Some(v) = &change.description {
                c.description = v.clone();
            }
            if let Some(v) = change.frequency {
                c.frequency = v;
            }
            if let Some(v) = &change.owner {
                c.owner = v.clone();
            }
            if let Some(v) = &change.risks {
                c.risks = v.clone();
            }
            if let Some(v) = &change.criteria {
                c.criteria = v.clone();
            }
        }
        let known: BTreeSet<&str> = self.risks.iter().map(|r| r.id.as_str()).collect();
        for c in &self.controls {
            if let Some(r) = c.risks.iter().find(|r| !known.contains(r.as_str())) {
                return Err(CatalogError(format!(
                    "control `{}` names risk `{r}`, which the catalog does not have",
                    c.id
                )));
            }
        }
        Ok(self)
    }

    fn control_mut(&mut self, id: &str, list: &str) -> Result<&mut Control, CatalogError> {
        let ids: Vec<String> = self.controls.iter().map(|c| c.id.clone()).collect();
        self.controls
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                CatalogError(format!(
                    "`{list}` names control `{id}`, which does not exist (controls: {})",
                    ids.join(", ")
                ))
            })
    }

    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }

    /// For every risk, in catalog order, the controls that address it.
    pub fn matrix(&self) -> Vec<MatrixRow> {
        self.risks
            .iter()
            .map(|r| {
                let addressing = self.controls.iter().filter(|c| c.risks.contains(&r.id));
                let (on, off): (Vec<&Control>, Vec<&Control>) = addressing.partition(|c| c.enabled);
                MatrixRow {
                    risk: r.id.clone(),
                    description: r.description.clone(),
                    controls: on.into_iter().map(|c| c.id.clone()).collect(),
                    disabled: off.into_iter().map(|c| c.id.clone()).collect(),
                }
            })
            .collect()
    }

    /// The risks no enabled control addresses.
    pub fn design_deficiencies(&self) -> Vec<DesignDeficiency> {
        self.matrix()
            .into_iter()
            .filter(|row| row.controls.is_empty())
            .map(|row| DesignDeficiency {
                reason: if row.disabled.is_empty() {
                    "no control addresses this risk".to_string()
                } else {
                    format!(
                        "the controls that address it are disabled: {}",
                        row.disabled.join(", ")
                    )
                },
                risk: row.risk,
                description: row.description,
            })
            .collect()
    }
}

impl Default for Catalog {
    /// The catalog changegate ships.
    fn default() -> Self {
        let risks = RISKS
            .iter()
            .map(|(id, d)| Risk {
                id: id.to_string(),
                description: d.to_string(),
            })
            .collect();
        let controls = CONTROLS
            .iter()
            .map(|c| Control {
                id: c.id.to_string(),
                description: c.description.to_string(),
                nature: c.nature,
                performed: c.performed,
                frequency: c.frequency,
                owner: c.owner.to_string(),
                risks: c.risks.iter().map(|r| r.to_string()).collect(),
                criteria: c.criteria.iter().map(|r| r.to_string()).collect(),
                attributes: c.attributes.iter().map(|r| r.to_string()).collect(),
                enabled: true,
            })
            .collect();
        Catalog { risks, controls }
    }
}

const RISKS: &[(&str, &str)] = &[
    (
        "R01",
        "Work on a change starts before anyone with authority has agreed to it.",
    ),
    (
        "R02",
        "A change is not recorded, or its record does not follow it from request to close.",
    ),
    (
        "R03",
        "What a change delivers is not what management asked for.",
    ),
    (
        "R04",
        "A change's effect on commitments, requirements or other systems is not weighed.",
    ),
    (
        "R05",
        "Known incidents, breaches and weaknesses are left out of the changes made about them.",
    ),
    (
        "R06",
        "A change misbehaves in production or opens a security hole.",
    ),
    ("R07", "A change reaches production without authorization."),
    (
        "R08",
        "A change, configuration changes included, goes ahead without proper approval.",
    ),
    (
        "R09",
        "An authorized configuration change is entered wrongly.",
    ),
    (
        "R10",
        "Testing is too thin to catch defects before deployment.",
    ),
    (
        "R11",
        "A deployment is late or collides with another scheduled deployment.",
    ),
    (
        "R12",
        "One person holds duties that should be split: building, reviewing, approving, deploying.",
    ),
    (
        "R13",
        "A change carries malicious code or a vulnerability nobody notices.",
    ),
    (
        "R14",
        "A fix for a known vulnerability is not deployed in time.",
    ),
    (
        "R15",
        "A change fails to meet objectives, commitments or requirements.",
    ),
    (
        "R16",
        "Emergency changes are not approved, or are not real emergencies.",
    ),
    ("R17", "Unauthorized changes go undetected."),
    (
        "R18",
        "Production and non-production environments are not kept apart.",
    ),
    ("R19", "A change made in production is not logged."),
    (
        "R20",
        "Too many people can change production or the code repository.",
    ),
    (
        "R21",
        "A change cannot be traced to the person who made it.",
    ),
    ("R22", "Versions are not kept under control."),
];

struct ShippedControl {
    id: &'static str,
    description: &'static str,
    nature: Nature,
    performed: Performed,
    frequency: Frequency,
    owner: &'static str,
    risks: &'static [&'static str],
    criteria: &'static [&'static str],
    attributes: &'static [&'static str],
}

use Frequency::{Annual, MultipleTimesADay, PerChange, Quarterly};
use Nature::{Detective, Preventive};
use Performed::{Automated, Manual};

const CONTROLS: &[ShippedControl] = &[
    ShippedControl {
        id: "CM-01",
        description: "A written change management policy and procedure exists and management \
                      reviews it for needed updates at least once a year.",
        nature: Preventive,
        performed: Manual,
        frequency: Annual,
        owner: "change_manager",
        risks: &["R02", "R04", "R18"],
        criteria: &["CC8.1", "CC3.4"],
        attributes: &["policy_reviewed_within_year"],
    },
    ShippedControl {
        id: "CM-02",
        description: "Roles and responsibilities in the change process are defined so that \
                      duties are segregated, and the system enforces the segregation.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R12"],
        criteria: &["CC8.1", "CC6.1"],
        attributes: &["segregation_of_duties"],
    },
    ShippedControl {
        id: "CM-03",
        description: "Changes are tracked in a ticketing system and code in a version-controlled \
                      repository, with testing tools, from request to close.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R02", "R19", "R22"],
        criteria: &["CC8.1"],
        attributes: &["record_complete"],
    },
    ShippedControl {
        id: "CM-04",
        description: "Each change request is evaluated for risk, priority and impact, documented, \
                      and authorized by the business owner and IT management before work \
                      starts.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R01", "R03", "R04", "R05"],
        criteria: &["CC8.1"],
        attributes: &["authorized_before_work"],
    },
    ShippedControl {
        id: "CM-05",
        description: "Test plans and test data are prepared and used in system and regression \
                      testing.",
        nature: Preventive,
        performed: Manual,
        frequency: PerChange,
        owner: "tester",
        risks: &["R10"],
        criteria: &["CC8.1"],
        attributes: &["test_plan_documented"],
    },
    ShippedControl {
        id: "CM-06",
        description: "A peer or an independent quality assurance member reviews, tests and \
                      approves each change for its intended function; issues go back to the \
                      developer for rework.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "peer_reviewer",
        risks: &["R06", "R10", "R12", "R13"],
        criteria: &["CC8.1"],
        attributes: &["independent_review"],
    },
    ShippedControl {
        id: "CM-07",
        description: "Users test and accept changes made for them before deployment; issues go \
                      back to the developer for rework.",
        nature: Preventive,
        performed: Manual,
        frequency: PerChange,
        owner: "business_owner",
        risks: &["R03", "R15"],
        criteria: &["CC8.1"],
        attributes: &["customer_accepted"],
    },
    ShippedControl {
        id: "CM-08",
        description: "Once testing is approved, the change advisory board approves the change \
                      and schedules its deployment.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "cab_member",
        risks: &["R08", "R11"],
        criteria: &["CC8.1"],
        attributes: &["approved_for_deployment", "inside_window"],
    },
    ShippedControl {
        id: "CM-09",
        description: "Every change is approved before it is deployed to production, and the \
                      deployment gate lets through only approved artifacts.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "release_manager",
        risks: &["R07", "R08"],
        criteria: &["CC8.1"],
        attributes: &["approved_for_deployment", "tests_passed"],
    },
    ShippedControl {
        id: "CM-10",
        description: "Development, test, staging and production environments are separate.",
        nature: Preventive,
        performed: Manual,
        frequency: Annual,
        owner: "release_manager",
        risks: &["R18"],
        criteria: &["CC8.1"],
        attributes: &["environments_separate"],
    },
    ShippedControl {
        id: "CM-11",
        description: "Version control records every change and who made it.",
        nature: Detective,
        performed: Automated,
        frequency: MultipleTimesADay,
        owner: "engineer",
        risks: &["R21", "R22"],
        criteria: &["CC8.1"],
        attributes: &["author_identified"],
    },
    ShippedControl {
        id: "CM-12",
        description: "Branch protection requires every change to be reviewed before it is \
                      merged to the main branch; bypasses and weakened settings are reported.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "release_manager",
        risks: &["R07", "R13"],
        criteria: &["CC8.1", "CC6.8"],
        attributes: &["independent_review", "protection_respected"],
    },
    ShippedControl {
        id: "CM-13",
        description: "A notification goes out whenever a change is merged or deployed, so that \
                      no change goes unnoticed.",
        nature: Detective,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R17"],
        criteria: &["CC8.1", "CC7.1"],
        attributes: &["notified"],
    },
    ShippedControl {
        id: "CM-14",
        description: "Access to production and to the code repository is limited to authorized \
                      people, and reviewed each quarter.",
        nature: Preventive,
        performed: Manual,
        frequency: Quarterly,
        owner: "admin",
        risks: &["R20"],
        criteria: &["CC6.1", "CC6.2"],
        attributes: &["access_review_performed"],
    },
    ShippedControl {
        id: "CM-15",
        description: "Developers cannot deploy to production without oversight: only \
                      authorized deployers deploy, never their own unreviewed work.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "release_manager",
        risks: &["R12", "R20"],
        criteria: &["CC8.1", "CC6.1"],
        attributes: &["authorized_deployer"],
    },
    ShippedControl {
        id: "CM-16",
        description: "Every production change is logged in a tamper-evident ledger and \
                      reconciled against authorized change records to find unauthorized \
                      changes.",
        nature: Detective,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R07", "R17", "R19", "R21"],
        criteria: &["CC8.1", "CC7.1"],
        attributes: &["change_record_exists"],
    },
    ShippedControl {
        id: "CM-17",
        description: "Each release candidate is scanned for vulnerabilities, and findings are \
                      fixed before it is deployed.",
        nature: Detective,
        performed: Automated,
        frequency: PerChange,
        owner: "engineer",
        risks: &["R06", "R13", "R14"],
        criteria: &["CC7.1", "CC6.8"],
        attributes: &["scan_passed"],
    },
    ShippedControl {
        id: "CM-18",
        description: "Emergency changes are approved after the fact within the policy's window, \
                      and emergencies used to skip the CAB are flagged.",
        nature: Detective,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R16"],
        criteria: &["CC8.1"],
        attributes: &["emergency_approval"],
    },
    ShippedControl {
        id: "CM-19",
        description: "A change that cannot be tested before deployment has a documented \
                      rollback plan.",
        nature: Preventive,
        performed: Automated,
        frequency: PerChange,
        owner: "engineer",
        risks: &["R06", "R10"],
        criteria: &["CC8.1"],
        attributes: &["tested_or_rollback_plan"],
    },
    ShippedControl {
        id: "CM-20",
        description: "A post-implementation review confirms each change works as intended in \
                      production.",
        nature: Detective,
        performed: Automated,
        frequency: PerChange,
        owner: "change_manager",
        risks: &["R06", "R09", "R15"],
        criteria: &["CC8.1"],
        attributes: &["post_implementation_reviewed"],
    },
    ShippedControl {
        id: "CM-21",
        description: "Release notes about each change reach the internal and external \
                      stakeholders it affects.",
        nature: Detective,
        performed: Automated,
        frequency: PerChange,
        owner: "release_manager",
        risks: &["R11", "R15"],
        criteria: &["CC8.1"],
        attributes: &["communicated"],
    },
];
