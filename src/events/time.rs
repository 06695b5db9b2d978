//! Wall-clock times of async events: milliseconds since the Unix epoch, and their RFC 3339
//! form in UTC with exactly three fractional digits (`2026-11-21T22:33:43.123Z`,
//! docs/reference.md §10), both ways through `humantime`.
//!
//! Times before the epoch cannot occur (they are `u64`); a clock set before 1970 reads as 0.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now. A clock before 1970 yields 0 rather than failing:
/// event times are informative, never used for ordering guarantees.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Milliseconds since the epoch from plain digits (ms) or from RFC 3339 in UTC
/// (`2026-11-21T22:33:43.123Z`; fraction optional, `T` or a space between date and time,
/// `Z` or `+00:00`). Sub-millisecond digits are dropped.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Some(ms);
    }
    let utc = s
        .strip_suffix(['Z', 'z'])
        .or_else(|| s.strip_suffix("+00:00"))?;
    // humantime reads `T` or a space; RFC 3339 allows a lower-case `t` too.
    // Byte 10 is the ASCII `t`, so 10 and 11 are character boundaries of `utc`.
    let utc = match utc.as_bytes().get(10) {
        Some(b't') => format!("{}T{}", &utc[..10], &utc[11..]),
        _ => utc.to_owned(),
    };
    let time = humantime::parse_rfc3339_weak(&utc).ok()?;
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_timestamps() {
        // Values checked against `date -u -d @SECONDS +%FT%T`.
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (86_399_999, "1970-01-01T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"), // leap day of a /400 year
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (4_107_542_399_000, "2100-02-28T23:59:59.000Z"), // 2100 is not a leap year
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (1_798_000_000_000, "2026-12-23T04:26:40.000Z"),
            (1_795_300_423_123, "2026-11-21T22:33:43.123Z"), // the contract's example
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_rfc3339_ms(ms), want, "ms={ms}");
            assert_eq!(parse_time_ms(want), Some(ms), "{want}");
        }
    }

    #[test]
    fn every_day_round_trips_through_a_naive_calendar() {
        // Walk 1970..2400 day by day with the textbook leap rule and compare.
        let mut days = 0u64;
        for year in 1970..2400u64 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let lengths = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (m, &len) in lengths.iter().enumerate() {
                for d in 1..=len {
                    let ms = days * 86_400_000 + 43_200_123;
                    let text = format!("{year:04}-{:02}-{d:02}T12:00:00.123Z", m + 1);
                    assert_eq!(format_rfc3339_ms(ms), text);
                    assert_eq!(parse_time_ms(&text), Some(ms));
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn lenient_forms_parse_and_nonsense_does_not() {
        let ms = 1_795_300_423_000;
        for s in [
            "2026-11-21T22:33:43Z",
            "2026-11-21t22:33:43z",
            "2026-11-21 22:33:43.000Z",
            "2026-11-21T22:33:43+00:00",
            "2026-11-21T22:33:43.0009Z",
            "1795300423000",
        ] {
            assert_eq!(parse_time_ms(s), Some(ms), "{s}");
        }
        for s in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-21T22:33:43",
            "",
        ] {
            assert_eq!(parse_time_ms(s), None, "{s}");
        }
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
