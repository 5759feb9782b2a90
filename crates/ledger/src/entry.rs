//! Ledger entries and their canonical encoding: the exact bytes that are hashed into the chain
//! and the Merkle tree, and decoding back from those bytes.
//!
//! # Canonical form
//!
//! An entry is encoded as JSON with:
//!
//! - object keys sorted by byte order, at every depth (the entry's own fields and every object
//!   inside `payload`);
//! - no insignificant whitespace;
//! - strings escaped exactly as `serde_json` escapes them (`"`, `\`, and control characters
//!   only; everything else, including non-ASCII, is written as raw UTF-8);
//! - `prev` as 64 lowercase hex digits, `subject` as `null` when absent.
//!
//! Numbers are meant to be integers, which are written in plain decimal. A payload may still hold
//! a float; it is written in `serde_json`'s shortest round-trip form (for example `0.1`, `1.0`,
//! `1e+100`). That form is deterministic for a given `f64`, so hashing stays stable, but callers
//! that need cross-language canonical agreement should keep floats out of payloads.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{merkle, Hash, LedgerError};

/// The `prev` of the first entry.
pub const GENESIS_PREV: Hash = [0u8; 32];

/// One ledger entry: who did what, when, to which subject.
///
/// `seq` is the 0-based position in the log and the Merkle leaf index. `prev` is the leaf hash
/// of the entry before (all zeros for the first). `time` is RFC 3339 in UTC with a `Z` suffix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub prev: Hash,
    pub time: String,
    pub actor: String,
    pub roles: Vec<String>,
    pub kind: String,
    pub subject: Option<String>,
    pub payload: serde_json::Value,
}

/// Serde adapter that writes a [`Hash`] as 64 lowercase hex digits.
pub(crate) mod hex_hash {
    pub fn serialize<S: serde::Serializer>(h: &super::Hash, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        s.serialize_str(super::hex_str(h, &mut buf))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<super::Hash, D::Error> {
        let s: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        super::parse_hash(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Parses 64 hex digits.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Writes `h` as lowercase hex into `buf` without allocating.
fn hex_str<'b>(h: &Hash, buf: &'b mut [u8; 64]) -> &'b str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in buf.chunks_exact_mut(2).zip(h) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    // Every byte written above is an ASCII hex digit.
    std::str::from_utf8(buf).unwrap_or_default()
}

/// The canonical encoding of `entry` (see the module documentation for the rules).
pub fn canonical_bytes(entry: &Entry) -> Vec<u8> {
    // Fields are declared in byte order of their names, which is the order serde writes them.
    #[derive(Serialize)]
    struct Canonical<'a> {
        actor: &'a str,
        kind: &'a str,
        payload: Sorted<'a>,
        #[serde(with = "hex_hash")]
        prev: Hash,
        roles: &'a [String],
        seq: u64,
        subject: Option<&'a str>,
        time: &'a str,
    }
    let view = Canonical {
        actor: &entry.actor,
        kind: &entry.kind,
        payload: Sorted(&entry.payload),
        prev: entry.prev,
        roles: &entry.roles,
        seq: entry.seq,
        subject: entry.subject.as_deref(),
        time: &entry.time,
    };
    let mut out = Vec::with_capacity(320);
    // Writing to a Vec cannot fail, and `Sorted` only emits string keys, which is the one thing
    // serde_json could reject; an error here would be a bug in this module.
    serde_json::to_writer(&mut out, &view).expect("canonical encoding into memory cannot fail");
    out
}

/// The leaf hash of `entry`'s canonical encoding: its Merkle leaf and its successor's `prev`.
pub fn entry_hash(entry: &Entry) -> Hash {
    merkle::leaf_hash(&canonical_bytes(entry))
}

/// Decodes an entry from JSON bytes.
///
/// Any JSON encoding of an entry is accepted, not only the canonical one: the hash covers the
/// stored bytes, so the encoding is already pinned by the chain, and re-checking canonical form
/// here would only reject data that verification accepts.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Decode(e.to_string()))
}

/// A JSON value written with object keys in byte order at every depth.
///
/// serde_json's `Map` is only sorted when its `preserve_order` feature is off, and any crate in
/// the build can turn that feature on, so the order is imposed here rather than inherited.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut fields: Vec<(&String, &Value)> = map.iter().collect();
                fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut out = s.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            leaf => leaf.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::decode_head;
    use serde_json::json;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            prev: [0xab; 32],
            time: "2025-01-02T03:04:05Z".into(),
            actor: "alice".into(),
            roles: vec!["approver".into(), "admin".into()],
            kind: "change.approve".into(),
            subject: Some("CHG-1".into()),
            payload: json!({"z": 1, "a": {"y": [3, {"b": 2, "a": 1}], "x": "q\"\n"}}),
        }
    }

    #[test]
    fn canonical_form_is_exact() {
        let got = String::from_utf8(canonical_bytes(&sample())).expect("canonical JSON is UTF-8");
        let want = concat!(
            r#"{"actor":"alice","kind":"change.approve","#,
            r#""payload":{"a":{"x":"q\"\n","y":[3,{"a":1,"b":2}]},"z":1},"#,
            r#""prev":"abababababababababababababababababababababababababababababababab","#,
            r#""roles":["approver","admin"],"seq":7,"subject":"CHG-1","#,
            r#""time":"2025-01-02T03:04:05Z"}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    fn absent_subject_is_null() {
        let mut e = sample();
        e.subject = None;
        let text = String::from_utf8(canonical_bytes(&e)).expect("canonical JSON is UTF-8");
        assert!(text.contains(r#","subject":null,"#), "{text}");
    }

    #[test]
    fn keys_sort_by_bytes_not_by_case_or_length() {
        let mut e = sample();
        e.payload = json!({"b": 0, "B": 0, "aa": 0, "a": 0, "é": 0, "_": 0});
        let text = String::from_utf8(canonical_bytes(&e)).expect("canonical JSON is UTF-8");
        assert!(
            text.contains(r#""payload":{"B":0,"_":0,"a":0,"aa":0,"b":0,"é":0}"#),
            "{text}"
        );
    }

    #[test]
    fn head_reads_seq_and_prev() {
        let bytes = canonical_bytes(&sample());
        assert_eq!(decode_head(&bytes), Some((7, [0xab; 32])));
        assert_eq!(decode_head(b"{\"seq\":1}"), None);
        assert_eq!(decode_head(b"{\"seq\":1,\"prev\":\"00\"}"), None);
        assert_eq!(decode_head(b"not json"), None);
    }

    #[test]
    fn hex_str_matches_hex_crate() {
        let h: Hash = std::array::from_fn(|i| (i * 37) as u8);
        let mut buf = [0u8; 64];
        assert_eq!(hex_str(&h, &mut buf), hex::encode(h));
    }

    #[test]
    fn decode_rejects_bad_prev() {
        let text = String::from_utf8(canonical_bytes(&sample())).expect("canonical JSON is UTF-8");
        let broken = text.replace("abab", "zzzz");
        assert!(matches!(
            decode_entry(broken.as_bytes()),
            Err(LedgerError::Decode(_))
        ));
    }
}
