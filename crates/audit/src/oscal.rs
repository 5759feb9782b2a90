//! An engagement as NIST OSCAL assessment results (OSCAL 1.1.2, JSON), for auditors and GRC
//! tools that read OSCAL.
//!
//! One result covers the engagement's period. Its reviewed controls are the controls tested
//! (effective or deficient). Each of them has an observation (population count and SHA-256,
//! sample size and basis, methods, exceptions, the failed items by id) and a finding on its
//! control objective, `satisfied` when the control is effective and `not-satisfied` when it
//! is deficient. A finding is a determination, and none was made for a control not tested or
//! disabled by tailoring: those have neither observation nor finding and are listed in the
//! result's props, each with its reason. Every deficiency becomes an open risk: an operating
//! one is linked from its control's finding, a design one (a risk no enabled control
//! addresses) from a finding of its own on the objective that the risk is addressed, with
//! an observation of the risk-control matrix.
//!
//! **Ids.** OSCAL control ids are tokens; a changegate id is lower-cased, with any character
//! a token may not hold replaced by `-` and `_` put first when it does not start with a
//! letter (`CM-06` is `cm-06`). The original id is kept in a `control-id` prop. Finding
//! targets are objective ids: `cm-06_obj` for a control, `r16_obj` for a risk.
//!
//! **UUIDs** are name-based, version 5 (SHA-1, RFC 9562), so the same engagement and
//! metadata give the same bytes. The document's namespace is the version 5 UUID of
//! [`OscalMeta::namespace`] in the URL namespace (`6ba7b811-9dad-11d1-80b4-00c04fd430c8`);
//! each UUID is the version 5 UUID, in that namespace, of `changegate-oscal-v1`, the start
//! and end of the period (as they appear in the document), the kind of object and its key,
//! each followed by a zero byte. The organization's party, which is the same in every
//! period, is keyed without the period (two empty parts).
//!
//! Props that changegate defines carry the namespace [`PROP_NS`].

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time, UtcOffset};

use crate::catalog::Catalog;
use crate::deficiency::Status;
use crate::engagement::{Conclusion, ControlTest, Deficiency, DeficiencyKind, Engagement, Method};
use crate::reconcile::AttributeResult;

/// The OSCAL version the documents declare and are checked against.
pub const OSCAL_VERSION: &str = "1.1.2";

/// The namespace of the props changegate defines.
pub const PROP_NS: &str = "urn:changegate:oscal";

/// Failed sample items named in an observation; the rest are counted.
const FAILED_ITEMS_SHOWN: usize = 10;

/// The UUID namespace for URLs (RFC 9562, appendix C).
const NAMESPACE_URL: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// What an OSCAL document needs that the engagement does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OscalMeta {
    /// The document's title.
    pub title: String,
    /// The document's version (OSCAL `metadata.version`), e.g. `2026-1`.
    pub version: String,
    /// When the document was generated: its `last-modified` and the observations'
    /// `collected`. Given by the caller so that the output is reproducible.
    pub generated: OffsetDateTime,
    /// The organization whose controls were tested (the party the results are prepared
    /// for).
    pub organization: String,
    /// Any stable text, best a URL the organization controls (e.g.
    /// `https://acme.example/changegate`): the UUIDs are derived from it.
    pub namespace: String,
}

/// An engagement or metadata that cannot be written as a valid OSCAL document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("oscal: {0}")]
pub struct OscalError(String);

