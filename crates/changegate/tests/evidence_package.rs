//! The evidence package `changegate audit --data` writes, checked offline by
//! `changegate verify-package`: an untouched package passes, and each kind of tampering is
//! named with exit 1, whether or not the tamperer also fixed the manifest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_changegate"))
        .args(args)
        .output()
        .expect("changegate runs")
}

/// The demo quarter audited into `OUT`; returns the temp dir and the audit's output dir.
fn audited() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("D");
    let out = tmp.path().join("OUT");
    let demo = run(&["demo", "--data", data.to_str().unwrap()]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let audit = run(&[
        "audit",
        "--from",
        "2026-07-01",
        "--to",
        "2026-09-30",
        "--seed",
        "5",
        "--as-of",
        "2026-10-01T00:00:00Z",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    (tmp, out)
}

fn verify(out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["verify-package", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// Asserts exit 1 with a message holding `needle`.
fn assert_broken(out: &Path, extra: &[&str], needle: &str) {
    let (code, text) = verify(out, extra);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("package broken"), "{text}");
    assert!(text.contains(needle), "expected `{needle}` in: {text}");
}

/// Rewrites the manifest to match the files as they now are, as a careful tamperer would.
fn fix_manifest(package: &Path) {
    let mut files = serde_json::Map::new();
    for entry in std::fs::read_dir(package).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "manifest.json" {
            let digest = hex::encode(Sha256::digest(std::fs::read(entry.path()).unwrap()));
            files.insert(name, Value::String(digest));
        }
    }
    let manifest = serde_json::json!({ "files": files });
    // Laid out as the audit writes it.
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    bytes.push(b'\n');
    std::fs::write(package.join("manifest.json"), bytes).unwrap();
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn real_key(package: &Path) -> String {
    let cp: Value =
        serde_json::from_slice(&std::fs::read(package.join("checkpoint.json")).unwrap()).unwrap();
    cp["public_key"].as_str().unwrap().to_string()
}

#[test]
fn an_untouched_package_verifies_with_and_without_the_pinned_key() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    for name in [
        "summary.json",
        "samples.csv",
        "engagement.json",
        "reconciliation.json",
    ] {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(package.join(name)).unwrap(),
            "{name} is copied byte for byte"
        );
    }
    let (code, text) = verify(&out, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("package intact: 9 files, "), "{text}");
    assert!(
        text.contains("controls tested again: identical results"),
        "the results are computed again from the package: {text}"
    );
    assert!(
        text.contains("events proven against checkpoint of size"),
        "{text}"
    );
    let key = real_key(&package);
    let (code, text) = verify(&out, &["--public-key", &key]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pinned by --public-key"), "{text}");
    // The package directory itself may be named too.
    assert_eq!(verify(&package, &[]).0, 0);
}

#[test]
fn a_changed_byte_is_named_by_the_manifest_or_else_by_the_proof() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    let mut bytes = std::fs::read(package.join("engagement.json")).unwrap();
    bytes[10] ^= 1;
    std::fs::write(package.join("engagement.json"), &bytes).unwrap();
    assert_broken(
        &out,
        &[],
        "`engagement.json` does not match its SHA-256 in the manifest",
    );

    // An event's bytes changed and the manifest fixed: its leaf hash no longer matches.
    let (_tmp, out) = audited();
    let package = out.join("package");
    let events = package.join("events.jsonl");
    let mut lines = read_lines(&events);
    lines[0] = lines[0].replacen("alice", "alicf", 1);
    write_lines(&events, &lines);
    fix_manifest(&package);
    assert_broken(
        &out,
        &[],
        "its leaf hash is not the hash of its canonical bytes",
    );

    // The leaf hash recomputed as well: only the inclusion proof can tell.
    let mut line: Value = serde_json::from_str(&lines[0]).unwrap();
    let canonical = line["canonical"].as_str().unwrap().to_string();
    line["leaf_hash"] = Value::String(hex::encode(ledger::leaf_hash(canonical.as_bytes())));
    lines[0] = line.to_string();
    write_lines(&events, &lines);
    fix_manifest(&package);
    assert_broken(&out, &[], "its inclusion proof does not verify");
}

#[test]
fn a_missing_or_extra_file_is_named() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    std::fs::remove_file(package.join("samples.csv")).unwrap();
    assert_broken(
        &out,
        &[],
        "`samples.csv` is listed in the manifest but missing",
    );
    fix_manifest(&package);
    assert_broken(&out, &[], "`samples.csv` is not listed in the manifest");

    let (_tmp, out) = audited();
    std::fs::write(out.join("package").join("notes.txt"), "x").unwrap();
    assert_broken(
        &out,
        &[],
        "`notes.txt` is in the package but not in the manifest",
    );
}

