//! `workpapers.xlsx`, read back with a real reader (Python's openpyxl): the sheets, every
//! control on the summary, the sample as the engagement drew it, and formula-like text kept
//! as text.

mod common;

use common::{deployment, report, reviewed, row};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;

use audit::catalog::{Catalog, Tailoring};
use audit::engagement::{
    run, Conclusion, ControlTest, Engagement, Method, Plan, PopulationRecord, TestResult,
};
use audit::sampling::{draw, SampleSize, Sampling};
use audit::workbook::{workbook, MAX_ROWS};
use audit::{population_hash, AttributeResult, Report, Verdict};

const FORMULA_ITEM: &str = "=1+1";
const FORMULA_EVIDENCE: &str = "=HYPERLINK(\"http://example.invalid\",\"open\")";

/// Loads a workbook and prints, per sheet, every row as `[value, data_type]` cells, with
/// the sheets' names and frozen panes.
const READER: &str = r#"
import json, sys
import openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
out = {"sheets": wb.sheetnames, "rows": {}, "freeze": {}}
for ws in wb.worksheets:
    out["rows"][ws.title] = [[[c.value, c.data_type] for c in r] for r in ws.iter_rows()]
    out["freeze"][ws.title] = ws.freeze_panes
print(json.dumps(out, default=str))
"#;

/// For a workbook too large to load whole: the `Populations` sheet's size and first rows.
const POPULATIONS_HEAD: &str = r#"
import json, sys
import openpyxl
wb = openpyxl.load_workbook(sys.argv[1], read_only=True)
ws = wb["Populations"]
head = [[c for c in r] for r in ws.iter_rows(min_row=1, max_row=3, values_only=True)]
print(json.dumps({"sheets": wb.sheetnames, "max_row": ws.max_row, "head": head}))
"#;

/// 100 commits (every tenth unauthorized, every seventh unreviewed), one more commit whose
/// id reads as a formula, and two deployments, one with evidence that reads as a formula.
fn period() -> Report {
    let mut events = Vec::new();
    for i in 0..100 {
        let id = format!("{i:040x}");
        if i % 10 == 0 {
            events.push(row(&id, Verdict::Unauthorized, vec![]));
        } else {
            events.push(reviewed(&id, i % 7 != 0));
        }
    }
    events.push(reviewed(FORMULA_ITEM, true));
    let mut hostile = deployment("run-1");
    hostile.attributes[1].evidence = FORMULA_EVIDENCE.into();
    events.push(hostile);
    events.push(deployment("run-2"));
    report(events)
}

/// The shipped catalog with the emergency control disabled, so that the summary shows a
/// design deficiency besides the operating ones.
fn catalog() -> Catalog {
    let t = Tailoring {
        disabled: vec!["CM-18".into()],
        ..Tailoring::default()
    };
    Catalog::default().tailored(&t).unwrap()
}

fn engagement(catalog: &Catalog) -> Engagement {
    let sampling = Sampling::default();
    let plan = Plan {
        period: ("2026-05-01".into(), "2026-05-31".into()),
        seed: 42,
        catalog,
        sampling: &sampling,
        as_of: "2027-01-15T00:00:00Z".into(),
        sources: vec!["git main of acme/payments".into()],
    };
    run(&plan, &period(), &[], &[], &[]).unwrap()
}

/// Writes the workbook where integration tests keep their files and returns its path.
fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.xlsx"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs a reader script on the workbook and parses what it prints.
fn python(script: &str, path: &Path) -> Value {
    let missing = "reading the workbook back needs python3 with openpyxl: run \
                   `python3 -m pip install openpyxl` (scripts/test.sh installs it)";
    let probe = Command::new("python3")
        .args(["-c", "import openpyxl"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("{missing}\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(err) => panic!("{missing} ({err})"),
    }
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openpyxl could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The engagement, its catalog and its workbook as openpyxl reads it, built once.
fn fixture() -> &'static (Catalog, Engagement, Value) {
    static FIXTURE: OnceLock<(Catalog, Engagement, Value)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let catalog = catalog();
        let e = engagement(&catalog);
        let path = write("workpapers", &workbook(&e, &catalog).unwrap());
        let read = python(READER, &path);
        (catalog, e, read)
    })
}

/// A sheet's rows, each a list of `[value, data_type]`.
fn rows<'a>(book: &'a Value, sheet: &str) -> &'a [Value] {
    book["rows"][sheet]
        .as_array()
        .unwrap_or_else(|| panic!("no sheet `{sheet}`"))
}

fn value(cell: &Value) -> &Value {
    &cell[0]
}

fn text(cell: &Value) -> &str {
    cell[0].as_str().unwrap_or("")
}

