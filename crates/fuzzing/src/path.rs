//! The request path's normalisation (crates/gateway/src/path.rs), which every route, key and
//! forwarded target reads.

use valet_gateway::path::normalise;

/// Input: a request path as sent. Whatever comes back must be a path with one meaning: no dot
/// segment left (plain or `%2e`), no escape of an unreserved character that a backend would
/// decode into one, no repeated slash (that a backend would merge), a valid origin-form target,
/// and normalising it again changes nothing.
pub fn path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let normalised = match normalise(path) {
        Err(_) => return,
        Ok(normalised) => normalised,
    };
    if let Some(normal) = &normalised {
        assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
        assert!(
            http::uri::PathAndQuery::try_from(normal.as_str()).is_ok()
                || http::uri::PathAndQuery::try_from(path).is_err(),
            "{path:?} -> {normal:?} is no valid target"
        );
        assert_eq!(normalise(normal), Ok(None), "{path:?} -> {normal:?}");
    }
    let normal = normalised.as_deref().unwrap_or(path);
    if !normal.starts_with('/') {
        return;
    }
    assert!(
        !normal.contains("//"),
        "{path:?} -> {normal:?} keeps a repeated slash"
    );
    for segment in normal[1..].split('/') {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        assert!(
            decoded != "." && decoded != "..",
            "{path:?} -> {normal:?} keeps a dot segment"
        );
    }
}