#[test]
fn a_removed_event_is_caught_by_proof_coverage_or_by_the_seal() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    let events = package.join("events.jsonl");
    let mut lines = read_lines(&events);
    let removed: Value = serde_json::from_str(&lines.remove(5)).unwrap();
    write_lines(&events, &lines);
    fix_manifest(&package);
    // Its proof is still there: the two files no longer pair up.
    assert!(removed["seq"].is_u64());
    assert_broken(&out, &[], "`proofs.jsonl` line 6 is not its proof");

    // The event and its proof both removed: the seal the audit recorded in the ledger lists
    // every entry the package held.
    let (_tmp, out) = audited();
    let package = out.join("package");
    let mut events = read_lines(&package.join("events.jsonl"));
    let mut proofs = read_lines(&package.join("proofs.jsonl"));
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert!(first["canonical"]
        .as_str()
        .unwrap()
        .contains("\"kind\":\"change.request\""));
    events.remove(0);
    proofs.remove(0);
    write_lines(&package.join("events.jsonl"), &events);
    write_lines(&package.join("proofs.jsonl"), &proofs);
    fix_manifest(&package);
    assert_broken(
        &out,
        &[],
        "says the package holds 767 entries; `events.jsonl` holds 766 besides it",
    );
}

#[test]
fn a_package_without_its_seal_or_with_another_seal_is_refused() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    let mut events = read_lines(&package.join("events.jsonl"));
    let mut proofs = read_lines(&package.join("proofs.jsonl"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["canonical"]
        .as_str()
        .unwrap()
        .contains("\"kind\":\"audit.package_sealed\""));
    events.pop();
    proofs.pop();
    write_lines(&package.join("events.jsonl"), &events);
    write_lines(&package.join("proofs.jsonl"), &proofs);
    fix_manifest(&package);
    assert_broken(&out, &[], "holds no seal");

    // A second audit of the same ledger seals its own package; its seal does not vouch for
    // the first package's entries.
    let (tmp, out) = audited();
    let data = tmp.path().join("D");
    let second = tmp.path().join("SECOND");
    let o = run(&[
        "audit",
        "--from",
        "2026-08-01",
        "--to",
        "2026-09-30",
        "--seed",
        "5",
        "--as-of",
        "2026-10-01T00:00:00Z",
        "--data",
        data.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let package = out.join("package");
    let mut events = read_lines(&package.join("events.jsonl"));
    let mut proofs = read_lines(&package.join("proofs.jsonl"));
    let other_events = read_lines(&second.join("package/events.jsonl"));
    let other_proofs = read_lines(&second.join("package/proofs.jsonl"));
    *events.last_mut().unwrap() = other_events.last().unwrap().clone();
    *proofs.last_mut().unwrap() = other_proofs.last().unwrap().clone();
    write_lines(&package.join("events.jsonl"), &events);
    write_lines(&package.join("proofs.jsonl"), &proofs);
    std::fs::copy(
        second.join("package/checkpoint.json"),
        package.join("checkpoint.json"),
    )
    .unwrap();
    fix_manifest(&package);
    // The entries are not proven against the second seal's checkpoint.
    assert_broken(&out, &[], "does not verify against the checkpoint");
}

#[test]
fn a_checkpoint_signed_with_another_key_fails_against_the_pinned_key() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    let key = real_key(&package);
    let path = package.join("checkpoint.json");
    let original: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cp: ledger::Checkpoint = serde_json::from_value(original["checkpoint"].clone()).unwrap();
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let forged = ledger::Checkpoint::sign(&forger, cp.size, cp.root, cp.head, &cp.time);

    // Another key's signature under the real key: it does not verify.
    let mut swapped = original.clone();
    swapped["checkpoint"]["signature"] = Value::String(forged.signature.clone());
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&swapped).unwrap() + "\n",
    )
    .unwrap();
    fix_manifest(&package);
    assert_broken(&out, &[], "the checkpoint's signature does not verify");

    // The forger's key put in as well: the package is consistent with itself, so without a
    // pinned key it passes, naming the key it trusted; the real key refuses it.
    let forger_key = forger.verifying_key();
    // Written in the audit's own layout, as a careful forger would.
    #[derive(serde::Serialize)]
    struct Resigned<'a> {
        checkpoint: &'a ledger::Checkpoint,
        public_key: String,
        key_id: String,
    }
    let resigned = Resigned {
        checkpoint: &forged,
        public_key: hex::encode(forger_key.as_bytes()),
        key_id: ledger::key_id(&forger_key),
    };
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&resigned).unwrap() + "\n",
    )
    .unwrap();
    fix_manifest(&package);
    let (code, text) = verify(&out, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&ledger::key_id(&forger_key)), "{text}");
    assert!(text.contains("pin it with --public-key"), "{text}");
    assert_broken(
        &out,
        &["--public-key", &key],
        "is not the key given with --public-key",
    );
}

