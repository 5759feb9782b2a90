//! `changegate import changes`: change records exported from other systems recorded once
//! each as `evidence.change_record` entries, bad rows reported with their line and the exit
//! status saying so, unreadable files writing nothing, and `verify` passing afterwards.

mod common;

use std::path::{Path, PathBuf};

use common::{text, Backend, DataEnv};
use serde_json::Value;

crate::on_each_backend! {
    fn importing_bpic_twice_adds_nothing_the_second_time;
    fn rejected_rows_exit_1_and_the_others_are_imported;
    fn a_generic_csv_imports_through_its_mapping;
    fn a_later_export_records_the_changes_that_changed;
    fn a_file_that_cannot_be_read_exits_2_and_records_nothing;
}

/// The excerpt of the real BPIC 2014 change file kept with the evidence crate's tests.
fn bpic_excerpt() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../evidence/tests/fixtures/bpic2014/detail_change.excerpt.csv")
}

fn lines(out: &std::process::Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_string).collect()
}

fn has_line(out: &std::process::Output, line: &str) -> bool {
    lines(out).iter().any(|l| l == line)
}

/// The latest version recorded of an imported change (`imported:FORMAT:ID`), decoded.
fn entry(env: &DataEnv, subject: &str) -> Value {
    let sql = format!(
        "SELECT bytes FROM ledger_entries WHERE subject LIKE '{subject}@%' \
         ORDER BY seq DESC LIMIT 1"
    );
    let bytes: Vec<u8> = match &env.pg {
        None => rusqlite::Connection::open(env.data.join("changegate.db"))
            .expect("open sqlite")
            .query_row(&sql, [], |r| r.get(0))
            .expect("the entry"),
        Some(pg) => postgres::Client::connect(&pg.url, postgres::NoTls)
            .expect("connect")
            .query_one(&sql, &[])
            .expect("the entry")
            .get(0),
    };
    serde_json::from_slice(&bytes).expect("an entry is JSON")
}

fn import(
    env: &DataEnv,
    file: &Path,
    format: &str,
    mapping: Option<&Path>,
) -> std::process::Output {
    let file = file.display().to_string();
    let mut args = vec!["import", "changes", file.as_str(), "--format", format];
    let mapping = mapping.map(|m| m.display().to_string());
    if let Some(m) = &mapping {
        args.extend(["--mapping", m.as_str()]);
    }
    env.cli(&args)
}

