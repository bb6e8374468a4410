//! Durations (`"30s"`, `"10m"`, `"1h30m"`, `"250ms"`) and sizes (`"10MB"`, `"1GiB"`) as the config
//! writes them. Bare numbers are refused for durations so that `"30"` is never silently seconds.

use std::time::Duration;

/// A duration or size string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: {input:?}")]
pub struct UnitError {
    pub input: String,
    pub message: &'static str,
}

fn unit_error(input: &str, message: &'static str) -> UnitError {
    UnitError {
        input: input.to_string(),
        message,
    }
}

/// Reads `"250ms"`, `"30s"`, `"10m"`, `"2h"`, `"1d"` and sums like `"1h30m"`. `"0"` is zero.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(unit_error(input, "empty duration"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(unit_error(
                input,
                "expected a number like \"30s\" or \"10m\"",
            ));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| unit_error(input, "expected a number like \"30s\" or \"10m\""))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            "" => return Err(unit_error(input, "duration needs a unit (ms, s, m, h, d)")),
            _ => {
                return Err(unit_error(
                    input,
                    "unknown duration unit (use ms, s, m, h, d)",
                ))
            }
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(seconds)
            .map_err(|_| unit_error(input, "duration out of range"))?;
    }
    Ok(total)
}

/// Reads `"0"`, `"512"` (bytes), `"10KB"`, `"10MB"`, `"1GB"` (powers of 1000) and `"1KiB"`,
/// `"1MiB"`, `"1GiB"` (powers of 1024). Case of the unit is ignored.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let s = input.trim();
    let digits = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    if digits == 0 {
        return Err(unit_error(
            input,
            "expected a size like \"10MB\" or \"1GiB\"",
        ));
    }
    let number: f64 = s[..digits]
        .parse()
        .map_err(|_| unit_error(input, "expected a size like \"10MB\" or \"1GiB\""))?;
    let multiplier: f64 = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(unit_error(
                input,
                "unknown size unit (use B, KB, MB, GB, KiB, MiB, GiB)",
            ))
        }
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(unit_error(input, "size out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
    }
}