/// The engagement as an OSCAL `assessment-results` document (see the module documentation).
///
/// Refuses a period bound that is neither an RFC 3339 instant nor a day (`2026-05-31`), a
/// period that ends before it starts, instants outside the years 1900–2999 (OSCAL's
/// date-time pattern), and a version or organization that is empty or not one line.
pub fn assessment_results(
    e: &Engagement,
    catalog: &Catalog,
    meta: &OscalMeta,
) -> Result<Value, OscalError> {
    let (from, to) = (
        bound(&e.period.0, Bound::Start)?,
        bound(&e.period.1, Bound::End)?,
    );
    if to < from {
        return Err(OscalError(format!(
            "the period ends (`{}`) before it starts (`{}`)",
            e.period.1, e.period.0
        )));
    }
    let (start, end) = (instant(from)?, instant(to)?);
    let generated = instant(meta.generated)?;
    let version = one_line_field("version", &meta.version)?;
    let organization = one_line_field("organization", &meta.organization)?;
    let ids = Ids::new(&meta.namespace, &start, &end);
    let w = Writer {
        e,
        catalog,
        ids: &ids,
        collected: &generated,
    };

    let party = ids.global("party", organization);
    let plan = ids.uuid("assessment-plan", "");
    let metadata = json!({
        "title": meta.title,
        "last-modified": generated,
        "version": version,
        "oscal-version": OSCAL_VERSION,
        "roles": [{"id": "prepared-for", "title": "Prepared For"}],
        "parties": [{"uuid": party, "type": "organization", "name": organization}],
        "responsible-parties": [{"role-id": "prepared-for", "party-uuids": [party]}],
        "remarks": "Generated by changegate from an engagement. UUIDs are name-based \
            (version 5): the same engagement and metadata give the same document.",
    });
    let document = json!({
        "uuid": ids.uuid("assessment-results", ""),
        "metadata": metadata,
        "import-ap": {
            "href": format!("#{plan}"),
            "remarks": "changegate publishes no OSCAL assessment plan; the resource names \
                the engagement plan it stands for.",
        },
        "results": [w.result(&start, &end)],
        "back-matter": {"resources": [{
            "uuid": plan,
            "title": "Engagement plan",
            "description": format!(
                "The changegate engagement over {} to {} with sample seed {}: the controls \
                 in scope, their populations, sample sizes and tolerable deviation rates \
                 as recorded in the engagement's workpapers.",
                e.period.0, e.period.1, e.seed
            ),
        }]},
    });
    Ok(json!({ "assessment-results": document }))
}

struct Writer<'a> {
    e: &'a Engagement,
    catalog: &'a Catalog,
    ids: &'a Ids,
    collected: &'a str,
}

