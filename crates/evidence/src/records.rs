//! Change records exported from other change systems (ticket imports), read into one shape,
//! [`ImportedChange`], so that an auditor can test them beside changegate's own.
//!
//! Three formats:
//!
//! - **`bpic2014`**: the change file of the BPI Challenge 2014 (Rabobank Group ICT's HP
//!   Service Manager): `;`-separated, no quoting, times `d-m-yyyy h:mm` in Dutch local time
//!   (Europe/Amsterdam, see [`Zone`]), one row per change *and* affected configuration item.
//!   The type is `emergency` when `Emergency Change` is `Y`, `standard` when `Change Type`
//!   starts with `Standard` (`Standard Change Type 93`, `Standard Activity Type 20`: the
//!   pre-authorized templates), `normal` for the others (`Release Type 11`, `Master Change`,
//!   `Change Component`). The file records no approvals and no state.
//! - **`servicenow`**: a `change_request` CSV export, with its field names as the header
//!   (`number`, `short_description`, `opened_at`, `work_start`, …). `state`, `risk` and
//!   `impact` may be ServiceNow's documented numeric codes or display values; codes are
//!   replaced by their display names. Times are `yyyy-mm-dd hh:mm:ss` in the zone the
//!   mapping names (UTC without one). A [`Mapping`] may override any of this.
//! - **`csv`**: any CSV, read through a [`Mapping`] (TOML) that says which column gives
//!   which field, how dates are written, in which zone, and how values translate.
//!
//! Rows that share a change id make one change: the first row's values are kept, the
//! configuration items of all rows are collected, and every field on which a later row
//! disagrees is reported once per change as a [`Warning`]. A row that cannot be read (no id,
//! a date that matches no format, a wrong number of fields) is [`Rejected`] with its line
//! number and the reason; the other rows are still read. Only a file that cannot be read at
//! all (no header, not the format asked for, a bad mapping) is an [`ImportError`].
//!
//! Times become RFC 3339 in UTC with a `Z` suffix. Local times inside the hour that summer
//! time repeats or skips are read as described at [`Zone`], with a warning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::format_description::OwnedFormatItem;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::times;

/// The export formats changegate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Bpic2014,
    Servicenow,
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Bpic2014 => "bpic2014",
            Format::Servicenow => "servicenow",
            Format::Csv => "csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ImportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bpic2014" => Ok(Format::Bpic2014),
            "servicenow" => Ok(Format::Servicenow),
            "csv" => Ok(Format::Csv),
            other => Err(ImportError::new(format!(
                "unknown format `{other}`: expected `bpic2014`, `servicenow` or `csv`"
            ))),
        }
    }
}

/// The change type, in changegate's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    Normal,
    Standard,
    Emergency,
    /// The source gives no type, or one that maps to none of the others.
    Unknown,
}

impl ChangeType {
    fn from_word(word: &str) -> Option<ChangeType> {
        match word.trim().to_ascii_lowercase().as_str() {
            "normal" => Some(ChangeType::Normal),
            "standard" => Some(ChangeType::Standard),
            "emergency" => Some(ChangeType::Emergency),
            "unknown" => Some(ChangeType::Unknown),
            _ => None,
        }
    }
}

/// A configuration item (a system) that a change affected, as the source names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigurationItem {
    pub name: String,
    /// BPIC 2014's `CI Type (aff)`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// BPIC 2014's `CI Subtype (aff)`.
    pub subtype: Option<String>,
    /// The service the item belongs to (BPIC 2014's `Service Component WBS (aff)`).
    pub service: Option<String>,
}

/// One change record read from an export. Times are RFC 3339 in UTC (`…Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedChange {
    pub format: Format,
    /// The change's id in the source (`C00000003`, `CHG0030001`).
    pub source_id: String,
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub change_type: ChangeType,
    /// The source's own name for the type (`Standard Change Type 93`), which `type`
    /// classifies.
    pub type_label: Option<String>,
    /// As the source names it; ServiceNow codes are replaced by their display names.
    pub state: Option<String>,
    pub risk: Option<String>,
    pub impact: Option<String>,
    pub opened: Option<String>,
    pub planned_start: Option<String>,
    pub planned_end: Option<String>,
    pub actual_start: Option<String>,
    pub actual_end: Option<String>,
    pub closed: Option<String>,
    /// When the change was approved; for an emergency change, the approval after the fact.
    pub approved_at: Option<String>,
    /// When the source last updated the record (ServiceNow's `sys_updated_on`).
    pub updated: Option<String>,
    /// Whether the source records approval times at all: without them a missing
    /// `approved_at` says nothing about the change.
    pub approvals_recorded: bool,
    pub configuration_items: Vec<ConfigurationItem>,
    /// The lines of the file this change was read from (the header is line 1).
    pub rows: Vec<u64>,
    /// The columns no field was read from, as the change's first row gives them (empty
    /// values left out).
    pub unmapped: BTreeMap<String, String>,
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

