//! Validators (ETag, Last-Modified), conditional requests (RFC 9110 §13) and byte ranges (§14).

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{
    HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
};
use http::HeaderMap;

/// What a representation is known by.
#[derive(Debug, Clone)]
pub(crate) struct Validators {
    /// Complete ETag, quotes and `W/` included.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
}

/// The version part of an ETag: size and modification time in nanoseconds. It is the same for the
/// same file version on every start and on every machine that got the file with its mtime, and
/// it changes on any rewrite the file system can see.
pub(crate) fn etag_core(len: u64, modified: Option<SystemTime>) -> String {
    let nanos = modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{len:x}-{nanos:x}")
}

/// The outcome of the precondition headers, in the order RFC 9110 §13.2.2 evaluates them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

pub(crate) fn evaluate(headers: &HeaderMap, v: &Validators) -> Precondition {
    if headers.contains_key(IF_MATCH) {
        if !etag_list_matches(headers, IF_MATCH, &v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (date(headers, IF_UNMODIFIED_SINCE), seconds(v)) {
        if modified > since {
            return Precondition::Failed;
        }
    }
    if headers.contains_key(IF_NONE_MATCH) {
        if etag_list_matches(headers, IF_NONE_MATCH, &v.etag, Compare::Weak) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (date(headers, IF_MODIFIED_SINCE), seconds(v)) {
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// `If-Range`: the range applies only if the client's copy is exactly this version. ETags are
/// compared strongly; a date must equal Last-Modified.
pub(crate) fn if_range_holds(headers: &HeaderMap, v: &Validators) -> bool {
    let Some(value) = headers.get(IF_RANGE).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return tags_equal(value, &v.etag, Compare::Strong);
    }
    match (httpdate::parse_http_date(value).ok(), seconds(v)) {
        (Some(date), Some(modified)) => unix_seconds(date) == Some(modified),
        _ => false,
    }
}

#[derive(Clone, Copy)]
enum Compare {
    Strong,
    Weak,
}

/// Whether any entry of a (possibly repeated) ETag list header matches; `*` matches any
/// existing representation.
fn etag_list_matches(headers: &HeaderMap, name: HeaderName, etag: &str, compare: Compare) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tags_equal(tag, etag, compare))
}

fn tags_equal(a: &str, b: &str, compare: Compare) -> bool {
    let weak_a = a.strip_prefix("W/");
    let weak_b = b.strip_prefix("W/");
    match compare {
        Compare::Strong => weak_a.is_none() && weak_b.is_none() && a == b,
        Compare::Weak => weak_a.unwrap_or(a) == weak_b.unwrap_or(b),
    }
}

fn date(headers: &HeaderMap, name: HeaderName) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    unix_seconds(httpdate::parse_http_date(value).ok()?)
}

/// Last-Modified at the one-second precision HTTP dates have.
fn seconds(v: &Validators) -> Option<u64> {
    unix_seconds(v.last_modified?)
}

fn unix_seconds(time: SystemTime) -> Option<u64> {
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// How to answer a `Range` header for a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// No usable range (absent, malformed, another unit, or several ranges): send it all, 200.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses a single-range `bytes=` header. Several ranges get the whole file, which RFC 9110
/// allows and which spares building multipart bodies nobody relies on.
pub(crate) fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &value[6..])
    else {
        return RangeAnswer::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-n`: the last n bytes.
        return match number(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return RangeAnswer::Full;
    };
    let end = match last {
        "" => u64::MAX,
        last => match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeAnswer::Full,
        },
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        start,
        end: end.min(len - 1),
    }
}

/// Plain decimal digits only (`str::parse` would also take a leading `+`).
fn number(text: &str) -> Option<u64> {
    match !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().ok(),
        false => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-3", 10), Partial { start: 0, end: 3 });
        assert_eq!(parse_range("bytes=4-", 10), Partial { start: 4, end: 9 });
        assert_eq!(parse_range("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(parse_range("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=5-99", 10), Partial { start: 5, end: 9 });
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Full);
        assert_eq!(parse_range("bytes=5-2", 10), Full);
        assert_eq!(parse_range("bytes=+1-2", 10), Full);
        assert_eq!(parse_range("items=0-1", 10), Full);
    }

    #[test]
    fn tag_comparison() {
        assert!(tags_equal("W/\"a\"", "\"a\"", Compare::Weak));
        assert!(!tags_equal("W/\"a\"", "\"a\"", Compare::Strong));
        assert!(tags_equal("\"a\"", "\"a\"", Compare::Strong));
    }
}