impl Writer<'_> {
    fn result(&self, start: &str, end: &str) -> Value {
        let e = self.e;
        let tested: Vec<&ControlTest> = e
            .controls
            .iter()
            .filter(|t| matches!(t.conclusion, Conclusion::Effective | Conclusion::Deficient))
            .collect();
        let count = |c: Conclusion| e.controls.iter().filter(|t| t.conclusion == c).count();

        let mut observations = Vec::new();
        let mut findings = Vec::new();
        for t in &tested {
            observations.push(self.control_observation(t));
            findings.push(self.control_finding(t));
        }
        let mut risks = Vec::new();
        for d in &e.deficiencies {
            risks.push(self.risk(d));
            if d.kind == DeficiencyKind::Design {
                observations.push(self.design_observation(d));
                findings.push(self.design_finding(d));
            }
        }

        let mut props = vec![prop("sample-seed", e.seed)];
        for t in &e.controls {
            let name = match t.conclusion {
                Conclusion::NotTested => "control-not-tested",
                Conclusion::Disabled => "control-disabled",
                Conclusion::Effective | Conclusion::Deficient => continue,
            };
            let mut p = prop(name, &t.control);
            p["remarks"] = json!(t
                .note
                .as_deref()
                .unwrap_or("nothing to test: no item of its population in the period"));
            props.push(p);
        }
        for w in &e.warnings {
            let mut p = prop("warning", &w.code);
            p["remarks"] = json!(w.message);
            props.push(p);
        }
        let include: Vec<Value> = tested
            .iter()
            .map(|t| json!({"control-id": control_token(&t.control)}))
            .collect();
        let mut selection = Map::new();
        selection.insert(
            "description".into(),
            json!("The controls tested in the period."),
        );
        put(&mut selection, "include-controls", include);
        if !tested.is_empty() {
            let mapping: Vec<String> = tested
                .iter()
                .map(|t| {
                    format!(
                        "`{}` is changegate's `{}`",
                        control_token(&t.control),
                        t.control
                    )
                })
                .collect();
            selection.insert(
                "remarks".into(),
                json!(format!("Control ids: {}.", mapping.join(", "))),
            );
        }

        let mut result = Map::new();
        result.insert("uuid".into(), json!(self.ids.uuid("result", "")));
        result.insert(
            "title".into(),
            json!(format!("Engagement {} to {}", e.period.0, e.period.1)),
        );
        result.insert(
            "description".into(),
            json!(format!(
                "{} controls in scope: {} effective, {} deficient, {} not tested, {} \
                 disabled; {} deficiencies ({} of design).",
                e.controls.len(),
                count(Conclusion::Effective),
                count(Conclusion::Deficient),
                count(Conclusion::NotTested),
                count(Conclusion::Disabled),
                e.deficiencies.len(),
                e.design_deficiencies.len()
            )),
        );
        result.insert("start".into(), json!(start));
        result.insert("end".into(), json!(end));
        put(&mut result, "props", props);
        result.insert(
            "reviewed-controls".into(),
            json!({"control-selections": [selection]}),
        );
        put(&mut result, "observations", observations);
        put(&mut result, "findings", findings);
        put(&mut result, "risks", risks);
        result.insert(
            "remarks".into(),
            json!(
                "Controls not tested or disabled have no finding: no determination was made \
                 for them. They are listed in the props `control-not-tested` and \
                 `control-disabled` with the reason."
            ),
        );
        Value::Object(result)
    }

    fn control_observation(&self, t: &ControlTest) -> Value {
        let mut methods: BTreeSet<&str> = t.results.iter().map(|r| method(r.method)).collect();
        if methods.is_empty() {
            // OSCAL requires a method; a tested control always has results, so this is
            // only a guard.
            methods.insert("UNKNOWN");
        }
        let mut types = vec!["control-objective"];
        if t.conclusion == Conclusion::Deficient {
            types.push("finding");
        }
        let mut props = vec![
            prop("control-id", &t.control),
            prop("population-count", t.population.count),
            prop("population-sha256", &t.population.sha256),
            prop("sample-size", t.sample.len()),
            prop("sample-basis", &t.sample_size.basis),
            prop("whole-population", t.sample_size.whole_population),
            prop("sample-seed", self.e.seed),
            prop("exceptions", t.exceptions),
            prop("deviation-rate", t.deviation_rate),
            prop("tolerable-rate", t.tolerable_rate),
        ];
        for (code, n) in &t.exceptions_by_code {
            let mut p = prop("population-exceptions", n);
            p["class"] = json!(token(code));
            props.push(p);
        }

        let sources = if t.population.sources.is_empty() {
            String::new()
        } else {
            format!(" from {}", t.population.sources.join("; "))
        };
        let mut evidence = vec![
            json!({"description": format!(
                "Population: {}{sources}. SHA-256 of the item ids, one per line in \
                 population order: {}.",
                items(t.population.count),
                t.population.sha256
            )}),
            json!({"description": format!(
                "Sample: {} ({}{}), drawn with seed {}: the items whose SHA-256 of \
                 `changegate-sample-v1`, the seed, the control id and the item id, each \
                 followed by a zero byte, is lowest.",
                items(t.sample.len() as u64),
                t.sample_size.basis,
                if t.sample_size.whole_population { "; the whole population" } else { "" },
                self.e.seed
            )}),
            json!({"description": format!(
                "{} of {} sampled items failed at least one attribute ({}, tolerable {}). \
                 Attributes tested: {}.",
                t.exceptions,
                t.sample.len(),
                percent(t.deviation_rate),
                percent(t.tolerable_rate),
                attributes(t).join(", ")
            )}),
        ];
        if let Some(failed) = failed_items(t) {
            evidence.push(json!({ "description": failed }));
        }
        if !t.exceptions_by_code.is_empty() {
            let codes: Vec<String> = t
                .exceptions_by_code
                .iter()
                .map(|(c, n)| format!("`{c}` {n}"))
                .collect();
            evidence.push(json!({"description": format!(
                "Exceptions over the whole population, items by reason code: {}.",
                codes.join(", ")
            )}));
        }

        let mut o = Map::new();
        o.insert(
            "uuid".into(),
            json!(self.ids.uuid("observation", &t.control)),
        );
        o.insert("title".into(), json!(format!("Testing of {}", t.control)));
        o.insert(
            "description".into(),
            json!(format!(
                "{}: {} sampled of {} in the population, {} with exceptions.",
                t.control,
                t.sample.len(),
                t.population.count,
                t.exceptions
            )),
        );
        put(&mut o, "props", props);
        o.insert("methods".into(), json!(methods));
        o.insert("types".into(), json!(types));
        put(&mut o, "relevant-evidence", evidence);
        o.insert("collected".into(), json!(self.collected));
        if let Some(note) = &t.note {
            o.insert("remarks".into(), json!(note));
        }
        Value::Object(o)
    }

    fn control_finding(&self, t: &ControlTest) -> Value {
        let control = self.catalog.control(&t.control);
        let effective = t.conclusion == Conclusion::Effective;
        let (state, reason, word) = if effective {
            ("satisfied", "pass", "effective")
        } else {
            ("not-satisfied", "fail", "deficient")
        };
        let mut props = vec![prop("control-id", &t.control), prop("conclusion", word)];
        for c in control.map(|c| c.criteria.as_slice()).unwrap_or_default() {
            props.push(prop("soc2-criterion", c));
        }
        let mut f = Map::new();
        f.insert("uuid".into(), json!(self.ids.uuid("finding", &t.control)));
        f.insert("title".into(), json!(format!("{} is {word}", t.control)));
        f.insert(
            "description".into(),
            json!(format!(
                "{} sampled items of {}, {} with exceptions: a deviation rate of {} against \
                 a tolerable {}.",
                t.sample.len(),
                t.population.count,
                t.exceptions,
                percent(t.deviation_rate),
                percent(t.tolerable_rate)
            )),
        );
        put(&mut f, "props", props);
        let mut target = json!({
            "type": "objective-id",
            "target-id": format!("{}_obj", control_token(&t.control)),
            "status": {"state": state, "reason": reason},
        });
        if let Some(c) = control {
            target["description"] = json!(c.description);
        }
        f.insert("target".into(), target);
        f.insert(
            "related-observations".into(),
            json!([{"observation-uuid": self.ids.uuid("observation", &t.control)}]),
        );
        let risks: Vec<Value> = self
            .e
            .deficiencies
            .iter()
            .filter(|d| d.kind == DeficiencyKind::OperatingEffectiveness && d.subject == t.control)
            .map(|d| json!({"risk-uuid": self.risk_uuid(d)}))
            .collect();
        put(&mut f, "related-risks", risks);
        Value::Object(f)
    }

    /// What the risk-control matrix shows for a design deficiency's risk.
    fn design_text(&self, d: &Deficiency) -> String {
        match self
            .e
            .design_deficiencies
            .iter()
            .find(|x| x.risk == d.subject)
        {
            Some(x) => format!(
                "{}: {} No enabled control addresses it: {}.",
                x.risk, x.description, x.reason
            ),
            None => d.description.clone(),
        }
    }

    fn design_observation(&self, d: &Deficiency) -> Value {
        json!({
            "uuid": self.ids.uuid("design-observation", &d.subject),
            "title": format!("Risk-control matrix: {}", d.subject),
            "description": self.design_text(d),
            "props": [prop("risk-id", &d.subject), prop("deficiency-id", &d.id)],
            "methods": ["EXAMINE"],
            "types": ["finding"],
            "collected": self.collected,
        })
    }

    fn design_finding(&self, d: &Deficiency) -> Value {
        json!({
            "uuid": self.ids.uuid("design-finding", &d.subject),
            "title": format!("No enabled control addresses {}", d.subject),
            "description": self.design_text(d),
            "props": [prop("risk-id", &d.subject), prop("deficiency-id", &d.id)],
            "target": {
                "type": "objective-id",
                "target-id": format!("{}_obj", control_token(&d.subject)),
                "status": {"state": "not-satisfied", "reason": "fail"},
            },
            "related-observations": [
                {"observation-uuid": self.ids.uuid("design-observation", &d.subject)}
            ],
            "related-risks": [{"risk-uuid": self.risk_uuid(d)}],
        })
    }

    fn risk_uuid(&self, d: &Deficiency) -> String {
        match d.kind {
            DeficiencyKind::Design => self.ids.uuid("design-risk", &d.subject),
            DeficiencyKind::OperatingEffectiveness => self.ids.uuid("operating-risk", &d.subject),
        }
    }

    fn risk(&self, d: &Deficiency) -> Value {
        let (title, statement, observation) = match d.kind {
            DeficiencyKind::Design => (
                format!(
                    "Design deficiency: no enabled control addresses {}",
                    d.subject
                ),
                format!(
                    "Even operating as designed, the enabled controls do not address {}: {}",
                    d.subject,
                    self.risk_description(&d.subject)
                ),
                self.ids.uuid("design-observation", &d.subject),
            ),
            DeficiencyKind::OperatingEffectiveness => {
                let addressed: Vec<String> = self
                    .catalog
                    .control(&d.subject)
                    .map(|c| c.risks.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|r| format!("{r}: {}", self.risk_description(r)))
                    .collect();
                (
                    format!(
                        "Operating deficiency: {} did not operate effectively",
                        d.subject
                    ),
                    format!(
                        "{} did not operate as designed in the period, so the risks it \
                         addresses may have occurred undetected. {}",
                        d.subject,
                        addressed.join(" ")
                    ),
                    self.ids.uuid("observation", &d.subject),
                )
            }
        };
        let mut description = match d.kind {
            DeficiencyKind::Design => self.design_text(d),
            DeficiencyKind::OperatingEffectiveness => sentence(&d.description),
        };
        if !d.items.is_empty() {
            description.push_str(&format!(" Failed items: {}.", capped(&d.items)));
        }
        let mut props = vec![
            prop("deficiency-id", &d.id),
            prop(
                "deficiency-kind",
                match d.kind {
                    DeficiencyKind::Design => "design",
                    DeficiencyKind::OperatingEffectiveness => "operating-effectiveness",
                },
            ),
        ];
        if let Some(s) = d.significance {
            props.push(prop("significance", s.as_str()));
        }
        props.push(prop("deficiency-status", status_token(d.status)));
        let mut r = Map::new();
        r.insert("uuid".into(), json!(self.risk_uuid(d)));
        r.insert("title".into(), json!(title));
        r.insert("description".into(), json!(description));
        r.insert("statement".into(), json!(statement));
        put(&mut r, "props", props);
        r.insert("status".into(), json!(risk_status(d.status)));
        if let Some(due) = d.remediation_due.as_deref().and_then(rfc3339) {
            r.insert("deadline".into(), json!(due));
        }
        if d.management_response.is_some() || d.remediated_at.is_some() {
            let mut text = d
                .management_response
                .as_deref()
                .map(sentence)
                .unwrap_or_default();
            let lifecycle = match &d.remediated_at {
                Some(at) => {
                    text.push_str(&format!(
                        " Remediated at {at}{}.",
                        d.remediation
                            .as_deref()
                            .map_or(String::new(), |w| format!(": {w}"))
                    ));
                    "completed"
                }
                None => "planned",
            };
            if let Some(owner) = &d.owner {
                text.push_str(&format!(" Owner: {owner}."));
            }
            if let Some(r) = &d.retest {
                text.push_str(&format!(
                    " Retest of the items from {}: {} of {} sampled items failed.",
                    r.from,
                    r.exceptions,
                    r.sample.len()
                ));
            }
            put(
                &mut r,
                "remediations",
                vec![json!({
                    "uuid": self.ids.uuid("remediation", &d.id),
                    "lifecycle": lifecycle,
                    "title": format!("Management's remediation of {}", d.id),
                    "description": text.trim_start(),
                })],
            );
        }
        r.insert(
            "related-observations".into(),
            json!([{ "observation-uuid": observation }]),
        );
        Value::Object(r)
    }

    fn risk_description(&self, id: &str) -> String {
        self.catalog.risks.iter().find(|r| r.id == id).map_or_else(
            || "(not in the catalog)".to_string(),
            |r| r.description.clone(),
        )
    }
}