/// Something the reader did that an auditor should know about, on a row that was imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub line: u64,
    /// The change the warning is about, when the row had an id.
    pub change: Option<String>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            Some(id) => write!(f, "line {}: change `{id}`: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// What reading a file found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Data rows read, the header not counted, rejected rows counted.
    pub rows_read: u64,
    pub changes: u64,
    pub rejected: Vec<Rejected>,
    pub warnings: Vec<Warning>,
    /// The zone local times were read in (`Europe/Amsterdam`, `UTC`, `+05:30`).
    pub zone: String,
    /// The same in words, with its summer-time rule, for a reader.
    pub zone_rule: String,
}

/// The changes of a file and the report of reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub changes: Vec<ImportedChange>,
    pub report: Report,
}

/// A file, or a mapping, that cannot be read at all: nothing in it is imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImportError {
    message: String,
}

impl ImportError {
    fn new(message: impl Into<String>) -> ImportError {
        ImportError {
            message: message.into(),
        }
    }
}

/// How to read a CSV file: the `--mapping` file, in TOML. Every key is optional for
/// `servicenow` (a key given overrides the built-in layout); `csv` needs at least
/// `columns.id`. Unknown keys are refused.
///
/// ```toml
/// delimiter = ";"                     # one character; `,` when absent
/// zone = "Europe/Amsterdam"           # see `Zone`; UTC when absent
/// date_formats = ["[day]-[month]-[year] [hour]:[minute]", "[year]-[month]-[day]"]
///
/// [columns]                           # field = "column name in the header"
/// id = "Ticket"
/// emergency = "Urgent?"               # a yes/no column that makes a change an emergency
///
/// [values.type]                       # source value = changegate value
/// "Emergency" = "emergency"
/// ```
///
/// Date formats use the `time` crate's format description syntax (version 2), tried in
/// order; the first that reads a value wins. A format with an offset (`[offset_hour]`)
/// takes the offset from the value, one without takes `zone`, and a date alone is midnight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub delimiter: Option<String>,
    pub zone: Option<String>,
    pub date_formats: Option<Vec<String>>,
    #[serde(default)]
    pub columns: Columns,
    #[serde(default)]
    pub values: Values,
}

/// Which column gives which field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub id: Option<String>,
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub change_type: Option<String>,
    pub state: Option<String>,
    pub risk: Option<String>,
    pub impact: Option<String>,
    pub opened: Option<String>,
    pub planned_start: Option<String>,
    pub planned_end: Option<String>,
    pub actual_start: Option<String>,
    pub actual_end: Option<String>,
    pub closed: Option<String>,
    pub approved_at: Option<String>,
    pub updated: Option<String>,
    /// A yes/no column; yes makes the change an emergency whatever its type column says.
    pub emergency: Option<String>,
    pub configuration_item: Option<String>,
}

/// Translations of source values, per field. `type` translates to `normal`, `standard`,
/// `emergency` or `unknown`; `emergency` to `true` or `false`; the others to any text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    #[serde(default, rename = "type")]
    pub change_type: BTreeMap<String, String>,
    #[serde(default)]
    pub state: BTreeMap<String, String>,
    #[serde(default)]
    pub risk: BTreeMap<String, String>,
    #[serde(default)]
    pub impact: BTreeMap<String, String>,
    #[serde(default)]
    pub emergency: BTreeMap<String, String>,
}

impl Mapping {
    /// Reads a mapping file; an unknown key is refused by name.
    pub fn from_toml(text: &str) -> Result<Mapping, ImportError> {
        let mapping: Mapping = toml::from_str(text)
            .map_err(|e| ImportError::new(format!("the mapping is not valid: {e}")))?;
        for (from, to) in &mapping.values.change_type {
            if ChangeType::from_word(to).is_none() {
                return Err(ImportError::new(format!(
                    "the mapping translates type `{from}` to `{to}`: expected `normal`, \
                     `standard`, `emergency` or `unknown`"
                )));
            }
        }
        for (from, to) in &mapping.values.emergency {
            if !matches!(to.as_str(), "true" | "false") {
                return Err(ImportError::new(format!(
                    "the mapping translates emergency `{from}` to `{to}`: expected `true` or \
                     `false`"
                )));
            }
        }
        Ok(mapping)
    }
}

/// The zone a source's local times are in.
///
/// Three kinds: `UTC`; a fixed offset (`+02:00`, `-0500`); or a European zone that follows
/// the EU summer-time rule, in force since 1996: summer time (one hour ahead of standard
/// time) runs from the last Sunday of March at 01:00 UTC to the last Sunday of October at
/// 01:00 UTC. That covers `Europe/Amsterdam` (BPIC 2014's zone) and the other zones named in
/// [`Zone::parse`]. The `time` crate has no time-zone database, so the rule is written out
/// here; it does not know the rules before 1996 (a time before 1996 gets a warning) nor any
/// change to the rule after today.
///
/// A local time in the hour that is repeated when summer time ends (02:00–02:59 on the
/// last Sunday of October in Amsterdam) is read as the first of the two, in summer time. A
/// local time in the hour skipped when summer time begins does not exist; it is read with
/// the standard offset (02:30 becomes 01:30 UTC, which is 03:30 summer time). Both give a
/// warning. These are the choices of Python's `zoneinfo` with `fold=0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    name: String,
    standard: UtcOffset,
    eu_summer_time: bool,
}

