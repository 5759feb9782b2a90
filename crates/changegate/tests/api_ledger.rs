//! The ledger endpoints checked without trusting the server: the checkpoint's signature
//! against its public key, inclusion proofs of events against the signed root, consistency
//! proofs between sizes, and entries against their leaf hashes.

mod common;

use common::{minutes_from_now, normal_change, run_actions, to_approved, Backend, TestServer};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use ledger::Hash;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

crate::on_each_backend! {
    fn checkpoint_is_signed_by_the_published_key;
    fn every_event_is_included_under_the_signed_root;
    fn later_trees_are_consistent_with_earlier_ones;
    fn entries_hash_to_their_leaves;
    fn bad_proof_queries_are_refused;
    fn verify_pins_the_published_key;
}

fn hash(v: &Value) -> Hash {
    let s = v.as_str().unwrap_or_else(|| panic!("not a hash: {v}"));
    ledger::parse_hash(s).unwrap_or_else(|| panic!("not 64 hex digits: {s:?}"))
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().expect("hash list").iter().map(hash).collect()
}

/// A server with a couple of changes taken some way, so the tree has an odd size.
fn busy_server(backend: Backend) -> TestServer {
    let s = TestServer::with_cast(backend);
    for (title, actions) in [("first", 1), ("second", 3), ("third", 6)] {
        let id = s.create_ok("alice", &normal_change(title));
        let steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
        run_actions(&s, &id, &steps[..actions]);
    }
    s
}

/// Checks a checkpoint's signature from its published fields alone: the message layout
/// is `changegate-checkpoint/v1\nSIZE\nROOT\nHEAD\nTIME\n`.
fn check_signature(cp: &Value) -> Result<(), String> {
    let key_bytes = hash(&cp["public_key"]);
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|e| e.to_string())?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(cp["signature"].as_str().unwrap_or(""), &mut sig)
        .map_err(|e| e.to_string())?;
    let message = format!(
        "changegate-checkpoint/v1\n{}\n{}\n{}\n{}\n",
        cp["size"],
        cp["root"].as_str().unwrap_or(""),
        cp["head"].as_str().unwrap_or(""),
        cp["time"].as_str().unwrap_or(""),
    );
    key.verify(message.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|e| e.to_string())
}

fn checkpoint_is_signed_by_the_published_key(backend: Backend) {
    let mut s = busy_server(backend);
    let cp = s.checkpoint();
    check_signature(&cp).unwrap_or_else(|e| panic!("checkpoint {cp} does not verify: {e}"));
    // The key id is the first 8 bytes of the key's SHA-256.
    let key = hash(&cp["public_key"]);
    assert_eq!(cp["key_id"], hex::encode(&Sha256::digest(key)[..8]));
    // Any change to a signed field breaks the signature.
    for (field, value) in [
        ("size", json!(cp["size"].as_u64().unwrap() + 1)),
        ("root", json!("00".repeat(32))),
        ("head", json!("11".repeat(32))),
        ("time", json!("2000-01-01T00:00:00Z")),
    ] {
        let mut forged = cp.clone();
        forged[field] = value;
        assert!(check_signature(&forged).is_err(), "forged {field} verifies");
    }
    // Every committed write signs a new checkpoint covering it.
    let id = s.create_ok("alice", &normal_change("one more"));
    let next = s.checkpoint();
    assert_eq!(next["size"], cp["size"].as_u64().unwrap() + 1);
    assert_eq!(next["head"], s.change(&id)["events"][0]["leaf_hash"]);
    check_signature(&next).unwrap();
    // The key survives a restart.
    s.restart();
    let after = s.checkpoint();
    assert_eq!(after["public_key"], cp["public_key"]);
    check_signature(&after).unwrap();
}

