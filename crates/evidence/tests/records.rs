//! Change-record imports: the real BPIC 2014 change file (an excerpt here, the whole file
//! from the shared data set when it is present), ServiceNow exports and a generic CSV read
//! through a mapping.
//!
//! The BPIC numbers below were counted independently of this code, by reading the file
//! with Python's `csv` module (`delimiter=';'`), grouping rows by `Change ID` in file order,
//! comparing each later row's columns 5–21 with the first row's, and converting times with
//! `zoneinfo.ZoneInfo("Europe/Amsterdam")` (`fold=0`) to UTC.

use std::path::{Path, PathBuf};
use std::process::Command;

use evidence::records::{self, ChangeType, Format, Imported, ImportedChange, Mapping, Zone};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::PrimitiveDateTime;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bpic2014")
        .join(name)
}

fn excerpt() -> Imported {
    let bytes = std::fs::read(fixture("detail_change.excerpt.csv")).expect("the excerpt");
    records::parse(Format::Bpic2014, &bytes, None).expect("the excerpt parses")
}

fn change<'a>(imported: &'a Imported, id: &str) -> &'a ImportedChange {
    imported
        .changes
        .iter()
        .find(|c| c.source_id == id)
        .unwrap_or_else(|| panic!("no change {id}"))
}

/// One line per change, in file order: the id and its six times in UTC, empty when absent.
/// Python computed the same digest from `zoneinfo` conversions.
fn times_digest(imported: &Imported) -> String {
    let mut hash = Sha256::new();
    for c in &imported.changes {
        let times = [
            &c.opened,
            &c.planned_start,
            &c.planned_end,
            &c.actual_start,
            &c.actual_end,
            &c.closed,
        ];
        let mut line = c.source_id.clone();
        for t in times {
            line.push('|');
            line.push_str(t.as_deref().unwrap_or(""));
        }
        line.push('\n');
        hash.update(line.as_bytes());
    }
    hex::encode(hash.finalize())
}

#[test]
fn bpic_excerpt_groups_rows_by_change() {
    let imported = excerpt();
    let report = &imported.report;
    // Python: 204 data rows, 116 distinct `Change ID`s, 203 distinct CI tuples per change.
    assert_eq!(report.rows_read, 204);
    assert_eq!(report.changes, 116);
    assert_eq!(imported.changes.len(), 116);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let items: usize = imported
        .changes
        .iter()
        .map(|c| c.configuration_items.len())
        .sum();
    assert_eq!(items, 203);
    let rows: usize = imported.changes.iter().map(|c| c.rows.len()).sum();
    assert_eq!(rows, 204);
    assert_eq!(report.zone, "Europe/Amsterdam");
    assert!(report
        .zone_rule
        .starts_with("Europe/Amsterdam (UTC+01:00, UTC+02:00 in summer"));
    // One disagreement (C00000035) and two times in the repeated October hour.
    assert_eq!(report.warnings.len(), 3, "{:#?}", report.warnings);
    assert_eq!(
        times_digest(&imported),
        "d4739034835d147afc0b5417ec893f2f77a4cba3a4510639f9e8827dbc70e0e8"
    );

    let first = change(&imported, "C00000003");
    assert_eq!(first.rows, vec![2]);
    assert_eq!(first.change_type, ChangeType::Normal);
    assert_eq!(first.type_label.as_deref(), Some("Release Type 11"));
    assert_eq!(first.risk.as_deref(), Some("Minor Change"));
    // `30-8-2012 7:00` is summer time, `1-9-2011 9:13` too, `18-12-2013 16:16` winter.
    assert_eq!(first.planned_start.as_deref(), Some("2012-08-30T05:00:00Z"));
    assert_eq!(first.opened.as_deref(), Some("2011-09-01T07:13:00Z"));
    assert_eq!(first.closed.as_deref(), Some("2013-12-18T15:16:00Z"));
    assert!(!first.approvals_recorded);
    assert_eq!(first.approved_at, None);
    assert_eq!(first.configuration_items.len(), 1);
    let item = &first.configuration_items[0];
    assert_eq!(item.name, "HMD000002");
    assert_eq!(item.kind.as_deref(), Some("hardware"));
    assert_eq!(item.subtype.as_deref(), Some("MigratieDummy"));
    assert_eq!(item.service.as_deref(), Some("WBS000195"));
    assert_eq!(
        first.unmapped.get("Requested End Date").map(String::as_str),
        Some("1-6-2012 0:00")
    );
    assert_eq!(
        first.unmapped.get("Originated from").map(String::as_str),
        Some("Problem")
    );
    assert!(!first.unmapped.contains_key("Scheduled Downtime Start"));

    let standard = change(&imported, "C00000007");
    assert_eq!(standard.change_type, ChangeType::Standard);
    assert_eq!(standard.actual_start, None);
    let emergency = change(&imported, "C00001021");
    assert_eq!(emergency.change_type, ChangeType::Emergency);
    assert_eq!(emergency.type_label.as_deref(), Some("Release Type 09"));
}