/// European zones by the standard offset they keep in winter (hours east of UTC).
const EU_ZONES: &[(&str, i8)] = &[
    ("Europe/Dublin", 0),
    ("Europe/Lisbon", 0),
    ("Europe/London", 0),
    ("WET", 0),
    ("Europe/Amsterdam", 1),
    ("Europe/Berlin", 1),
    ("Europe/Brussels", 1),
    ("Europe/Budapest", 1),
    ("Europe/Copenhagen", 1),
    ("Europe/Luxembourg", 1),
    ("Europe/Madrid", 1),
    ("Europe/Oslo", 1),
    ("Europe/Paris", 1),
    ("Europe/Prague", 1),
    ("Europe/Rome", 1),
    ("Europe/Stockholm", 1),
    ("Europe/Vienna", 1),
    ("Europe/Warsaw", 1),
    ("Europe/Zurich", 1),
    ("CET", 1),
    ("Europe/Athens", 2),
    ("Europe/Bucharest", 2),
    ("Europe/Helsinki", 2),
    ("Europe/Riga", 2),
    ("Europe/Sofia", 2),
    ("Europe/Tallinn", 2),
    ("Europe/Vilnius", 2),
    ("EET", 2),
];

/// What a local time needed beyond adding an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shift {
    /// In the hour that occurs twice; the first (summer time) was taken.
    Repeated,
    /// In the hour that does not occur; read with the standard offset.
    Skipped,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            standard: UtcOffset::UTC,
            eu_summer_time: false,
        }
    }

    /// BPIC 2014's zone.
    pub fn amsterdam() -> Zone {
        Zone::parse("Europe/Amsterdam").unwrap_or_else(|_| Zone::utc())
    }

    /// Reads `UTC`, a fixed offset (`+02:00`, `+0200`, `-05:00`) or a European zone name
    /// (`Europe/Amsterdam`, `Europe/London`, `Europe/Berlin`, `Europe/Paris`, `CET`, …; see
    /// the list in the source).
    pub fn parse(text: &str) -> Result<Zone, ImportError> {
        let text = text.trim();
        if matches!(text, "UTC" | "Z" | "Etc/UTC" | "GMT") {
            return Ok(Zone::utc());
        }
        if let Some(&(name, hours)) = EU_ZONES.iter().find(|(n, _)| *n == text) {
            return Ok(Zone {
                name: name.into(),
                standard: UtcOffset::from_hms(hours, 0, 0).unwrap_or(UtcOffset::UTC),
                eu_summer_time: true,
            });
        }
        fixed_offset(text).map(|standard| Zone {
            name: text.into(),
            standard,
            eu_summer_time: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone in words, for a report.
    pub fn describe(&self) -> String {
        let offset = |o: UtcOffset| {
            let (h, m, _) = o.as_hms();
            let sign = if o.is_negative() { '-' } else { '+' };
            format!("UTC{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
        };
        if self.eu_summer_time {
            let summer = summer_offset(self.standard);
            format!(
                "{} ({}, {} in summer time by the EU rule: last Sunday of March 01:00 UTC \
                 to last Sunday of October 01:00 UTC)",
                self.name,
                offset(self.standard),
                offset(summer)
            )
        } else if self.standard == UtcOffset::UTC {
            "UTC".into()
        } else {
            offset(self.standard)
        }
    }

    /// The instant a local time in this zone names, as described at [`Zone`].
    pub fn to_utc(&self, local: PrimitiveDateTime) -> OffsetDateTime {
        self.resolve(local).0
    }

    fn resolve(&self, local: PrimitiveDateTime) -> (OffsetDateTime, Option<Shift>) {
        let as_standard = local.assume_offset(self.standard);
        if !self.eu_summer_time {
            return (as_standard, None);
        }
        let as_summer = local.assume_offset(summer_offset(self.standard));
        let (start, end) = summer_time(local.year());
        let in_summer = |t: OffsetDateTime| t >= start && t < end;
        match (!in_summer(as_standard), in_summer(as_summer)) {
            (true, false) => (as_standard, None),
            (false, true) => (as_summer, None),
            (true, true) => (as_summer, Some(Shift::Repeated)),
            (false, false) => (as_standard, Some(Shift::Skipped)),
        }
    }
}

fn summer_offset(standard: UtcOffset) -> UtcOffset {
    let (h, m, s) = standard.as_hms();
    UtcOffset::from_hms(h + 1, m, s).unwrap_or(standard)
}

/// The EU summer time of a year: from the last Sunday of March 01:00 UTC until the last
/// Sunday of October 01:00 UTC.
fn summer_time(year: i32) -> (OffsetDateTime, OffsetDateTime) {
    let at_one = |month: Month| {
        let last_day =
            Date::from_calendar_date(year, month, month.length(year)).unwrap_or(Date::MIN);
        let back = i64::from(last_day.weekday().number_days_from_sunday());
        let last = last_day.saturating_sub(Duration::days(back));
        PrimitiveDateTime::new(last, Time::from_hms(1, 0, 0).unwrap_or(Time::MIDNIGHT)).assume_utc()
    };
    (at_one(Month::March), at_one(Month::October))
}

fn fixed_offset(text: &str) -> Result<UtcOffset, ImportError> {
    let unknown = || {
        ImportError::new(format!(
            "unknown zone `{text}`: changegate reads `UTC`, a fixed offset such as `+02:00`, or \
             a European zone that follows the EU summer-time rule, such as `Europe/Amsterdam`"
        ))
    };
    let rest = text.strip_prefix("UTC").unwrap_or(text);
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1i8, &rest[1..]),
        Some(b'-') => (-1i8, &rest[1..]),
        _ => return Err(unknown()),
    };
    let (h, m) = match digits.len() {
        5 if digits.as_bytes()[2] == b':' => (&digits[..2], &digits[3..]),
        4 => (&digits[..2], &digits[2..]),
        2 => (digits, "00"),
        _ => return Err(unknown()),
    };
    let number = |s: &str| -> Result<i8, ImportError> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| unknown())
        } else {
            Err(unknown())
        }
    };
    let (h, m) = (number(h)?, number(m)?);
    if h > 18 || m > 59 {
        return Err(unknown());
    }
    UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| unknown())
}

