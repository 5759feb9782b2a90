//! Prometheus metrics: request counts and latencies per route, actions and refusals by
//! reason code, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    actions: BTreeMap<String, u64>,
    refusals: BTreeMap<String, u64>,
}

/// The process's metrics registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let Ok(mut m) = self.inner.lock() else { return };
        *m.requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let h = m.latency.entry(route.to_string()).or_default();
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn action(&self, action: &str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.actions.entry(action.to_string()).or_default() += 1;
        }
    }

    pub fn refusal(&self, code: &str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.refusals.entry(code.to_string()).or_default() += 1;
        }
    }

    /// Renders every metric, with `ledger_size` read by the caller.
    pub fn render(&self, ledger_size: Option<u64>) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else { return out };
        out.push_str("# HELP changegate_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE changegate_http_requests_total counter\n");
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "changegate_http_requests_total{{method=\"{method}\",route=\"{route}\",\
                 status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP changegate_http_request_duration_seconds Time to answer.\n");
        out.push_str("# TYPE changegate_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "changegate_http_request_duration_seconds_bucket{{route=\"{route}\",\
                     le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "changegate_http_request_duration_seconds_bucket{{route=\"{route}\",\
                 le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "changegate_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "changegate_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP changegate_actions_total Lifecycle actions recorded.\n");
        out.push_str("# TYPE changegate_actions_total counter\n");
        for (action, n) in &m.actions {
            let _ = writeln!(out, "changegate_actions_total{{action=\"{action}\"}} {n}");
        }
        out.push_str("# HELP changegate_refusals_total Actions refused by a control.\n");
        out.push_str("# TYPE changegate_refusals_total counter\n");
        for (code, n) in &m.refusals {
            let _ = writeln!(out, "changegate_refusals_total{{code=\"{code}\"}} {n}");
        }
        if let Some(size) = ledger_size {
            out.push_str("# HELP changegate_ledger_entries Entries in the ledger.\n");
            out.push_str("# TYPE changegate_ledger_entries gauge\n");
            let _ = writeln!(out, "changegate_ledger_entries {size}");
        }
        out
    }
}
