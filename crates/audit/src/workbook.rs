//! `workpapers.xlsx`: an engagement as the auditor's workbook.
//!
//! Sheets, in order: `Summary` (the period, the seed, one row per control and the
//! deficiencies, with two columns left empty for people to fill), `Risk-control matrix`,
//! one sheet per control that has a population (named by its id: the sample in rank order
//! with each attribute's result and evidence, then the exceptions over the whole
//! population), and `Populations` (every population item, so the auditor can check
//! completeness; capped at the xlsx row limit, with a note saying so).
//!
//! Every text cell is written as a string and never as a formula, so an item id or evidence
//! such as `=HYPERLINK(...)` stays text when the workbook is opened. Dates stay the RFC 3339
//! text the engagement carries. The workbook is returned as bytes and the caller writes the
//! file; only the `Populations` sheet passes through a temporary file (in the system's temp
//! directory) while it is built.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rust_xlsxwriter::{ColNum, RowNum, XlsxError};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, FormatAlign, Workbook, Worksheet};

use crate::catalog::{Catalog, Control, Nature, Performed};
use crate::deficiency::{Retest, Status};
use crate::engagement::{
    Conclusion, ControlTest, Deficiency, DeficiencyKind, Engagement, Method, TestResult,
};
use crate::reconcile::AttributeResult;
use crate::sampling::Drawn;

/// Rows in a worksheet: the xlsx limit.
pub const MAX_ROWS: u32 = 1_048_576;

/// UTF-16 units in one cell: the xlsx limit.
const MAX_CELL: usize = 32_767;

/// UTF-16 units in a sheet name: the xlsx limit.
const MAX_SHEET_NAME: usize = 31;

const SUMMARY: &str = "Summary";
const MATRIX: &str = "Risk-control matrix";
const POPULATIONS: &str = "Populations";

/// Rows of the `Populations` sheet above its items: the note and the column headers.
const POPULATIONS_HEADER_ROWS: u32 = 2;

/// The workbook could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the workbook: {source}")]
pub struct WorkbookError {
    source: XlsxError,
}

/// The engagement's workbook, as the bytes of an xlsx file. `catalog` is the (tailored)
/// catalog the engagement ran on: it gives each control's description, nature, owner and
/// attributes, and the risk-control matrix.
///
/// Fails when the temporary file the `Populations` sheet is built through cannot be created
/// or written.
pub fn workbook(e: &Engagement, catalog: &Catalog) -> Result<Vec<u8>, WorkbookError> {
    build(e, catalog).map_err(|source| WorkbookError { source })
}

fn build(e: &Engagement, catalog: &Catalog) -> Result<Vec<u8>, XlsxError> {
    let styles = Styles::new();
    let mut book = Workbook::new();
    // The same engagement gives the same bytes: no clock in the document properties (the
    // zip entries carry a fixed time too). The dates that matter are in the sheets.
    let properties = DocProperties::new()
        .set_title("changegate workpapers")
        .set_creation_datetime(&ExcelDateTime::from_ymd(1980, 1, 1)?);
    book.set_properties(&properties);

    let mut names = SheetNames::default();
    // Excel keeps `History` for itself and refuses a sheet of that name.
    for reserved in [SUMMARY, MATRIX, POPULATIONS, "History"] {
        names.claim(reserved);
    }
    summary_sheet(
        Sheet::new(book.add_worksheet(), SUMMARY, &styles)?,
        e,
        catalog,
    )?;
    matrix_sheet(Sheet::new(book.add_worksheet(), MATRIX, &styles)?, catalog)?;
    for t in e.controls.iter().filter(|t| !t.population.items.is_empty()) {
        let name = names.claim(&t.control);
        let sheet = Sheet::new(book.add_worksheet(), &name, &styles)?;
        let retest = e
            .deficiencies
            .iter()
            .find(|d| d.kind == DeficiencyKind::OperatingEffectiveness && d.subject == t.control)
            .and_then(|d| d.retest.as_ref());
        control_sheet(sheet, t, catalog.control(&t.control), e.seed, retest)?;
    }
    // The one sheet that grows with the period: streamed row by row through a temporary
    // file, its strings inline rather than in the shared-string table, which at a million
    // unique item ids costs more than the rest of the workbook together.
    let populations = book.add_worksheet_with_constant_memory()?;
    populations_sheet(Sheet::new(populations, POPULATIONS, &styles)?, e)?;
    book.save_to_buffer()
}