/// Reads an export. `mapping` is required for [`Format::Csv`], optional for
/// [`Format::Servicenow`] and refused for [`Format::Bpic2014`], whose layout is fixed.
pub fn parse(
    format: Format,
    bytes: &[u8],
    mapping: Option<&Mapping>,
) -> Result<Imported, ImportError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(ImportError::new(
            "the file is gzip-compressed: decompress it first (`gzip -dc FILE > changes.csv`)",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let spec = Spec::for_format(format, mapping)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(spec.delimiter)
        .quoting(spec.quoting)
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ImportError::new(format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(ImportError::new("the file is empty: it has no header"));
    }
    let layout = Layout::new(format, spec, headers)?;

    let mut out = Reading::new(layout);
    let mut lines = Lines::new(bytes);
    let mut record = csv::StringRecord::new();
    let mut last_byte = None;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| lines.at(p.byte()));
                out.row(line, &record);
            }
            Err(e) => {
                let position = e.position().cloned();
                let line = position.as_ref().map_or(0, |p| lines.at(p.byte()));
                out.report.rows_read += 1;
                out.reject(line, format!("the row cannot be read: {e}"));
                let byte = position.map(|p| p.byte());
                if byte.is_none() || byte == last_byte {
                    // Nothing moves on past this error: stop rather than loop.
                    break;
                }
                last_byte = byte;
            }
        }
    }
    Ok(out.finish())
}

/// Line numbers from byte offsets. The csv reader's own line count lags by one after a CRLF
/// line end (a record's position can point at the `\n` of the line before), so lines are
/// counted here: a record starts at the first byte after any line-end bytes at its offset.
struct Lines<'a> {
    bytes: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Lines<'a> {
        Lines {
            bytes,
            counted_to: 0,
            line: 1,
        }
    }

    /// The line of the record that starts at `byte`; offsets must not go backwards.
    fn at(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while matches!(self.bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let from = self.counted_to.min(start);
        let newlines = self.bytes[from..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        self.line += newlines as u64;
        self.counted_to = start;
        self.line
    }
}

/// How a format reads type text that no value translation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeRule {
    /// `Standard …` is standard, any other non-empty type is normal.
    Bpic,
    /// `normal`, `standard`, `emergency` in any case; anything else is unknown.
    Words,
}

/// A format's layout before it meets a header.
struct Spec {
    delimiter: u8,
    quoting: bool,
    zone: Zone,
    date_formats: Vec<String>,
    /// What to say of a value no date format reads, after the value; empty to list the
    /// formats.
    date_hint: String,
    columns: Columns,
    values: Values,
    /// Fields whose column must be in the header.
    required: BTreeSet<&'static str>,
    /// BPIC's type, subtype and service columns of the configuration item.
    ci_details: [Option<&'static str>; 3],
    /// ServiceNow's `sys_created_on`, when `opened_at` is empty.
    opened_fallback: Option<&'static str>,
    type_rule: TypeRule,
    /// Warn about numeric state, risk and impact values with no translation.
    documented_codes: bool,
}

const SERVICENOW_DATES: &str = "[year]-[month]-[day] [hour]:[minute]:[second]";

impl Spec {
    fn for_format(format: Format, mapping: Option<&Mapping>) -> Result<Spec, ImportError> {
        let mut spec = match format {
            Format::Bpic2014 => {
                if mapping.is_some() {
                    return Err(ImportError::new(
                        "the bpic2014 format has a fixed layout: it takes no mapping",
                    ));
                }
                return Ok(Spec::bpic2014());
            }
            Format::Servicenow => Spec::servicenow(),
            Format::Csv => {
                let Some(m) = mapping else {
                    return Err(ImportError::new(
                        "the csv format needs a mapping (`--mapping FILE`) naming its columns",
                    ));
                };
                if m.columns.id.is_none() {
                    return Err(ImportError::new(
                        "the mapping names no `id` column (`[columns] id = \"…\"`)",
                    ));
                }
                Spec::generic()
            }
        };
        if let Some(m) = mapping {
            spec.apply(m)?;
        }
        Ok(spec)
    }