fn importing_bpic_twice_adds_nothing_the_second_time(backend: Backend) {
    let env = DataEnv::new(backend);
    let first = import(&env, &bpic_excerpt(), "bpic2014", None);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    for line in [
        "rows read: 204",
        "changes found: 116",
        "changes imported: 116",
        "changes already present: 0",
        "rejected rows: 0",
        "warnings: 3",
    ] {
        assert!(has_line(&first, line), "no `{line}` in {:?}", lines(&first));
    }
    assert!(
        text(&first.stdout).contains("times read in Europe/Amsterdam (UTC+01:00"),
        "{}",
        text(&first.stdout)
    );
    let after_first = env.verify_summary();
    assert!(
        after_first.starts_with("ledger intact: 116 events"),
        "{after_first}"
    );

    let second = import(&env, &bpic_excerpt(), "bpic2014", None);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(
        has_line(&second, "changes imported: 0"),
        "{:?}",
        lines(&second)
    );
    assert!(has_line(&second, "changes already present: 116"));
    assert_eq!(env.verify_summary(), after_first);

    // C00000035 is two rows of the file that disagree on the close time.
    let e = entry(&env, "imported:bpic2014:C00000035");
    assert_eq!(e["kind"], "evidence.change_record");
    assert_eq!(e["actor"], "changegate-import");
    let payload = &e["payload"];
    assert_eq!(payload["imported"], true);
    assert_eq!(payload["source"]["format"], "bpic2014");
    assert_eq!(
        payload["source"]["row_numbers"],
        serde_json::json!([42, 43])
    );
    assert_eq!(payload["source"]["zone"], "Europe/Amsterdam");
    let digest = payload["source"]["file_sha256"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(digest.len(), 64, "{digest}");
    let record = &payload["record"];
    assert_eq!(record["source_id"], "C00000035");
    assert_eq!(record["type"], "normal");
    assert_eq!(record["closed"], "2013-11-11T10:00:00Z");
    assert_eq!(record["configuration_items"][0]["name"], "HMD000002");
}

/// A ServiceNow export with 22 bad rows among good ones.
fn servicenow_with_bad_rows(dir: &Path) -> PathBuf {
    let mut csv = String::from("number,short_description,opened_at,work_start\n");
    csv.push_str("CHG1,Fine,2024-01-01 10:00:00,2024-01-02 10:00:00\n");
    csv.push_str(",No id,2024-01-01 10:00:00,\n");
    for n in 0..21 {
        csv.push_str(&format!("CHGX{n},Bad date,2024-13-01 10:00:00,\n"));
    }
    csv.push_str("CHG2,Fine too,2024-01-03 10:00:00,\n");
    let path = dir.join("change_request.csv");
    std::fs::write(&path, csv).expect("write the export");
    path
}

fn rejected_rows_exit_1_and_the_others_are_imported(backend: Backend) {
    let env = DataEnv::new(backend);
    let file = servicenow_with_bad_rows(env.scratch());
    let out = import(&env, &file, "servicenow", None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = lines(&out);
    for line in [
        "format: servicenow; times read in UTC",
        "rows read: 24",
        "changes found: 2",
        "changes imported: 2",
        "rejected rows: 22",
        "  line 3: column `number` is empty: a row needs a change id",
        "  line 4: column `opened_at`: `2024-13-01 10:00:00` is not a date in the form \
         `yyyy-mm-dd hh:mm:ss`",
        "  … and 2 more",
        "warnings: 0",
    ] {
        assert!(all.iter().any(|l| l == line), "no `{line}` in {all:?}");
    }
    let listed = all.iter().filter(|l| l.starts_with("  line ")).count();
    assert_eq!(listed, 20, "{all:?}");
    assert!(env.verify_summary().starts_with("ledger intact: 2 events"));

    // The same file again: nothing new, and the rejected rows are still reported.
    let again = import(&env, &file, "servicenow", None);
    assert_eq!(again.status.code(), Some(1));
    assert!(has_line(&again, "changes already present: 2"));
    assert!(env.verify_summary().starts_with("ledger intact: 2 events"));
}

fn a_generic_csv_imports_through_its_mapping(backend: Backend) {
    let env = DataEnv::new(backend);
    let csv = env.scratch().join("tickets.csv");
    std::fs::write(
        &csv,
        "Ticket;Kind;Logged;Done\nT-1;Emergency;01/02/2025 09:15;01/02/2025 10:00\n\
         T-2;Change;02/02/2025 09:15;\n",
    )
    .expect("write");
    let mapping = env.scratch().join("mapping.toml");
    std::fs::write(
        &mapping,
        "delimiter = \";\"\nzone = \"Europe/Paris\"\n\
         date_formats = [\"[day]/[month]/[year] [hour]:[minute]\"]\n\
         [columns]\nid = \"Ticket\"\ntype = \"Kind\"\nopened = \"Logged\"\nactual_start = \"Done\"\n\
         [values.type]\n\"Change\" = \"normal\"\n",
    )
    .expect("write");
    let out = import(&env, &csv, "csv", Some(&mapping));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(has_line(&out, "changes imported: 2"), "{:?}", lines(&out));
    let record = &entry(&env, "imported:csv:T-1")["payload"]["record"];
    assert_eq!(record["type"], "emergency");
    assert_eq!(record["opened"], "2025-02-01T08:15:00Z");
    assert_eq!(record["actual_start"], "2025-02-01T09:00:00Z");
    assert_eq!(
        entry(&env, "imported:csv:T-2")["payload"]["record"]["type"],
        "normal"
    );
    env.assert_verifies();
}

fn a_later_export_records_the_changes_that_changed(backend: Backend) {
    let env = DataEnv::new(backend);
    let csv = env.scratch().join("export.csv");
    // CHG1 is closed in every export; whether it was implemented is what changes.
    let export = |rows: &str| {
        std::fs::write(
            &csv,
            format!("number,short_description,opened_at,work_start,closed_at\n{rows}"),
        )
        .expect("write the export");
    };
    let chg1 = |work_start: &str| {
        format!("CHG1,Patch,2024-01-01 10:00:00,{work_start},2024-01-06 09:00:00\n")
    };
    let chg2 = "CHG2,Upgrade,2024-01-02 10:00:00,2024-01-03 10:00:00,\n";
    let chg3 = "CHG3,New,2024-02-01 10:00:00,,\n";
    let audited = |name: &str| -> Vec<String> {
        let out = env.scratch().join(name);
        let o = env.cli(&[
            "audit",
            "--from",
            "2024-01-01",
            "--to",
            "2024-12-31",
            "--seed",
            "1",
            "--no-package",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let imported: Value =
            serde_json::from_slice(&std::fs::read(out.join("imported-changes.json")).unwrap())
                .unwrap();
        imported["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "CHG1")
            .unwrap()["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };

    export(&format!("{}{chg2}", chg1("")));
    let first = import(&env, &csv, "servicenow", None);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(
        has_line(&first, "changes imported: 2"),
        "{:?}",
        lines(&first)
    );
    assert!(audited("a1").contains(&"not_implemented".to_string()));

    // A month later CHG1 shows its implementation; CHG2 moved down a line but did not
    // change; CHG3 is new.
    export(&format!("{chg3}{chg2}{}", chg1("2024-01-05 09:00:00")));
    let second = import(&env, &csv, "servicenow", None);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    for line in [
        "changes imported: 1",
        "changes updated (a newer version recorded): 1",
        "changes already present: 1",
    ] {
        assert!(
            has_line(&second, line),
            "no `{line}` in {:?}",
            lines(&second)
        );
    }
    assert_eq!(
        entry(&env, "imported:servicenow:CHG1")["payload"]["record"]["actual_start"],
        "2024-01-05T09:00:00Z"
    );
    assert!(env.verify_summary().starts_with("ledger intact: 4 events"));
    assert!(!audited("a2").contains(&"not_implemented".to_string()));

    // The next export goes back to the first version of CHG1: that is the latest now.
    export(&format!("{}{chg2}{chg3}", chg1("")));
    let third = import(&env, &csv, "servicenow", None);
    assert!(
        has_line(&third, "changes updated (a newer version recorded): 1"),
        "{:?}",
        lines(&third)
    );
    assert!(audited("a3").contains(&"not_implemented".to_string()));
    // The same file again adds nothing.
    let fourth = import(&env, &csv, "servicenow", None);
    assert!(
        has_line(&fourth, "changes already present: 3"),
        "{:?}",
        lines(&fourth)
    );
    assert!(env.verify_summary().starts_with("ledger intact: 5 events"));

    // And forth again: the implemented version is the latest once more.
    export(&format!("{chg3}{chg2}{}", chg1("2024-01-05 09:00:00")));
    let fifth = import(&env, &csv, "servicenow", None);
    assert!(
        has_line(&fifth, "changes updated (a newer version recorded): 1"),
        "{:?}",
        lines(&fifth)
    );
    assert!(!audited("a5").contains(&"not_implemented".to_string()));
}

fn a_file_that_cannot_be_read_exits_2_and_records_nothing(backend: Backend) {
    let env = DataEnv::new(backend);
    let dir = env.scratch();
    let csv = dir.join("tickets.csv");
    std::fs::write(&csv, "Ticket,Kind\nT-1,normal\n").expect("write");
    let bad_key = dir.join("bad-key.toml");
    std::fs::write(&bad_key, "[columns]\nid = \"Ticket\"\nowner = \"Kind\"\n").expect("write");
    let gz = dir.join("changes.csv.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 0x08, 0x00, 0x00]).expect("write");

    let cases: [(&Path, &str, Option<&Path>, &str); 5] = [
        (&gz, "bpic2014", None, "gzip"),
        (&csv, "bpic2014", None, "`Change ID`"),
        (&csv, "csv", None, "--mapping"),
        (&csv, "csv", Some(&bad_key), "`owner`"),
        (&dir.join("missing.csv"), "servicenow", None, "cannot read"),
    ];
    for (file, format, mapping, says) in cases {
        let out = import(&env, file, format, mapping);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{format} {}: {stderr}",
            file.display()
        );
        assert!(stderr.contains(says), "{stderr}");
    }
    if env.pg.is_none() {
        assert!(
            !env.data.exists(),
            "a failed import created the data directory"
        );
    } else {
        env.cli(&["users", "add", "olivia", "--role", "auditor"]);
        assert!(env.verify_summary().starts_with("ledger intact: 1 events"));
    }
}
