//! The change policy: who may take which action, which stages each kind of change goes
//! through (its change model), and how many approvals each approval step needs. An
//! organization tailors it in a TOML file; the default follows common practice for
//! service organizations and is embedded from `policy/default.toml`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vocab::{ActionKind, Category, ChangeType, Level, Role, Stage};

/// The default policy file, as shipped.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policy/default.toml");

/// A policy that failed to load, with the place that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(String);

/// The tailored rules the lifecycle enforces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub emergency_approval_window_hours: u32,
    pub customer_acceptance: bool,
    pub rollback_plan_always: bool,
    pub roles: BTreeMap<ActionKind, BTreeSet<Role>>,
    pub models: Vec<ModelRule>,
    pub approvals: Vec<ApprovalRule>,
    /// The digest, computed on first use: every decision records it.
    #[serde(skip)]
    digest: DigestCache,
}

/// A lazily computed digest that never takes part in comparisons.
#[derive(Debug, Clone, Default)]
struct DigestCache(std::sync::OnceLock<String>);

impl PartialEq for DigestCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Stages skipped by changes that match every present key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRule {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub change_type: Option<ChangeType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub testable: Option<bool>,
    pub skip: Vec<Stage>,
}

/// How many approvers an approval step needs, and from which groups, for the changes it
/// matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    pub action: ActionKind,
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub change_type: Vec<ChangeType>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub category: Vec<Category>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub risk: Vec<Level>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default)]
    pub count: u32,
}

/// Accepts `key = "value"` as well as `key = ["value", …]`.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::<T>::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

/// What one approval step asks for on one change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Requirement {
    /// Distinct approvers needed.
    pub count: u32,
    /// One approver from each of these groups (each approver fills at most one).
    pub groups: Vec<String>,
}

/// The stages one change goes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeModel {
    pub stages: Vec<Stage>,
}

impl ChangeModel {
    /// Whether the model includes a main-line stage.
    pub fn includes(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }

    /// The stage a change must be in for an action that leads to `target`.
    pub fn predecessor(&self, target: Stage) -> Option<Stage> {
        let i = self.stages.iter().position(|s| *s == target)?;
        i.checked_sub(1).map(|j| self.stages[j])
    }

    /// The included stage that follows `stage` on the main line.
    pub fn successor(&self, stage: Stage) -> Option<Stage> {
        let i = self.stages.iter().position(|s| *s == stage)?;
        self.stages.get(i + 1).copied()
    }
}

/// The file form: every key optional, unknown keys refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    emergency_approval_window_hours: Option<u32>,
    customer_acceptance: Option<bool>,
    rollback_plan_always: Option<bool>,
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    models: Option<Vec<ModelRule>>,
    approvals: Option<Vec<ApprovalRule>>,
}

impl Default for Policy {
    fn default() -> Self {
        // The embedded file is covered by a test; failing here would be a build defect.
        Policy::from_toml_over(DEFAULT_POLICY_TOML, None)
            .unwrap_or_else(|e| panic!("embedded default policy is invalid: {e}"))
    }
}