fn summary_sheet(mut s: Sheet<'_>, e: &Engagement, catalog: &Catalog) -> Result<(), XlsxError> {
    s.widths(&[
        10.0, 60.0, 14.0, 12.0, 44.0, 24.0, 24.0, 11.0, 11.0, 40.0, 11.0, 10.0, 10.0, 12.0, 40.0,
    ])?;
    let facts = [
        ("Period from", e.period.0.clone()),
        ("Period to", e.period.1.clone()),
        ("Seed", e.seed.to_string()),
    ];
    for (row, (label, value)) in (0..).zip(facts) {
        s.label(row, 0, label)?;
        s.text(row, 1, &value)?;
    }

    let header = 4;
    s.header(
        header,
        &[
            "Control",
            "Description",
            "Nature",
            "Performed",
            "Frequency",
            "Owner",
            "Criteria",
            "Population",
            "Sample size",
            "Sample basis",
            "Exceptions",
            "Deviation rate",
            "Tolerable rate",
            "Conclusion",
            "Note",
        ],
    )?;
    s.ws.set_freeze_panes(header + 1, 1)?;
    let mut row = header + 1;
    for t in &e.controls {
        let c = catalog.control(&t.control);
        s.text(row, 0, &t.control)?;
        if let Some(c) = c {
            s.wrapped(row, 1, &c.description)?;
            s.text(row, 2, nature(c.nature))?;
            s.text(row, 3, performed(c.performed))?;
            s.text(row, 4, &c.frequency.as_str().replace('_', " "))?;
            s.text(row, 5, &c.owner)?;
            s.text(row, 6, &c.criteria.join(", "))?;
        }
        s.number(row, 7, t.population.count as f64)?;
        s.number(row, 8, t.sample_size.size as f64)?;
        s.wrapped(row, 9, &t.sample_size.basis)?;
        s.number(row, 10, t.exceptions as f64)?;
        s.percent(row, 11, t.deviation_rate)?;
        s.percent(row, 12, t.tolerable_rate)?;
        s.text(row, 13, conclusion(t.conclusion))?;
        s.wrapped(row, 14, t.note.as_deref().unwrap_or(""))?;
        row += 1;
    }

    row += 1;
    s.label(row, 0, "Deficiencies")?;
    row += 1;
    row = deficiencies(&mut s, row, &e.deficiencies)?;

    row += 1;
    s.label(row, 0, "Warnings")?;
    row += 1;
    s.header(row, &["Code", "Warning"])?;
    row += 1;
    if e.warnings.is_empty() {
        s.text(row, 1, "none")?;
    }
    for w in &e.warnings {
        s.text(row, 0, &w.code)?;
        s.wrapped(row, 1, &w.message)?;
        row += 1;
    }
    Ok(())
}

/// The deficiencies table: description in the wide column the controls' descriptions use,
/// the failed items where the frequency is (wide enough for a commit id).
fn deficiencies(
    s: &mut Sheet<'_>,
    mut row: RowNum,
    list: &[Deficiency],
) -> Result<RowNum, XlsxError> {
    s.header(
        row,
        &[
            "Deficiency",
            "Description",
            "Kind",
            "Subject",
            "Items",
            "Significance",
            "Management response",
            "Remediation",
            "Status",
        ],
    )?;
    row += 1;
    if list.is_empty() {
        s.text(row, 1, "none raised")?;
    }
    for d in list {
        s.text(row, 0, &d.id)?;
        s.wrapped(row, 1, &d.description)?;
        s.wrapped(row, 2, kind(d.kind))?;
        s.text(row, 3, &d.subject)?;
        s.wrapped(row, 4, &d.items.join("\n"))?;
        let significance = match (d.significance, &d.rationale) {
            (Some(s), Some(r)) => format!("{}: {r}", s.as_str()),
            (Some(s), None) => s.as_str().to_string(),
            (None, _) => String::new(),
        };
        s.wrapped(row, 5, &significance)?;
        let mut response = d.management_response.clone().unwrap_or_default();
        if let Some(owner) = &d.owner {
            response.push_str(&format!("\nowner: {owner}"));
        }
        if let Some(due) = &d.remediation_due {
            response.push_str(&format!("\ndue: {due}"));
        }
        s.wrapped(row, 6, response.trim_start())?;
        s.wrapped(row, 7, &remediation_text(d))?;
        s.text(row, 8, status_text(d.status))?;
        row += 1;
    }
    Ok(row + 1)
}

