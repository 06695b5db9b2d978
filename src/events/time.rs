//! Wall-clock times of async events: milliseconds since the Unix epoch, and their RFC 3339
//! form with exactly three fractional digits in UTC (`2026-11-21T22:33:43.123Z`, CONTRACT
//! section 8).
//!
//! Hand-written rather than a date crate: one direction (timestamp → text), UTC only, no
//! leap seconds (Unix time has none), so Howard Hinnant's `civil_from_days` is all it takes.
//! Times before the epoch cannot occur (they are `u64`); a clock set before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now. A clock before 1970 yields 0 rather than failing:
/// event times are informative, never used for ordering guarantees.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let days = ms / 86_400_000;
    let ms_of_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian
/// calendar. <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>, restricted
/// to non-negative days so every step stays in `u64`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so the leap day is the last day of the (March-based) year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
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
                    assert_eq!(civil_from_days(days), (year, m as u64 + 1, d));
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