#[test]
fn bpic_rows_that_disagree_keep_the_first_value_and_warn() {
    let imported = excerpt();
    // Lines 42 and 43 are both CI `HMD000002` of C00000035 and differ only in the close
    // time: `11-11-2013 11:00` then `21-10-2013 9:24`.
    let c = change(&imported, "C00000035");
    assert_eq!(c.rows, vec![42, 43]);
    assert_eq!(c.configuration_items.len(), 1);
    assert_eq!(c.configuration_items[0].name, "HMD000002");
    assert_eq!(c.closed.as_deref(), Some("2013-11-11T10:00:00Z"));
    let warnings: Vec<_> = imported
        .report
        .warnings
        .iter()
        .filter(|w| w.change.as_deref() == Some("C00000035"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = warnings[0];
    assert_eq!(w.line, 43);
    assert!(
        w.message.contains("`Change record Close Time`")
            && w.message.contains("line 42 has `11-11-2013 11:00`")
            && w.message.contains("`21-10-2013 9:24`"),
        "{}",
        w.message
    );
    assert!(w.to_string().contains("change `C00000035`"), "{w}");
}

#[test]
fn bpic_time_in_the_repeated_october_hour_is_read_as_summer_time_with_a_warning() {
    let imported = excerpt();
    // C00001424 ended at `27-10-2013 2:40`, the hour the Netherlands went through twice.
    let c = change(&imported, "C00001424");
    assert_eq!(c.actual_end.as_deref(), Some("2013-10-27T00:40:00Z"));
    let w = imported
        .report
        .warnings
        .iter()
        .find(|w| w.change.as_deref() == Some("C00001424"))
        .expect("a warning about the repeated hour");
    assert!(
        w.message.contains("`Actual End` `27-10-2013 2:40`") && w.message.contains("repeats"),
        "{}",
        w.message
    );
}

#[test]
fn amsterdam_times_cross_summer_time_boundaries_as_zoneinfo_does() {
    // Expected instants from Python's zoneinfo (fold=0) for each local time.
    let cases: &[(&str, PrimitiveDateTime, &str)] = &[
        (
            "Europe/Amsterdam",
            datetime!(2013-10-27 01:59),
            "2013-10-26T23:59:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2013-10-27 02:00),
            "2013-10-27T00:00:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2013-10-27 02:40),
            "2013-10-27T00:40:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2013-10-27 03:00),
            "2013-10-27T02:00:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2014-03-30 01:59),
            "2014-03-30T00:59:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2014-03-30 02:30),
            "2014-03-30T01:30:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2014-03-30 03:00),
            "2014-03-30T01:00:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2013-12-18 14:00),
            "2013-12-18T13:00:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2013-07-01 12:00),
            "2013-07-01T10:00:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2021-03-28 01:59),
            "2021-03-28T00:59:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2021-10-31 02:30),
            "2021-10-31T00:30:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2026-03-29 02:15),
            "2026-03-29T01:15:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2026-10-25 02:59),
            "2026-10-25T00:59:00Z",
        ),
        (
            "Europe/Amsterdam",
            datetime!(2026-10-25 01:00),
            "2026-10-24T23:00:00Z",
        ),
        (
            "Europe/London",
            datetime!(2021-03-28 01:59),
            "2021-03-28T01:59:00Z",
        ),
        (
            "Europe/London",
            datetime!(2021-10-31 02:30),
            "2021-10-31T02:30:00Z",
        ),
        (
            "Europe/London",
            datetime!(2026-10-25 01:00),
            "2026-10-25T00:00:00Z",
        ),
        (
            "Europe/Helsinki",
            datetime!(2021-10-31 02:30),
            "2021-10-30T23:30:00Z",
        ),
        (
            "Europe/Helsinki",
            datetime!(2026-03-29 02:15),
            "2026-03-29T00:15:00Z",
        ),
        (
            "+05:30",
            datetime!(2026-03-29 02:15),
            "2026-03-28T20:45:00Z",
        ),
        ("UTC", datetime!(2026-03-29 02:15), "2026-03-29T02:15:00Z"),
    ];
    for (zone, local, expected) in cases {
        let zone = Zone::parse(zone).expect(zone);
        let got = evidence::times::format_utc(zone.to_utc(*local)).expect("formats");
        assert_eq!(got, *expected, "{} {local}", zone.name());
    }
    let err = Zone::parse("America/New_York").expect_err("no US rule");
    assert!(err.to_string().contains("`America/New_York`"), "{err}");
}

#[test]
fn bpic_whole_file_matches_independent_counts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bpic2014-rabobank/detail_change.part1.csv.gz");
    if !path.is_file() {
        eprintln!(
            "note: skipped: the BPIC 2014 change file is not at {}",
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
    let report = &imported.report;
    // Python (see the top of this file): 16,073 rows, 8,923 changes, 15,958 distinct
    // configuration items per change; 94 (change, column) disagreements plus 12 kept times
    // in the repeated hour of 27 October 2013 make 106 warnings.
    assert_eq!(report.rows_read, 16_073);
    assert_eq!(report.changes, 8_923);
    assert!(report.rejected.is_empty(), "{:?}", &report.rejected[..3]);
    let disagreements = report
        .warnings
        .iter()
        .filter(|w| w.message.starts_with("rows disagree"))
        .count();
    assert_eq!(disagreements, 94);
    assert_eq!(report.warnings.len(), 106);
    let items: usize = imported
        .changes
        .iter()
        .map(|c| c.configuration_items.len())
        .sum();
    assert_eq!(items, 15_958);
    let count = |t: ChangeType| {
        imported
            .changes
            .iter()
            .filter(|c| c.change_type == t)
            .count()
    };
    // Python: `Emergency Change` = Y on 19 first rows; of the others 7,938 have a
    // `Change Type` starting with `Standard`.
    assert_eq!(count(ChangeType::Emergency), 19);
    assert_eq!(count(ChangeType::Standard), 7_938);
    assert_eq!(count(ChangeType::Normal), 966);
    let no_start = imported
        .changes
        .iter()
        .filter(|c| c.actual_start.is_none())
        .count();
    assert_eq!(no_start, 624);
    assert_eq!(
        times_digest(&imported),
        "640dee1708e8398d5b30003d2a9c721df9d9e6f37a7d2ba3c57f6e8ff498c6c7"
    );
}

/// A ServiceNow `change_request` export: codes in some rows, display values in others, a
/// description spread over two lines, a change on two rows (two CIs).
const SERVICENOW: &str = "\
number,short_description,type,state,risk,impact,priority,opened_at,opened_by,sys_created_on,start_date,end_date,work_start,work_end,closed_at,approval,approval_set,assigned_to,cmdb_ci,sys_updated_on
CHG0030001,Patch web servers,normal,3,2,1,3 - Moderate,2024-03-01 09:00:00,Ann Lee,2024-03-01 08:59:00,2024-03-05 20:00:00,2024-03-05 22:00:00,2024-03-05 20:05:00,2024-03-05 21:30:00,2024-03-06 10:00:00,approved,2024-03-02 12:00:00,Bob Ray,web01,2024-03-06 10:00:00
CHG0030001,Patch web servers,normal,3,2,1,3 - Moderate,2024-03-01 09:00:00,Ann Lee,2024-03-01 08:59:00,2024-03-05 20:00:00,2024-03-05 22:00:00,2024-03-05 20:05:00,2024-03-05 21:30:00,2024-03-06 10:00:00,approved,2024-03-02 12:00:00,Bob Ray,web02,2024-03-06 10:00:00
CHG0030002,\"Restart DB, after
failover\",Emergency,Closed,Very High,High,1 - Critical,,Cy Dee,2024-03-30 23:00:00,,,2024-03-31 01:30:00,2024-03-31 03:30:00,2024-04-01 09:00:00,approved,2024-03-31 09:00:00,Dan Oh,db01,2024-04-01 09:00:00
CHG0030003,Rotate certificates,standard,-1,4,3,4 - Low,2024-10-26 10:00:00,Ann Lee,2024-10-26 10:00:00,2024-10-27 02:00:00,2024-10-27 04:00:00,,,,requested,,Bob Ray,,2024-10-27 08:00:00
CHG0030004,Odd codes,expedited,7,Moderate,2,,2024-05-01 09:00:00,Ann Lee,,,,,,,not requested,,,,
";

fn servicenow_mapping(zone: &str) -> Mapping {
    Mapping::from_toml(&format!("zone = \"{zone}\"\n")).expect("mapping")
}

#[test]
fn servicenow_codes_and_display_values_both_read() {
    let imported = records::parse(Format::Servicenow, SERVICENOW.as_bytes(), None).expect("parses");
    let report = &imported.report;
    assert_eq!(report.rows_read, 5);
    assert_eq!(report.changes, 4);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.zone, "UTC");

    let patch = change(&imported, "CHG0030001");
    assert_eq!(patch.format, Format::Servicenow);
    assert_eq!(patch.title.as_deref(), Some("Patch web servers"));
    assert_eq!(patch.change_type, ChangeType::Normal);
    assert_eq!(patch.state.as_deref(), Some("Closed"));
    assert_eq!(patch.risk.as_deref(), Some("High"));
    assert_eq!(patch.impact.as_deref(), Some("High"));
    assert_eq!(patch.opened.as_deref(), Some("2024-03-01T09:00:00Z"));
    assert_eq!(patch.planned_start.as_deref(), Some("2024-03-05T20:00:00Z"));
    assert_eq!(patch.actual_end.as_deref(), Some("2024-03-05T21:30:00Z"));
    assert_eq!(patch.approved_at.as_deref(), Some("2024-03-02T12:00:00Z"));
    assert_eq!(patch.updated.as_deref(), Some("2024-03-06T10:00:00Z"));
    assert!(patch.approvals_recorded);
    assert_eq!(patch.rows, vec![2, 3]);
    let names: Vec<_> = patch
        .configuration_items
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["web01", "web02"]);
    assert_eq!(
        patch.unmapped.get("priority").map(String::as_str),
        Some("3 - Moderate")
    );
    assert_eq!(
        patch.unmapped.get("assigned_to").map(String::as_str),
        Some("Bob Ray")
    );
    assert!(!patch.unmapped.contains_key("sys_created_on"));

    // Display values, an empty `opened_at` filled from `sys_created_on`, and a title over
    // two lines: the change starts on line 4, the next one on line 6.
    let restart = change(&imported, "CHG0030002");
    assert_eq!(restart.rows, vec![4]);
    assert_eq!(
        restart.title.as_deref(),
        Some("Restart DB, after\nfailover")
    );
    assert_eq!(restart.change_type, ChangeType::Emergency);
    assert_eq!(restart.state.as_deref(), Some("Closed"));
    assert_eq!(restart.risk.as_deref(), Some("Very High"));
    assert_eq!(restart.opened.as_deref(), Some("2024-03-30T23:00:00Z"));
    assert_eq!(change(&imported, "CHG0030003").rows, vec![6]);

    let rotate = change(&imported, "CHG0030003");
    assert_eq!(rotate.change_type, ChangeType::Standard);
    assert_eq!(rotate.state.as_deref(), Some("Implement"));
    assert_eq!(rotate.risk.as_deref(), Some("Low"));
    assert_eq!(rotate.impact.as_deref(), Some("Low"));
    assert!(rotate.configuration_items.is_empty());

    // An undocumented state code is kept as given, with a warning; `expedited` is no type
    // changegate knows.
    let odd = change(&imported, "CHG0030004");
    assert_eq!(odd.state.as_deref(), Some("7"));
    assert_eq!(odd.risk.as_deref(), Some("Moderate"));
    assert_eq!(odd.impact.as_deref(), Some("Medium"));
    assert_eq!(odd.change_type, ChangeType::Unknown);
    assert_eq!(odd.type_label.as_deref(), Some("expedited"));
    assert_eq!(report.warnings.len(), 1, "{:#?}", report.warnings);
    assert_eq!(report.warnings[0].line, 7);
    assert!(report.warnings[0].message.contains("`state` code `7`"));
}

#[test]
fn servicenow_times_follow_the_mapping_zone() {
    let mapping = servicenow_mapping("Europe/Amsterdam");
    let imported =
        records::parse(Format::Servicenow, SERVICENOW.as_bytes(), Some(&mapping)).expect("parses");
    assert_eq!(imported.report.zone, "Europe/Amsterdam");
    // Winter time (+01:00) before 31 March 2024, summer time (+02:00) from 01:00 UTC.
    let restart = change(&imported, "CHG0030002");
    assert_eq!(restart.opened.as_deref(), Some("2024-03-30T22:00:00Z"));
    assert_eq!(
        restart.actual_start.as_deref(),
        Some("2024-03-31T00:30:00Z")
    );
    assert_eq!(restart.actual_end.as_deref(), Some("2024-03-31T01:30:00Z"));
    // 02:00 on 27 October 2024 is the repeated hour: the first, summer time, with a warning.
    let rotate = change(&imported, "CHG0030003");
    assert_eq!(
        rotate.planned_start.as_deref(),
        Some("2024-10-27T00:00:00Z")
    );
    assert!(imported
        .report
        .warnings
        .iter()
        .any(|w| w.change.as_deref() == Some("CHG0030003") && w.message.contains("repeats")));

    let fixed = servicenow_mapping("-05:00");
    let imported =
        records::parse(Format::Servicenow, SERVICENOW.as_bytes(), Some(&fixed)).expect("parses");
    assert_eq!(imported.report.zone, "-05:00");
    assert_eq!(imported.report.zone_rule, "UTC-05:00");
    let patch = change(&imported, "CHG0030001");
    assert_eq!(patch.opened.as_deref(), Some("2024-03-01T14:00:00Z"));
}

const GENERIC: &str = "\
Ticket;Summary;Kind;Status;Urgent?;Logged;Window from;Window to;Done from;Done to;Signed off;System;Owner
T-1;Replace disk;Change;done;no;01/02/2025 09:15;03/02/2025 18:00;03/02/2025 20:00;03/02/2025 18:10;03/02/2025 19:00;;san01;ops
T-2;Hotfix login;Change;done;yes;2025-02-04;2025-02-04;2025-02-04;04/02/2025 11:00;04/02/2025 11:20;05/02/2025 08:00;app01;dev
T-3;Firewall rule;Emergency;open;no;05/02/2025 10:00;;;;;;fw01;net
";

const GENERIC_MAPPING: &str = r#"
delimiter = ";"
zone = "+01:00"
date_formats = ["[day]/[month]/[year] [hour]:[minute]", "[year]-[month]-[day]"]

[columns]
id = "Ticket"
title = "Summary"
type = "Kind"
state = "Status"
emergency = "Urgent?"
opened = "Logged"
planned_start = "Window from"
planned_end = "Window to"
actual_start = "Done from"
actual_end = "Done to"
approved_at = "Signed off"
configuration_item = "System"

[values.type]
"Change" = "normal"
"Emergency" = "emergency"

[values.state]
"done" = "closed"
"#;

#[test]
fn generic_csv_reads_through_its_mapping() {
    let mapping = Mapping::from_toml(GENERIC_MAPPING).expect("mapping");
    let imported = records::parse(Format::Csv, GENERIC.as_bytes(), Some(&mapping)).expect("parses");
    let report = &imported.report;
    assert_eq!(report.rows_read, 3);
    assert_eq!(report.changes, 3);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.zone, "+01:00");
    assert_eq!(report.zone_rule, "UTC+01:00");

    let disk = change(&imported, "T-1");
    assert_eq!(disk.format, Format::Csv);
    assert_eq!(disk.title.as_deref(), Some("Replace disk"));
    assert_eq!(disk.change_type, ChangeType::Normal);
    assert_eq!(disk.state.as_deref(), Some("closed"));
    assert_eq!(disk.opened.as_deref(), Some("2025-02-01T08:15:00Z"));
    assert_eq!(disk.actual_start.as_deref(), Some("2025-02-03T17:10:00Z"));
    assert_eq!(disk.approved_at, None);
    assert!(disk.approvals_recorded);
    assert_eq!(disk.configuration_items[0].name, "san01");
    assert_eq!(disk.unmapped.get("Owner").map(String::as_str), Some("ops"));

    // The yes/no column makes a change an emergency; the second date format reads a date
    // alone as midnight in the zone.
    let hotfix = change(&imported, "T-2");
    assert_eq!(hotfix.change_type, ChangeType::Emergency);
    assert_eq!(hotfix.type_label.as_deref(), Some("Change"));
    assert_eq!(hotfix.opened.as_deref(), Some("2025-02-03T23:00:00Z"));
    assert_eq!(hotfix.approved_at.as_deref(), Some("2025-02-05T07:00:00Z"));

    let rule = change(&imported, "T-3");
    assert_eq!(rule.change_type, ChangeType::Emergency);
    assert_eq!(rule.state.as_deref(), Some("open"));
    assert_eq!(rule.planned_start, None);
}