/// When and how a deficiency was remediated, and what its retest found.
pub fn remediation_text(d: &Deficiency) -> String {
    let mut out = String::new();
    if let Some(at) = &d.remediated_at {
        out.push_str(&format!("remediated at {at}"));
        if let Some(what) = &d.remediation {
            out.push_str(&format!(": {what}"));
        }
    }
    if let Some(r) = &d.retest {
        out.push_str(&format!(
            "\nretest of {} items from {}: {} sampled, {} failed (seed key {}/retest)",
            r.population.count,
            r.from,
            r.sample.len(),
            r.exceptions,
            d.subject
        ));
    }
    out.trim_start().to_string()
}

/// A deficiency's status in words.
pub fn status_text(status: Status) -> &'static str {
    match status {
        Status::Open => "open",
        Status::RemediationPlanned => "remediation planned",
        Status::RemediationOverdue => "remediation overdue",
        Status::AwaitingRetest => "remediated, awaiting retest",
        Status::Remediated => "remediated and retested",
        Status::RemediationFailed => "remediation failed its retest",
    }
}

fn matrix_sheet(mut s: Sheet<'_>, catalog: &Catalog) -> Result<(), XlsxError> {
    s.widths(&[8.0, 70.0, 30.0, 30.0, 18.0])?;
    s.header(
        0,
        &[
            "Risk",
            "Description",
            "Enabled controls",
            "Disabled controls",
            "Design deficiency",
        ],
    )?;
    s.ws.set_freeze_panes(1, 1)?;
    for (row, m) in (1..).zip(catalog.matrix()) {
        s.text(row, 0, &m.risk)?;
        s.wrapped(row, 1, &m.description)?;
        s.wrapped(row, 2, &m.controls.join(", "))?;
        s.wrapped(row, 3, &m.disabled.join(", "))?;
        s.text(row, 4, if m.controls.is_empty() { "yes" } else { "no" })?;
    }
    Ok(())
}

/// A control's sheet: what was tested and how the sample was drawn, the sample in rank
/// order with each attribute's result, and the exceptions over the whole population.
fn control_sheet(
    mut s: Sheet<'_>,
    t: &ControlTest,
    control: Option<&Control>,
    seed: u64,
    retest: Option<&Retest>,
) -> Result<(), XlsxError> {
    let attributes = attributes(t, control);
    let mut widths = vec![44.0, 66.0];
    for _ in &attributes {
        widths.extend([14.0, 24.0, 60.0]);
    }
    widths.push(16.0);
    s.widths(&widths)?;

    let size = &t.sample_size;
    let yes_no = |b| if b { "yes" } else { "no" };
    let block: [(&str, Value); 13] = [
        ("Control", Value::Text(&t.control)),
        (
            "Description",
            Value::Text(control.map_or("", |c| c.description.as_str())),
        ),
        ("Population", Value::Number(t.population.count as f64)),
        ("Population SHA-256", Value::Text(&t.population.sha256)),
        ("Sources", Value::Owned(t.population.sources.join("; "))),
        ("Sample size", Value::Number(size.size as f64)),
        ("Sample basis", Value::Text(&size.basis)),
        (
            "Whole population tested",
            Value::Text(yes_no(size.whole_population)),
        ),
        ("Seed", Value::Owned(seed.to_string())),
        (
            "Exceptions in the sample",
            Value::Number(t.exceptions as f64),
        ),
        ("Deviation rate", Value::Percent(t.deviation_rate)),
        ("Tolerable rate", Value::Percent(t.tolerable_rate)),
        ("Conclusion", Value::Text(conclusion(t.conclusion))),
    ];
    let mut row = 0;
    for (label, value) in block {
        s.label(row, 0, label)?;
        match value {
            Value::Text(v) => s.text(row, 1, v)?,
            Value::Owned(v) => s.text(row, 1, &v)?,
            Value::Number(v) => s.number(row, 1, v)?,
            Value::Percent(v) => s.percent(row, 1, v)?,
        }
        row += 1;
    }

    row += 1;
    s.ws.set_freeze_panes(row + 1, 1)?;
    row = sample_rows(&mut s, row, &t.sample, &t.results, &attributes)?;

    row += 1;
    s.label(row, 0, "Exceptions over the whole population")?;
    row += 1;
    s.header(row, &["Code", "Items"])?;
    row += 1;
    if t.exceptions_by_code.is_empty() {
        s.text(row, 0, "none")?;
    }
    for (code, n) in &t.exceptions_by_code {
        s.text(row, 0, code)?;
        s.number(row, 1, *n as f64)?;
        row += 1;
    }
    if let Some(r) = retest {
        row += 1;
        let facts: [(&str, Value); 7] = [
            ("Retest of the items from", Value::Text(&r.from)),
            (
                "Retest population",
                Value::Number(r.population.count as f64),
            ),
            (
                "Retest population SHA-256",
                Value::Text(&r.population.sha256),
            ),
            (
                "Retest sample size",
                Value::Number(r.sample_size.size as f64),
            ),
            (
                "Retest sample basis",
                Value::Owned(format!(
                    "{} (draw key {}/retest)",
                    r.sample_size.basis, t.control
                )),
            ),
            ("Retest exceptions", Value::Number(r.exceptions as f64)),
            ("Retest conclusion", Value::Text(conclusion(r.conclusion))),
        ];
        for (label, value) in facts {
            s.label(row, 0, label)?;
            match value {
                Value::Text(v) => s.text(row, 1, v)?,
                Value::Owned(v) => s.text(row, 1, &v)?,
                Value::Number(v) => s.number(row, 1, v)?,
                Value::Percent(v) => s.percent(row, 1, v)?,
            }
            row += 1;
        }
        row += 1;
        sample_rows(&mut s, row, &r.sample, &r.results, &attributes)?;
    }
    Ok(())
}