/// A deficiency's status as an OSCAL risk status.
fn risk_status(status: Status) -> &'static str {
    match status {
        Status::Open | Status::RemediationFailed => "open",
        Status::RemediationPlanned | Status::RemediationOverdue | Status::AwaitingRetest => {
            "remediating"
        }
        Status::Remediated => "closed",
    }
}

fn status_token(status: Status) -> &'static str {
    match status {
        Status::Open => "open",
        Status::RemediationPlanned => "remediation-planned",
        Status::RemediationOverdue => "remediation-overdue",
        Status::AwaitingRetest => "awaiting-retest",
        Status::Remediated => "remediated",
        Status::RemediationFailed => "remediation-failed",
    }
}

/// An instant as OSCAL's date-time with a time zone, if it reads.
fn rfc3339(t: &str) -> Option<String> {
    domain::action::parse_instant("time", t)
        .ok()
        .map(domain::action::format_instant)
}

/// The sampled items with a failed attribute and their codes, the first
/// [`FAILED_ITEMS_SHOWN`] by id and the rest counted; `None` when none failed.
fn failed_items(t: &ControlTest) -> Option<String> {
    let mut items: Vec<String> = Vec::new();
    for d in &t.sample {
        let failed: BTreeSet<&str> = t
            .results
            .iter()
            .filter(|r| r.item == d.item && r.result == AttributeResult::Fail)
            .flat_map(|r| {
                if r.codes.is_empty() {
                    vec![r.attribute.as_str()]
                } else {
                    r.codes.iter().map(String::as_str).collect()
                }
            })
            .collect();
        if !failed.is_empty() {
            let codes: Vec<&str> = failed.into_iter().collect();
            items.push(format!("`{}` ({})", d.item, codes.join(", ")));
        }
    }
    (!items.is_empty()).then(|| format!("Failed sampled items: {}.", capped(&items)))
}

