//! The closed vocabularies of the domain: stages, change types, categories, levels, roles
//! and action names. Each one has a stable snake_case spelling used on the wire, in the
//! policy file and in the ledger.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownWord {
                        what: $what,
                        word: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A word that is not part of a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{word}`, expected one of: {}", expected.join(", "))]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
    pub expected: &'static [&'static str],
}

vocabulary! {
    /// One step of the lifecycle, including the side exits.
    Stage, "stage" {
        Requested => "requested",
        Evaluated => "evaluated",
        Authorized => "authorized",
        Planned => "planned",
        PeerReviewed => "peer_reviewed",
        Tested => "tested",
        ApprovedForDeployment => "approved_for_deployment",
        Implemented => "implemented",
        Reviewed => "post_implementation_reviewed",
        Communicated => "communicated",
        Closed => "closed",
        Rejected => "rejected",
        Deferred => "deferred",
        Cancelled => "cancelled",
        RolledBack => "rolled_back",
    }
}

impl Stage {
    /// The main line of the lifecycle, in order.
    pub const MAIN_LINE: &'static [Stage] = &[
        Stage::Requested,
        Stage::Evaluated,
        Stage::Authorized,
        Stage::Planned,
        Stage::PeerReviewed,
        Stage::Tested,
        Stage::ApprovedForDeployment,
        Stage::Implemented,
        Stage::Reviewed,
        Stage::Communicated,
        Stage::Closed,
    ];

    /// Stages a change model may leave out.
    pub const SKIPPABLE: &'static [Stage] = &[
        Stage::Evaluated,
        Stage::Authorized,
        Stage::PeerReviewed,
        Stage::Tested,
        Stage::Communicated,
    ];

    /// No action leads out of a terminal stage.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Closed | Stage::Rejected | Stage::Cancelled)
    }

    /// Before anything reached production: the stages in which a change may still be
    /// edited, rejected or cancelled.
    pub fn is_before_implementation(self) -> bool {
        matches!(
            self,
            Stage::Requested
                | Stage::Evaluated
                | Stage::Authorized
                | Stage::Planned
                | Stage::PeerReviewed
                | Stage::Tested
                | Stage::ApprovedForDeployment
                | Stage::Deferred
        )
    }

    /// Position on the main line, if the stage is on it.
    pub fn position(self) -> Option<usize> {
        Stage::MAIN_LINE.iter().position(|s| *s == self)
    }
}

vocabulary! {
    /// How a change is governed: by a pre-approved template, the full process, or after the
    /// fact.
    ChangeType, "change type" {
        Standard => "standard",
        Normal => "normal",
        Emergency => "emergency",
    }
}

vocabulary! {
    /// What a change touches; it selects the change model together with the type.
    Category, "category" {
        Application => "application",
        Database => "database",
        Infrastructure => "infrastructure",
        Configuration => "configuration",
    }
}

vocabulary! {
    /// Risk and priority levels.
    Level, "level" {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
}

vocabulary! {
    /// What a person or machine identity is allowed to do.
    Role, "role" {
        Requester => "requester",
        Engineer => "engineer",
        PeerReviewer => "peer_reviewer",
        Tester => "tester",
        ChangeManager => "change_manager",
        CabMember => "cab_member",
        ReleaseManager => "release_manager",
        BusinessOwner => "business_owner",
        Auditor => "auditor",
        Admin => "admin",
    }
}

vocabulary! {
    /// The name of every action on a change.
    ActionKind, "action" {
        Request => "request",
        Amend => "amend",
        Evaluate => "evaluate",
        Authorize => "authorize",
        Reject => "reject",
        Defer => "defer",
        Resume => "resume",
        Plan => "plan",
        PeerReview => "peer_review",
        Test => "test",
        Accept => "accept",
        ApproveDeployment => "approve_deployment",
        Implement => "implement",
        ReviewImplementation => "review_implementation",
        Communicate => "communicate",
        Close => "close",
        Cancel => "cancel",
        RollBack => "roll_back",
        ApproveRetroactively => "approve_retroactively",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_through_its_spelling() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), *s);
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        for a in ActionKind::ALL {
            assert_eq!(a.as_str().parse::<ActionKind>().unwrap(), *a);
        }
    }

    #[test]
    fn unknown_word_names_what_was_expected() {
        let err = "urgent".parse::<ChangeType>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown change type `urgent`, expected one of: standard, normal, emergency"
        );
    }
}
