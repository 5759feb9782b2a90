//! The edges of the HTTP API every client meets first: authentication, health, the OpenAPI
//! document, Prometheus metrics, and the JSON error form of answers made outside the
//! handlers.

mod common;

use common::{normal_change, Backend, TestServer};
use serde_json::{json, Value};

crate::on_each_backend! {
    fn unauthenticated_requests_are_refused_and_write_nothing;
    fn health_needs_no_token;
    fn openapi_document_lists_every_path;
    fn metrics_count_requests_by_route_and_status;
    fn unknown_endpoints_and_methods_answer_json_errors;
    fn a_deactivated_users_token_stops_working;
}

fn unauthenticated_requests_are_refused_and_write_nothing(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let size = s.ledger_size();
    let gets = [
        "/api/v1/changes",
        "/api/v1/changes/CHG-000001",
        "/api/v1/exceptions",
        "/api/v1/ledger/checkpoint",
        "/api/v1/ledger/proof/inclusion?seq=0",
        "/api/v1/ledger/entries/0",
    ];
    for path in gets {
        let r = s.get(None, path);
        r.expect_error(401, "unauthenticated");
        assert_eq!(
            r.www_authenticate.as_deref(),
            Some("Bearer"),
            "{path}: a 401 must name the scheme"
        );
        for bad in [
            "Bearer cg_0000000000000000000000000000000000000000000000000000000000000000",
            "Bearer not-a-token",
        ] {
            s.get_with_auth(bad, path)
                .expect_error(401, "invalid_token");
        }
        // Another scheme, or the scheme without a token, is no authentication at all.
        let basic = format!("Basic {}", s.token("alice"));
        s.get_with_auth(&basic, path)
            .expect_error(401, "unauthenticated");
        s.get_with_auth("Bearer ", path)
            .expect_error(401, "unauthenticated");
    }
    // Writes without a valid token record nothing.
    let body = normal_change("anonymous change");
    s.post(None, "/api/v1/changes", &body)
        .expect_error(401, "unauthenticated");
    let id = s.create_ok("alice", &normal_change("real change"));
    let size_after_create = s.ledger_size();
    assert_eq!(size_after_create, size + 1);
    s.post(
        None,
        &format!("/api/v1/changes/{id}/actions"),
        &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
    )
    .expect_error(401, "unauthenticated");
    assert_eq!(s.ledger_size(), size_after_create);
    assert_eq!(s.change(&id)["version"], 1);
    // A token is checked before the body: a bad token with a malformed body is still 401.
    let r = s.post_raw(None, "/api/v1/changes", "{not json");
    r.expect_error(401, "unauthenticated");
}

fn health_needs_no_token(backend: Backend) {
    let s = TestServer::start(common::DataEnv::new(backend));
    let r = s.get(None, "/healthz");
    assert_eq!(r.expect(200), &json!({"status": "ok"}));
}

fn openapi_document_lists_every_path(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let r = s.get(Some("alice"), "/api/v1/openapi.json");
    let doc = r.expect(200);
    assert!(r.content_type.starts_with("application/json"));
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3: {version:?}");
    assert!(doc["info"]["title"].is_string(), "info.title is required");
    assert!(
        doc["info"]["version"].is_string(),
        "info.version is required"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("/api/v1/changes", "post"),
        ("/api/v1/changes", "get"),
        ("/api/v1/changes/{id}", "get"),
        ("/api/v1/changes/{id}/actions", "post"),
        ("/api/v1/exceptions", "get"),
        ("/api/v1/ledger/checkpoint", "get"),
        ("/api/v1/ledger/proof/inclusion", "get"),
        ("/api/v1/ledger/proof/consistency", "get"),
        ("/api/v1/ledger/entries/{seq}", "get"),
        ("/api/v1/audit/results", "post"),
        ("/api/v1/audit/results", "get"),
        ("/api/v1/audit/engagements", "post"),
        ("/api/v1/audit/deficiencies", "post"),
        ("/api/v1/audit/deficiencies", "get"),
    ];
    for (path, method) in expected {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no response"
        );
        // Path templates must declare their parameters.
        for name in template_params(path) {
            let declared = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == name.as_str() && p["in"] == "path")
            });
            assert!(declared, "{method} {path} does not declare `{name}`");
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    // Every reference resolves within the document.
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    assert!(!refs.is_empty(), "the document references no schema");
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
    }
}

