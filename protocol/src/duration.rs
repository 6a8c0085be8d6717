//! The one grammar for durations that people type: humantime's. A duration is one or more
//! `<number><unit>` parts, summed, with or without spaces between them: `90s`, `15m`, `1h 30m`,
//! `1h30m`, `1.5h`, `500ms`, `2days`. Units: `ns`, `us`, `ms`, `s` (`sec`, `secs`, `second`,
//! `seconds`), `m` (`min`, `mins`, `minute`, `minutes`), `h` (`hr`, `hrs`, `hour`, `hours`),
//! `d` (`day`, `days`), `w` (`wk`, `week`, `weeks`), `M` (`month`, `months`), `y` (`yr`,
//! `year`, `years`).
//!
//! Every duration parameter of the API goes through [`parse_duration`] — `window=` of app metrics
//! ([`crate::metrics::parse_window`]) and the relative form of `since=` of runtime logs
//! ([`parse_since`]) — and the CLI's `--window` and `--since` pass their value on unchanged, so
//! all of them accept the same words. Pure parsing: no clock is read here.

use std::time::{Duration, UNIX_EPOCH};

/// Examples of durations, for error messages.
pub const DURATION_EXAMPLES: &str = "90s, 15m or 1h 30m";

/// Parses `value`, given for the parameter `param`, as a duration.
pub fn parse_duration(param: &str, value: &str) -> Result<Duration, String> {
    let value = value.trim();
    humantime::parse_duration(value).map_err(|e| {
        format!("{param} must be a duration such as {DURATION_EXAMPLES}, not {value:?} ({e})")
    })
}

/// Parses `since=`, the start of a time range, to epoch milliseconds: a duration back from
/// `now_ms` in the grammar of [`parse_duration`] (`15m`: fifteen minutes ago), an RFC 3339 time
/// (`2026-11-25T19:01:02Z`; the `T`, the fraction and the `Z` may be left out, the time then
/// being UTC), or epoch milliseconds.
pub fn parse_since(value: &str, now_ms: u64) -> Result<u64, String> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(d) = parse_duration("since", value) {
        return Ok(now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        return Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0));
    }
    Err(format!(
        "since must be a duration back from now such as {DURATION_EXAMPLES}, an RFC 3339 time \
         such as 2026-11-25T19:01:02Z, or epoch milliseconds, not {value:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grammar both `window=` and `since=` accept.
    const DURATIONS: &[(&str, u64)] = &[
        ("90s", 90_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("1h 30m", 5_400_000),
        ("1h30m", 5_400_000),
        (" 2h ", 7_200_000),
        ("15 m", 900_000),
        ("1.5m", 90_000),
        ("500ms", 500),
        ("1m 500ms", 60_500),
        ("2 minutes", 120_000),
        ("1 hour 1 sec", 3_601_000),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
        ("0s", 0),
    ];

    /// Neither a duration nor, for `since=`, a time.
    const NOT_DURATIONS: &[&str] = &[
        "", "abc", "m", "15x", "-5m", "1d-", "5é", "1h 30", "h1", "1,5m", "∞",
    ];

    #[test]
    fn durations() {
        for &(text, ms) in DURATIONS {
            assert_eq!(
                parse_duration("window", text),
                Ok(Duration::from_millis(ms)),
                "{text:?}"
            );
        }
        for &text in NOT_DURATIONS.iter().chain(&["15", "1700000000000"]) {
            let e = parse_duration("window", text).unwrap_err();
            assert!(
                e.starts_with("window must be a duration such as 90s, 15m or 1h 30m, not "),
                "{text:?}: {e}"
            );
        }
        assert!(parse_duration("window", "99999999999999999999h").is_err());
    }

    #[test]
    fn since_takes_the_same_durations_back_from_now() {
        let now = 1_800_000_000_000;
        for &(text, ms) in DURATIONS {
            assert_eq!(parse_since(text, now), Ok(now - ms), "{text:?}");
        }
        // Further back than the epoch: from the start.
        assert_eq!(parse_since("100y", 1_000), Ok(0));
        for &text in NOT_DURATIONS {
            let e = parse_since(text, now).unwrap_err();
            assert!(
                e.starts_with("since must be a duration back from now"),
                "{e}"
            );
            assert!(
                e.contains("RFC 3339") && e.contains("epoch milliseconds"),
                "{e}"
            );
        }
    }

    #[test]
    fn since_keeps_its_absolute_forms() {
        let now = 1_800_000_000_000;
        for (text, ms) in [
            ("1700000000000", 1_700_000_000_000),
            ("15", 15),
            ("2026-11-25T19:01:02Z", 1_795_633_262_000),
            ("2026-11-25T19:01:02.5Z", 1_795_633_262_500),
            ("2026-11-25 19:01:02", 1_795_633_262_000),
            ("2026-11-25T19:01:02", 1_795_633_262_000),
        ] {
            assert_eq!(parse_since(text, now), Ok(ms), "{text:?}");
        }
    }
}
