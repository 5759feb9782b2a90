//! Canonical encoding: keys are sorted at every depth whatever order they were built or parsed
//! in, there is no insignificant whitespace, and decoding the canonical bytes gives back the
//! entry.

use std::fmt;

use ledger::{canonical_bytes, decode_entry, entry_hash, leaf_hash, Entry};
use proptest::prelude::*;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

/// Walks JSON as it is parsed and fails if any object's keys are not in strictly increasing
/// byte order. Reading the text in order is the point: a parsed `Value` may have re-sorted them.
struct SortedKeys;

impl<'de> Deserialize<'de> for SortedKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SortedKeys)
    }
}

impl<'de> Visitor<'de> for SortedKeys {
    type Value = SortedKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<SortedKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut last: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if let Some(prev) = &last {
                if prev.as_bytes() >= key.as_bytes() {
                    return Err(de::Error::custom(format!("key {key:?} follows {prev:?}")));
                }
            }
            map.next_value::<SortedKeys>()?;
            last = Some(key);
        }
        Ok(self)
    }
}

fn assert_canonical_shape(bytes: &[u8]) {
    if let Err(e) = serde_json::from_slice::<SortedKeys>(bytes) {
        panic!("{e}: {}", String::from_utf8_lossy(bytes));
    }
    // serde_json's compact writer emits no whitespace and the same escapes, so a longer
    // canonical form could only come from insignificant whitespace.
    let value: Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(serde_json::to_vec(&value).unwrap().len(), bytes.len());
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z_é\"\\\\ -]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

prop_compose! {
    fn arb_entry()(
        seq: u64,
        prev: [u8; 32],
        time in "[0-9TZ:-]{0,24}",
        actor in "\\PC{0,16}",
        roles in prop::collection::vec("[a-z-]{1,10}", 0..4),
        kind in "[a-z.]{1,20}",
        subject in prop::option::of("\\PC{0,12}"),
        payload in json_value(),
    ) -> Entry {
        Entry { seq, prev, time, actor, roles, kind, subject, payload }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn canonical_round_trips(e in arb_entry()) {
        let bytes = canonical_bytes(&e);
        let back = decode_entry(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(canonical_bytes(&back), bytes.clone());
        prop_assert_eq!(entry_hash(&e), leaf_hash(&bytes));
        assert_canonical_shape(&bytes);
    }

    #[test]
    fn any_json_spelling_decodes_to_the_same_canonical_bytes(e in arb_entry()) {
        // Pretty-printed, and with the entry's fields in declaration (unsorted) order.
        let pretty = serde_json::to_vec_pretty(&e).unwrap();
        prop_assert_eq!(canonical_bytes(&decode_entry(&pretty).unwrap()), canonical_bytes(&e));
    }
}

fn sample(payload: Value) -> Entry {
    Entry {
        seq: 3,
        prev: [7; 32],
        time: "2025-01-01T00:00:00Z".into(),
        actor: "bob".into(),
        roles: vec![],
        kind: "change.create".into(),
        subject: None,
        payload,
    }
}

#[test]
fn keys_sort_whatever_order_they_were_inserted_in() {
    let pairs = [
        ("zeta", json!(1)),
        ("alpha", json!({"y": 1, "b": [{"d": 0, "c": 0}]})),
    ];
    let mut forward = Map::new();
    let mut backward = Map::new();
    for (k, v) in &pairs {
        forward.insert((*k).into(), v.clone());
    }
    for (k, v) in pairs.iter().rev() {
        backward.insert((*k).into(), v.clone());
    }
    let a = canonical_bytes(&sample(Value::Object(forward)));
    let b = canonical_bytes(&sample(Value::Object(backward)));
    assert_eq!(a, b);
    assert_canonical_shape(&a);
    let text = String::from_utf8(a).unwrap();
    assert!(
        text.contains(r#"{"alpha":{"b":[{"c":0,"d":0}],"y":1},"zeta":1}"#),
        "{text}"
    );
}

#[test]
fn shuffled_text_decodes_to_identical_bytes() {
    let text = r#"{ "time": "2025-01-01T00:00:00Z", "subject": null,
        "payload": {"b": 2, "a": [1, {"z": true, "m": null}]}, "seq": 3,
        "roles": [], "prev": "0707070707070707070707070707070707070707070707070707070707070707",
        "kind": "change.create", "actor": "bob" }"#;
    let want = sample(json!({"a": [1, {"m": null, "z": true}], "b": 2}));
    let decoded = decode_entry(text.as_bytes()).unwrap();
    assert_eq!(decoded, want);
    assert_eq!(canonical_bytes(&decoded), canonical_bytes(&want));
}

#[test]
fn strings_use_serde_json_escaping() {
    let e = sample(json!({"s": "quote\" backslash\\ nl\n tab\t bell\u{7} del\u{7f} é ☃ /"}));
    let text = String::from_utf8(canonical_bytes(&e)).unwrap();
    let want = r#""s":"quote\" backslash\\ nl\n tab\t bell\u0007 del"#;
    assert!(text.contains(want), "{text}");
    assert!(text.contains("\u{7f} é ☃ /\""), "{text}");
}

#[test]
fn floats_use_the_shortest_round_trip_form() {
    let e =
        sample(json!({"a": 0.1, "b": 1.0, "c": 1e100, "d": -2.5, "e": 18446744073709551615u64}));
    let text = String::from_utf8(canonical_bytes(&e)).unwrap();
    assert!(
        text.contains(r#"{"a":0.1,"b":1.0,"c":1e+100,"d":-2.5,"e":18446744073709551615}"#),
        "{text}"
    );
    assert_eq!(decode_entry(text.as_bytes()).unwrap(), e);
}

#[test]
fn decoding_rejects_what_is_not_an_entry() {
    assert!(decode_entry(b"").is_err());
    assert!(decode_entry(b"[]").is_err());
    let mut v = serde_json::to_value(sample(json!(null))).unwrap();
    v.as_object_mut().unwrap().remove("actor");
    let err = decode_entry(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("actor"), "{err}");
}