fn every_event_is_included_under_the_signed_root(backend: Backend) {
    let s = busy_server(backend);
    let cp = s.checkpoint();
    let size = cp["size"].as_u64().unwrap();
    let root = hash(&cp["root"]);
    let mut checked = 0;
    for change in s.list_all("") {
        let view = s.change(change["id"].as_str().unwrap());
        for event in view["events"].as_array().unwrap() {
            let seq = event["seq"].as_u64().unwrap();
            let p = s.get(
                Some("olivia"),
                &format!("/api/v1/ledger/proof/inclusion?seq={seq}"),
            );
            let p = p.expect(200);
            assert_eq!(p["seq"], seq);
            assert_eq!(p["size"], size, "default size is the checkpoint's");
            assert_eq!(hash(&p["root"]), root, "proof root is not the signed root");
            assert_eq!(p["leaf_hash"], event["leaf_hash"]);
            let leaf = hash(&event["leaf_hash"]);
            let proof = hashes(&p["proof"]);
            assert!(
                ledger::verify_inclusion(&leaf, seq, size, &proof, &root),
                "event {seq} is not included"
            );
            // The proof is specific to its position and leaf.
            let other = if seq == 0 { 1 } else { seq - 1 };
            assert!(!ledger::verify_inclusion(&leaf, other, size, &proof, &root));
            let mut wrong = leaf;
            wrong[0] ^= 1;
            assert!(!ledger::verify_inclusion(&wrong, seq, size, &proof, &root));
            checked += 1;
        }
    }
    assert_eq!(checked, 2 + 4 + 7, "events of the three changes");
    // Against an older tree size too: the root is the one of that prefix.
    let p = s.get(
        Some("olivia"),
        &format!("/api/v1/ledger/proof/inclusion?seq=1&size={}", size - 1),
    );
    let p = p.expect(200);
    assert_eq!(p["size"], size - 1);
    assert!(ledger::verify_inclusion(
        &hash(&p["leaf_hash"]),
        1,
        size - 1,
        &hashes(&p["proof"]),
        &hash(&p["root"])
    ));
    assert_ne!(hash(&p["root"]), root);
}

fn later_trees_are_consistent_with_earlier_ones(backend: Backend) {
    let s = busy_server(backend);
    let old = s.checkpoint();
    let id = s.create_ok("alice", &normal_change("grows the tree"));
    run_actions(
        &s,
        &id,
        &to_approved(&minutes_from_now(-1), &minutes_from_now(60)),
    );
    let new = s.checkpoint();
    let (m, n) = (old["size"].as_u64().unwrap(), new["size"].as_u64().unwrap());
    assert_eq!(n, m + 7);
    let p = s.get(
        Some("olivia"),
        &format!("/api/v1/ledger/proof/consistency?from={m}&to={n}"),
    );
    let p = p.expect(200);
    assert_eq!(p["from_root"], old["root"], "the old signed root");
    assert_eq!(p["to_root"], new["root"], "the new signed root");
    let proof = hashes(&p["proof"]);
    assert!(ledger::verify_consistency(
        m,
        n,
        &hash(&old["root"]),
        &hash(&new["root"]),
        &proof
    ));
    // A different old root is not consistent with the new tree.
    let mut forged = hash(&old["root"]);
    forged[31] ^= 0x80;
    assert!(!ledger::verify_consistency(
        m,
        n,
        &forged,
        &hash(&new["root"]),
        &proof
    ));
    // Every earlier size is a prefix of the current tree; `to` defaults to the checkpoint.
    for from in 1..=n {
        let p = s.get(
            Some("olivia"),
            &format!("/api/v1/ledger/proof/consistency?from={from}"),
        );
        let p = p.expect(200);
        assert_eq!(p["to"], n);
        assert_eq!(p["to_root"], new["root"]);
        assert!(
            ledger::verify_consistency(
                from,
                n,
                &hash(&p["from_root"]),
                &hash(&p["to_root"]),
                &hashes(&p["proof"])
            ),
            "size {from} is not consistent with {n}"
        );
        // The old root is the root an inclusion proof at that size reports.
        let i = s.get(
            Some("olivia"),
            &format!(
                "/api/v1/ledger/proof/inclusion?seq={}&size={from}",
                from - 1
            ),
        );
        assert_eq!(i.expect(200)["root"], p["from_root"]);
    }
}

