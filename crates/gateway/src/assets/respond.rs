//! Turning a found file into a response: pick the representation, answer conditionals and
//! ranges, set the headers.

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, LAST_MODIFIED, RANGE, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::conditional::{self, Precondition, RangeAnswer, Validators};
use super::lookup::{Found, OpenFile};
use super::negotiate::{self, Accepted, Encoding, MIN_COMPRESS_SIZE};
use super::{internal_error, stream};
use crate::body::{self, Body};

/// Why a file is sent, which decides its status and whether conditionals and ranges apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The asset itself (or the SPA index.html standing in for it): 200, conditionals, ranges.
    Asset,
    /// A 404.html: always a full 404 body, since "not modified" or a slice of an error page
    /// would make no sense to a client.
    NotFoundPage,
}

/// The request facts a response depends on.
pub(crate) struct Ask<'a> {
    pub headers: &'a HeaderMap,
    pub head: bool,
    pub accepted: Accepted,
}

/// The bytes that will be sent for a file.
enum Representation {
    Identity(OpenFile),
    Precompressed(Encoding, OpenFile),
    OnTheFly(Encoding, OpenFile),
}

impl Representation {
    fn choose(found: Found, compressible: bool, accepted: Accepted) -> Self {
        if let Some((encoding, file)) = found.precompressed {
            return Self::Precompressed(encoding, file);
        }
        match accepted.preferred() {
            Some(encoding) if compressible && found.identity.len >= MIN_COMPRESS_SIZE => {
                Self::OnTheFly(encoding, found.identity)
            }
            _ => Self::Identity(found.identity),
        }
    }

    /// On-the-fly output depends on the encoder's version and level, so its ETag is weak; the
    /// other two are exact bytes on disk and get strong ones. Codings get their own tags so a
    /// cache never answers one representation's validator with another's body.
    fn validators(&self) -> Validators {
        let (etag, file) = match self {
            Self::Identity(file) => (format!("\"{}\"", core(file)), file),
            Self::Precompressed(enc, file) => {
                (format!("\"{}-{}\"", core(file), enc.extension()), file)
            }
            Self::OnTheFly(enc, file) => {
                (format!("W/\"{}-{}\"", core(file), enc.extension()), file)
            }
        };
        Validators {
            etag,
            last_modified: file.modified,
        }
    }
}

fn core(file: &OpenFile) -> String {
    conditional::etag_core(file.len, file.modified)
}

pub(crate) fn file(found: Found, ask: &Ask, purpose: Purpose) -> Response<Body> {
    let media = negotiate::media_type(&found.name);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, negotiate::content_type(&media));
    headers.insert(CACHE_CONTROL, negotiate::cache_control(&found.name, &media));
    // Always sent: whether a .br/.gz sibling exists is not known without looking, and a shared
    // cache must not hand a compressed body to a client that cannot read it.
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));

    let rep = Representation::choose(found, negotiate::is_compressible(&media), ask.accepted);
    let validators = rep.validators();
    if let Ok(etag) = HeaderValue::from_str(&validators.etag) {
        headers.insert(ETAG, etag);
    }
    if let Some(modified) = validators.last_modified {
        insert_str(
            &mut headers,
            LAST_MODIFIED,
            &httpdate::fmt_http_date(modified),
        );
    }

    let mut status = StatusCode::OK;
    if purpose == Purpose::NotFoundPage {
        status = StatusCode::NOT_FOUND;
    } else {
        match conditional::evaluate(ask.headers, &validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => return bodiless(StatusCode::NOT_MODIFIED, headers),
            Precondition::Failed => return bodiless(StatusCode::PRECONDITION_FAILED, headers),
        }
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    let body = match rep {
        Representation::Identity(file) if purpose == Purpose::Asset => {
            return identity(file, ask, &validators, headers);
        }
        Representation::Identity(file) => whole(file, &mut headers),
        Representation::Precompressed(encoding, file) => {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
            whole(file, &mut headers)
        }
        Representation::OnTheFly(encoding, file) => {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
            Ok(stream::compressed(file.file, encoding))
        }
    };
    match body {
        Ok(body) => finish(status, headers, body, ask.head),
        Err(error) => internal_error(&error),
    }
}

/// An uncompressed asset: the one representation byte ranges apply to.
fn identity(
    file: OpenFile,
    ask: &Ask,
    validators: &Validators,
    mut headers: HeaderMap,
) -> Response<Body> {
    let range = ask
        .headers
        .get(RANGE)
        .and_then(|value| value.to_str().ok())
        .filter(|_| conditional::if_range_holds(ask.headers, validators))
        .map_or(RangeAnswer::Full, |value| {
            conditional::parse_range(value, file.len)
        });
    let (status, body) = match range {
        RangeAnswer::Full => (StatusCode::OK, whole(file, &mut headers)),
        RangeAnswer::Partial { start, end } => {
            let len = end - start + 1;
            let content_range = format!("bytes {start}-{end}/{}", file.len);
            insert_str(&mut headers, CONTENT_RANGE, &content_range);
            headers.insert(CONTENT_LENGTH, len.into());
            let body = stream::file_range(file.file, start, len);
            (StatusCode::PARTIAL_CONTENT, body)
        }
        RangeAnswer::Unsatisfiable => {
            insert_str(
                &mut headers,
                CONTENT_RANGE,
                &format!("bytes */{}", file.len),
            );
            headers.remove(CONTENT_TYPE);
            return finish(
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body::empty(),
                true,
            );
        }
    };
    match body {
        Ok(body) => finish(status, headers, body, ask.head),
        Err(error) => internal_error(&error),
    }
}

/// The whole file, with its length.
fn whole(file: OpenFile, headers: &mut HeaderMap) -> std::io::Result<Body> {
    headers.insert(CONTENT_LENGTH, file.len.into());
    stream::file_range(file.file, 0, file.len)
}

/// 304 and 412 carry the validators and caching headers but no content headers.
fn bodiless(status: StatusCode, mut headers: HeaderMap) -> Response<Body> {
    headers.remove(CONTENT_TYPE);
    headers.remove(X_CONTENT_TYPE_OPTIONS);
    finish(status, headers, body::empty(), true)
}

/// HEAD keeps every header (Content-Length included) and drops the body; the file handle is
/// closed with it.
fn finish(status: StatusCode, headers: HeaderMap, body: Body, head: bool) -> Response<Body> {
    let mut response = Response::new(if head { body::empty() } else { body });
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn insert_str(headers: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