#[test]
fn an_altered_proof_is_named() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    let proofs = package.join("proofs.jsonl");
    let mut lines = read_lines(&proofs);
    let mut line: Value = serde_json::from_str(&lines[3]).unwrap();
    let hash = line["proof"][0].as_str().unwrap();
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    line["proof"][0] = Value::String(format!("{flipped}{}", &hash[1..]));
    lines[3] = line.to_string();
    write_lines(&proofs, &lines);
    fix_manifest(&package);
    assert_broken(
        &out,
        &[],
        &format!(
            "(event {}): its inclusion proof does not verify",
            line["seq"]
        ),
    );
}

#[test]
fn results_that_the_package_does_not_support_are_caught_by_reperformance() {
    // A sample changed to other items, with the manifest made to match.
    let (_tmp, out) = audited();
    let package = out.join("package");
    let samples = std::fs::read_to_string(package.join("samples.csv")).unwrap();
    let mut lines: Vec<&str> = samples.lines().collect();
    lines.swap(1, 2);
    std::fs::write(package.join("samples.csv"), lines.join("\n") + "\n").unwrap();
    fix_manifest(&package);
    assert_broken(&out, &[], "samples drawn again from the seed differ");

    // A failed attribute turned into a pass in the engagement.
    let (_tmp, out) = audited();
    let package = out.join("package");
    let text = std::fs::read_to_string(package.join("engagement.json")).unwrap();
    let mut e: serde_json::Value = serde_json::from_str(&text).unwrap();
    let failed = e["controls"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|c| c["results"].as_array_mut().unwrap().iter_mut())
        .find(|r| r["result"] == "fail")
        .expect("the demo has a failed attribute");
    failed["result"] = serde_json::json!("pass");
    std::fs::write(
        package.join("engagement.json"),
        serde_json::to_vec_pretty(&e).unwrap(),
    )
    .unwrap();
    fix_manifest(&package);
    assert_broken(
        &out,
        &[],
        "engagement computed again from the package differs",
    );

    // Another seed claimed for the same samples.
    let (_tmp, out) = audited();
    let package = out.join("package");
    let text = std::fs::read_to_string(package.join("inputs.json")).unwrap();
    let mut inputs: serde_json::Value = serde_json::from_str(&text).unwrap();
    inputs["seed"] = serde_json::json!(6);
    std::fs::write(
        package.join("inputs.json"),
        serde_json::to_vec(&inputs).unwrap(),
    )
    .unwrap();
    fix_manifest(&package);
    let (code, text) = verify(&out, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("differ"), "{text}");
}