/// The sample in rank order with each attribute's result, under a header row at `row`;
/// gives the row after the last.
fn sample_rows(
    s: &mut Sheet<'_>,
    mut row: RowNum,
    sample: &[Drawn],
    results: &[TestResult],
    attributes: &[&str],
) -> Result<RowNum, XlsxError> {
    let mut header = vec!["Item".to_string(), "Rank".to_string()];
    for a in attributes {
        header.extend([
            format!("{a}: result"),
            format!("{a}: codes"),
            format!("{a}: evidence"),
        ]);
    }
    header.push("Method".to_string());
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    s.header(row, &header)?;
    row += 1;

    let mut by_item: BTreeMap<&str, Vec<&TestResult>> = BTreeMap::new();
    for r in results {
        by_item.entry(r.item.as_str()).or_default().push(r);
    }
    for d in sample {
        let results = by_item.get(d.item.as_str()).map_or(&[][..], Vec::as_slice);
        s.text(row, 0, &d.item)?;
        s.text(row, 1, &d.rank)?;
        let mut col: ColNum = 2;
        for a in attributes {
            match results.iter().find(|r| r.attribute == *a) {
                Some(r) => {
                    s.text(row, col, result(r.result))?;
                    s.wrapped(row, col + 1, &r.codes.join(", "))?;
                    s.wrapped(row, col + 2, &r.evidence)?;
                }
                // The attribute does not apply to this item (an emergency approval to a
                // normal change), so the engagement recorded no result for it.
                None => s.text(row, col, result(AttributeResult::NotApplicable))?,
            }
            col += 3;
        }
        let mut methods: Vec<&str> = Vec::new();
        for r in results {
            if !methods.contains(&method(r.method)) {
                methods.push(method(r.method));
            }
        }
        s.text(row, col, &methods.join(", "))?;
        row += 1;
    }
    Ok(row)
}

/// A value of the header block of a control's sheet.
enum Value<'a> {
    Text(&'a str),
    Owned(String),
    Number(f64),
    Percent(f64),
}

/// The attributes to show a column for: the control's own, in catalog order, then any other
/// the results name (a control the catalog no longer has, or one tailored since).
fn attributes<'a>(t: &'a ControlTest, control: Option<&'a Control>) -> Vec<&'a str> {
    let mut out: Vec<&str> = control.map_or(vec![], |c| {
        c.attributes.iter().map(String::as_str).collect()
    });
    for r in &t.results {
        if !out.contains(&r.attribute.as_str()) {
            out.push(&r.attribute);
        }
    }
    out
}

