//! Reading an entry's `seq` and `prev` from its stored bytes without decoding the rest, which is
//! what lets verification keep up with millions of entries per second.
//!
//! The serde route (a borrowing struct that ignores the other fields) is the reference. A
//! hand-written scanner goes first because serde's generic machinery costs as much as hashing
//! the entry. The scanner only ever answers when it is sure serde would give the same answer;
//! on anything unusual (escaped keys, `\u` in `prev`, numbers serde would reject as a `u64`,
//! duplicate fields, very deep nesting, malformed JSON) it steps aside and serde decides.

use std::borrow::Cow;

use serde::Deserialize;

use crate::{parse_hash, Hash};

/// Reads `seq` and `prev` from stored entry bytes, or `None` if they are not an entry's.
pub(crate) fn decode_head(bytes: &[u8]) -> Option<(u64, Hash)> {
    match scan(bytes) {
        Some(head) => Some(head),
        None => serde_head(bytes),
    }
}

/// The reference reading: serde_json with every field but `seq` and `prev` skipped.
fn serde_head(bytes: &[u8]) -> Option<(u64, Hash)> {
    #[derive(Deserialize)]
    struct Head<'a> {
        seq: u64,
        // Borrowed unless someone stored it with escapes, so no allocation per entry.
        #[serde(borrow)]
        prev: Cow<'a, str>,
    }
    let head: Head<'_> = serde_json::from_slice(bytes).ok()?;
    Some((head.seq, parse_hash(&head.prev)?))
}

/// The fast reading: `Some` only where [`serde_head`] would return the same, `None` to defer.
fn scan(bytes: &[u8]) -> Option<(u64, Hash)> {
    let mut c = Cursor { b: bytes, i: 0 };
    c.ws();
    c.eat(b'{')?;
    let (mut seq, mut prev) = (None, None);
    loop {
        c.ws();
        c.eat(b'"')?;
        let key = c.plain_key()?;
        c.ws();
        c.eat(b':')?;
        c.ws();
        match key {
            // serde rejects a repeated field, so a repeat defers to it.
            b"seq" if seq.is_none() => seq = Some(c.uint()?),
            b"prev" if prev.is_none() => prev = Some(c.hex_hash()?),
            b"seq" | b"prev" => return None,
            _ => c.skip_value()?,
        }
        c.ws();
        match c.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    c.ws();
    if c.i != bytes.len() {
        return None;
    }
    Some((seq?, prev?))
}

/// Deepest nesting the scanner tracks; deeper values defer to serde.
const MAX_DEPTH: u32 = 64;

/// A position in the bytes. Every method returns `None` for "not sure", never panics.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Skips JSON whitespace, the same four bytes serde_json accepts.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Counts and skips ASCII digits.
    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// A top-level key after its opening quote. serde matches field names after unescaping and
    /// checks their UTF-8, so only plain ASCII keys are read here.
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' | 0..=0x1f | 0x80..=0xff => return None,
                _ => {}
            }
        }
    }

    /// A `u64` in plain decimal; anything serde would see as negative, fractional, exponent
    /// form or too large is left to serde.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let n = self.digits();
        let text = &self.b[start..self.i];
        if n == 0 || (n > 1 && text[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        let digit = |d: &u8| u64::from(d - b'0');
        if n <= 19 {
            // Nineteen digits cannot overflow a u64, and skipping the checks matters here: the
            // checked loop was a fifth of the scanner's time.
            return Some(text.iter().fold(0, |acc, d| acc * 10 + digit(d)));
        }
        text.iter()
            .try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(digit(d)))
    }

    /// `"` then 64 hex digits (either case, as [`parse_hash`] accepts) then `"`.
    fn hex_hash(&mut self) -> Option<Hash> {
        self.eat(b'"')?;
        let digits = self.b.get(self.i..self.i + 64)?;
        self.i += 64;
        self.eat(b'"')?;
        decode_hex32(digits)
    }

    /// The rest of a string after its opening quote, with serde_json's rules for a string it
    /// ignores: no raw control characters, only valid escapes, and no UTF-8 check.
    fn string(&mut self) -> Option<()> {
        loop {
            self.i = find_special(self.b, self.i)?;
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 4;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// A JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' if matches!(self.peek(), Some(b'0'..=b'9')) => return None,
            b'0' => {}
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then_some(())?;
        self.i = end;
        Some(())
    }

    /// An object key and its colon, from the opening quote on.
    fn object_key(&mut self) -> Option<()> {
        self.ws();
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')
    }

    /// Skips one JSON value of any shape, without recursion: `stack` holds one bit per open
    /// container, set for an object, so closers can be matched to openers.
    fn skip_value(&mut self) -> Option<()> {
        let mut stack = 0u64;
        let mut depth = 0u32;
        loop {
            self.ws();
            match self.next()? {
                b'"' => self.string()?,
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' | b'0'..=b'9' => {
                    self.i -= 1;
                    self.number()?;
                }
                open @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    let object = open == b'{';
                    stack = stack << 1 | u64::from(object);
                    depth += 1;
                    self.ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() != Some(close) {
                        if object {
                            self.object_key()?;
                        }
                        continue;
                    }
                    // An empty container is a complete value; its closer is taken below.
                }
                _ => return None,
            }
            // After a complete value: close finished containers, or move to the next member.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.ws();
                let object = stack & 1 == 1;
                match self.next()? {
                    b',' => {
                        if object {
                            self.object_key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                stack >>= 1;
                depth -= 1;
            }
        }
    }
}

