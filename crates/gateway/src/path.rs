//! The one reading of a request's path that every later step uses: the route match, `path:<n>`
//! keys, `strip_prefix`, assets and the target the instance gets.
//!
//! A backend resolves `..` and decodes `%2e` itself; if valet routed on the raw path, then
//! `/public/../private/x` would be checked against `/public/*`'s rules and served as
//! `/private/x`. So the path is normalised first (RFC 3986 6.2.2: percent-encoded unreserved
//! characters decoded, then 5.2.4 dot-segment removal) and only the normalised path is used and
//! forwarded. What cannot be normalised into one meaning is refused: an encoded slash or
//! backslash (`%2f`, `%5c`, `\`) next to a dot segment (`..%2f`: some backends split there,
//! some do not), a dot segment with a `;` parameter (`..;`, which servlet containers read as
//! `..`), and a `%` that starts no valid escape (decoding around it could form a new one).
//!
//! Repeated slashes are merged (`//private/x` is `/private/x`): many backends and frameworks
//! merge them, so a path valet routed as `//private/x` (the catch-all, no JWT) would be served
//! as `/private/x`. Merged before dot segments are removed, as nginx does: `/a//../b` is `/b`.
//!
//! Most paths hold none of `.`, `%`, `\` and `//`, and cost one scan of their bytes; a path with
//! a dot or escape that changes nothing (`/app.js`) costs a second scan and no allocation.

/// Why a path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

/// The normalised form of `path`, or `None` when it is normalised already.
pub fn normalise(path: &str) -> Result<Option<String>, BadPath> {
    let bytes = path.as_bytes();
    // `*` (OPTIONS) and the empty path of an authority-only target are left as they are.
    if !bytes.starts_with(b"/") || !needs_work(bytes) {
        return Ok(None);
    }
    let mut changes = false;
    let mut segments = bytes[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        // An empty segment is a repeated slash, but for the last one (`/a/`: a trailing slash).
        changes |= segment.is_empty() && segments.peek().is_some();
        changes |= check_segment(segment)?;
    }
    if !changes {
        return Ok(None);
    }
    Ok(Some(remove_dot_segments(&decode_unreserved(bytes))))
}

/// Whether `path` holds a byte normalising may act on: `.`, `%`, `\` or a slash after a slash.
fn needs_work(path: &[u8]) -> bool {
    let mut slash = false;
    path.iter().any(|&b| {
        let repeated = slash && b == b'/';
        slash = b == b'/';
        repeated || matches!(b, b'.' | b'%' | b'\\')
    })
}

/// Checks one segment as sent; `true` if normalising changes it (it is a dot segment or holds
/// an escape of an unreserved character).
fn check_segment(segment: &[u8]) -> Result<bool, BadPath> {
    if !segment.iter().any(|&b| matches!(b, b'.' | b'%' | b'\\')) {
        return Ok(false);
    }
    if is_dot(segment) {
        return Ok(true);
    }
    let mut changes = false;
    // Pieces between what some backend may take for a path separator.
    let mut piece = 0;
    let mut i = 0;
    while i < segment.len() {
        let separator = match segment[i] {
            b'\\' => 1,
            b'%' => {
                let byte = escape(segment, i).ok_or(BadPath("bad_percent_encoding"))?;
                changes |= is_unreserved(byte);
                if byte == b'/' || byte == b'\\' {
                    3
                } else {
                    0
                }
            }
            _ => 0,
        };
        if separator > 0 {
            check_piece(&segment[piece..i])?;
            piece = i + separator;
            i = piece;
        } else {
            i += 1;
        }
    }
    check_piece(&segment[piece..])?;
    Ok(changes)
}

/// A piece of a segment that is not the whole segment may not be a dot segment, with or
/// without a `;` parameter after it.
fn check_piece(piece: &[u8]) -> Result<(), BadPath> {
    let end = piece.iter().position(|&b| b == b';').unwrap_or(piece.len());
    if is_dot(&piece[..end]) {
        return Err(BadPath("ambiguous_dot_segment"));
    }
    Ok(())
}

