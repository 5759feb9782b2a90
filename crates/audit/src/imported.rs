//! Tests of change records imported from other change systems
//! ([`evidence::records::ImportedChange`]): what an auditor checks on each record of a
//! population that changegate did not run itself.
//!
//! Pure: no clock is read. Whether a change is past its planned end is judged by the
//! record's own last update (`updated`), so the same record always gives the same codes.
//! Times are compared at whole seconds (fractions are dropped first). A time that is not
//! RFC 3339 counts as absent; records read by [`evidence::records`] always carry valid ones.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use evidence::records::{ChangeType, ImportedChange};

/// What a test found on one imported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The work started (`actual_start`) before the record was opened: the change was made
    /// first and recorded afterwards.
    ImplementedBeforeOpened,
    /// The work started before the planned start, or ended after the planned end. Each side
    /// is compared only when both of its times are recorded.
    OutsidePlannedWindow,
    /// The work ended (`actual_end`) after the record was closed.
    ClosedBeforeImplemented,
    /// No actual start is recorded although the record is closed, or was last updated after
    /// its planned end. Cancelled changes get it too; their state says why.
    NotImplemented,
    /// An implemented emergency change has no approval at most `emergency_window_hours`
    /// after its actual start (an approval before the start counts), in a source that
    /// records approval times.
    EmergencyNotApproved,
    /// An implemented emergency change from a source that records no approval times at all
    /// (BPIC 2014): its approval after the fact cannot be tested from the record and must
    /// be evidenced some other way.
    ApprovalNotRecorded,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ImplementedBeforeOpened => "implemented_before_opened",
            Code::OutsidePlannedWindow => "outside_planned_window",
            Code::ClosedBeforeImplemented => "closed_before_implemented",
            Code::NotImplemented => "not_implemented",
            Code::EmergencyNotApproved => "emergency_not_approved",
            Code::ApprovalNotRecorded => "approval_not_recorded",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests one imported record; the codes come in the order of [`Code`], each at most once.
/// `emergency_window_hours` is the policy's window for approving an emergency change after
/// the fact (72 by default), counted from the actual start.
pub fn test_imported(change: &ImportedChange, emergency_window_hours: u32) -> Vec<Code> {
    let opened = instant(&change.opened);
    let planned_start = instant(&change.planned_start);
    let planned_end = instant(&change.planned_end);
    let actual_start = instant(&change.actual_start);
    let actual_end = instant(&change.actual_end);
    let closed = instant(&change.closed);
    let approved = instant(&change.approved_at);
    let updated = instant(&change.updated);
    let before = |a: Option<OffsetDateTime>, b: Option<OffsetDateTime>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    };

    let mut codes = Vec::new();
    if before(actual_start, opened) {
        codes.push(Code::ImplementedBeforeOpened);
    }
    if before(actual_start, planned_start) || before(planned_end, actual_end) {
        codes.push(Code::OutsidePlannedWindow);
    }
    if before(closed, actual_end) {
        codes.push(Code::ClosedBeforeImplemented);
    }
    if actual_start.is_none() && (closed.is_some() || before(planned_end, updated)) {
        codes.push(Code::NotImplemented);
    }
    if let (ChangeType::Emergency, Some(start)) = (change.change_type, actual_start) {
        let due = start + Duration::hours(emergency_window_hours.into());
        if !change.approvals_recorded {
            codes.push(Code::ApprovalNotRecorded);
        } else if approved.is_none_or(|a| a > due) {
            codes.push(Code::EmergencyNotApproved);
        }
    }
    codes
}

/// A recorded time at whole seconds.
fn instant(text: &Option<String>) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(text.as_deref()?, &Rfc3339).ok()?;
    t.replace_nanosecond(0).ok()
}