/// Value of each byte as a hex digit, or `0xff` if it is not one.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes 64 hex digits. The `hex` crate gives the same answers but costs as much as hashing
/// the whole entry, through per-digit error plumbing this loop does not need.
fn decode_hex32(digits: &[u8]) -> Option<Hash> {
    let digits: &[u8; 64] = digits.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        // Invalid digits are 0xff, the only table values with the high bit set; checking once
        // at the end keeps the loop branch-free.
        bad |= hi | lo;
        *byte = hi << 4 | (lo & 0x0f);
    }
    (bad & 0x80 == 0).then_some(out)
}

/// The index of the first `"`, `\` or control byte at or after `i`, eight bytes at a time.
fn find_special(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte's high bit is set in `zero(v)` where that byte of `v` is 0, or, only above such a
    // byte, through a borrow; the lowest flag is therefore always a true match.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let quote = zero(x ^ (ONES * u64::from(b'"')));
        let backslash = zero(x ^ (ONES * u64::from(b'\\')));
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let hits = (quote | backslash | control) & HIGHS;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = b.get(i..)?;
    let at = tail
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(i + at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{canonical_bytes, Entry};
    use proptest::prelude::*;
    use serde_json::json;

    fn entry(payload: serde_json::Value) -> Entry {
        Entry {
            seq: 41,
            prev: [0x3c; 32],
            time: "2025-01-02T03:04:05Z".into(),
            actor: "alice".into(),
            roles: vec!["approver".into()],
            kind: "change.approve".into(),
            subject: None,
            payload,
        }
    }

    #[test]
    fn scanner_reads_canonical_entries_itself() {
        let payloads = [
            json!(null),
            json!({}),
            json!([]),
            json!({"a": [1, -2.5e-3, true, false, null, {"b": {}}, []], "c": "x\"y\\z\n\u{1}é"}),
        ];
        for p in payloads {
            let bytes = canonical_bytes(&entry(p));
            assert_eq!(
                scan(&bytes),
                Some((41, [0x3c; 32])),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn hex_decoding_matches_the_hex_crate() {
        let digits = b"0123456789abcdefABCDEFgG/:@`";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut text = [b'0'; 64];
            for c in text.iter_mut() {
                // xorshift: a cheap deterministic stream; about a third of the texts are all digits
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let pick = (state % 64) as usize;
                *c = digits[if pick < 63 {
                    pick % 22
                } else {
                    22 + (state >> 8) as usize % 6
                }];
            }
            let mut want = [0u8; 32];
            let want = hex::decode_to_slice(text, &mut want).ok().map(|()| want);
            assert_eq!(
                decode_hex32(&text),
                want,
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
        assert_eq!(decode_hex32(&[b'0'; 63]), None);
    }

    #[test]
    fn find_special_finds_the_first_match() {
        let mut text = vec![b'a'; 40];
        assert_eq!(find_special(&text, 0), None);
        for at in 0..40 {
            for c in [b'"', b'\\', 0x00, 0x1f] {
                let mut t = text.clone();
                t[at] = c;
                // A later match and high bytes must not shadow the first one.
                t[39] = b'"';
                t[at.saturating_sub(1)] = if at > 0 { 0xff } else { t[0] };
                assert_eq!(find_special(&t, 0), Some(at), "byte {c:#x} at {at}");
            }
        }
        text[3] = 0x7f;
        text[5] = 0x20;
        assert_eq!(find_special(&text, 0), None);
    }

    #[test]
    fn unusual_but_valid_spellings_agree_with_serde() {
        let prev = "3c".repeat(32);
        let cases = [
            format!(" {{ \"prev\" : \"{prev}\" ,\n\"x\":[ ],\t\"seq\" : 41 }} \n"),
            format!(r#"{{"s\u0065q":41,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":41,"prev":"{}"}}"#, prev.to_uppercase()),
            format!(r#"{{"seq":41,"prev":"\u0033{}"}}"#, &prev[1..]),
            format!(r#"{{"seq":41,"prev":"{prev}","é":1}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":"\ud800"}}"#),
            format!(r#"{{"seq":18446744073709551615,"prev":"{prev}"}}"#),
        ];
        for text in &cases {
            let b = text.as_bytes();
            assert!(serde_head(b).is_some(), "serde rejects {text}");
            assert_eq!(decode_head(b), serde_head(b), "{text}");
        }
    }

    #[test]
    fn invalid_spellings_are_rejected_like_serde() {
        let prev = "3c".repeat(32);
        let cases = [
            String::new(),
            "{}".to_string(),
            r#"{"seq":41}"#.to_string(),
            format!(r#"{{"prev":"{prev}"}}"#),
            format!(r#"{{"seq":041,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":-1,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":4.0,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":1e1,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":18446744073709551616,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":"41","prev":"{prev}"}}"#),
            format!(r#"{{"seq":41,"prev":"{}"}}"#, &prev[2..]),
            format!(r#"{{"seq":41,"prev":"{prev}00"}}"#),
            format!(r#"{{"seq":41,"seq":41,"prev":"{prev}"}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}",}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}"}}x"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":[1,]}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":01}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":"a{}b"}}"#, '\u{1}'),
            format!(r#"{{"seq":41,"prev":"{prev}","x":"\q"}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":{{"a"}}}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":[}}"#),
            format!(r#"{{"seq":41,"prev":"{prev}","x":tru}}"#),
        ];
        for text in &cases {
            assert_eq!(decode_head(text.as_bytes()), None, "{text}");
            assert_eq!(serde_head(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn deep_nesting_defers_to_serde() {
        let prev = "3c".repeat(32);
        for depth in [63, 64, 65, 200] {
            let value = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!(r#"{{"x":{value},"seq":41,"prev":"{prev}"}}"#);
            assert_eq!(
                scan(text.as_bytes()).is_some(),
                depth <= 64,
                "depth {depth}"
            );
            assert_eq!(
                decode_head(text.as_bytes()),
                serde_head(text.as_bytes()),
                "depth {depth}"
            );
        }
    }

    /// Bytes close to an entry: a canonical encoding with a few random byte edits.
    fn near_entry() -> impl Strategy<Value = Vec<u8>> {
        let payload = prop_oneof![
            Just(json!({"a": [1, -2.5e-3, true, null, {"b": {}}], "c": "x\"y\\z\n"})),
            Just(json!({"title": "ok", "n": 10, "deep": [[[{"k": "v"}]]]})),
            Just(json!([])),
        ];
        let edits =
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4);
        (payload, edits).prop_map(|(p, edits)| {
            let mut b = canonical_bytes(&entry(p));
            for (at, byte, op) in edits {
                let i = at.index(b.len());
                match op {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            b
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn scanner_never_disagrees_with_serde(bytes in near_entry()) {
            if let Some(head) = scan(&bytes) {
                prop_assert_eq!(Some(head), serde_head(&bytes));
            }
        }

        #[test]
        fn structural_bytes_in_edits_agree(
            bytes in near_entry(),
            at in any::<prop::sample::Index>(),
            c in prop::sample::select(b"{}[]\",:\\ 0-.eE".to_vec()),
        ) {
            let mut b = bytes;
            if !b.is_empty() {
                let i = at.index(b.len());
                b[i] = c;
            }
            if let Some(head) = scan(&b) {
                prop_assert_eq!(Some(head), serde_head(&b));
            }
        }
    }
}