/// What was recorded after `--as-of` takes no part in an engagement judged then, and its
/// package reperforms all the same.
#[test]
fn an_engagement_as_of_an_earlier_instant_leaves_out_what_was_recorded_later() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("D");
    assert!(run(&["demo", "--data", data.to_str().unwrap()])
        .status
        .success());
    // A change record imported today, opened in the quarter.
    let csv = tmp.path().join("change_request.csv");
    std::fs::write(
        &csv,
        "number,short_description,opened_at,work_start\nCHG9,Late,2026-08-01 10:00:00,\n",
    )
    .unwrap();
    let o = run(&[
        "import",
        "changes",
        csv.to_str().unwrap(),
        "--format",
        "servicenow",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let audit = |name: &str, as_of: Option<&str>| {
        let out = tmp.path().join(name);
        let mut args = vec![
            "audit",
            "--from",
            "2026-07-01",
            "--to",
            "2026-09-30",
            "--seed",
            "5",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(t) = as_of {
            args.extend(["--as-of", t]);
        }
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        (out, summary)
    };
    let (_, now) = audit("NOW", None);
    assert_eq!(now["imported_changes"]["population"], 1);
    let (out, then) = audit("THEN", Some("2026-10-01T00:00:00Z"));
    assert_eq!(then["imported_changes"]["population"], 0);
    let warned = then["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "recorded_after_as_of")
        .expect("a warning about what was left out");
    assert!(
        warned["message"]
            .as_str()
            .unwrap()
            .contains("evidence.change_record"),
        "{warned}"
    );
    let (code, text) = verify(&out, &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn the_package_is_as_the_audit_wrote_it_and_the_outputs_beside_it_are_the_sealed_ones() {
    let (_tmp, out) = audited();
    let (code, text) = verify(&out, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("the outputs beside it are the sealed ones"),
        "{text}"
    );

    // Outputs beside the package, edited.
    for (name, edit) in [
        ("report.html", "<p>all effective</p>"),
        ("summary.json", " "),
        ("assessment-results.json", " "),
    ] {
        let path = out.join(name);
        let original = std::fs::read(&path).unwrap();
        let mut changed = original.clone();
        changed.extend_from_slice(edit.as_bytes());
        std::fs::write(&path, &changed).unwrap();
        assert_broken(&out, &[], &format!("`{name}` beside the package"));
        std::fs::write(&path, &original).unwrap();
    }

    let package = out.join("package");
    let tampered = |f: &dyn Fn(&mut Vec<String>, &mut Vec<String>)| {
        let events_path = package.join("events.jsonl");
        let proofs_path = package.join("proofs.jsonl");
        let (events, proofs) = (read_lines(&events_path), read_lines(&proofs_path));
        let (mut e, mut p) = (events.clone(), proofs.clone());
        f(&mut e, &mut p);
        write_lines(&events_path, &e);
        write_lines(&proofs_path, &p);
        fix_manifest(&package);
        let result = verify(&out, &[]);
        write_lines(&events_path, &events);
        write_lines(&proofs_path, &proofs);
        fix_manifest(&package);
        result
    };
    // The seal moved to the front, with its proof.
    let (code, text) = tampered(&|e, p| {
        let (seal, proof) = (e.pop().unwrap(), p.pop().unwrap());
        e.insert(0, seal);
        p.insert(0, proof);
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("out of seq order"), "{text}");
    // A leaf hash in capitals.
    let (code, text) = tampered(&|e, _| {
        let mut line: Value = serde_json::from_str(&e[3]).unwrap();
        let upper = line["leaf_hash"].as_str().unwrap().to_uppercase();
        line["leaf_hash"] = Value::String(upper);
        e[3] = line.to_string();
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("leaf hash"), "{text}");
    // Windows line ends.
    let (code, text) = tampered(&|e, _| {
        for l in e.iter_mut() {
            l.push('\r');
        }
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("carriage returns"), "{text}");

    // The same events and proofs, written otherwise: keys in another order, a blank line,
    // a hash in capitals.
    let (code, text) = tampered(&|e, _| {
        let line: Value = serde_json::from_str(&e[2]).unwrap();
        e[2] = line.to_string();
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("`events.jsonl` is not laid out"), "{text}");
    let (code, text) = tampered(&|e, _| e.push(String::new()));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not laid out"), "{text}");
    let (code, text) = tampered(&|_, p| {
        let mut line: Value = serde_json::from_str(&p[2]).unwrap();
        let upper = line["proof"][0].as_str().unwrap().to_uppercase();
        line["proof"][0] = Value::String(upper);
        p[2] = format!("{{\"seq\":{},\"proof\":{}}}", line["seq"], line["proof"]);
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("`proofs.jsonl` is not laid out"), "{text}");

    // A result file swapped for a link to the one beside the package.
    let summary = package.join("summary.json");
    let original = std::fs::read(&summary).unwrap();
    std::fs::remove_file(&summary).unwrap();
    std::os::unix::fs::symlink("../summary.json", &summary).unwrap();
    fix_manifest(&package);
    assert_broken(&out, &[], "`summary.json` is not a regular file");
    std::fs::remove_file(&summary).unwrap();
    std::fs::write(&summary, original).unwrap();
    fix_manifest(&package);

    // A file the audit does not write, listed in the manifest.
    std::fs::write(package.join("notes.txt"), "all good").unwrap();
    fix_manifest(&package);
    assert_broken(
        &out,
        &[],
        "`notes.txt`, which is no file of an evidence package",
    );
}

/// The production change events `inputs.json` says came from the ledger are checked
/// against the proven entries: a deployer put in by hand is named.
#[test]
fn ledger_events_in_the_inputs_must_be_what_the_proven_entries_give() {
    let (_tmp, out) = audited();
    let package = out.join("package");
    let path = package.join("inputs.json");
    let mut inputs: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let deployment = inputs["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["source"] == "deployment")
        .expect("the demo's implemented changes are deployments");
    let actor = deployment["actor"].to_string();
    deployment["actor"]["login"] = Value::String("ivan".into());
    assert_ne!(deployment["actor"].to_string(), actor);
    std::fs::write(&path, serde_json::to_vec_pretty(&inputs).unwrap()).unwrap();
    fix_manifest(&package);
    assert_broken(
        &out,
        &[],
        "`inputs.json` says came from the ledger are not the",
    );
}