/// Whether `s` is `.` or `..`, each dot possibly written `%2e`.
fn is_dot(s: &[u8]) -> bool {
    let mut dots = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'.' {
            i += 1;
        } else if s[i] == b'%' && escape(s, i) == Some(b'.') {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    (1..=2).contains(&dots)
}

/// The byte escaped at `s[at]` (which is `%`), if two hex digits follow.
fn escape(s: &[u8], at: usize) -> Option<u8> {
    let hex = s.get(at + 1..at + 3)?;
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(hex[0])? * 16 + digit(hex[1])?) as u8)
}

/// RFC 3986 2.3: escaping these never changes a URI's meaning.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The path with escapes of unreserved characters decoded (every `%` starts a valid escape:
/// checked before). The other escapes stay as sent: decoding `%2f` would make a separator.
fn decode_unreserved(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i] == b'%').then(|| escape(bytes, i)).flatten() {
            Some(byte) if is_unreserved(byte) => {
                out.push(byte as char);
                i += 3;
            }
            _ => {
                // Copy up to the next escape at once: the path is UTF-8 and `%` is ASCII, so
                // the run ends on a character boundary.
                let run = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'%')
                    .map_or(bytes.len(), |n| i + 1 + n);
                out.push_str(std::str::from_utf8(&bytes[i..run]).unwrap_or_default());
                i = run;
            }
        }
    }
    out
}

/// How a lenient backend may read a normalised path, when that differs from the path itself:
/// `%2F`, `%5C` and `\` taken for `/`, a `;` parameter dropped from its segment, repeated
/// slashes merged and ASCII letters in lower case. Only compared with the routes' prefixes
/// (see `RouteTable::route`); never forwarded.
pub fn lenient_reading(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b.is_ascii_uppercase() || matches!(b, b'%' | b'\\' | b';'))
    {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_parameter = false;
    let mut i = 0;
    while i < bytes.len() {
        let (byte, width) = match bytes[i] {
            b'%' if matches!(escape(bytes, i), Some(b'/' | b'\\')) => (b'/', 3),
            b'\\' => (b'/', 1),
            b => (b.to_ascii_lowercase(), 1),
        };
        i += width;
        match byte {
            b'/' => {
                in_parameter = false;
                if out.last() == Some(&b'/') {
                    continue;
                }
            }
            b';' => in_parameter = true,
            _ => {}
        }
        if !in_parameter {
            out.push(byte);
        }
    }
    // Only ASCII bytes were changed or dropped whole, so what is left is still UTF-8.
    String::from_utf8(out).ok().filter(|reading| reading != path)
}