    fn bpic2014() -> Spec {
        let c = |s: &str| Some(s.to_string());
        let columns = Columns {
            id: c("Change ID"),
            change_type: c("Change Type"),
            risk: c("Risk Assessment"),
            emergency: c("Emergency Change"),
            planned_start: c("Planned Start"),
            planned_end: c("Planned End"),
            actual_start: c("Actual Start"),
            actual_end: c("Actual End"),
            opened: c("Change record Open Time"),
            closed: c("Change record Close Time"),
            configuration_item: c("CI Name (aff)"),
            ..Columns::default()
        };
        Spec {
            delimiter: b';',
            quoting: false,
            zone: Zone::amsterdam(),
            date_formats: vec![
                "[day padding:none]-[month padding:none]-[year] [hour padding:none]:[minute]"
                    .into(),
            ],
            date_hint: "is not a date in the form `d-m-yyyy h:mm`".into(),
            required: field_names(&columns).collect(),
            columns,
            values: Values::default(),
            ci_details: [
                Some("CI Type (aff)"),
                Some("CI Subtype (aff)"),
                Some("Service Component WBS (aff)"),
            ],
            opened_fallback: None,
            type_rule: TypeRule::Bpic,
            documented_codes: false,
        }
    }

    fn servicenow() -> Spec {
        let c = |s: &str| Some(s.to_string());
        let columns = Columns {
            id: c("number"),
            title: c("short_description"),
            change_type: c("type"),
            state: c("state"),
            risk: c("risk"),
            impact: c("impact"),
            opened: c("opened_at"),
            planned_start: c("start_date"),
            planned_end: c("end_date"),
            actual_start: c("work_start"),
            actual_end: c("work_end"),
            closed: c("closed_at"),
            approved_at: c("approval_set"),
            updated: c("sys_updated_on"),
            emergency: None,
            configuration_item: c("cmdb_ci"),
        };
        let codes = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // ServiceNow's documented codes of the change_request table.
        let values = Values {
            state: codes(&[
                ("-5", "New"),
                ("-4", "Assess"),
                ("-3", "Authorize"),
                ("-2", "Scheduled"),
                ("-1", "Implement"),
                ("0", "Review"),
                ("3", "Closed"),
                ("4", "Canceled"),
            ]),
            risk: codes(&[
                ("1", "Very High"),
                ("2", "High"),
                ("3", "Moderate"),
                ("4", "Low"),
            ]),
            impact: codes(&[("1", "High"), ("2", "Medium"), ("3", "Low")]),
            ..Values::default()
        };
        Spec {
            delimiter: b',',
            quoting: true,
            zone: Zone::utc(),
            date_formats: vec![SERVICENOW_DATES.into()],
            date_hint: "is not a date in the form `yyyy-mm-dd hh:mm:ss`".into(),
            required: BTreeSet::from(["id"]),
            columns,
            values,
            ci_details: [None; 3],
            opened_fallback: Some("sys_created_on"),
            type_rule: TypeRule::Words,
            documented_codes: true,
        }
    }

    fn generic() -> Spec {
        Spec {
            delimiter: b',',
            quoting: true,
            zone: Zone::utc(),
            date_formats: vec![
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z".into(),
                SERVICENOW_DATES.into(),
            ],
            date_hint: String::new(),
            required: BTreeSet::new(),
            columns: Columns::default(),
            values: Values::default(),
            ci_details: [None; 3],
            opened_fallback: None,
            type_rule: TypeRule::Words,
            documented_codes: false,
        }
    }

