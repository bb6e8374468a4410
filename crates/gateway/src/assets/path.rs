//! Turning a request path into file-name segments that cannot leave the assets folder.
//!
//! This is the first of two walls (the second is the canonical-path check in `lookup`): every
//! segment is percent-decoded exactly once and then judged as a plain file name. Anything that a
//! file system, a second decoder or another platform could read as "go elsewhere" is refused here,
//! so the caller never joins a hostile segment onto the root.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Longer request paths are refused outright; no real asset path comes near it, and it bounds the
/// work a hostile path can cause (e.g. the 404.html walk).
const MAX_PATH_BYTES: usize = 4096;

/// The one dot-folder that is served: RFC 8615 well-known URIs (ACME challenges, security.txt).
const WELL_KNOWN: &str = ".well-known";

/// A request path that is safe to join onto the assets root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPath {
    /// Decoded, checked segments; empty segments (`//`) are dropped.
    pub segments: Vec<String>,
    /// The path ended in `/` (or was `/`): it names a folder.
    pub trailing_slash: bool,
}

impl RequestPath {
    /// The last segment when the path names a file, not a folder.
    pub fn file_name(&self) -> Option<&str> {
        match self.trailing_slash {
            true => None,
            false => self.segments.last().map(String::as_str),
        }
    }

    /// Whether the path names a file with an extension, like `/app.js` (dotfiles never get here).
    pub fn has_extension(&self) -> bool {
        self.file_name().is_some_and(|name| name.contains('.'))
    }
}

/// Parses the path of a request URI; `None` means "refuse" (the caller answers 404).
pub(crate) fn parse(raw: &str) -> Option<RequestPath> {
    if !raw.starts_with('/') || raw.len() > MAX_PATH_BYTES {
        return None;
    }
    let segments = raw
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(decode_segment)
        .collect::<Option<Vec<_>>>()?;
    Some(RequestPath {
        segments,
        trailing_slash: raw.ends_with('/'),
    })
}

/// Decodes one segment exactly once and checks that the result is an ordinary file name.
fn decode_segment(raw: &str) -> Option<String> {
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    is_plain_name(&decoded).then(|| decoded.into_owned())
}

fn is_plain_name(name: &str) -> bool {
    // A leading dot covers `.`, `..` and dotfiles such as `.env` or `.git`.
    let hidden = name.starts_with('.') && name != WELL_KNOWN;
    // `/` can only appear here as `%2f`; `\` is a separator on Windows and in some decoders.
    let separator_or_control = name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control());
    !hidden && !separator_or_control && !still_encoded(name)
}

/// True when a decoded name still holds `%XX`: the request was encoded twice (`%252e`). We never
/// decode again, but a name like that exists only to fool some other layer, so it is refused.
fn still_encoded(name: &str) -> bool {
    name.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Characters escaped when a path is written back into a `Location` header.
const LOCATION_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The folder form (`/a/b/`) of a path, re-encoded from its checked segments. Building it from
/// segments rather than echoing the raw path means it can never start with `//` (an open redirect
/// to another host).
pub(crate) fn folder_location(path: &RequestPath) -> String {
    let mut location = String::from("/");
    for segment in &path.segments {
        location.extend(utf8_percent_encode(segment, LOCATION_ESCAPES));
        location.push('/');
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        let path = parse("/a//b%20c/d.js").unwrap();
        assert_eq!(path.segments, ["a", "b c", "d.js"]);
        assert!(!path.trailing_slash);
        assert!(path.has_extension());
        assert!(parse("/").unwrap().trailing_slash);
        assert!(parse("/100%.txt").is_some());
        assert!(parse("/.well-known/security.txt").is_some());
    }

    #[test]
    fn refuses_escapes() {
        for raw in [
            "/../x",
            "/a/../x",
            "/./x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/..%2fx",
            "/a%2fb",
            "/%252e%252e/x",
            "/a/..%5c..%5cx",
            "/a\\b",
            "/%00",
            "/.env",
            "/.git/config",
            "/%ff",
            "relative",
            "",
        ] {
            assert_eq!(parse(raw), None, "{raw}");
        }
    }

    #[test]
    fn location_is_reencoded() {
        let path = parse("/a%20b/c").unwrap();
        assert_eq!(folder_location(&path), "/a%20b/c/");
    }
}