/// RFC 3986 5.2.4 on a path that starts with `/`, its repeated slashes merged first: empty
/// segments (but for a trailing one) and `.` segments go, `..` takes the segment before it
/// along (never past the root), and a path that ended in a dot segment ends in `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" if !last => continue,
            "." => {}
            ".." => {
                kept.pop();
            }
            _ => {
                kept.push(segment);
                continue;
            }
        }
        if last {
            kept.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> String {
        match normalise(path) {
            Ok(Some(p)) => p,
            Ok(None) => path.to_string(),
            Err(e) => panic!("{path} refused: {e:?}"),
        }
    }

    #[test]
    fn a_lenient_reading_takes_encoded_separators_case_and_parameters_as_backends_do() {
        for (path, reading) in [
            ("/private%2Fx", Some("/private/x")),
            ("/private%2fx", Some("/private/x")),
            ("/%2fprivate/x", Some("/private/x")),
            ("/private%5Cx", Some("/private/x")),
            ("/private\\x", Some("/private/x")),
            ("/PRIVATE/x", Some("/private/x")),
            ("/Private/X", Some("/private/x")),
            ("/private;a=b/x", Some("/private/x")),
            ("/private;jsessionid=1", Some("/private")),
            ("/caf\u{e9}/X", Some("/caf\u{e9}/x")),
            ("/a%20b", None),
            ("/private/x", None),
            ("/api/x", None),
        ] {
            assert_eq!(lenient_reading(path).as_deref(), reading, "{path}");
        }
    }

    #[test]
    fn plain_paths_are_left_alone_without_work() {
        for path in [
            "/",
            "/api/x",
            "/api/x/",
            "/app.js",
            "/a/.well-known/x",
            "/a%20b",
            "/a%2fb",
            "*",
        ] {
            assert_eq!(normalise(path), Ok(None), "{path}");
        }
    }

    #[test]
    fn dot_segments_are_removed_plain_or_escaped() {
        for (path, want) in [
            ("/public/../private/x", "/private/x"),
            ("/public/%2e%2e/private/x", "/private/x"),
            ("/public/%2E./private/x", "/private/x"),
            ("/public/.%2e/private/x", "/private/x"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/a//../b", "/b"),
            ("/a/%2e/b", "/a/b"),
            ("/%61pi/x", "/api/x"),
            ("/a%7e%5fb/%41", "/a~_b/A"),
            ("/caf\u{e9}/../x%20y", "/x%20y"),
            ("/a/...", "/a/..."),
        ] {
            assert_eq!(normal(path), want, "{path}");
        }
    }

    #[test]
    fn repeated_slashes_are_merged_a_trailing_one_kept() {
        for (path, want) in [
            ("//private/x", "/private/x"),
            ("/private//x", "/private/x"),
            ("///private///x///", "/private/x/"),
            ("//", "/"),
            ("/a//", "/a/"),
            ("//./private/x", "/private/x"),
            ("/public//..//private/x", "/private/x"),
            ("/a/%2e//b", "/a/b"),
        ] {
            assert_eq!(normal(path), want, "{path}");
        }
        // A slash that is a character of its segment (`%2f`) is no separator to merge.
        assert_eq!(normalise("/a%2f%2fb"), Ok(None));
        assert_eq!(normalise("/a/"), Ok(None));
    }

    #[test]
    fn encoded_separators_next_to_dot_segments_are_refused() {
        for path in [
            "/public/..%2fprivate/x",
            "/public/..%2Fprivate",
            "/public/%2e%2e%2fprivate",
            "/public/..%5cprivate",
            "/public/..\\private",
            "/public/x%2f..",
            "/public/x%5c.%5cy",
            "/public/..;/private",
            "/public/.;x/private",
            "/public/%2e%2e;a=b/private",
            "/a%zz",
            "/a%2",
            "/%%32%65%%32%65/x",
        ] {
            assert!(
                normalise(path).is_err(),
                "{path} passed as {:?}",
                normalise(path)
            );
        }
        // An encoded slash away from any dot segment is only a character of its segment.
        assert_eq!(normalise("/a%2fb/c.d"), Ok(None));
        assert_eq!(normal("/a%2fb/../c"), "/c");
    }

    #[test]
    fn random_paths_of_the_risky_bytes_come_out_with_one_meaning() {
        // A cheap stand-in for the fuzz target (fuzz/fuzz_targets/path.rs) under plain `cargo
        // test`: paths made of the bytes the rules are about.
        const BYTES: &[u8] = b"/.%2eEfF5cC\\;a7~";
        let mut rng = fastrand::Rng::with_seed(14);
        for _ in 0..50_000 {
            let len = rng.usize(1..24);
            let mut path = String::from("/");
            path.extend((0..len).map(|_| BYTES[rng.usize(..BYTES.len())] as char));
            let Ok(normal) = normalise(&path) else {
                continue;
            };
            let normal = normal.unwrap_or_else(|| path.clone());
            assert!(normal.starts_with('/'), "{path} -> {normal}");
            assert!(!normal.contains("//"), "{path} -> {normal}");
            assert_eq!(normalise(&normal), Ok(None), "{path} -> {normal}");
            for segment in normal[1..].split('/') {
                assert!(!is_dot(segment.as_bytes()), "{path} -> {normal}");
            }
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in [
            "/a/%2e%2e/b/./c/..",
            "/%61/%2e",
            "/x/../../y/%7e",
            "//a//..//b//",
        ] {
            let once = normal(path);
            assert_eq!(normalise(&once), Ok(None), "{path} -> {once}");
        }
    }
}
