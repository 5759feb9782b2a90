//! `report.html`: the engagement as one readable page, for the people the auditor reports
//! to. Self-contained (inline style, no script, nothing fetched), and every value from the
//! records is escaped.

use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::engagement::{Conclusion, DeficiencyKind, Engagement};
use crate::reconcile::AttributeResult;

/// Text safe inside HTML elements and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn conclusion(c: Conclusion) -> (&'static str, &'static str) {
    match c {
        Conclusion::Effective => ("effective", "ok"),
        Conclusion::Deficient => ("deficient", "bad"),
        Conclusion::NotTested => ("not tested", "none"),
        Conclusion::Disabled => ("disabled", "none"),
    }
}

/// The report. `title` heads the page; the rest comes from the engagement and the catalog.
pub fn html(e: &Engagement, catalog: &Catalog, title: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}}\
         table{{border-collapse:collapse;margin:1rem 0;width:100%}}\
         th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
         th{{background:#f3f3f3}} td.n{{text-align:right}}\
         .ok{{color:#1a7f37}} .bad{{color:#b42318;font-weight:600}} .none{{color:#777}}\
         </style></head><body>\n<h1>{t}</h1>\n<p>Period {from} to {to}; sampling seed {seed}. \
         Samples can be redrawn from the seed: see <code>samples.csv</code>.</p>\n",
        t = escape(title),
        from = escape(&e.period.0),
        to = escape(&e.period.1),
        seed = e.seed
    );
    let tested = e
        .controls
        .iter()
        .filter(|c| matches!(c.conclusion, Conclusion::Effective | Conclusion::Deficient))
        .count();
    let deficient = e
        .controls
        .iter()
        .filter(|c| c.conclusion == Conclusion::Deficient)
        .count();
    let _ = write!(
        h,
        "<h2>Summary</h2>\n<p>{tested} of {} controls tested; {deficient} deficient; {} \
         deficiencies ({} of design).</p>\n",
        e.controls.len(),
        e.deficiencies.len(),
        e.design_deficiencies.len()
    );

    h.push_str(
        "<h2>Controls</h2>\n<table><tr><th>Control</th><th>Description</th>\
         <th>Population</th><th>Sample</th><th>Exceptions</th><th>Conclusion</th></tr>\n",
    );
    for t in &e.controls {
        let description = catalog
            .control(&t.control)
            .map_or("", |c| c.description.as_str());
        let (word, class) = conclusion(t.conclusion);
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{id}\">{id}</a></td><td>{d}</td><td class=\"n\">{p}</td>\
             <td class=\"n\">{s}</td><td class=\"n\">{x}</td><td class=\"{class}\">{word}</td></tr>",
            id = escape(&t.control),
            d = escape(description),
            p = t.population.count,
            s = t.sample.len(),
            x = t.exceptions,
        );
    }
    h.push_str("</table>\n");

    if !e.warnings.is_empty() {
        h.push_str("<h2>Warnings</h2>\n<ul>\n");
        for w in &e.warnings {
            let _ = writeln!(
                h,
                "<li><code>{}</code>: {}</li>",
                escape(&w.code),
                escape(&w.message)
            );
        }
        h.push_str("</ul>\n");
    }

    h.push_str("<h2>Deficiencies</h2>\n");
    if e.deficiencies.is_empty() {
        h.push_str("<p>None.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th>Id</th><th>Kind</th><th>Control or risk</th><th>Description</th>\
             <th>Items</th><th>Significance</th><th>Management response</th>\
             <th>Remediation and retest</th><th>Status</th></tr>\n",
        );
        for d in &e.deficiencies {
            let kind = match d.kind {
                DeficiencyKind::Design => "design",
                DeficiencyKind::OperatingEffectiveness => "operating effectiveness",
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.id),
                escape(&d.subject),
                escape(&d.description),
                escape(&d.items.join(", ")),
                escape(
                    &[
                        d.significance.map(|s| s.as_str().to_string()),
                        d.rationale.clone()
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
                ),
                escape(
                    &[
                        d.management_response.clone(),
                        d.owner.as_ref().map(|o| format!("owner {o}")),
                        d.remediation_due.as_ref().map(|t| format!("due {t}"))
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ")
                ),
                escape(&crate::workbook::remediation_text(d)),
                crate::workbook::status_text(d.status)
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str(
        "<h2>Risk-control matrix</h2>\n<table><tr><th>Risk</th><th>Description</th>\
         <th>Controls</th></tr>\n",
    );
    for row in catalog.matrix() {
        let controls = if row.controls.is_empty() {
            "<span class=\"bad\">none: design deficiency</span>".to_string()
        } else {
            escape(&row.controls.join(", "))
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{controls}</td></tr>",
            escape(&row.risk),
            escape(&row.description)
        );
    }
    h.push_str("</table>\n");

    for t in e.controls.iter().filter(|t| !t.sample.is_empty()) {
        let (word, class) = conclusion(t.conclusion);
        let _ = write!(
            h,
            "<h2 id=\"{id}\">{id}: <span class=\"{class}\">{word}</span></h2>\n\
             <p>Population {p} (SHA-256 <code>{hash}</code>); sample {s} ({basis}); \
             {x} exception(s).</p>\n",
            id = escape(&t.control),
            p = t.population.count,
            hash = escape(&t.population.sha256),
            s = t.sample.len(),
            basis = escape(&t.sample_size.basis),
            x = t.exceptions
        );
        if let Some(note) = &t.note {
            let _ = writeln!(h, "<p>{}</p>", escape(note));
        }
        h.push_str(
            "<table><tr><th>Item</th><th>Attribute</th><th>Result</th><th>Evidence</th>\
             </tr>\n",
        );
        for r in &t.results {
            let (result, class) = match r.result {
                AttributeResult::Pass => ("pass", "ok"),
                AttributeResult::Fail => ("fail", "bad"),
                AttributeResult::NotApplicable => ("not applicable", "none"),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{result}</td><td>{}</td></tr>",
                escape(&r.item),
                escape(&r.attribute),
                escape(&r.evidence)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_records_stays_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
