//! What to send: content type, cache policy and content coding, from the file name and the
//! request's `Accept-Encoding`.

use http::{header::ACCEPT_ENCODING, HeaderMap, HeaderValue};
use mime_guess::mime;

/// Smaller files are sent as they are: the compressed frame would save next to nothing.
pub(crate) const MIN_COMPRESS_SIZE: u64 = 1024;

/// A content coding valet can produce on the fly or find precompressed next to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// Extension of a precompressed sibling (`app.js.br`).
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gz",
        }
    }
}

/// The codings a client accepts, best first (at most two, so no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted([Option<Encoding>; 2]);

impl Accepted {
    /// Nothing but identity: used when a request asks for a byte range.
    pub fn identity_only() -> Self {
        Self::default()
    }

    pub fn iter(self) -> impl Iterator<Item = Encoding> {
        self.0.into_iter().flatten()
    }

    pub fn preferred(self) -> Option<Encoding> {
        self.0[0]
    }
}

/// Reads `Accept-Encoding`. A coding counts when its q-value is above zero, given by name or by
/// `*`; an explicit `br;q=0` beats `*`. On a tie brotli wins: it is smaller at the same speed.
pub(crate) fn accepted_encodings(headers: &HeaderMap) -> Accepted {
    let (mut br, mut gzip, mut star) = (None, None, None);
    let items = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts.find_map(q_value).unwrap_or(1.0);
        if name.eq_ignore_ascii_case("br") {
            br = Some(q);
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if name == "*" {
            star = Some(q);
        }
    }
    let br = br.or(star).unwrap_or(0.0);
    let gzip = gzip.or(star).unwrap_or(0.0);
    let mut ranked = [(br, Encoding::Brotli), (gzip, Encoding::Gzip)];
    // Stable sort keeps brotli first on equal weights.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pick = |(q, encoding): (f32, Encoding)| (q > 0.0).then_some(encoding);
    Accepted([pick(ranked[0]), pick(ranked[1])])
}

/// `q=0.5` -> 0.5. A malformed weight counts as 0: when unsure, send identity, which every
/// client understands.
fn q_value(param: &str) -> Option<f32> {
    let (key, value) = param.split_once('=')?;
    if !key.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let q = value.trim().parse::<f32>().unwrap_or(0.0);
    Some(if (0.0..=1.0).contains(&q) { q } else { 0.0 })
}

/// The media type of a file, by extension; unknown files are `application/octet-stream`.
pub(crate) fn media_type(name: &str) -> mime::Mime {
    mime_guess::from_path(name).first_or_octet_stream()
}

/// `Content-Type` value; textual types get `charset=utf-8` so browsers do not guess.
pub(crate) fn content_type(media: &mime::Mime) -> HeaderValue {
    let value = if is_textual(media) && media.get_param(mime::CHARSET).is_none() {
        format!("{}; charset=utf-8", media.essence_str())
    } else {
        media.to_string()
    };
    // A guessed media type is plain ASCII; fall back rather than fail on an odd table entry.
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn is_textual(media: &mime::Mime) -> bool {
    let subtype = media.subtype().as_str();
    media.type_() == mime::TEXT
        || matches!(
            subtype,
            "javascript" | "x-javascript" | "ecmascript" | "json" | "xml"
        )
        || matches!(media.suffix().map(|s| s.as_str()), Some("json" | "xml"))
}

/// Whether compressing this type pays off: text-like formats, wasm and a few uncompressed binary
/// formats. Images, video, archives and woff fonts are already compressed.
pub(crate) fn is_compressible(media: &mime::Mime) -> bool {
    is_textual(media)
        || matches!(
            media.essence_str(),
            "application/wasm"
                | "application/vnd.ms-fontobject"
                | "application/x-font-ttf"
                | "font/ttf"
                | "font/otf"
                | "font/collection"
                | "image/bmp"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
        )
}

/// `Cache-Control` for a file. Everything revalidates on every use (cheap with ETags, and it keeps
/// browsers from mixing old and new files after a deploy), except files whose name carries a
/// content hash: their content can never change under that name, so they are cached for a year.
pub(crate) fn cache_control(name: &str, media: &mime::Mime) -> HeaderValue {
    if media.essence_str() != "text/html" && is_fingerprinted(name) {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    } else {
        HeaderValue::from_static("public, max-age=0, must-revalidate")
    }
}

/// A name part of 8+ hex digits mixing digits and letters, as bundlers write content hashes
/// (`main.3f9a2c1b.js`, `chunk-0a1b2c3d4e.css`). Deliberately strict: a false positive would pin
/// a mutable file in caches for a year, a false negative only costs a revalidation.
fn is_fingerprinted(name: &str) -> bool {
    name.split(['.', '-', '_']).any(|part| {
        part.len() >= 8
            && part.chars().all(|c| c.is_ascii_hexdigit())
            && part.chars().any(|c| c.is_ascii_digit())
            && part.chars().any(|c| c.is_ascii_alphabetic())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(value: &str) -> Vec<Encoding> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        accepted_encodings(&headers).iter().collect()
    }

    #[test]
    fn parses_accept_encoding() {
        use Encoding::*;
        assert_eq!(accepted("gzip, deflate, br"), [Brotli, Gzip]);
        assert_eq!(accepted("gzip;q=1, br;q=0.5"), [Gzip, Brotli]);
        assert_eq!(accepted("br;q=0, gzip"), [Gzip]);
        assert_eq!(accepted("*;q=0.1, gzip;q=0"), [Brotli]);
        assert_eq!(accepted("identity"), []);
        assert_eq!(accepted("GZIP;Q=0.000"), []);
    }

    #[test]
    fn types_and_caching() {
        let js = media_type("app.js");
        assert_eq!(content_type(&js), "text/javascript; charset=utf-8");
        assert_eq!(content_type(&media_type("a.png")), "image/png");
        assert!(is_compressible(&media_type("a.svg")));
        assert!(!is_compressible(&media_type("a.woff2")));
        assert!(is_fingerprinted("main.3f9a2c1b.js"));
        assert!(!is_fingerprinted("background.js"));
        assert!(!is_fingerprinted("20240101.js"));
    }
}
