//! The auditor's side of changegate: reconciliation of what actually changed production
//! against the change records that authorized it, and the sampling of control populations.
//!
//! Pure: the caller reads the repository, the evidence and the change records and passes
//! them in; the same inputs always give the same report, so an auditor can reperform it.

pub mod catalog;
pub mod deficiency;
pub mod engagement;
pub mod identity;
pub mod imported;
pub mod oscal;
pub mod reconcile;
pub mod report;
pub mod sampling;
pub mod workbook;

pub use reconcile::{
    population_hash, reconcile, Attribute, AttributeResult, CarriedCommit, CommitEvent,
    DeploymentEvent, Finding, Inputs, Population, ProductionEvent, Report, Rules, StandingChange,
    Summary, UserFacts, Verdict, VerdictRow,
};
