//! Static assets: the front end served for requests no route claims (Cloudflare Workers'
//! `[assets]`), with validators, ranges and compression.
//!
//! Behaviour, in the order a request meets it:
//! - Only GET and HEAD; anything else is 405 with `Allow: GET, HEAD`. HEAD sends GET's headers.
//! - The path is decoded once and refused (plain 404, whatever the not-found policy) if any
//!   segment is `.`/`..`, a dotfile (`.well-known` excepted), or holds `/`, `\`, NUL, a control
//!   character or a leftover `%XX` (double encoding). See `path.rs`.
//! - Candidates: `/` and `/dir/` -> `index.html`; `/name` -> `name`, then `name.html`; a folder
//!   `/dir` with an index.html -> 307 to `/dir/` (query kept), so its relative links resolve.
//! - Each candidate is canonicalized and must stay under the canonical root and outside
//!   dot-folders, so a symlink may point anywhere inside the root but not out of it.
//!   See `lookup.rs`.
//! - A missing file follows [`NotFound`].
//! - Representation: a precompressed `file.br`/`file.gz` sibling if the client accepts it, else
//!   brotli or gzip on the fly for compressible types of at least 1 KiB, else identity. A request
//!   with `Range` always gets identity, so ranges and codings never mix. See `respond.rs`.
//!
//! Response bodies never contain a file-system path; errors are short JSON.

mod conditional;
mod lookup;
mod negotiate;
mod path;
mod respond;
mod stream;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use http::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RANGE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

use crate::body::{self, Body};
use lookup::Lookup;
use respond::{Ask, Purpose};

/// What a request for a missing file gets (`not_found_handling`, Workers' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotFound {
    /// `"single-page-application"`: `/index.html` with status 200, so client-side routes load
    /// the app. A missing path whose last segment has an extension (`/app.js`) gets a 404
    /// instead, unless it is a browser navigation (`Sec-Fetch-Mode: navigate` or an `Accept`
    /// that asks for HTML): a script or image must not receive HTML with status 200.
    SinglePageApplication,
    /// `"404-page"`: the nearest `404.html` walking up from the requested folder, status 404.
    Page404,
    /// `"none"`: 404 with a short JSON body.
    #[default]
    None,
}

/// An unknown `not_found_handling` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownNotFound(pub String);

impl fmt::Display for UnknownNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown not_found_handling {:?}: ", self.0)?;
        f.write_str(r#"expected "single-page-application", "404-page" or "none""#)
    }
}

impl std::error::Error for UnknownNotFound {}

impl FromStr for NotFound {
    type Err = UnknownNotFound;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "single-page-application" => Ok(Self::SinglePageApplication),
            "404-page" => Ok(Self::Page404),
            "none" => Ok(Self::None),
            other => Err(UnknownNotFound(other.to_owned())),
        }
    }
}

/// The static file server. Cheap to share: the gateway holds it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Assets {
    /// Canonical root; every served file's canonical path starts with it.
    root: Arc<Path>,
    not_found: NotFound,
}

impl Assets {
    /// `root` is the assets directory, already resolved against the config folder. It is
    /// canonicalized once here and must be a directory.
    pub fn new(root: &Path, not_found_handling: NotFound) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("assets directory {} is not a directory", root.display()),
            ));
        }
        Ok(Self {
            root: root.into(),
            not_found: not_found_handling,
        })
    }

    /// Builds from `[assets]`, resolving `directory` against the config's folder.
    pub fn from_config(
        config: &valet_config::AssetsConfig,
        base_dir: &Path,
    ) -> std::io::Result<Self> {
        let not_found = config
            .not_found_handling
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Self::new(&base_dir.join(&config.directory), not_found)
    }

    /// The canonical directory files are served from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers one request. Never fails: every outcome is a response.
    pub async fn serve(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
        let head = *method == Method::HEAD;
        if !head && *method != Method::GET {
            return method_not_allowed();
        }
        let Some(path) = path::parse(uri.path()) else {
            return not_found(head);
        };
        let accepted = match headers.contains_key(RANGE) {
            true => negotiate::Accepted::identity_only(),
            false => negotiate::accepted_encodings(headers),
        };
        let request = lookup::Request {
            not_found: self.not_found,
            accepted,
            navigation: is_navigation(headers),
        };
        let root = Arc::clone(&self.root);
        let job = tokio::task::spawn_blocking(move || lookup::lookup(&root, &path, request));
        let found = match job.await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => return internal_error(&error),
            Err(error) => return internal_error(&error),
        };
        let ask = Ask {
            headers,
            head,
            accepted,
        };
        match found {
            Lookup::File(found) | Lookup::SpaIndex(found) => {
                respond::file(found, &ask, Purpose::Asset)
            }
            Lookup::NotFoundPage(found) => respond::file(found, &ask, Purpose::NotFoundPage),
            Lookup::Redirect(location) => redirect(location, uri.query()),
            Lookup::Missing => not_found(head),
        }
    }
}

/// A page load rather than a fetch of a script, style or image.
fn is_navigation(headers: &HeaderMap) -> bool {
    let has = |name: &str, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(needle))
    };
    has("sec-fetch-mode", "navigate") || has(ACCEPT.as_str(), "text/html")
}

fn redirect(mut location: String, query: Option<&str>) -> Response<Body> {
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    match HeaderValue::from_str(&location) {
        Ok(value) => response.headers_mut().insert(LOCATION, value),
        Err(_) => return not_found(false),
    };
    response
}

fn method_not_allowed() -> Response<Body> {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "static assets answer GET and HEAD only",
        false,
    );
    let allow = HeaderValue::from_static("GET, HEAD");
    response.headers_mut().insert(ALLOW, allow);
    response
}

fn not_found(head: bool) -> Response<Body> {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no asset at this path",
        head,
    )
}

/// A 500 whose body says nothing about the cause; the cause (which may name a path) goes to the
/// log only.
fn internal_error(error: &dyn std::error::Error) -> Response<Body> {
    tracing::warn!(%error, "static asset could not be served");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the asset could not be read",
        false,
    )
}

fn json_error(status: StatusCode, error: &str, message: &str, head: bool) -> Response<Body> {
    let text = serde_json::json!({ "error": error, "message": message }).to_string();
    let mut response = Response::new(if head {
        body::empty()
    } else {
        body::full(text)
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