    /// Lays a mapping over the built-in layout: what the mapping says wins.
    fn apply(&mut self, m: &Mapping) -> Result<(), ImportError> {
        if let Some(d) = &m.delimiter {
            self.delimiter = match d.as_bytes() {
                [b] if d.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => *b,
                _ => {
                    return Err(ImportError::new(format!(
                        "the mapping's delimiter `{d}` is not one ASCII character"
                    )))
                }
            };
        }
        if let Some(z) = &m.zone {
            self.zone = Zone::parse(z)?;
        }
        if let Some(formats) = &m.date_formats {
            if formats.is_empty() {
                return Err(ImportError::new("the mapping's `date_formats` is empty"));
            }
            self.date_formats = formats.clone();
            self.date_hint.clear();
        }
        for (field, column) in fields(&m.columns) {
            if let Some(column) = column {
                *field_mut(&mut self.columns, field) = Some(column.clone());
                self.required.insert(field);
            }
        }
        let merge = |into: &mut BTreeMap<String, String>, from: &BTreeMap<String, String>| {
            into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
        };
        merge(&mut self.values.change_type, &m.values.change_type);
        merge(&mut self.values.state, &m.values.state);
        merge(&mut self.values.risk, &m.values.risk);
        merge(&mut self.values.impact, &m.values.impact);
        merge(&mut self.values.emergency, &m.values.emergency);
        Ok(())
    }
}

/// Every field of [`Columns`] with its mapping key.
fn fields(c: &Columns) -> [(&'static str, &Option<String>); 16] {
    [
        ("id", &c.id),
        ("title", &c.title),
        ("type", &c.change_type),
        ("state", &c.state),
        ("risk", &c.risk),
        ("impact", &c.impact),
        ("opened", &c.opened),
        ("planned_start", &c.planned_start),
        ("planned_end", &c.planned_end),
        ("actual_start", &c.actual_start),
        ("actual_end", &c.actual_end),
        ("closed", &c.closed),
        ("approved_at", &c.approved_at),
        ("updated", &c.updated),
        ("emergency", &c.emergency),
        ("configuration_item", &c.configuration_item),
    ]
}

fn field_names(c: &Columns) -> impl Iterator<Item = &'static str> + '_ {
    fields(c)
        .into_iter()
        .filter(|(_, col)| col.is_some())
        .map(|(f, _)| f)
}

fn field_mut<'a>(c: &'a mut Columns, field: &str) -> &'a mut Option<String> {
    match field {
        "id" => &mut c.id,
        "title" => &mut c.title,
        "type" => &mut c.change_type,
        "state" => &mut c.state,
        "risk" => &mut c.risk,
        "impact" => &mut c.impact,
        "opened" => &mut c.opened,
        "planned_start" => &mut c.planned_start,
        "planned_end" => &mut c.planned_end,
        "actual_start" => &mut c.actual_start,
        "actual_end" => &mut c.actual_end,
        "closed" => &mut c.closed,
        "approved_at" => &mut c.approved_at,
        "updated" => &mut c.updated,
        "emergency" => &mut c.emergency,
        _ => &mut c.configuration_item,
    }
}

/// The time fields of a change, in the order [`Layout::times`] holds their columns.
const TIME_FIELDS: [&str; 8] = [
    "opened",
    "planned_start",
    "planned_end",
    "actual_start",
    "actual_end",
    "closed",
    "approved_at",
    "updated",
];

/// A layout met with a header: column positions for every field.
struct Layout {
    format: Format,
    zone: Zone,
    dates: Vec<OwnedFormatItem>,
    date_hint: String,
    headers: Vec<String>,
    id: usize,
    title: Option<usize>,
    change_type: Option<usize>,
    state: Option<usize>,
    risk: Option<usize>,
    impact: Option<usize>,
    /// The columns of [`TIME_FIELDS`].
    times: [Option<usize>; 8],
    opened_fallback: Option<usize>,
    emergency: Option<usize>,
    ci: Option<usize>,
    ci_details: [Option<usize>; 3],
    values: Values,
    type_rule: TypeRule,
    documented_codes: bool,
    /// Columns no field reads, kept as unmapped values.
    unmapped: Vec<usize>,
    /// Columns that describe one configuration item rather than the change.
    per_item: BTreeSet<usize>,
}

impl Layout {
    fn new(format: Format, spec: Spec, headers: Vec<String>) -> Result<Layout, ImportError> {
        let mut dates = Vec::with_capacity(spec.date_formats.len());
        for f in &spec.date_formats {
            let item = time::format_description::parse_owned::<2>(f).map_err(|e| {
                ImportError::new(format!("the date format `{f}` is not valid: {e}"))
            })?;
            dates.push(item);
        }
        let date_hint = if spec.date_hint.is_empty() {
            let quoted: Vec<String> = spec.date_formats.iter().map(|f| format!("`{f}`")).collect();
            format!("matches none of the date formats {}", quoted.join(", "))
        } else {
            spec.date_hint.clone()
        };
        let position = |name: &str| headers.iter().position(|h| h == name);
        let mut used = BTreeSet::new();
        let mut column = |field: &'static str| -> Result<Option<usize>, ImportError> {
            let (_, name) = fields(&spec.columns)
                .into_iter()
                .find(|(f, _)| *f == field)
                .unwrap_or((field, &None));
            let Some(name) = name else { return Ok(None) };
            match position(name) {
                Some(i) => {
                    used.insert(i);
                    Ok(Some(i))
                }
                None if spec.required.contains(field) => Err(ImportError::new(format!(
                    "the header has no column `{name}` (for `{field}`); it has {}{}",
                    list_names(&headers),
                    if headers.len() == 1 {
                        " (is the delimiter right?)"
                    } else {
                        ""
                    }
                ))),
                None => Ok(None),
            }
        };
        let id = column("id")?.ok_or_else(|| ImportError::new("no column gives the change id"))?;
        let title = column("title")?;
        let change_type = column("type")?;
        let state = column("state")?;
        let risk = column("risk")?;
        let impact = column("impact")?;
        let mut times = [None; 8];
        for (slot, field) in times.iter_mut().zip(TIME_FIELDS) {
            *slot = column(field)?;
        }
        let emergency = column("emergency")?;
        let ci = column("configuration_item")?;
        let opened_fallback = spec.opened_fallback.and_then(position);
        let ci_details = spec.ci_details.map(|d| d.and_then(position));
        used.extend(opened_fallback);
        used.extend(ci_details.iter().flatten().copied());
        let per_item: BTreeSet<usize> = ci
            .iter()
            .chain(ci_details.iter().flatten())
            .copied()
            .collect();
        let unmapped = (0..headers.len())
            .filter(|i| !used.contains(i) && !headers[*i].is_empty())
            .collect();
        Ok(Layout {
            format,
            zone: spec.zone,
            dates,
            date_hint,
            headers,
            id,
            title,
            change_type,
            state,
            risk,
            impact,
            times,
            opened_fallback,
            emergency,
            ci,
            ci_details,
            values: spec.values,
            type_rule: spec.type_rule,
            documented_codes: spec.documented_codes,
            unmapped,
            per_item,
        })
    }
}