fn is_blank(row: &Value) -> bool {
    row.as_array().unwrap().iter().all(|c| c[0].is_null())
}

/// The table whose header row starts with `first`: its header and the rows down to the next
/// blank row.
fn table<'a>(rows: &'a [Value], first: &str) -> (Vec<&'a str>, Vec<&'a Value>) {
    let at = rows
        .iter()
        .position(|r| text(&r[0]) == first)
        .unwrap_or_else(|| panic!("no table headed `{first}`"));
    let header = rows[at]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .take_while(|t| !t.is_empty())
        .collect();
    let body = rows[at + 1..].iter().take_while(|r| !is_blank(r)).collect();
    (header, body)
}

fn column(header: &[&str], name: &str) -> usize {
    header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no column `{name}` in {header:?}"))
}

fn control<'a>(e: &'a Engagement, id: &str) -> &'a ControlTest {
    e.controls.iter().find(|c| c.control == id).unwrap()
}

#[test]
fn the_workbook_has_the_summary_the_matrix_a_sheet_per_tested_control_and_the_populations() {
    let (_, e, book) = fixture();
    let mut expected = vec!["Summary", "Risk-control matrix"];
    expected.extend(
        e.controls
            .iter()
            .filter(|t| t.population.count > 0)
            .map(|t| t.control.as_str()),
    );
    expected.push("Populations");
    let sheets: Vec<&str> = book["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(sheets, expected);
    for id in ["CM-04", "CM-06", "CM-08", "CM-16"] {
        assert!(sheets.contains(&id), "{id} has a population: {sheets:?}");
    }
    assert!(
        !sheets.contains(&"CM-18"),
        "disabled, so untested: {sheets:?}"
    );
    for sheet in sheets {
        assert!(
            !book["freeze"][sheet].is_null(),
            "`{sheet}` keeps its headers in view"
        );
    }
}

#[test]
fn every_control_appears_on_the_summary_with_its_counts_and_conclusion() {
    let (catalog, e, book) = fixture();
    let summary = rows(book, "Summary");
    assert_eq!(text(&summary[0][1]), "2026-05-01");
    assert_eq!(text(&summary[1][1]), "2026-05-31");
    assert_eq!(text(&summary[2][1]), "42");

    let (header, body) = table(summary, "Control");
    assert_eq!(body.len(), e.controls.len());
    for (t, r) in e.controls.iter().zip(&body) {
        let c = catalog.control(&t.control).unwrap();
        let cell = |name| &r[column(&header, name)];
        assert_eq!(text(cell("Control")), t.control);
        assert_eq!(text(cell("Description")), c.description);
        assert_eq!(value(cell("Population")), t.population.count);
        assert_eq!(value(cell("Sample size")), t.sample_size.size);
        assert_eq!(text(cell("Sample basis")), t.sample_size.basis);
        assert_eq!(value(cell("Exceptions")), t.exceptions);
        let rate = value(cell("Deviation rate")).as_f64().unwrap();
        assert!((rate - t.deviation_rate).abs() < 1e-12);
        assert_eq!(text(cell("Criteria")), c.criteria.join(", "));
        assert!(!text(cell("Conclusion")).is_empty());
    }
    let at = column(&header, "Conclusion");
    let conclusion = |id: &str| {
        let r = body.iter().find(|r| text(&r[0]) == id).unwrap();
        text(&r[at])
    };
    assert_eq!(conclusion("CM-06"), "deficient");
    assert_eq!(conclusion("CM-08"), "effective");
    assert_eq!(conclusion("CM-18"), "disabled");
    assert_eq!(control(e, "CM-06").conclusion, Conclusion::Deficient);

    let (header, body) = table(summary, "Deficiency");
    assert_eq!(
        header,
        [
            "Deficiency",
            "Description",
            "Kind",
            "Subject",
            "Items",
            "Significance",
            "Management response",
            "Remediation",
            "Status"
        ]
    );
    assert_eq!(body.len(), e.deficiencies.len());
    for (d, r) in e.deficiencies.iter().zip(&body) {
        assert_eq!(text(&r[0]), d.id);
        assert_eq!(text(&r[3]), d.subject);
        assert_eq!(text(&r[4]), d.items.join("\n"));
        assert!(value(&r[5]).is_null() && value(&r[6]).is_null());
        assert_eq!(text(&r[8]), "open");
    }
    let kinds: Vec<(&str, &str)> = body.iter().map(|r| (text(&r[2]), text(&r[3]))).collect();
    assert!(kinds.contains(&("design", "R16")), "{kinds:?}");
    assert!(
        kinds.contains(&("operating effectiveness", "CM-06")),
        "{kinds:?}"
    );
}

#[test]
fn a_control_sheet_lists_the_engagement_sample_in_rank_order_with_each_result() {
    let (_, e, book) = fixture();
    let t = control(e, "CM-06");
    let sheet = rows(book, "CM-06");
    let block: BTreeMap<&str, &Value> = sheet
        .iter()
        .take_while(|r| !is_blank(r))
        .map(|r| (text(&r[0]), value(&r[1])))
        .collect();
    assert_eq!(block["Population"], &t.population.count);
    assert_eq!(block["Population SHA-256"], &t.population.sha256);
    assert_eq!(block["Sources"], "git main of acme/payments");
    assert_eq!(block["Sample size"], &t.sample_size.size);
    assert_eq!(block["Sample basis"], &t.sample_size.basis);
    assert_eq!(block["Seed"], "42");

    let (header, body) = table(sheet, "Item");
    assert_eq!(
        header,
        [
            "Item",
            "Rank",
            "independent_review: result",
            "independent_review: codes",
            "independent_review: evidence",
            "Method"
        ]
    );
    let drawn: Vec<(&str, &str)> = body.iter().map(|r| (text(&r[0]), text(&r[1]))).collect();
    let expected: Vec<(&str, &str)> = t
        .sample
        .iter()
        .map(|d| (d.item.as_str(), d.rank.as_str()))
        .collect();
    assert_eq!(drawn, expected);
    assert_eq!(drawn.len(), 25);
    for r in &body {
        let result = t
            .results
            .iter()
            .find(|x| x.item == text(&r[0]) && x.attribute == "independent_review")
            .unwrap();
        let word = match result.result {
            AttributeResult::Pass => "pass",
            AttributeResult::Fail => "fail",
            AttributeResult::NotApplicable => "not applicable",
        };
        assert_eq!(text(&r[2]), word);
        assert_eq!(text(&r[3]), result.codes.join(", "));
        assert_eq!(text(&r[4]), result.evidence);
        assert_eq!(text(&r[5]), "reperformance");
    }
    let fails = body.iter().filter(|r| text(&r[2]) == "fail").count() as u64;
    assert_eq!(fails, t.exceptions);

    let (_, codes) = table(sheet, "Code");
    let codes: BTreeMap<String, u64> = codes
        .iter()
        .map(|r| (text(&r[0]).to_string(), value(&r[1]).as_u64().unwrap()))
        .collect();
    assert_eq!(codes, t.exceptions_by_code);
}

#[test]
fn formula_like_text_is_read_back_as_the_same_text_and_never_as_a_formula() {
    let (_, _, book) = fixture();
    let formulas: Vec<String> = book["rows"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(sheet, rows)| {
            rows.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap())
                .filter(|c| c[1] == "f")
                .map(move |c| format!("{sheet}: {}", c[0]))
        })
        .collect();
    assert!(formulas.is_empty(), "formulas: {formulas:?}");

    let (_, items) = table(rows(book, "Populations"), "Control");
    let hits: Vec<&Value> = items
        .iter()
        .map(|r| &r[1])
        .filter(|c| text(c) == FORMULA_ITEM)
        .collect();
    assert!(!hits.is_empty(), "`{FORMULA_ITEM}` is in the populations");
    assert!(hits.iter().all(|c| c[1] == "s"), "{hits:?}");

    // The deployment control tests both deployments, the one with hostile evidence too.
    let (header, body) = table(rows(book, "CM-08"), "Item");
    let evidence = column(&header, "approved_for_deployment: evidence");
    let cell = body
        .iter()
        .map(|r| &r[evidence])
        .find(|c| text(c) == FORMULA_EVIDENCE)
        .expect("the hostile evidence is on the CM-08 sheet");
    assert_eq!(cell[1], "s");
}

