//! `GET /api/v1/changes`: filters, paging with `limit` and `after`/`next`, and refused
//! queries.

mod common;

use common::{Backend, TestServer};
use serde_json::{json, Value};

crate::on_each_backend! {
    fn filters_select_the_matching_changes;
    fn paging_walks_every_change_once_in_order;
    fn bad_queries_are_refused;
}

/// Six changes of different kinds and people, two moved on from `requested`.
fn seed(s: &TestServer) {
    let changes = [
        (
            "alice",
            "normal",
            "application",
            json!(["payments-api"]),
            None,
        ),
        (
            "alice",
            "standard",
            "configuration",
            json!(["billing"]),
            None,
        ),
        (
            "judy",
            "normal",
            "database",
            json!(["orders-db", "billing"]),
            Some("acme"),
        ),
        (
            "frank",
            "emergency",
            "infrastructure",
            json!(["edge"]),
            None,
        ),
        ("bob", "normal", "infrastructure", json!(["k8s-prod"]), None),
        ("alice", "standard", "application", json!(["portal"]), None),
    ];
    for (i, (user, kind, category, systems, customer)) in changes.into_iter().enumerate() {
        let mut body = json!({
            "title": format!("change {}", i + 1),
            "type": kind,
            "category": category,
            "systems": systems,
        });
        if let Some(c) = customer {
            body["on_behalf_of"] = json!(c);
        }
        let id = s.create_ok(user, &body);
        assert_eq!(id, format!("CHG-{:06}", i + 1));
    }
    let evaluate = json!({"action": "evaluate", "risk": "medium", "priority": "low"});
    s.act_ok("frank", "CHG-000001", &evaluate);
    s.act_ok("frank", "CHG-000003", &evaluate);
    s.act_ok(
        "grace",
        "CHG-000003",
        &json!({"action": "authorize", "assignee": "carol"}),
    );
}

fn ids(changes: &[Value]) -> Vec<u32> {
    changes
        .iter()
        .map(|c| {
            c["id"].as_str().unwrap()["CHG-".len()..]
                .parse::<u32>()
                .unwrap()
        })
        .collect()
}

fn filters_select_the_matching_changes(backend: Backend) {
    let s = TestServer::with_cast(backend);
    seed(&s);
    let cases: [(&str, &[u32]); 15] = [
        ("", &[1, 2, 3, 4, 5, 6]),
        ("&stage=requested", &[2, 4, 5, 6]),
        ("&stage=evaluated", &[1]),
        ("&stage=authorized", &[3]),
        ("&stage=closed", &[]),
        ("&type=standard", &[2, 6]),
        ("&type=emergency", &[4]),
        ("&category=database", &[3]),
        ("&category=infrastructure", &[4, 5]),
        ("&requester=alice", &[1, 2, 6]),
        ("&requester=nobody", &[]),
        ("&system=billing", &[2, 3]),
        ("&assignee=carol", &[3]),
        ("&type=normal&requester=alice", &[1]),
        ("&category=application&stage=requested&system=portal", &[6]),
    ];
    for (filter, expected) in cases {
        let got = s.list_all(filter);
        assert_eq!(ids(&got), expected, "filter {filter:?}");
    }
    // The summary repeats what the change says.
    let all = s.list_all("");
    let third = &all[2];
    assert_eq!(third["type"], "normal");
    assert_eq!(third["category"], "database");
    assert_eq!(third["stage"], "authorized");
    assert_eq!(third["version"], 3);
    assert_eq!(third["requester"], "judy");
    assert_eq!(third["assignee"], "carol");
    assert_eq!(third["risk"], "medium");
    assert_eq!(third["title"], "change 3");
    assert_eq!(third["systems"], json!(["orders-db", "billing"]));
    let view = s.change("CHG-000003");
    assert_eq!(third["created_at"], view["change"]["created_at"]);
    assert_eq!(third["updated_at"], view["change"]["updated_at"]);
    for c in &all {
        for field in ["created_at", "updated_at"] {
            let t = c[field].as_str().unwrap();
            assert!(
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok(),
                "{field} {t:?}"
            );
        }
    }
    // Filters follow the change: edited systems, a rejection.
    s.act_ok(
        "alice",
        "CHG-000002",
        &json!({"action": "amend", "systems": ["billing-v2", "ledger"]}),
    );
    assert_eq!(ids(&s.list_all("&system=billing")), [3]);
    assert_eq!(ids(&s.list_all("&system=ledger")), [2]);
    assert_eq!(
        s.list_all("&system=ledger")[0]["systems"],
        json!(["billing-v2", "ledger"])
    );
    s.act_ok(
        "grace",
        "CHG-000005",
        &json!({"action": "reject", "reason": "not now"}),
    );
    assert_eq!(ids(&s.list_all("&stage=requested")), [2, 4, 6]);
    assert_eq!(ids(&s.list_all("&stage=rejected")), [5]);
}

fn paging_walks_every_change_once_in_order(backend: Backend) {
    let s = TestServer::with_cast(backend);
    seed(&s);
    let get = |query: &str| -> Value {
        s.get(Some("olivia"), &format!("/api/v1/changes?{query}"))
            .expect(200)
            .clone()
    };
    let page = get("limit=2");
    assert_eq!(ids(page["changes"].as_array().unwrap()), [1, 2]);
    assert_eq!(page["next"], "CHG-000002");
    let page = get("limit=2&after=CHG-000002");
    assert_eq!(ids(page["changes"].as_array().unwrap()), [3, 4]);
    assert_eq!(page["next"], "CHG-000004");
    let page = get("limit=2&after=CHG-000004");
    assert_eq!(ids(page["changes"].as_array().unwrap()), [5, 6]);
    assert!(page["next"].is_null(), "no page follows the last: {page}");
    let page = get("limit=2&after=CHG-000006");
    assert_eq!(page["changes"], json!([]));
    assert!(page["next"].is_null());
    // A full page that happens to end the listing has no `next` either.
    let page = get("limit=6");
    assert_eq!(page["changes"].as_array().unwrap().len(), 6);
    assert!(page["next"].is_null(), "{page}");
    // The default page holds up to 50.
    let page = get("");
    assert_eq!(page["changes"].as_array().unwrap().len(), 6);
    // Paging and a filter together, one at a time.
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut q = "requester=alice&limit=1".to_string();
        if let Some(a) = &after {
            q.push_str(&format!("&after={a}"));
        }
        let page = get(&q);
        seen.extend(ids(page["changes"].as_array().unwrap()));
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
        assert!(seen.len() <= 3, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, [1, 2, 6]);
}

fn bad_queries_are_refused(backend: Backend) {
    let s = TestServer::with_cast(backend);
    seed(&s);
    for query in [
        "stage=bogus",
        "stage=CLOSED",
        "type=urgent",
        "category=network",
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=ten",
        "colour=red",
    ] {
        let r = s.get(Some("olivia"), &format!("/api/v1/changes?{query}"));
        r.expect_error(422, "invalid_query");
    }
    // The message names what was wrong.
    let r = s.get(Some("olivia"), "/api/v1/changes?stage=bogus");
    assert!(r.text.contains("bogus"), "{}", r.text);
    // The limits themselves are fine.
    for query in ["limit=1", "limit=500"] {
        s.get(Some("olivia"), &format!("/api/v1/changes?{query}"))
            .expect(200);
    }
}