fn template_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The value of the sample with exactly these labels, if the exposition has it.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let body = rest.strip_suffix('}')?;
        let mut have: Vec<(String, String)> = body
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect();
        have.sort();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        (have == want).then(|| value.parse().ok())?
    })
}

fn metrics_count_requests_by_route_and_status(backend: Backend) {
    let s = TestServer::with_cast(backend);
    for _ in 0..3 {
        s.get(None, "/healthz").expect(200);
    }
    s.get(None, "/api/v1/changes").expect(401);
    let id = s.create_ok("alice", &normal_change("metered"));
    s.get(Some("alice"), &format!("/api/v1/changes/{id}"))
        .expect(200);
    s.act(
        "alice",
        &id,
        &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
    )
    .expect_error(403, "role_not_allowed");

    let r = s.get(None, "/metrics");
    r.expect(200);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    let m = &r.text;
    assert!(
        m.contains("# TYPE changegate_http_requests_total counter"),
        "{m}"
    );
    // Every sample line is `name{labels} value` or `name value` with a number.
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (_, value) = line.rsplit_once(' ').expect("sample line");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    let health = sample(
        m,
        "changegate_http_requests_total",
        &[("method", "GET"), ("route", "/healthz"), ("status", "200")],
    );
    assert!(health.is_some_and(|n| n >= 3.0), "{m}");
    let unauth = sample(
        m,
        "changegate_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/api/v1/changes"),
            ("status", "401"),
        ],
    );
    assert_eq!(unauth, Some(1.0), "{m}");
    // Routes are labelled by their template, not the change id.
    let by_template = sample(
        m,
        "changegate_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/api/v1/changes/:id"),
            ("status", "200"),
        ],
    );
    assert_eq!(by_template, Some(1.0), "{m}");
    assert!(!m.contains(&id), "a change id leaked into a label: {m}");
    let refusals = sample(
        m,
        "changegate_refusals_total",
        &[("code", "role_not_allowed")],
    );
    assert_eq!(refusals, Some(1.0), "{m}");
    let requests = sample(m, "changegate_actions_total", &[("action", "request")]);
    assert_eq!(requests, Some(1.0), "{m}");
    let size = sample(m, "changegate_ledger_entries", &[]);
    assert_eq!(size, Some(s.ledger_size() as f64), "{m}");
}

fn unknown_endpoints_and_methods_answer_json_errors(backend: Backend) {
    let s = TestServer::with_cast(backend);
    s.get(Some("alice"), "/api/v1/nothing-here")
        .expect_error(404, "not_found");
    s.get(None, "/no/such/page").expect_error(404, "not_found");
    let r = common::reply(
        s.client()
            .delete(s.url("/api/v1/changes"))
            .bearer_auth(s.token("alice"))
            .send()
            .expect("delete"),
    );
    r.expect_error(405, "method_not_allowed");
    // A body over the 1 MiB limit is refused before it is parsed.
    let big = format!(
        "{{\"title\":\"{}\",\"type\":\"normal\",\"category\":\"application\",\"systems\":[\"x\"]}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let size = s.ledger_size();
    // Its own client: the server drops a connection whose body it did not read, and the
    // fixture's pooled connection must not be that one.
    let r = common::reply(
        s.client()
            .post(s.url("/api/v1/changes"))
            .bearer_auth(s.token("alice"))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .expect("oversized post"),
    );
    r.expect_error(413, "payload_too_large");
    assert_eq!(s.ledger_size(), size);
}

fn a_deactivated_users_token_stops_working(backend: Backend) {
    let s = TestServer::with_cast(backend);
    s.get(Some("carol"), "/api/v1/changes").expect(200);
    let out = s.env.cli(&["users", "deactivate", "carol"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    s.get(Some("carol"), "/api/v1/changes")
        .expect_error(401, "invalid_token");
    let size = s.ledger_size();
    s.create("carol", &normal_change("by a former engineer"))
        .expect_error(401, "invalid_token");
    assert_eq!(s.ledger_size(), size);
    // Someone else's token still works.
    s.get(Some("bob"), "/api/v1/changes").expect(200);
    // The deactivated user can no longer be named to build a change.
    let id = s.create_ok("alice", &normal_change("needs an engineer"));
    s.act_ok(
        "frank",
        &id,
        &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
    );
    s.act(
        "grace",
        &id,
        &json!({"action": "authorize", "assignee": "carol"}),
    )
    .expect_error(422, "invalid_assignee");
}
