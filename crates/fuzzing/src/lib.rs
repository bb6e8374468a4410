//! The fuzzed logic, one function per cargo-fuzz target in `fuzz/fuzz_targets/`. Each takes
//! arbitrary bytes, must never panic, and asserts the invariants of the code it drives; the
//! test `tests/corpus.rs` replays the committed corpus and every crash found through the same
//! functions under plain `cargo test`.

#![forbid(unsafe_code)]

mod archive;
mod chunked_body;
mod config;
mod headers;
mod path;
mod request_head;
mod response_head;
mod routes;
mod wire;

pub use archive::archive;
pub use chunked_body::chunked_body;
pub use config::config;
pub use headers::headers;
pub use path::path;
pub use request_head::request_head;
pub use response_head::response_head;
pub use routes::routes_and_keys;

/// The input split at `\n` (a trailing `\r` dropped), for the line-based targets.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// A header map from `name: value` lines; lines that are no valid header are skipped.
fn header_map<'a>(lines: impl Iterator<Item = &'a [u8]>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}