#[test]
fn mapping_keys_that_mean_nothing_are_refused_by_name() {
    for (text, key) in [
        ("delimeter = \";\"\n", "delimeter"),
        ("[columns]\nid = \"a\"\nowner = \"b\"\n", "owner"),
        ("[values.priority]\n\"1\" = \"high\"\n", "priority"),
    ] {
        let err = Mapping::from_toml(text).expect_err(text);
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
    let err = Mapping::from_toml("[values.type]\n\"E\" = \"urgent\"\n").expect_err("value");
    assert!(err.to_string().contains("`urgent`"), "{err}");
    let zone =
        Mapping::from_toml("zone = \"Mars/Olympus\"\n[columns]\nid = \"Ticket\"\n").expect("read");
    let err = records::parse(Format::Csv, GENERIC.as_bytes(), Some(&zone)).expect_err("zone");
    assert!(err.to_string().contains("`Mars/Olympus`"), "{err}");
}

#[test]
fn bad_rows_are_rejected_with_their_line_and_the_rest_imported() {
    let text = "\
number,short_description,opened_at,work_start
CHG1,Fine,2024-01-01 10:00:00,2024-01-02 10:00:00
CHG2,Bad date,2024-02-30 10:00:00,
,No id,2024-01-01 10:00:00,
CHG3,Short row
CHG4,\"Two
lines\",2024-01-01 10:00:00,01/02/2024
CHG5,Fine too,,
";
    let imported = records::parse(Format::Servicenow, text.as_bytes(), None).expect("parses");
    let report = &imported.report;
    assert_eq!(report.rows_read, 6);
    let ids: Vec<_> = imported
        .changes
        .iter()
        .map(|c| c.source_id.as_str())
        .collect();
    assert_eq!(ids, ["CHG1", "CHG5"]);
    assert_eq!(change(&imported, "CHG5").rows, vec![8]);
    let rejected: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (
                3,
                "column `opened_at`: `2024-02-30 10:00:00` is not a date in the form \
                 `yyyy-mm-dd hh:mm:ss`"
            ),
            (4, "column `number` is empty: a row needs a change id"),
            (5, "the row has 2 fields where the header has 4"),
            (
                6,
                "column `work_start`: `01/02/2024` is not a date in the form \
                 `yyyy-mm-dd hh:mm:ss`"
            ),
        ]
    );

    // The generic format lists the formats it tried.
    let mapping = Mapping::from_toml(GENERIC_MAPPING).expect("mapping");
    let bad = GENERIC.replace("01/02/2025 09:15", "1 Feb 2025");
    let imported = records::parse(Format::Csv, bad.as_bytes(), Some(&mapping)).expect("parses");
    assert_eq!(imported.report.changes, 2);
    let r = &imported.report.rejected[0];
    assert_eq!(r.line, 2);
    assert_eq!(
        r.reason,
        "column `Logged`: `1 Feb 2025` matches none of the date formats \
         `[day]/[month]/[year] [hour]:[minute]`, `[year]-[month]-[day]`"
    );
}