impl Policy {
    /// Reads a policy file. Keys left out keep their default values; `roles` entries
    /// replace the default for the actions they name.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml_over(text, Some(Policy::default()))
    }

    fn from_toml_over(text: &str, base: Option<Policy>) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let mut policy = base.unwrap_or(Policy {
            emergency_approval_window_hours: 72,
            customer_acceptance: true,
            rollback_plan_always: false,
            roles: BTreeMap::new(),
            models: Vec::new(),
            approvals: Vec::new(),
            digest: DigestCache::default(),
        });
        if let Some(h) = file.emergency_approval_window_hours {
            if h == 0 || h > 8760 {
                return Err(PolicyError(
                    "`emergency_approval_window_hours` must be between 1 and 8760 (a year)".into(),
                ));
            }
            policy.emergency_approval_window_hours = h;
        }
        if let Some(v) = file.customer_acceptance {
            policy.customer_acceptance = v;
        }
        if let Some(v) = file.rollback_plan_always {
            policy.rollback_plan_always = v;
        }
        for (action, roles) in file.roles {
            let action: ActionKind = action
                .parse()
                .map_err(|e| PolicyError(format!("[roles]: {e}")))?;
            let mut set = BTreeSet::new();
            for role in roles {
                let role: Role = role
                    .parse()
                    .map_err(|e| PolicyError(format!("[roles] `{action}`: {e}")))?;
                set.insert(role);
            }
            policy.roles.insert(action, set);
        }
        if let Some(models) = file.models {
            for (i, rule) in models.iter().enumerate() {
                for stage in &rule.skip {
                    if !Stage::SKIPPABLE.contains(stage) {
                        return Err(PolicyError(format!(
                            "[[models]] #{}: stage `{stage}` cannot be skipped",
                            i + 1
                        )));
                    }
                }
            }
            policy.models = models;
        }
        if let Some(approvals) = file.approvals {
            for (i, rule) in approvals.iter().enumerate() {
                if !ActionKind::APPROVALS.contains(&rule.action) {
                    return Err(PolicyError(format!(
                        "[[approvals]] #{}: `{}` is not an approval step (expected one of: {})",
                        i + 1,
                        rule.action,
                        ActionKind::APPROVALS
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                if rule.count > 50 {
                    return Err(PolicyError(format!(
                        "[[approvals]] #{}: `count` must be at most 50",
                        i + 1
                    )));
                }
                if rule.groups.iter().any(|g| g.trim().is_empty()) {
                    return Err(PolicyError(format!(
                        "[[approvals]] #{}: a group name is empty",
                        i + 1
                    )));
                }
            }
            policy.approvals = approvals;
        }
        for action in ActionKind::ALL {
            if policy.roles.get(action).is_none_or(|r| r.is_empty()) {
                return Err(PolicyError(format!(
                    "[roles] `{action}` names no role: nobody could ever take that action"
                )));
            }
        }
        policy.digest = DigestCache::default();
        Ok(policy)
    }

    /// A digest that names this exact policy; recorded with every decision it made.
    ///
    /// Computed once per policy value; the fields are not to be changed after it was asked
    /// for.
    pub fn digest(&self) -> String {
        self.digest
            .0
            .get_or_init(|| {
                let json = serde_json::to_vec(self).unwrap_or_default();
                hex::encode(Sha256::digest(json))
            })
            .clone()
    }

    /// The roles allowed to take an action.
    pub fn roles_for(&self, action: ActionKind) -> impl Iterator<Item = Role> + '_ {
        self.roles.get(&action).into_iter().flatten().copied()
    }

    /// The stages a change of this kind goes through.
    pub fn model(
        &self,
        change_type: ChangeType,
        category: Category,
        testable: bool,
    ) -> ChangeModel {
        let mut skipped = BTreeSet::new();
        for rule in &self.models {
            let matches = rule.change_type.is_none_or(|t| t == change_type)
                && rule.category.is_none_or(|c| c == category)
                && rule.testable.is_none_or(|t| t == testable);
            if matches {
                skipped.extend(rule.skip.iter().copied());
            }
        }
        let stages = Stage::MAIN_LINE
            .iter()
            .copied()
            .filter(|s| !skipped.contains(s))
            .collect();
        ChangeModel { stages }
    }

    /// What an approval step asks for on a change of this kind and risk.
    pub fn requirement(
        &self,
        action: ActionKind,
        change_type: ChangeType,
        category: Category,
        risk: Option<Level>,
    ) -> Requirement {
        let mut groups: Vec<String> = Vec::new();
        let mut count = 1;
        for rule in &self.approvals {
            let matches = rule.action == action
                && (rule.change_type.is_empty() || rule.change_type.contains(&change_type))
                && (rule.category.is_empty() || rule.category.contains(&category))
                && (rule.risk.is_empty() || risk.is_some_and(|r| rule.risk.contains(&r)));
            if matches {
                count = count.max(rule.count);
                for g in &rule.groups {
                    if !groups.contains(g) {
                        groups.push(g.clone());
                    }
                }
            }
        }
        let count = count.max(groups.len() as u32);
        Requirement { count, groups }
    }
}

impl ActionKind {
    /// The actions that give an approval counted against a requirement.
    pub const APPROVALS: &'static [ActionKind] = &[
        ActionKind::Authorize,
        ActionKind::ApproveDeployment,
        ActionKind::ApproveRetroactively,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_loads_and_covers_every_action() {
        let p = Policy::default();
        assert_eq!(p.emergency_approval_window_hours, 72);
        for a in ActionKind::ALL {
            assert!(p.roles_for(*a).next().is_some(), "no role may take `{a}`");
        }
    }

    #[test]
    fn standard_changes_skip_authorization_and_configuration_skips_peer_review() {
        let p = Policy::default();
        let m = p.model(ChangeType::Standard, Category::Application, true);
        assert!(!m.includes(Stage::Authorized));
        assert_eq!(m.predecessor(Stage::Planned), Some(Stage::Evaluated));
        let m = p.model(ChangeType::Normal, Category::Configuration, true);
        assert!(!m.includes(Stage::PeerReviewed));
        assert_eq!(m.predecessor(Stage::Tested), Some(Stage::Planned));
        let m = p.model(ChangeType::Normal, Category::Database, false);
        assert!(!m.includes(Stage::Tested));
        assert_eq!(
            m.predecessor(Stage::ApprovedForDeployment),
            Some(Stage::PeerReviewed)
        );
    }

    #[test]
    fn requirements_of_matching_rules_add_up() {
        let p = Policy::default();
        let r = p.requirement(
            ActionKind::ApproveDeployment,
            ChangeType::Normal,
            Category::Database,
            Some(Level::High),
        );
        assert_eq!(r.count, 2);
        assert_eq!(r.groups, vec!["dba".to_string(), "cab_member".to_string()]);
        let r = p.requirement(
            ActionKind::ApproveDeployment,
            ChangeType::Normal,
            Category::Database,
            Some(Level::Low),
        );
        assert_eq!(
            r,
            Requirement {
                count: 1,
                groups: vec![]
            }
        );
    }

    #[test]
    fn a_tailored_file_overrides_only_what_it_names() {
        let p = Policy::from_toml(
            "emergency_approval_window_hours = 24\n[roles]\nimplement = [\"engineer\"]\n",
        )
        .unwrap();
        assert_eq!(p.emergency_approval_window_hours, 24);
        assert_eq!(
            p.roles_for(ActionKind::Implement).collect::<Vec<_>>(),
            vec![Role::Engineer]
        );
        assert_eq!(
            p.roles_for(ActionKind::Test).collect::<Vec<_>>(),
            vec![Role::Tester],
            "actions not named keep their default roles"
        );
        assert_ne!(p.digest(), Policy::default().digest());
    }

    #[test]
    fn bad_policy_files_name_what_is_wrong() {
        let e = Policy::from_toml("[roles]\nimplement = [\"deployer\"]\n").unwrap_err();
        assert!(e.to_string().contains("unknown role `deployer`"), "{e}");
        let e = Policy::from_toml("[[models]]\nskip = [\"implemented\"]\n").unwrap_err();
        assert!(e.to_string().contains("cannot be skipped"), "{e}");
        let e = Policy::from_toml("colour = 1\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Policy::from_toml("emergency_approval_window_hours = 4294967295\n").unwrap_err();
        assert!(e.to_string().contains("between 1 and 8760"), "{e}");
        let e = Policy::from_toml("[roles]\nauthorize = []\n").unwrap_err();
        assert!(e.to_string().contains("`authorize` names no role"), "{e}");
        let e =
            Policy::from_toml("[[approvals]]\naction = \"authorize\"\ncount = 1000\n").unwrap_err();
        assert!(e.to_string().contains("at most 50"), "{e}");
        let e = Policy::from_toml("[[approvals]]\naction = \"test\"\ncount = 2\n").unwrap_err();
        assert!(e.to_string().contains("not an approval step"), "{e}");
    }
}
