//! Deficiencies and what people record about them after testing raised them.
//!
//! A deficiency is named by its subject and kind: `CM-03:operating` for a control that did
//! not operate effectively in the period, `R07:design` for a risk no enabled control
//! covers. Auditors assess its significance; management answers with a response, an owner
//! and a date by which it will be remediated, and later says when the remediation was put
//! in place. Each of these is an update in the ledger, naming the deficiency and the
//! engagement period it was raised in; an engagement over that period folds the updates in
//! ledger order, a later value of a field replacing an earlier one.
//!
//! A remediated operating deficiency is **retested** by the engagement itself: the control's
//! items that happened at or after the remediation, within the period, are a population of
//! their own, sampled with the same rules and the same seed (the draw keyed by
//! `CONTROL/retest` instead of `CONTROL`, so that the retest sample is independent of the
//! first). Its exceptions within the tolerable rate make the deficiency remediated; above
//! it, the remediation failed; with nothing after the remediation to test, it awaits its
//! retest. A design deficiency is retested by the tailoring: it is gone once an enabled
//! control covers the risk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::engagement::{Conclusion, PopulationRecord, TestResult};
use crate::sampling::{Drawn, SampleSize};

/// Whether a deficiency is in how a control is designed or in how it operated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeficiencyKind {
    Design,
    OperatingEffectiveness,
}

impl DeficiencyKind {
    /// The suffix of a deficiency's id.
    pub fn suffix(self) -> &'static str {
        match self {
            DeficiencyKind::Design => "design",
            DeficiencyKind::OperatingEffectiveness => "operating",
        }
    }
}

/// How serious a deficiency is, in the terms auditors report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Significance {
    /// A control deficiency that is neither of the others.
    Deficiency,
    SignificantDeficiency,
    MaterialWeakness,
}

impl Significance {
    pub fn as_str(self) -> &'static str {
        match self {
            Significance::Deficiency => "deficiency",
            Significance::SignificantDeficiency => "significant_deficiency",
            Significance::MaterialWeakness => "material_weakness",
        }
    }
}

/// Where a deficiency stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Raised; management has not responded.
    Open,
    /// Management responded; the remediation is not in place yet.
    RemediationPlanned,
    /// The remediation date management set has passed with no remediation recorded.
    RemediationOverdue,
    /// Remediated, with nothing after the remediation to retest yet.
    AwaitingRetest,
    /// The retest found the control operating within the tolerable rate.
    Remediated,
    /// The retest found exceptions above the tolerable rate.
    RemediationFailed,
}

/// One update about a deficiency, as recorded in the ledger. Only the fields given change;
/// `deficiency`, `from` and `to` say which deficiency of which engagement period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeficiencyUpdate {
    /// `CM-03:operating` or `R07:design`.
    pub deficiency: String,
    /// The engagement period's first and last instants, RFC 3339.
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<Significance>,
    /// Why the significance was judged so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_response: Option<String>,
    /// Who in management answers for the remediation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// By when management will remediate, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_due: Option<String>,
    /// When the remediation was put in place, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediated_at: Option<String>,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// Who recorded it and when (filled in by the server).
    #[serde(default)]
    pub recorded_by: String,
    #[serde(default)]
    pub recorded_at: String,
}

impl DeficiencyUpdate {
    /// The fields only an auditor sets.
    pub fn sets_assessment(&self) -> bool {
        self.significance.is_some() || self.rationale.is_some()
    }

    /// The fields only management sets.
    pub fn sets_response(&self) -> bool {
        self.management_response.is_some()
            || self.owner.is_some()
            || self.remediation_due.is_some()
            || self.remediated_at.is_some()
            || self.remediation.is_some()
    }
}

/// A retest of a remediated control: its items at or after the remediation, sampled anew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retest {
    /// The remediation instant the retest population starts at.
    pub from: String,
    pub population: PopulationRecord,
    pub sample_size: SampleSize,
    pub sample: Vec<Drawn>,
    /// Items the first sample found failing at or after the remediation, tested with the
    /// retest whatever it draws.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_deviations: Vec<String>,
    pub results: Vec<TestResult>,
    pub exceptions: u64,
    pub deviation_rate: f64,
    pub conclusion: Conclusion,
}