fn capped(items: &[String]) -> String {
    let shown: Vec<&str> = items
        .iter()
        .take(FAILED_ITEMS_SHOWN)
        .map(String::as_str)
        .collect();
    let rest = items.len().saturating_sub(FAILED_ITEMS_SHOWN);
    if rest == 0 {
        shown.join(", ")
    } else {
        format!("{} and {rest} more", shown.join(", "))
    }
}

fn attributes(t: &ControlTest) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    t.results
        .iter()
        .map(|r| r.attribute.as_str())
        .filter(|a| seen.insert(*a))
        .collect()
}

/// OSCAL's observation method for how a result was reached (SP 800-53A: examine covers
/// reviewing, inspecting and observing; test is reperformance; interview is inquiry).
fn method(m: Method) -> &'static str {
    match m {
        Method::Reperformance => "TEST",
        Method::Inspection | Method::Observation => "EXAMINE",
        Method::Inquiry => "INTERVIEW",
    }
}

/// Text ending in a full stop.
fn sentence(s: &str) -> String {
    let s = s.trim_end();
    if s.ends_with(['.', '!', '?']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// `1 item`, `2 items`.
fn items(n: u64) -> String {
    if n == 1 {
        "1 item".to_string()
    } else {
        format!("{n} items")
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1} %", rate * 100.0)
}

/// A changegate prop. OSCAL prop values are one line with no surrounding space: whitespace
/// runs become one space.
fn prop(name: &str, value: impl ToString) -> Value {
    let value = one_line(&value.to_string());
    json!({"name": name, "ns": PROP_NS, "value": if value.is_empty() { "-".into() } else { value }})
}

/// A value OSCAL types as a string: one line, not empty, with no surrounding space.
fn one_line_field<'a>(field: &str, value: &'a str) -> Result<&'a str, OscalError> {
    let breaks = value.contains(['\n', '\r', '\u{2028}', '\u{2029}']);
    if value.is_empty() || value.trim() != value || breaks {
        return Err(OscalError(format!(
            "the {field} `{value}` must be one line, not empty, with no surrounding space"
        )));
    }
    Ok(value)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Inserts an array that OSCAL requires to hold at least one item only when it has one.
fn put(obj: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        obj.insert(key.into(), Value::Array(items));
    }
}