fn entries_hash_to_their_leaves(backend: Backend) {
    let s = busy_server(backend);
    let view = s.change("CHG-000002");
    let size = s.ledger_size();
    for seq in 0..size {
        let e = s.get(Some("olivia"), &format!("/api/v1/ledger/entries/{seq}"));
        let e = e.expect(200);
        assert_eq!(e["seq"], seq);
        let canonical = e["canonical"].as_str().unwrap();
        assert_eq!(
            ledger::leaf_hash(canonical.as_bytes()),
            hash(&e["leaf_hash"]),
            "entry {seq}"
        );
        let decoded: Value = serde_json::from_str(canonical).expect("canonical JSON");
        assert!(decoded["kind"].is_string() && decoded["actor"].is_string());
    }
    // The entry behind an event is that event.
    for event in view["events"].as_array().unwrap() {
        let seq = event["seq"].as_u64().unwrap();
        let e = s.get(Some("olivia"), &format!("/api/v1/ledger/entries/{seq}"));
        let e = e.expect(200);
        assert_eq!(e["leaf_hash"], event["leaf_hash"]);
        let decoded: Value = serde_json::from_str(e["canonical"].as_str().unwrap()).unwrap();
        assert_eq!(decoded["subject"], "CHG-000002");
        assert_eq!(decoded["actor"], event["actor"]);
        assert_eq!(decoded["kind"], event["kind"]);
        assert_eq!(decoded["payload"], event["payload"]);
    }
}

fn bad_proof_queries_are_refused(backend: Backend) {
    let s = busy_server(backend);
    let size = s.ledger_size();
    for query in [
        format!("inclusion?seq={size}"),
        format!("inclusion?seq=0&size={}", size + 1),
        "inclusion?seq=0&size=0".to_string(),
        "inclusion".to_string(),
        "inclusion?seq=-1".to_string(),
        "inclusion?seq=0&extra=1".to_string(),
        "consistency?from=0".to_string(),
        format!("consistency?from={}", size + 1),
        format!("consistency?from=1&to={}", size + 1),
        "consistency?from=3&to=2".to_string(),
        "consistency".to_string(),
    ] {
        let r = s.get(Some("olivia"), &format!("/api/v1/ledger/proof/{query}"));
        r.expect_error(422, "invalid_query");
    }
    s.get(
        Some("olivia"),
        &format!("/api/v1/ledger/entries/{}", size + 100),
    )
    .expect_error(404, "not_found");
    s.get(
        Some("olivia"),
        "/api/v1/ledger/entries/18446744073709551615",
    )
    .expect_error(404, "not_found");
    let r = s.get(Some("olivia"), "/api/v1/ledger/entries/first");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.code() != "", "not the JSON error form: {}", r.text);
}

fn verify_pins_the_published_key(backend: Backend) {
    let mut s = busy_server(backend);
    let cp = s.checkpoint();
    s.kill9();
    let published = cp["public_key"].as_str().unwrap();
    let out = s.env.cli(&["verify", "--public-key", published]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    let summary = common::text(&out.stdout);
    assert!(
        summary.contains(&format!("{} events", cp["size"])),
        "{summary}"
    );
    assert!(
        summary.contains(cp["root"].as_str().unwrap()),
        "verify reports another root than the API signed: {summary}"
    );
    assert!(
        summary.contains(cp["key_id"].as_str().unwrap()),
        "{summary}"
    );
    // Another key, such as one a thief generated to re-sign a rewritten log, is refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let out = s
        .env
        .cli(&["verify", "--public-key", &hex::encode(other.as_bytes())]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out.stdout));
    assert!(
        common::text(&out.stderr).contains("ledger broken"),
        "{}",
        common::text(&out.stderr)
    );
    let out = s.env.cli(&["verify", "--public-key", "abc"]);
    assert!(!out.status.success());
}