fn list_names(headers: &[String]) -> String {
    let shown: Vec<String> = headers.iter().take(30).map(|h| format!("`{h}`")).collect();
    let more = headers.len().saturating_sub(30);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// One row read into a change's fields, not yet grouped.
struct Row {
    change: ImportedChange,
    item: Option<ConfigurationItem>,
    /// Warnings about the values of this row, reported if they are the ones kept.
    notes: Vec<String>,
}

/// A change being assembled from its rows.
struct Group {
    change: ImportedChange,
    first: csv::StringRecord,
    /// Columns on which a disagreement was already reported.
    disagreed: BTreeSet<usize>,
}

/// The state of reading one file.
struct Reading {
    layout: Layout,
    groups: Vec<Group>,
    by_id: HashMap<String, usize>,
    report: Report,
}

impl Reading {
    fn new(layout: Layout) -> Reading {
        let zone = layout.zone.name().to_string();
        let zone_rule = layout.zone.describe();
        Reading {
            layout,
            groups: Vec::new(),
            by_id: HashMap::new(),
            report: Report {
                rows_read: 0,
                changes: 0,
                rejected: Vec::new(),
                warnings: Vec::new(),
                zone,
                zone_rule,
            },
        }
    }

    fn reject(&mut self, line: u64, reason: String) {
        self.report.rejected.push(Rejected { line, reason });
    }

    fn warn(&mut self, line: u64, change: Option<&str>, message: String) {
        self.report.warnings.push(Warning {
            line,
            change: change.map(str::to_string),
            message,
        });
    }

    fn row(&mut self, line: u64, record: &csv::StringRecord) {
        self.report.rows_read += 1;
        if record.iter().all(|c| c.trim().is_empty()) {
            self.warn(line, None, "the row is empty; skipped".into());
            return;
        }
        let expected = self.layout.headers.len();
        if record.len() != expected {
            let reason = format!(
                "the row has {} fields where the header has {expected}",
                record.len()
            );
            return self.reject(line, reason);
        }
        let row = match read_row(&self.layout, line, record) {
            Ok(row) => row,
            Err(reason) => return self.reject(line, reason),
        };
        match self.by_id.get(&row.change.source_id) {
            None => {
                for note in &row.notes {
                    self.warn(line, Some(&row.change.source_id), note.clone());
                }
                self.by_id
                    .insert(row.change.source_id.clone(), self.groups.len());
                let mut change = row.change;
                change.configuration_items.extend(row.item);
                self.groups.push(Group {
                    change,
                    first: record.clone(),
                    disagreed: BTreeSet::new(),
                });
            }
            Some(&index) => {
                let group = &mut self.groups[index];
                group.change.rows.push(line);
                if let Some(item) = row.item {
                    if !group.change.configuration_items.contains(&item) {
                        group.change.configuration_items.push(item);
                    }
                }
                let mut found = Vec::new();
                for (i, (first, now)) in group.first.iter().zip(record.iter()).enumerate() {
                    let differs = first.trim() != now.trim();
                    if differs && !self.layout.per_item.contains(&i) && group.disagreed.insert(i) {
                        found.push(format!(
                            "rows disagree on `{}`: line {} has `{}`, this line `{}`; the first \
                             is kept",
                            self.layout.headers[i],
                            group.change.rows[0],
                            first.trim(),
                            now.trim()
                        ));
                    }
                }
                let id = group.change.source_id.clone();
                for message in found {
                    self.warn(line, Some(&id), message);
                }
            }
        }
    }

    fn finish(mut self) -> Imported {
        self.report.changes = self.groups.len() as u64;
        Imported {
            changes: self.groups.into_iter().map(|g| g.change).collect(),
            report: self.report,
        }
    }
}

/// Reads one row's fields; the error is the reason the row is rejected.
fn read_row(layout: &Layout, line: u64, record: &csv::StringRecord) -> Result<Row, String> {
    let cell = |i: Option<usize>| -> Option<&str> {
        i.and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let id = cell(Some(layout.id)).ok_or_else(|| {
        format!(
            "column `{}` is empty: a row needs a change id",
            layout.headers[layout.id]
        )
    })?;
    let mut notes = Vec::new();
    let mut times: [Option<String>; 8] = Default::default();
    for (k, slot) in times.iter_mut().enumerate() {
        let mut column = layout.times[k];
        if TIME_FIELDS[k] == "opened" && cell(column).is_none() {
            column = layout.opened_fallback.or(column);
        }
        if let Some(text) = cell(column) {
            let header = &layout.headers[column.unwrap_or_default()];
            *slot = Some(read_time(layout, header, text, &mut notes)?);
        }
    }
    let emergency = match cell(layout.emergency) {
        None => false,
        Some(text) => flag(&layout.values.emergency, text).ok_or_else(|| {
            let header = &layout.headers[layout.emergency.unwrap_or_default()];
            format!("column `{header}`: `{text}` is not a yes/no value")
        })?,
    };
    let type_label = cell(layout.change_type);
    let change_type = if emergency {
        ChangeType::Emergency
    } else {
        classify(layout, type_label)
    };
    let mut coded = |field: &str, column: Option<usize>, map: &BTreeMap<String, String>| {
        let text = cell(column)?;
        if let Some(v) = map.get(text) {
            return Some(v.clone());
        }
        if layout.documented_codes && text.parse::<i64>().is_ok() {
            notes.push(format!(
                "`{field}` code `{text}` is not one ServiceNow documents; kept as given"
            ));
        }
        Some(text.to_string())
    };
    let state = coded("state", layout.state, &layout.values.state);
    let risk = coded("risk", layout.risk, &layout.values.risk);
    let impact = coded("impact", layout.impact, &layout.values.impact);
    let item = cell(layout.ci).map(|name| ConfigurationItem {
        name: name.to_string(),
        kind: cell(layout.ci_details[0]).map(str::to_string),
        subtype: cell(layout.ci_details[1]).map(str::to_string),
        service: cell(layout.ci_details[2]).map(str::to_string),
    });
    let unmapped = layout
        .unmapped
        .iter()
        .filter_map(|&i| Some((layout.headers[i].clone(), cell(Some(i))?.to_string())))
        .collect();
    let [opened, planned_start, planned_end, actual_start, actual_end, closed, approved_at, updated] =
        times;
    let change = ImportedChange {
        format: layout.format,
        source_id: id.to_string(),
        title: cell(layout.title).map(str::to_string),
        change_type,
        type_label: type_label.map(str::to_string),
        state,
        risk,
        impact,
        opened,
        planned_start,
        planned_end,
        actual_start,
        actual_end,
        closed,
        approved_at,
        updated,
        approvals_recorded: layout.times[6].is_some(),
        configuration_items: Vec::new(),
        rows: vec![line],
        unmapped,
    };
    Ok(Row {
        change,
        item,
        notes,
    })
}

fn classify(layout: &Layout, label: Option<&str>) -> ChangeType {
    let Some(label) = label else {
        return ChangeType::Unknown;
    };
    if let Some(t) = layout.values.change_type.get(label) {
        return ChangeType::from_word(t).unwrap_or(ChangeType::Unknown);
    }
    match layout.type_rule {
        TypeRule::Bpic if label.starts_with("Standard") => ChangeType::Standard,
        TypeRule::Bpic => ChangeType::Normal,
        TypeRule::Words => match ChangeType::from_word(label) {
            Some(ChangeType::Unknown) | None => ChangeType::Unknown,
            Some(t) => t,
        },
    }
}

fn flag(map: &BTreeMap<String, String>, text: &str) -> Option<bool> {
    if let Some(v) = map.get(text) {
        return Some(v == "true");
    }
    match text.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "1" => Some(true),
        "n" | "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Reads a time cell into RFC 3339 UTC, noting what a reader should know.
fn read_time(
    layout: &Layout,
    header: &str,
    text: &str,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let bad = || format!("column `{header}`: `{text}` {}", layout.date_hint);
    let mut found = None;
    for item in &layout.dates {
        if let Ok(t) = OffsetDateTime::parse(text, item) {
            found = Some((t, None));
            break;
        }
        let local = PrimitiveDateTime::parse(text, item)
            .ok()
            .or_else(|| Date::parse(text, item).ok().map(|d| d.midnight()));
        if let Some(local) = local {
            let (t, shift) = layout.zone.resolve(local);
            found = Some((t, shift));
            break;
        }
    }
    let (instant, shift) = found.ok_or_else(bad)?;
    let utc = times::format_utc(instant).map_err(|e| format!("column `{header}`: {e}"))?;
    let zone = layout.zone.name();
    match shift {
        Some(Shift::Repeated) => notes.push(format!(
            "`{header}` `{text}` is in the hour {zone} repeats when summer time ends; read as \
             the first, in summer time: {utc}"
        )),
        Some(Shift::Skipped) => notes.push(format!(
            "`{header}` `{text}` does not exist in {zone} (the clocks skip that hour when \
             summer time begins); read with the standard offset: {utc}"
        )),
        None => {}
    }
    if layout.zone.eu_summer_time && instant.year() < 1996 {
        notes.push(format!(
            "`{header}` `{text}` is before 1996, when the EU summer-time rule used for {zone} \
             came into force; it may be an hour off"
        ));
    }
    Ok(utc)
}