#[test]
fn the_populations_sheet_lists_every_item_of_every_control_in_order() {
    let (_, e, book) = fixture();
    let sheet = rows(book, "Populations");
    let note = text(&sheet[0][0]);
    let total: usize = e.controls.iter().map(|t| t.population.items.len()).sum();
    assert!(note.contains(&format!("{total} items")), "{note}");
    assert!(!note.contains("CAPPED"), "{note}");
    let (header, body) = table(sheet, "Control");
    assert_eq!(header, ["Control", "Item"]);
    let listed: Vec<(&str, &str)> = body.iter().map(|r| (text(&r[0]), text(&r[1]))).collect();
    let expected: Vec<(&str, &str)> = e
        .controls
        .iter()
        .flat_map(|t| {
            t.population
                .items
                .iter()
                .map(|i| (t.control.as_str(), i.as_str()))
        })
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn the_risk_control_matrix_marks_a_risk_left_without_controls() {
    let (catalog, _, book) = fixture();
    let (header, body) = table(rows(book, "Risk-control matrix"), "Risk");
    assert_eq!(
        header,
        [
            "Risk",
            "Description",
            "Enabled controls",
            "Disabled controls",
            "Design deficiency"
        ]
    );
    assert_eq!(body.len(), catalog.risks.len());
    let r16 = body.iter().find(|r| text(&r[0]) == "R16").unwrap();
    assert_eq!(
        (text(&r16[2]), text(&r16[3]), text(&r16[4])),
        ("", "CM-18", "yes")
    );
    let r12 = body.iter().find(|r| text(&r[0]) == "R12").unwrap();
    assert_eq!(
        (text(&r12[2]), text(&r12[4])),
        ("CM-02, CM-06, CM-15", "no")
    );
}

#[test]
fn the_same_engagement_gives_the_same_bytes() {
    let (catalog, e, _) = fixture();
    assert_eq!(workbook(e, catalog).unwrap(), workbook(e, catalog).unwrap());
}

/// An engagement over `events` production changes, as large as the reconciliation makes
/// it: the change-record control and the three per-commit controls each have every event
/// in their population (`controls` of them), the others none.
fn synthetic(events: usize, controls: &[&str]) -> (Catalog, Engagement) {
    let catalog = Catalog::default();
    let items: Vec<String> = (0..events).map(|i| format!("{i:040x}")).collect();
    let hash = population_hash(items.iter().map(String::as_str));
    let seed = 20261204;
    let tests = catalog
        .controls
        .iter()
        .map(|c| {
            let populated = controls.contains(&c.id.as_str());
            let items = if populated { items.clone() } else { vec![] };
            let sample = draw(seed, &c.id, &items, 60).unwrap();
            let results = sample
                .iter()
                .flat_map(|d| {
                    c.attributes.iter().map(|a| TestResult {
                        item: d.item.clone(),
                        attribute: a.clone(),
                        result: AttributeResult::Pass,
                        codes: vec![],
                        evidence: format!("{a} recorded by the ledger"),
                        method: Method::Reperformance,
                    })
                })
                .collect();
            ControlTest {
                control: c.id.clone(),
                population: PopulationRecord {
                    count: items.len() as u64,
                    sha256: hash.sha256.clone(),
                    sources: vec!["git main of acme/payments".into()],
                    items,
                },
                sample_size: SampleSize {
                    size: sample.len() as u64,
                    planned: 60,
                    basis: "per_change control: 25–60, the upper end for higher risk".into(),
                    whole_population: false,
                },
                sample,
                results,
                exceptions: 0,
                exceptions_by_code: BTreeMap::new(),
                deviation_rate: 0.0,
                tolerable_rate: 0.05,
                conclusion: if populated {
                    Conclusion::Effective
                } else {
                    Conclusion::NotTested
                },
                note: None,
            }
        })
        .collect();
    let e = Engagement {
        period: ("2026-01-01".into(), "2026-12-31".into()),
        seed,
        algorithm: audit::sampling::ALGORITHM.into(),
        controls: tests,
        design_deficiencies: vec![],
        deficiencies: vec![],
        warnings: vec![],
    };
    (catalog, e)
}

/// Prints how long the workbook of a 1,000,000-event engagement takes to write, and checks
/// that the populations sheet is capped with its note. Run with
/// `cargo test --release -p changegate-audit --test workbook -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: writes workbooks of a million events"]
fn a_million_event_engagement_writes_its_workbook_in_seconds() {
    let cases: [(&str, &[&str]); 2] = [
        ("one population of 1,000,000", &["CM-16"]),
        (
            "four populations of 1,000,000 (capped)",
            &["CM-04", "CM-06", "CM-12", "CM-16"],
        ),
    ];
    for (name, controls) in cases {
        let (catalog, e) = synthetic(1_000_000, controls);
        let start = Instant::now();
        let bytes = workbook(&e, &catalog).unwrap();
        let took = start.elapsed();
        println!(
            "{name}: {:.2} s, {:.1} MB",
            took.as_secs_f64(),
            bytes.len() as f64 / 1e6
        );
        assert!(
            took.as_secs() < 10,
            "{name}: {took:?} (build with --release)"
        );

        let path = write("workpapers-million", &bytes);
        let read = python(POPULATIONS_HEAD, &path);
        let total = 1_000_000 * controls.len() as u64;
        let listed = total.min(u64::from(MAX_ROWS) - 2);
        assert_eq!(read["max_row"], listed + 2);
        let note = read["head"][0][0].as_str().unwrap();
        assert_eq!(note.starts_with("CAPPED"), total > listed, "{note}");
        assert_eq!(read["head"][1], serde_json::json!(["Control", "Item"]));
        std::fs::remove_file(path).unwrap();
    }
}