/// A deficiency raised by testing, with what people recorded about it and its retest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deficiency {
    /// `CM-03:operating`, `R07:design`.
    pub id: String,
    pub kind: DeficiencyKind,
    /// The control (operating) or the risk (design).
    pub subject: String,
    pub description: String,
    /// The failed sample items that raised it.
    pub items: Vec<String>,
    pub significance: Option<Significance>,
    pub rationale: Option<String>,
    pub management_response: Option<String>,
    pub owner: Option<String>,
    pub remediation_due: Option<String>,
    pub remediated_at: Option<String>,
    pub remediation: Option<String>,
    pub retest: Option<Retest>,
    pub status: Status,
    /// Every update applied, oldest first: who, when and what changed.
    pub history: Vec<String>,
}

/// The id of a deficiency of this kind about this control or risk.
pub fn deficiency_id(kind: DeficiencyKind, subject: &str) -> String {
    format!("{subject}:{}", kind.suffix())
}

/// Whether `id` is shaped like a deficiency id (a control or risk id, `:design` or
/// `:operating`).
pub fn valid_id(id: &str) -> bool {
    let Some((subject, kind)) = id.rsplit_once(':') else {
        return false;
    };
    matches!(kind, "design" | "operating")
        && !subject.is_empty()
        && subject.len() <= 64
        && subject.trim() == subject
        && !subject.contains(':')
        && !subject.chars().any(char::is_control)
}

/// What the updates of one period say about its deficiencies, by deficiency id.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub significance: Option<Significance>,
    pub rationale: Option<String>,
    pub management_response: Option<String>,
    pub owner: Option<String>,
    pub remediation_due: Option<String>,
    pub remediated_at: Option<String>,
    pub remediation: Option<String>,
    pub history: Vec<String>,
}

impl Folded {
    /// The remediation instant, if one was recorded and reads.
    pub fn remediated(&self) -> Option<OffsetDateTime> {
        self.remediated_at
            .as_deref()
            .and_then(|t| domain::action::parse_instant("remediated_at", t).ok())
    }
}

/// Whether an update is about the engagement over `period` (the same first and last
/// instants, however they are written: a day stands for its first or last second).
pub fn same_period(update: &DeficiencyUpdate, period: &(String, String)) -> bool {
    let from = |t: &str| crate::engagement::period_bound("from", t, false).ok();
    let to = |t: &str| crate::engagement::period_bound("to", t, true).ok();
    match (
        from(&update.from),
        to(&update.to),
        from(&period.0),
        to(&period.1),
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => a == c && b == d,
        _ => false,
    }
}

/// Folds the updates about the engagement over `period`, in the order given (ledger order).
pub fn fold(updates: &[DeficiencyUpdate], period: &(String, String)) -> BTreeMap<String, Folded> {
    let mut out: BTreeMap<String, Folded> = BTreeMap::new();
    for u in updates.iter().filter(|u| same_period(u, period)) {
        let f = out.entry(u.deficiency.clone()).or_default();
        let mut changed = Vec::new();
        let mut set = |field: &mut Option<String>, value: &Option<String>, name: &str| {
            if let Some(v) = value {
                *field = Some(v.clone());
                changed.push(format!("{name} `{v}`"));
            }
        };
        set(&mut f.rationale, &u.rationale, "rationale");
        set(
            &mut f.management_response,
            &u.management_response,
            "management response",
        );
        set(&mut f.owner, &u.owner, "owner");
        set(
            &mut f.remediation_due,
            &u.remediation_due,
            "remediation due",
        );
        set(&mut f.remediated_at, &u.remediated_at, "remediated at");
        set(&mut f.remediation, &u.remediation, "remediation");
        if let Some(s) = u.significance {
            f.significance = Some(s);
            changed.insert(0, format!("significance {}", s.as_str()));
        }
        f.history.push(format!(
            "{} by {}: {}",
            u.recorded_at,
            u.recorded_by,
            changed.join("; ")
        ));
    }
    out
}