/// A changegate control or risk id as an OSCAL control id (see the module documentation).
pub fn control_token(id: &str) -> String {
    token(&id.to_lowercase())
}

/// Any text as an OSCAL token: a letter or `_`, then letters, numbers, `.`, `-` and `_`.
fn token(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

#[derive(Clone, Copy)]
enum Bound {
    Start,
    End,
}

/// A period bound: an RFC 3339 instant, or a day from 00:00:00Z (start) or through
/// 23:59:59Z (end), as `changegate audit` reads them.
fn bound(s: &str, which: Bound) -> Result<OffsetDateTime, OscalError> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let day = Date::parse(s, format_description!("[year]-[month]-[day]")).map_err(|_| {
        OscalError(format!(
            "the period bound `{s}` is neither an RFC 3339 instant nor a day (yyyy-mm-dd)"
        ))
    })?;
    let time = match which {
        Bound::Start => Time::MIDNIGHT,
        Bound::End => Time::from_hms(23, 59, 59).expect("a valid time"),
    };
    Ok(day.with_time(time).assume_utc())
}

/// An instant as OSCAL writes it: RFC 3339 in UTC, in the years its pattern allows.
fn instant(t: OffsetDateTime) -> Result<String, OscalError> {
    let t = t.to_offset(UtcOffset::UTC);
    if !(1900..=2999).contains(&t.year()) {
        return Err(OscalError(format!(
            "the year {} is outside the years OSCAL dates may have (1900–2999)",
            t.year()
        )));
    }
    t.format(&Rfc3339)
        .map_err(|e| OscalError(format!("cannot format an instant: {e}")))
}

