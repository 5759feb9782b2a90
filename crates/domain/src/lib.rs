//! The change lifecycle of changegate: changes, the event-sourced state machine, change
//! models, roles, segregation of duties and the policy that tailors them.
//!
//! Pure: no I/O, no clock, no async. Time and the actor are passed in, so every decision can
//! be reperformed from the recorded events.

pub mod action;
pub mod change;
pub mod decide;
pub mod exceptions;
pub mod policy;
pub mod vocab;

pub use action::{Action, NewChange};
pub use change::{Actor, Approval, ApprovalStep, Change, ChangeEvent, Recorded};
pub use decide::{decide, request, Context, Refusal, RefusalKind};
pub use exceptions::{exceptions, ControlException, ExceptionStatus};
pub use policy::{Policy, PolicyError};
pub use vocab::{ActionKind, Category, ChangeType, Level, Role, Stage};