/// Where a deficiency stands as of `as_of`.
pub fn status(
    kind: DeficiencyKind,
    folded: Option<&Folded>,
    retest: Option<&Retest>,
    as_of: Option<OffsetDateTime>,
) -> Status {
    let Some(f) = folded else {
        return Status::Open;
    };
    if f.remediated().is_none() {
        let due = f
            .remediation_due
            .as_deref()
            .and_then(|t| domain::action::parse_instant("remediation_due", t).ok());
        return match (due, as_of) {
            (Some(due), Some(now)) if due < now => Status::RemediationOverdue,
            _ if f.management_response.is_some() || due.is_some() => Status::RemediationPlanned,
            _ => Status::Open,
        };
    }
    match (kind, retest.map(|r| r.conclusion)) {
        (DeficiencyKind::Design, _) | (_, None) => Status::AwaitingRetest,
        (_, Some(Conclusion::Effective)) => Status::Remediated,
        (_, Some(Conclusion::Deficient)) => Status::RemediationFailed,
        (_, Some(_)) => Status::AwaitingRetest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str, f: impl FnOnce(&mut DeficiencyUpdate)) -> DeficiencyUpdate {
        let mut u = DeficiencyUpdate {
            deficiency: id.into(),
            from: "2026-01-01T00:00:00Z".into(),
            to: "2026-12-31T23:59:59Z".into(),
            significance: None,
            rationale: None,
            management_response: None,
            owner: None,
            remediation_due: None,
            remediated_at: None,
            remediation: None,
            recorded_by: "ava".into(),
            recorded_at: "2026-11-02T10:00:00Z".into(),
        };
        f(&mut u);
        u
    }

    #[test]
    fn ids_are_a_subject_and_a_kind() {
        assert!(valid_id("CM-03:operating"));
        assert!(valid_id("R07:design"));
        assert!(!valid_id("CM-03"));
        assert!(!valid_id("CM-03:effective"));
        assert!(!valid_id(":design"));
        assert!(!valid_id("CM\n03:design"));
        assert!(!valid_id(" CM-03:design"));
        assert!(valid_id("2nd Review/QA:operating"));
        assert_eq!(
            deficiency_id(DeficiencyKind::OperatingEffectiveness, "CM-03"),
            "CM-03:operating"
        );
    }

    #[test]
    fn later_values_replace_earlier_ones_and_other_periods_are_ignored() {
        let period = (
            "2026-01-01T00:00:00+00:00".to_string(),
            "2026-12-31T23:59:59Z".to_string(),
        );
        let updates = vec![
            update("CM-03:operating", |u| {
                u.significance = Some(Significance::Deficiency);
                u.rationale = Some("isolated".into());
            }),
            update("CM-03:operating", |u| {
                u.significance = Some(Significance::SignificantDeficiency);
            }),
            update("CM-03:operating", |u| {
                u.from = "2025-01-01T00:00:00Z".into();
                u.significance = Some(Significance::MaterialWeakness);
            }),
        ];
        let folded = fold(&updates, &period);
        let f = &folded["CM-03:operating"];
        assert_eq!(f.significance, Some(Significance::SignificantDeficiency));
        assert_eq!(f.rationale.as_deref(), Some("isolated"));
        assert_eq!(f.history.len(), 2);
    }

    #[test]
    fn status_follows_the_workflow() {
        let now = domain::action::parse_instant("now", "2026-12-15T00:00:00Z").ok();
        let k = DeficiencyKind::OperatingEffectiveness;
        assert_eq!(status(k, None, None, now), Status::Open);
        let mut f = Folded {
            management_response: Some("we will".into()),
            ..Folded::default()
        };
        assert_eq!(status(k, Some(&f), None, now), Status::RemediationPlanned);
        f.remediation_due = Some("2026-12-01T00:00:00Z".into());
        assert_eq!(status(k, Some(&f), None, now), Status::RemediationOverdue);
        f.remediated_at = Some("2026-11-20T00:00:00Z".into());
        assert_eq!(status(k, Some(&f), None, now), Status::AwaitingRetest);
        assert_eq!(
            status(DeficiencyKind::Design, Some(&f), None, now),
            Status::AwaitingRetest
        );
    }
}
