//! Time normalization: every time a source gives is turned into RFC 3339 in UTC with a `Z`
//! suffix, the ledger's form.
//!
//! Sources disagree on format. GitHub mostly sends ISO 8601 with `Z` or an offset, but puts
//! unix seconds in a push's `repository.pushed_at`; GitLab writes `2023-12-05 18:43:00 UTC`
//! or `2021-04-28 21:50:00 +0200`; GitHub's audit log counts milliseconds. A time without a
//! zone is refused: a local time labelled as nothing cannot be placed on a calendar, and
//! assuming UTC would move it by the sender's offset without anyone noticing.
//!
//! Errors are plain messages; the parsers wrap them with the field they came from.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Reads a time with an explicit zone and returns it as RFC 3339 UTC (`…Z`).
///
/// Accepted: RFC 3339 (`2019-11-26T07:01:13Z`, `2021-08-19T12:16:32.000-04:00`), the same
/// with a space instead of `T`, a ` UTC` suffix (`2023-12-05 18:43:00 UTC`) and offsets
/// written `+0200`, `+02:00`, with or without a space before them.
pub fn normalize(text: &str) -> Result<String, String> {
    parse(text).and_then(|t| format(t, text))
}

/// Reads a time as [`normalize`] does and returns the instant.
pub fn parse(text: &str) -> Result<OffsetDateTime, String> {
    let bytes = text.as_bytes();
    let not_a_time = || {
        format!(
            "`{text}` is not a time changegate reads (RFC 3339 such as `2026-07-13T18:26:50Z`, \
             or `2023-12-05 18:43:00 UTC`)"
        )
    };
    if bytes.len() < 19 || !bytes.is_ascii() {
        return Err(not_a_time());
    }
    let shape_ok = bytes[..19].iter().enumerate().all(|(i, b)| match i {
        4 | 7 => *b == b'-',
        10 => matches!(b, b'T' | b't' | b' '),
        13 | 16 => *b == b':',
        _ => b.is_ascii_digit(),
    });
    if !shape_ok {
        return Err(not_a_time());
    }
    let number = |range: std::ops::Range<usize>| -> u32 { text[range].parse().unwrap_or(u32::MAX) };

    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(not_a_time());
        }
        let scaled = format!("{:0<9}", &fraction[..digits]);
        nanos = scaled.parse().map_err(|_| not_a_time())?;
        rest = &fraction[digits..];
    }
    let offset = zone(rest).map_err(|reason| match reason {
        ZoneError::Missing => format!("`{text}` has no time zone"),
        ZoneError::Unreadable => not_a_time(),
    })?;

    let invalid = |_| format!("`{text}` is not a valid calendar time");
    let month = u8::try_from(number(5..7))
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| format!("`{text}` is not a valid calendar time"))?;
    let year = i32::try_from(number(0..4)).map_err(|_| not_a_time())?;
    let day = u8::try_from(number(8..10)).map_err(|_| not_a_time())?;
    let date = Date::from_calendar_date(year, month, day).map_err(invalid)?;
    let hour = u8::try_from(number(11..13)).map_err(|_| not_a_time())?;
    let minute = u8::try_from(number(14..16)).map_err(|_| not_a_time())?;
    let second = u8::try_from(number(17..19)).map_err(|_| not_a_time())?;
    let clock = Time::from_hms_nano(hour, minute, second, nanos).map_err(invalid)?;
    Ok(PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

/// Formats unix seconds (GitHub's `repository.pushed_at` in push payloads).
pub fn from_unix_seconds(seconds: i64) -> Result<String, String> {
    let t = OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| format!("`{seconds}` is out of range for unix seconds"))?;
    format(t, &seconds.to_string())
}

/// Formats unix milliseconds (GitHub's audit log `@timestamp` and `created_at`).
pub fn from_unix_millis(millis: i64) -> Result<String, String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| format!("`{millis}` is out of range for unix milliseconds"))?;
    format(t, &millis.to_string())
}

/// Formats an instant in the ledger's form.
pub fn format_utc(t: OffsetDateTime) -> Result<String, String> {
    format(t, &t.to_string())
}

fn format(t: OffsetDateTime, original: &str) -> Result<String, String> {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| format!("`{original}` cannot be written as an RFC 3339 time in UTC"))
}

enum ZoneError {
    Missing,
    Unreadable,
}

/// Reads what follows the seconds: `Z`, `UTC`, or a numeric offset.
fn zone(rest: &str) -> Result<UtcOffset, ZoneError> {
    if rest.trim().is_empty() {
        return Err(ZoneError::Missing);
    }
    if matches!(rest, "Z" | "z" | " UTC" | "UTC" | " Z") {
        return Ok(UtcOffset::UTC);
    }
    let signed = rest.strip_prefix(' ').unwrap_or(rest);
    let (sign, digits) = match signed.as_bytes().first() {
        Some(b'+') => (1i8, &signed[1..]),
        Some(b'-') => (-1i8, &signed[1..]),
        _ => return Err(ZoneError::Unreadable),
    };
    let (hours, minutes) = match digits.len() {
        5 if digits.as_bytes()[2] == b':' => (&digits[..2], &digits[3..]),
        4 => (&digits[..2], &digits[2..]),
        _ => return Err(ZoneError::Unreadable),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return Err(ZoneError::Unreadable);
    }
    let hours: i8 = hours.parse().map_err(|_| ZoneError::Unreadable)?;
    let minutes: i8 = minutes.parse().map_err(|_| ZoneError::Unreadable)?;
    if hours > 23 || minutes > 59 {
        return Err(ZoneError::Unreadable);
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| ZoneError::Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_forms_become_utc_with_z() {
        let cases = [
            ("2019-11-26T07:01:13Z", "2019-11-26T07:01:13Z"),
            ("2021-08-19T12:16:32.000-04:00", "2021-08-19T16:16:32Z"),
            ("2019-05-15T15:20:55+00:00", "2019-05-15T15:20:55Z"),
            ("2023-12-05 18:43:00 UTC", "2023-12-05T18:43:00Z"),
            ("2021-04-28 21:50:00 +0200", "2021-04-28T19:50:00Z"),
            ("2019-11-02T13:56:20-04:00", "2019-11-02T17:56:20Z"),
            ("2026-07-13T18:26:50.25+05:45", "2026-07-13T12:41:50.25Z"),
            ("2020-01-01t00:00:00z", "2020-01-01T00:00:00Z"),
            ("2020-01-01 00:30:00-0100", "2020-01-01T01:30:00Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn naive_times_are_refused_for_their_missing_zone() {
        for input in [
            "2026-07-13 11:26:52",
            "2026-07-13T11:26:52",
            "2026-07-13T11:26:52.5",
        ] {
            assert_eq!(normalize(input), Err(format!("`{input}` has no time zone")));
        }
    }

    #[test]
    fn malformed_and_impossible_times_are_refused() {
        for input in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+2500",
            "2026-01-01T00:00:00 CET",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "2026-01-01T00:00:00+02",
            "2026-01-01T00:00:00Z trailing",
            "２026-01-01T00:00:00Z",
        ] {
            let err = normalize(input).expect_err(input);
            assert!(!err.contains("no time zone"), "{input}: {err}");
        }
    }

    #[test]
    fn unix_seconds_and_millis_are_converted() {
        assert_eq!(
            from_unix_seconds(1574751673).as_deref(),
            Ok("2019-11-26T07:01:13Z")
        );
        assert_eq!(
            from_unix_millis(1632132184509).as_deref(),
            Ok("2021-09-20T10:03:04.509Z")
        );
        assert!(from_unix_seconds(i64::MAX).is_err());
    }
}