/// Name-based UUIDs for one document (see the module documentation).
struct Ids {
    namespace: [u8; 16],
    start: String,
    end: String,
}

impl Ids {
    fn new(namespace: &str, start: &str, end: &str) -> Ids {
        Ids {
            namespace: uuid_v5(&NAMESPACE_URL, namespace.as_bytes()),
            start: start.to_string(),
            end: end.to_string(),
        }
    }

    /// The UUID of an object of this document's period.
    fn uuid(&self, kind: &str, key: &str) -> String {
        self.name(&self.start, &self.end, kind, key)
    }

    /// The UUID of an object that is the same in every period.
    fn global(&self, kind: &str, key: &str) -> String {
        self.name("", "", kind, key)
    }

    fn name(&self, start: &str, end: &str, kind: &str, key: &str) -> String {
        let mut name = Vec::new();
        for part in ["changegate-oscal-v1", start, end, kind, key] {
            name.extend_from_slice(part.as_bytes());
            name.push(0);
        }
        format_uuid(&uuid_v5(&self.namespace, &name))
    }
}

/// A version 5 UUID: SHA-1 of the namespace and the name, with the version and variant
/// bits set (RFC 9562, section 5.5).
fn uuid_v5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut h = Sha1::new();
    h.update(namespace);
    h.update(name);
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn format_uuid(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_5_uuids_match_the_rfc_example() {
        // RFC 9562, appendix A.4: "www.example.com" in the DNS namespace.
        let dns = [
            0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
            0x30, 0xc8,
        ];
        assert_eq!(
            format_uuid(&uuid_v5(&dns, b"www.example.com")),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
    }

    #[test]
    fn ids_become_tokens() {
        assert_eq!(control_token("CM-06"), "cm-06");
        assert_eq!(control_token("R16"), "r16");
        assert_eq!(control_token("1 Änderung/x"), "_1-änderung-x");
        assert_eq!(control_token(""), "_");
    }

    #[test]
    fn days_become_instants_through_the_end_of_the_last_day() {
        let start = instant(bound("2026-05-01", Bound::Start).unwrap()).unwrap();
        let end = instant(bound("2026-05-31", Bound::End).unwrap()).unwrap();
        assert_eq!(
            (start.as_str(), end.as_str()),
            ("2026-05-01T00:00:00Z", "2026-05-31T23:59:59Z")
        );
        let offset = instant(bound("2026-05-01T02:00:00+02:00", Bound::Start).unwrap()).unwrap();
        assert_eq!(offset, "2026-05-01T00:00:00Z");
        assert!(bound("May 2026", Bound::Start).is_err());
    }
}
