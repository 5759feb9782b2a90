//! Checkpoints: a signed checkpoint verifies under its key, and any altered field, a foreign
//! key, or a forged signature makes it fail.

use ed25519_dalek::SigningKey;
use ledger::{key_id, Checkpoint, LedgerError};
use rand::rngs::OsRng;

fn signed(key: &SigningKey) -> Checkpoint {
    Checkpoint::sign(key, 1234, [0x5a; 32], [0xc3; 32], "2025-07-01T12:00:00Z")
}

#[test]
fn signed_checkpoint_verifies() {
    let key = SigningKey::generate(&mut OsRng);
    let cp = signed(&key);
    assert_eq!(cp.verify(&key.verifying_key()), Ok(()));
    assert_eq!(cp.key_id, key_id(&key.verifying_key()));
    assert_eq!(cp.signature.len(), 128);
}

#[test]
fn every_signed_field_is_covered() {
    let key = SigningKey::generate(&mut OsRng);
    let vk = key.verifying_key();
    let cp = signed(&key);
    type Tamper = fn(&mut Checkpoint);
    let tampers: [(&str, Tamper); 5] = [
        ("size", |c| c.size += 1),
        ("root", |c| c.root[31] ^= 1),
        ("head", |c| c.head[0] ^= 0x80),
        ("time", |c| c.time = "2025-07-01T12:00:01Z".into()),
        ("signature", |c| {
            let last = c.signature.pop().unwrap();
            c.signature.push(if last == '0' { '1' } else { '0' });
        }),
    ];
    for (field, tamper) in tampers {
        let mut bad = cp.clone();
        tamper(&mut bad);
        assert_eq!(
            bad.verify(&vk),
            Err(LedgerError::BadSignature),
            "tampered {field}"
        );
    }
}

#[test]
fn a_different_key_fails() {
    let key = SigningKey::generate(&mut OsRng);
    let other = SigningKey::generate(&mut OsRng);
    let cp = signed(&key);
    let err = cp.verify(&other.verifying_key()).unwrap_err();
    assert!(matches!(err, LedgerError::KeyMismatch { .. }), "{err}");

    // Relabelled with the other key's id, the signature itself still gives it away.
    let mut relabelled = cp.clone();
    relabelled.key_id = key_id(&other.verifying_key());
    assert_eq!(
        relabelled.verify(&other.verifying_key()),
        Err(LedgerError::BadSignature)
    );

    // And a checkpoint signed by the other key but labelled as ours fails under ours.
    let mut forged = signed(&other);
    forged.key_id = cp.key_id.clone();
    assert_eq!(
        forged.verify(&key.verifying_key()),
        Err(LedgerError::BadSignature)
    );
}

#[test]
fn json_form_uses_hex() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let cp = signed(&key);
    let value = serde_json::to_value(&cp).unwrap();
    assert_eq!(value["root"], "5a".repeat(32));
    assert_eq!(value["head"], "c3".repeat(32));
    assert_eq!(value["size"], 1234);
    let back: Checkpoint = serde_json::from_value(value).unwrap();
    assert_eq!(back, cp);
    assert_eq!(back.verify(&key.verifying_key()), Ok(()));
}

#[test]
fn signing_is_deterministic() {
    // Ed25519 signatures depend only on key and message, so re-signing reproduces them.
    let key = SigningKey::from_bytes(&[2; 32]);
    assert_eq!(signed(&key), signed(&key));
}
