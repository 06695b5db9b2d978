//! Human units — durations, byte sizes and signal names: the one place that reads and writes
//! them, so that `--check-config` prints exactly the forms the loader reads back.

use std::time::Duration;

use nix::sys::signal::Signal;

const DURATION_HINT: &str = "expected a duration such as \"250ms\", \"30s\", \"5m\" or \"72h\"";
const SIZE_HINT: &str = "expected a size such as \"4096\", \"8KiB\", \"32MiB\" or \"1GiB\"";

/// Reads a duration in humantime syntax: `"250ms"`, `"30s"`, `"5m"`, `"72h"`, `"1m30s"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {DURATION_HINT}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {s:?} ({e}); {DURATION_HINT}"))
}

/// Writes a duration in the compact form `parse_duration` reads back: `"250ms"`, `"30s"`,
/// `"72h"`, `"1m30s"`. Hours are the largest unit on purpose: humantime would print `"3days"`
/// for 72h, which is exact but not what the user wrote.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let secs = d.as_secs();
    let nanos = u64::from(d.subsec_nanos());
    let parts = [
        (secs / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (nanos / 1_000_000, "ms"),
        (nanos / 1_000 % 1_000, "us"),
        (nanos % 1_000, "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// Reads a byte size: plain bytes (`"4096"`, `"4096B"`), binary units (`"8KiB"`, `"32MiB"`,
/// `"1GiB"`, `"1TiB"`, or the short `"8K"`, `"32M"`, `"1G"`), or decimal units (`"8KB"`,
/// `"32MB"`). Units are case-insensitive; a space between number and unit is allowed.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("invalid size {s:?}; {SIZE_HINT}"));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("size {s:?} is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("unknown size unit in {s:?}; {SIZE_HINT}")),
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Writes a size with the largest binary unit that divides it exactly (`131072` → `"128KiB"`),
/// else in bytes (`1000` → `"1000B"`), so `parse_size` reads back the same number.
pub fn format_size(n: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    if n != 0 {
        for (shift, unit) in UNITS {
            if n.is_multiple_of(1u64 << shift) {
                return format!("{}{unit}", n >> shift);
            }
        }
    }
    format!("{n}B")
}

/// Reads a signal: `"SIGTERM"`, `"TERM"` or `"15"`, names case-insensitive.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let text = s.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("unknown signal number {number}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| {
        format!("unknown signal {s:?}; expected a name such as \"SIGTERM\" or a number")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_humantime_syntax() {
        let secs = Duration::from_secs;
        for (text, want) in [
            ("250ms", Duration::from_millis(250)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("72h", secs(72 * 3600)),
            (" 1m30s ", secs(90)),
            ("1m 30s", secs(90)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
        for bad in ["", "30", "thirty seconds", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations_format_in_the_form_they_are_read() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(72 * 3600)), "72h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(
            format_duration(Duration::from_nanos(1_500_000_001)),
            "1s500ms1ns"
        );
    }

    #[test]
    fn durations_round_trip() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(7),
            Duration::from_millis(100),
            Duration::from_millis(1_001),
            Duration::from_secs(59),
            Duration::from_secs(3_601),
            Duration::from_secs(72 * 3600),
            Duration::new(100_000, 123_456_789),
        ] {
            let text = format_duration(d);
            assert_eq!(parse_duration(&text), Ok(d), "{text}");
        }
    }

    #[test]
    fn sizes_parse_binary_decimal_and_plain() {
        for (text, want) in [
            ("4096", 4096),
            ("4096B", 4096),
            ("8KiB", 8 * 1024),
            ("128KiB", 128 * 1024),
            ("32MiB", 32 << 20),
            ("1GiB", 1 << 30),
            ("1 gib", 1 << 30),
            ("8K", 8 * 1024),
            ("2M", 2 << 20),
            ("8KB", 8_000),
            ("3MB", 3_000_000),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "KiB",
            "-1KiB",
            "1.5MiB",
            "8 parsecs",
            "99999999999999999999",
            "17179869184GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes_format_with_the_largest_exact_binary_unit() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(1024), "1KiB");
        assert_eq!(format_size(131_072), "128KiB");
        assert_eq!(format_size(32 << 20), "32MiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(3 << 40), "3TiB");
        assert_eq!(format_size(1536), "1536B");
    }

    #[test]
    fn sizes_round_trip() {
        for n in [
            0,
            1,
            1000,
            1024,
            1536,
            8192,
            131_072,
            32 << 20,
            1 << 30,
            5 << 40,
            u64::MAX,
        ] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn signals_parse_by_name_short_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("term"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGQUIT"), Ok(Signal::SIGQUIT));
        assert_eq!(parse_signal("usr1"), Ok(Signal::SIGUSR1));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("999").is_err());
        assert!(parse_signal("").is_err());
    }
}
