//! The tests of imported change records: each code on a record made for it, the edges of
//! each comparison, and the codes the real BPIC 2014 records give.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use audit::imported::{test_imported, Code};
use evidence::records::{self, ChangeType, Format, ImportedChange};

/// A normal change implemented inside its window and closed afterwards: no code.
fn clean() -> ImportedChange {
    let t = |s: &str| Some(s.to_string());
    ImportedChange {
        format: Format::Csv,
        source_id: "T-1".into(),
        title: t("Replace disk"),
        change_type: ChangeType::Normal,
        type_label: None,
        state: t("closed"),
        risk: None,
        impact: None,
        opened: t("2025-02-01T09:00:00Z"),
        planned_start: t("2025-02-03T18:00:00Z"),
        planned_end: t("2025-02-03T20:00:00Z"),
        actual_start: t("2025-02-03T18:00:00Z"),
        actual_end: t("2025-02-03T20:00:00Z"),
        closed: t("2025-02-04T08:00:00Z"),
        approved_at: t("2025-02-02T12:00:00Z"),
        updated: t("2025-02-04T08:00:00Z"),
        approvals_recorded: true,
        configuration_items: vec![],
        rows: vec![2],
        unmapped: BTreeMap::new(),
    }
}

fn codes(c: &ImportedChange) -> Vec<&'static str> {
    test_imported(c, 72).into_iter().map(Code::as_str).collect()
}

fn set(value: &str) -> Option<String> {
    Some(value.to_string())
}

#[test]
fn a_clean_record_has_no_code() {
    assert!(codes(&clean()).is_empty());
}

#[test]
fn implemented_before_opened() {
    let mut c = clean();
    c.actual_start = set("2025-02-01T08:59:59Z");
    c.planned_start = set("2025-02-01T08:00:00Z");
    assert_eq!(codes(&c), ["implemented_before_opened"]);
    // The same second is not before, whatever the fractions say.
    c.actual_start = set("2025-02-01T09:00:00.100Z");
    c.opened = set("2025-02-01T09:00:00.900Z");
    assert!(codes(&c).is_empty());
    c.opened = None;
    assert!(codes(&c).is_empty());
}

#[test]
fn outside_planned_window() {
    let mut early = clean();
    early.actual_start = set("2025-02-03T17:59:59Z");
    assert_eq!(codes(&early), ["outside_planned_window"]);
    let mut late = clean();
    late.actual_end = set("2025-02-03T20:00:01Z");
    assert_eq!(codes(&late), ["outside_planned_window"]);
    // Both sides out: still one code.
    early.actual_end = late.actual_end.clone();
    assert_eq!(codes(&early), ["outside_planned_window"]);
    // A side is compared only when both of its times exist.
    let mut open_ended = clean();
    open_ended.planned_end = None;
    open_ended.actual_end = set("2025-02-03T23:00:00Z");
    assert!(codes(&open_ended).is_empty());
    let mut unplanned = clean();
    unplanned.planned_start = None;
    unplanned.actual_start = set("2025-02-02T00:00:00Z");
    assert!(codes(&unplanned).is_empty());
}

#[test]
fn closed_before_implemented() {
    let mut c = clean();
    c.closed = set("2025-02-03T19:59:59Z");
    assert_eq!(codes(&c), ["closed_before_implemented"]);
    c.closed = set("2025-02-03T20:00:00Z");
    assert!(codes(&c).is_empty());
    c.closed = set("2025-02-03T19:00:00Z");
    c.actual_end = None;
    assert!(codes(&c).is_empty());
}

#[test]
fn not_implemented() {
    let mut c = clean();
    c.actual_start = None;
    c.actual_end = None;
    assert_eq!(codes(&c), ["not_implemented"]);
    // Open, but last updated after its planned end.
    c.closed = None;
    c.updated = set("2025-02-03T20:00:01Z");
    assert_eq!(codes(&c), ["not_implemented"]);
    // Open and last seen before its planned end passed: nothing to say yet.
    c.updated = set("2025-02-03T20:00:00Z");
    assert!(codes(&c).is_empty());
    c.updated = None;
    assert!(codes(&c).is_empty());
}