#[test]
fn files_that_cannot_be_read_import_nothing() {
    let gz = [0x1f, 0x8b, 0x08, 0x00];
    let err = records::parse(Format::Bpic2014, &gz, None).expect_err("gzip");
    assert!(err.to_string().contains("gzip"), "{err}");

    let err = records::parse(Format::Bpic2014, SERVICENOW.as_bytes(), None).expect_err("header");
    assert!(err.to_string().contains("`Change ID`"), "{err}");

    let err = records::parse(Format::Csv, GENERIC.as_bytes(), None).expect_err("no mapping");
    assert!(err.to_string().contains("--mapping"), "{err}");

    let err = records::parse(Format::Servicenow, b"", None).expect_err("empty");
    assert!(err.to_string().contains("empty"), "{err}");

    let mapping = Mapping::from_toml("[columns]\nid = \"Ticket\"\n").expect("ok");
    let err = records::parse(Format::Csv, GENERIC.as_bytes(), Some(&mapping)).expect_err("delim");
    assert!(err.to_string().contains("is the delimiter right?"), "{err}");
    let mapping =
        Mapping::from_toml("delimiter = \";\"\n[columns]\nid = \"Ticket\"\ntitle = \"Name\"\n")
            .expect("ok");
    let err = records::parse(Format::Csv, GENERIC.as_bytes(), Some(&mapping)).expect_err("col");
    assert!(err.to_string().contains("no column `Name`"), "{err}");
}
