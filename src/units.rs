//! The one grammar for byte sizes and durations on every command line of the package (the server's
//! flags in [`crate::config`] and `wsbench`'s): [`parse_size`] and [`parse_duration`], and the
//! [`UnitError`] that says what is wrong with a value.
//!
//! Sizes are a whole number with an optional unit, `b`, `k`/`kb`/`kib`, `m`/`mb`/`mib`,
//! `g`/`gb`/`gib` (any case, powers of 1024); durations are a decimal number of seconds with an
//! optional unit, `s` or `ms`. Whitespace around the value and between number and unit is allowed.
//! This module knows no flag names and no policy: the ranges a flag accepts (say, a timeout of at
//! least 1 ms) are checked by its caller. Pure functions; nothing allocates.

use std::fmt;
use std::time::Duration;

/// The longest duration the grammar accepts, in seconds (about 116 days); more is [`UnitError::Overflow`].
pub const MAX_SECS: f64 = 1e7;

/// Why a value is not a size or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitError {
    /// Nothing but whitespace.
    Empty,
    /// No number where one must be (`k`, `1.5k`, `x`, `inf`).
    Invalid,
    /// A number followed by a unit the grammar does not know (`12Q`, `5m` for a duration).
    UnknownUnit,
    /// A minus sign.
    Negative,
    /// More than a `u64` of bytes, or more than [`MAX_SECS`] seconds.
    Overflow,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnitError::Empty => "empty value",
            UnitError::Invalid => "not a number",
            UnitError::UnknownUnit => "unknown unit",
            UnitError::Negative => "negative",
            UnitError::Overflow => "too large",
        })
    }
}

impl std::error::Error for UnitError {}

/// Splits `s` (trimmed) into its number and its unit (trimmed, lower case in `buf`).
fn split<'s, 'b>(
    s: &'s str,
    is_num: impl Fn(u8) -> bool,
    buf: &'b mut [u8; 8],
) -> Result<(&'s str, &'b str), UnitError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(UnitError::Empty);
    }
    if s.starts_with('-') {
        return Err(UnitError::Negative);
    }
    let at = s.bytes().position(|b| !is_num(b)).unwrap_or(s.len());
    let (num, unit) = (&s[..at], s[at..].trim_start());
    if num.is_empty() || !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(UnitError::Invalid);
    }
    if unit.len() > buf.len() {
        return Err(UnitError::UnknownUnit);
    }
    let lower = &mut buf[..unit.len()];
    lower.copy_from_slice(unit.as_bytes());
    lower.make_ascii_lowercase();
    Ok((num, std::str::from_utf8(lower).expect("ASCII letters")))
}

/// Parses a byte size: `65536`, `64K`, `64 KiB`, `16mb`, `1G` (units are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let mut buf = [0u8; 8];
    let (num, unit) = split(s, |b| b.is_ascii_digit(), &mut buf)?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(UnitError::UnknownUnit),
    };
    let n: u64 = num.parse().map_err(|_| UnitError::Overflow)?;
    n.checked_mul(mult).ok_or(UnitError::Overflow)
}

/// Parses a duration: seconds, fractions allowed, optionally with a unit: `10`, `2.5`, `10s`,
/// `500ms`, `0.25 s`. Zero is allowed (a caller that needs more says so).
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let mut buf = [0u8; 8];
    // Digits, a decimal point and an exponent (`1e3`); a unit starts at the first other letter.
    let (num, unit) = split(s, |b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+'), &mut buf)?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        _ => return Err(UnitError::UnknownUnit),
    };
    let v: f64 = num.parse().map_err(|_| UnitError::Invalid)?;
    let secs = v * scale;
    if !secs.is_finite() || secs > MAX_SECS {
        return Err(UnitError::Overflow);
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, v) in [
            ("0", 0u64),
            ("20", 20),
            ("20b", 20),
            ("1k", 1024),
            ("1K", 1024),
            ("16KiB", 16384),
            ("16 kb", 16384),
            (" 64K ", 65536),
            ("16MiB", 16 << 20),
            ("16m", 16 << 20),
            ("3g", 3 << 30),
            ("1GB", 1 << 30),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_size(s), Ok(v), "{s:?}");
        }
    }

    #[test]
    fn bad_sizes() {
        for (s, e) in [
            ("", UnitError::Empty),
            ("   ", UnitError::Empty),
            ("-1", UnitError::Negative),
            ("-1k", UnitError::Negative),
            ("k", UnitError::Invalid),
            ("x", UnitError::Invalid),
            ("1.5k", UnitError::Invalid),
            ("+5", UnitError::Invalid),
            ("1k2", UnitError::Invalid),
            ("12Q", UnitError::UnknownUnit),
            ("12kibibytes", UnitError::UnknownUnit),
            ("1t", UnitError::UnknownUnit),
            ("5ms", UnitError::UnknownUnit),
            ("18446744073709551616", UnitError::Overflow),
            ("99999999999999999999999", UnitError::Overflow),
            ("17179869184g", UnitError::Overflow),
        ] {
            assert_eq!(parse_size(s), Err(e), "{s:?}");
        }
    }

    #[test]
    fn durations() {
        for (s, ms) in [
            ("0", 0u64),
            ("10", 10_000),
            ("2.5", 2500),
            ("0.5", 500),
            ("3s", 3000),
            ("3S", 3000),
            ("500ms", 500),
            ("500 ms", 500),
            (" 1.5 s ", 1500),
            ("1e3", 1_000_000),
            ("1e3ms", 1000),
            ("10000000", 10_000_000_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s:?}");
        }
    }

    #[test]
    fn bad_durations() {
        for (s, e) in [
            ("", UnitError::Empty),
            (" ", UnitError::Empty),
            ("-1", UnitError::Negative),
            ("-0.5s", UnitError::Negative),
            ("ms", UnitError::Invalid),
            ("s", UnitError::Invalid),
            ("inf", UnitError::Invalid),
            ("nan", UnitError::Invalid),
            ("1..2", UnitError::Invalid),
            ("e5", UnitError::Invalid),
            ("1s5", UnitError::Invalid),
            ("5m", UnitError::UnknownUnit),
            ("5min", UnitError::UnknownUnit),
            ("2h", UnitError::UnknownUnit),
            ("10000001", UnitError::Overflow),
            ("1e308", UnitError::Overflow),
            ("1e999", UnitError::Overflow),
        ] {
            assert_eq!(parse_duration(s), Err(e), "{s:?}");
        }
        assert_eq!(UnitError::UnknownUnit.to_string(), "unknown unit");
    }
}