fn emergency() -> ImportedChange {
    let mut c = clean();
    c.change_type = ChangeType::Emergency;
    c.approved_at = None;
    c
}

#[test]
fn emergency_not_approved() {
    let mut c = emergency();
    assert_eq!(codes(&c), ["emergency_not_approved"]);
    // Approved after the fact, exactly at the end of the window: in time.
    c.approved_at = set("2025-02-06T18:00:00Z");
    assert!(codes(&c).is_empty());
    c.approved_at = set("2025-02-06T18:00:01Z");
    assert_eq!(codes(&c), ["emergency_not_approved"]);
    assert!(test_imported(&c, 73).is_empty());
    // Approved before the work started: in time too.
    c.approved_at = set("2025-02-03T17:00:00Z");
    assert!(codes(&c).is_empty());
    // Not implemented: no approval after the fact is due.
    let mut planned = emergency();
    planned.actual_start = None;
    planned.actual_end = None;
    planned.closed = None;
    planned.updated = None;
    assert!(codes(&planned).is_empty());
}

#[test]
fn approval_not_recorded() {
    let mut c = emergency();
    c.approvals_recorded = false;
    assert_eq!(codes(&c), ["approval_not_recorded"]);
    // Distinct from a missing approval: never both.
    c.approved_at = set("2025-02-10T00:00:00Z");
    assert_eq!(codes(&c), ["approval_not_recorded"]);
    let mut normal = clean();
    normal.approvals_recorded = false;
    assert!(codes(&normal).is_empty());
}

#[test]
fn codes_come_once_each_in_a_fixed_order() {
    let mut c = emergency();
    c.opened = set("2025-02-04T00:00:00Z");
    c.actual_start = set("2025-02-03T17:00:00Z");
    c.actual_end = set("2025-02-05T00:00:00Z");
    assert_eq!(
        codes(&c),
        [
            "implemented_before_opened",
            "outside_planned_window",
            "closed_before_implemented",
            "emergency_not_approved",
        ]
    );
    assert_eq!(
        serde_json::to_value(Code::ApprovalNotRecorded).unwrap(),
        "approval_not_recorded"
    );
}

fn tally(changes: &[ImportedChange]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for c in changes {
        for code in test_imported(c, 72) {
            *counts.entry(code.as_str()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn the_bpic_excerpt_gives_the_counts_python_gives() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../evidence/tests/fixtures/bpic2014/detail_change.excerpt.csv");
    let bytes = std::fs::read(path).expect("the excerpt");
    let imported = records::parse(Format::Bpic2014, &bytes, None).expect("parses");
    // Counted with Python's csv module and zoneinfo over the first row of each change.
    let expected = BTreeMap::from([
        ("approval_not_recorded", 2),
        ("closed_before_implemented", 1),
        ("implemented_before_opened", 1),
        ("not_implemented", 28),
        ("outside_planned_window", 46),
    ]);
    assert_eq!(tally(&imported.changes), expected);
}

#[test]
fn the_whole_bpic_file_gives_the_counts_its_readme_gives() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bpic2014-rabobank/detail_change.part1.csv.gz");
    if !path.is_file() {
        eprintln!(
            "note: skipped: no BPIC 2014 change file at {}",
            path.display()
        );
        return;
    }
    let output = match Command::new("gzip").arg("-dc").arg(&path).output() {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("note: skipped: `gzip -dc` cannot decompress the BPIC 2014 change file");
            return;
        }
    };
    let imported = records::parse(Format::Bpic2014, &output.stdout, None).expect("parses");
    // The data set's README, over the first row of each of the 8,923 changes: 345 start
    // before they were opened, 447 end after they were closed, 624 have no actual start
    // (all are closed), 19 are emergencies (17 of them with an actual start, by Python).
    // It counts 3,060 outside their planned window, taking only changes with all four
    // times; comparing each side on its own, as this test does, Python counts 3,062.
    let expected = BTreeMap::from([
        ("approval_not_recorded", 17),
        ("closed_before_implemented", 447),
        ("implemented_before_opened", 345),
        ("not_implemented", 624),
        ("outside_planned_window", 3_062),
    ]);
    assert_eq!(tally(&imported.changes), expected);
}
