//! A deficiency from testing to its retest, end to end: the auditor assesses it and
//! management answers over HTTP, `changegate audit` applies both and retests the remediated
//! control, and `verify-package` reperforms all of it from the package alone, catching an
//! update taken out of it.

mod common;

use std::path::Path;

use common::{Backend, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

fn fmt(t: OffsetDateTime) -> String {
    domain::action::format_instant(t)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn an_assessed_and_remediated_deficiency_is_retested_and_reperformed() {
    let server = TestServer::with_cast(Backend::Sqlite);
    let now = OffsetDateTime::now_utc();
    // A year ending tomorrow: the quarterly access review is due four times.
    let from = (now - Duration::days(365)).date().to_string();
    let to = (now + Duration::days(1)).date().to_string();

    // The review resumed after a remediation two hours ago, and was performed since.
    let review = json!({"control": "CM-14", "item": "access-review-now",
                        "attribute": "performed", "result": "pass", "method": "inspection",
                        "evidence": "review sign-off",
                        "performed_at": fmt(now - Duration::hours(1))});
    // The change manager records the review; the auditor inspects it.
    server
        .post(Some("frank"), "/api/v1/audit/results", &review)
        .expect(201);
    server
        .post(Some("olivia"), "/api/v1/audit/results", &review)
        .expect(201);
    let updates = [
        (
            "olivia",
            json!({"significance": "significant_deficiency",
                   "rationale": "three quarters without an access review"}),
        ),
        (
            "frank",
            json!({"management_response": "quarterly review in the calendar", "owner": "frank",
                   "remediated_at": fmt(now - Duration::hours(2)),
                   "remediation": "calendar reminder and a deputy"}),
        ),
        // About a deficiency the engagement does not raise: warned about, not used.
        (
            "olivia",
            json!({"deficiency": "CM-02:operating", "significance": "deficiency"}),
        ),
    ];
    for (who, fields) in updates {
        let mut body = json!({"deficiency": "CM-14:operating", "from": from, "to": to});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        server
            .post(Some(who), "/api/v1/audit/deficiencies", &body)
            .expect(201);
    }
    let env = server.into_env();

    let out = env.scratch().join("OUT");
    let mut args = vec![
        "audit", "--from", &from, "--to", &to, "--seed", "9", "--out",
    ];
    let out_text = out.to_str().unwrap().to_string();
    args.push(&out_text);
    let o = env.cli(&args);
    let stderr = common::text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("CM-02:operating"), "{stderr}");
    let stdout = common::text(&o.stdout);
    assert!(
        stdout.contains("CM-14:operating") && stdout.contains("remediated and retested"),
        "{stdout}"
    );

    let e = read_json(&out.join("engagement.json"));
    let d = e["deficiencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "CM-14:operating")
        .unwrap();
    assert_eq!(d["significance"], "significant_deficiency");
    assert_eq!(d["owner"], "frank");
    assert_eq!(d["status"], "remediated", "{d}");
    assert_eq!(
        d["retest"]["population"]["items"],
        json!(["access-review-now"])
    );
    let summary = read_json(&out.join("summary.json"));
    let codes: Vec<&str> = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(codes.contains(&"deficiency_update_not_used"), "{codes:?}");
    // Every reader of the workpapers sees the warning, not only whoever ran the audit.
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("deficiency_update_not_used"));
    let oscal = read_json(&out.join("assessment-results.json"));
    let props = &oscal["assessment-results"]["results"][0]["props"];
    assert!(
        props
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "warning" && p["value"] == "deficiency_update_not_used"),
        "{props}"
    );

    // The package holds the updates and reperforms the same deficiencies.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify-package", out_text.as_str()];
        args.extend(extra);
        let o = common::run_bin(args.iter().map(|s| s.to_string()));
        (
            o.status.code(),
            common::text(&o.stdout) + &common::text(&o.stderr),
        )
    };
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("identical results"), "{text}");

    // Take management's update out of the package with its proof, fixing the manifest: the
    // seal the audit recorded in the ledger names every entry the package held.
    let package = out.join("package");
    let events = std::fs::read_to_string(package.join("events.jsonl")).unwrap();
    let (removed, kept): (Vec<&str>, Vec<&str>) = events
        .lines()
        .partition(|l| l.contains("audit.deficiency_update") && l.contains("remediated_at"));
    assert_eq!(removed.len(), 1);
    std::fs::write(package.join("events.jsonl"), kept.join("\n") + "\n").unwrap();
    // And its proof, as a careful tamperer would.
    let seq = serde_json::from_str::<Value>(removed[0]).unwrap()["seq"].clone();
    let proofs = std::fs::read_to_string(package.join("proofs.jsonl")).unwrap();
    let proofs: Vec<&str> = proofs
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["seq"] != seq)
        .collect();
    std::fs::write(package.join("proofs.jsonl"), proofs.join("\n") + "\n").unwrap();
    let mut files = serde_json::Map::new();
    for entry in std::fs::read_dir(&package).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "manifest.json" {
            let digest = hex::encode(Sha256::digest(std::fs::read(entry.path()).unwrap()));
            files.insert(name, Value::String(digest));
        }
    }
    // Laid out as the audit writes it, as a careful tamperer would.
    let mut manifest = serde_json::to_vec_pretty(&json!({ "files": files })).unwrap();
    manifest.push(b'\n');
    std::fs::write(package.join("manifest.json"), manifest).unwrap();
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("package broken"), "{text}");
    assert!(text.contains("the seal"), "{text}");
}