/// Every population item by control, in population order, for completeness checks. The
/// populations of a large period can pass the xlsx row limit: then the sheet lists as many
/// items as fit, and its first row says so.
fn populations_sheet(mut s: Sheet<'_>, e: &Engagement) -> Result<(), XlsxError> {
    s.widths(&[10.0, 66.0])?;
    let populated = e.controls.iter().filter(|t| !t.population.items.is_empty());
    let total: u64 = populated
        .clone()
        .map(|t| t.population.items.len() as u64)
        .sum();
    let capacity = u64::from(MAX_ROWS - POPULATIONS_HEADER_ROWS);
    let note = populations_note(total, populated.count(), capacity);
    s.label(0, 0, &note)?;
    s.header(1, &["Control", "Item"])?;
    s.ws.set_freeze_panes(POPULATIONS_HEADER_ROWS, 0)?;

    // The bulk of a large workbook: plain cells, no format.
    let mut row = POPULATIONS_HEADER_ROWS;
    'controls: for t in &e.controls {
        for item in &t.population.items {
            if row >= MAX_ROWS {
                break 'controls;
            }
            s.ws.write_string(row, 0, t.control.as_str())?;
            s.ws.write_string(row, 1, fit(item))?;
            row += 1;
        }
    }
    Ok(())
}

/// The first row of the `Populations` sheet: what it lists and, when the items do not all
/// fit, how many are left out and where to find them.
fn populations_note(total: u64, controls: usize, capacity: u64) -> String {
    if total <= capacity {
        format!(
            "Every item of every control's population, in population order: {total} items \
             over {controls} controls. Each control's sheet gives its count and SHA-256."
        )
    } else {
        format!(
            "CAPPED at the xlsx limit of {MAX_ROWS} rows: the first {capacity} of {total} \
             population items are listed, the other {} are not. engagement.json lists every \
             item; each control's sheet gives its count and SHA-256.",
            total - capacity
        )
    }
}

/// A worksheet being written, with the formats every sheet uses.
struct Sheet<'a> {
    ws: &'a mut Worksheet,
    styles: &'a Styles,
}

impl<'a> Sheet<'a> {
    fn new(ws: &'a mut Worksheet, name: &str, styles: &'a Styles) -> Result<Self, XlsxError> {
        ws.set_name(name)?;
        Ok(Sheet { ws, styles })
    }

    fn widths(&mut self, widths: &[f64]) -> Result<(), XlsxError> {
        for (col, w) in (0..).zip(widths) {
            self.ws.set_column_width(col, *w)?;
        }
        Ok(())
    }

    fn header(&mut self, row: RowNum, titles: &[&str]) -> Result<(), XlsxError> {
        for (col, title) in (0..).zip(titles) {
            self.ws
                .write_string_with_format(row, col, fit(title), &self.styles.header)?;
        }
        Ok(())
    }

    fn label(&mut self, row: RowNum, col: ColNum, v: &str) -> Result<(), XlsxError> {
        self.ws
            .write_string_with_format(row, col, fit(v), &self.styles.label)?;
        Ok(())
    }

    fn text(&mut self, row: RowNum, col: ColNum, v: &str) -> Result<(), XlsxError> {
        self.ws
            .write_string_with_format(row, col, fit(v), &self.styles.cell)?;
        Ok(())
    }

    fn wrapped(&mut self, row: RowNum, col: ColNum, v: &str) -> Result<(), XlsxError> {
        self.ws
            .write_string_with_format(row, col, fit(v), &self.styles.wrap)?;
        Ok(())
    }

    fn number(&mut self, row: RowNum, col: ColNum, v: f64) -> Result<(), XlsxError> {
        self.ws
            .write_number_with_format(row, col, v, &self.styles.cell)?;
        Ok(())
    }

    fn percent(&mut self, row: RowNum, col: ColNum, v: f64) -> Result<(), XlsxError> {
        self.ws
            .write_number_with_format(row, col, v, &self.styles.percent)?;
        Ok(())
    }
}

struct Styles {
    header: Format,
    label: Format,
    cell: Format,
    wrap: Format,
    percent: Format,
}

impl Styles {
    fn new() -> Self {
        // Top-aligned, so a row made tall by wrapped evidence still reads across.
        let top = Format::new().set_align(FormatAlign::Top);
        Styles {
            header: top.clone().set_bold().set_text_wrap(),
            label: Format::new().set_bold(),
            wrap: top.clone().set_text_wrap(),
            percent: top.clone().set_num_format("0.0%"),
            cell: top,
        }
    }
}

/// `s` as it fits a cell: past the xlsx limit it is cut, and says so.
fn fit(s: &str) -> Cow<'_, str> {
    // UTF-8 takes at least as many bytes as UTF-16 takes units, so most text needs no count.
    if s.len() <= MAX_CELL || s.encode_utf16().count() <= MAX_CELL {
        return Cow::Borrowed(s);
    }
    let marker = format!(
        " [cut at the xlsx cell limit: {} characters in all]",
        s.chars().count()
    );
    let kept = take_utf16(s, MAX_CELL - marker.len());
    Cow::Owned(format!("{kept}{marker}"))
}

/// The longest prefix of `s` of at most `units` UTF-16 units.
fn take_utf16(s: &str, units: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > units {
            return &s[..i];
        }
    }
    s
}

/// Sheet names taken so far; Excel compares them ignoring case.
#[derive(Default)]
struct SheetNames(Vec<String>);

impl SheetNames {
    /// A sheet name for `wanted` that Excel accepts and no other sheet has: characters Excel
    /// refuses become `_`, and a name already taken gets ` (2)`, ` (3)`, ...
    fn claim(&mut self, wanted: &str) -> String {
        let clean: String = wanted
            .chars()
            .map(|c| {
                if "[]:*?/\\".contains(c) || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let clean = clean.trim_matches('\'');
        let base = if clean.is_empty() { "Control" } else { clean };
        let mut name = take_utf16(base, MAX_SHEET_NAME).to_string();
        let mut n = 2;
        while self.0.contains(&name.to_lowercase()) {
            let suffix = format!(" ({n})");
            let kept = take_utf16(base, MAX_SHEET_NAME - suffix.len());
            name = format!("{}{suffix}", kept.trim_end_matches('\''));
            n += 1;
        }
        self.0.push(name.to_lowercase());
        name
    }
}

fn nature(n: Nature) -> &'static str {
    match n {
        Nature::Preventive => "preventive",
        Nature::Detective => "detective",
    }
}

fn performed(p: Performed) -> &'static str {
    match p {
        Performed::Automated => "automated",
        Performed::Manual => "manual",
    }
}

fn conclusion(c: Conclusion) -> &'static str {
    match c {
        Conclusion::Effective => "effective",
        Conclusion::Deficient => "deficient",
        Conclusion::NotTested => "not tested",
        Conclusion::Disabled => "disabled",
    }
}

fn kind(k: DeficiencyKind) -> &'static str {
    match k {
        DeficiencyKind::Design => "design",
        DeficiencyKind::OperatingEffectiveness => "operating effectiveness",
    }
}

fn result(r: AttributeResult) -> &'static str {
    match r {
        AttributeResult::Pass => "pass",
        AttributeResult::Fail => "fail",
        AttributeResult::NotApplicable => "not applicable",
    }
}

fn method(m: Method) -> &'static str {
    match m {
        Method::Reperformance => "reperformance",
        Method::Inspection => "inspection",
        Method::Inquiry => "inquiry",
        Method::Observation => "observation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_the_cell_limit_and_says_so() {
        let short = "a".repeat(MAX_CELL);
        assert!(matches!(fit(&short), Cow::Borrowed(_)));
        let long = "é".repeat(MAX_CELL + 10);
        let cut = fit(&long);
        assert!(cut.encode_utf16().count() <= MAX_CELL);
        assert!(cut.ends_with(&format!("{} characters in all]", MAX_CELL + 10)));
        // Astral characters take two UTF-16 units: a pair is never split.
        let astral = "𝄞".repeat(MAX_CELL);
        assert!(fit(&astral).encode_utf16().count() <= MAX_CELL);
    }

    #[test]
    fn sheet_names_are_valid_and_unique_ignoring_case() {
        let mut names = SheetNames::default();
        names.claim(SUMMARY);
        assert_eq!(names.claim("CM-06"), "CM-06");
        assert_eq!(names.claim("cm-06"), "cm-06 (2)");
        assert_eq!(names.claim("summary"), "summary (2)");
        assert_eq!(names.claim("a/b:c"), "a_b_c");
        assert_eq!(names.claim("'quoted'"), "quoted");
        assert_eq!(names.claim(""), "Control");
        let long = "X".repeat(40);
        assert_eq!(names.claim(&long), "X".repeat(31));
        assert_eq!(names.claim(&long), format!("{} (2)", "X".repeat(27)));
    }

    #[test]
    fn the_populations_note_says_when_items_are_left_out() {
        let all = populations_note(10, 3, 100);
        assert!(all.contains("10 items over 3 controls"), "{all}");
        let capped = populations_note(150, 3, 100);
        assert!(capped.starts_with("CAPPED"), "{capped}");
        assert!(capped.contains("the first 100 of 150"), "{capped}");
        assert!(capped.contains("the other 50 are not"), "{capped}");
    }
}
