//! Deriving the instance key from a request. A rule whose value is missing answers 400: a
//! request without its header or cookie must never fall into a shared instance.

use crate::fields::{self, Fields};
use crate::routes::{KeyRule, Route};
use http::Uri;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

/// Why no key could be read.
#[derive(Debug, PartialEq, Eq)]
pub struct MissingKey(pub String);

/// The key for this request under `rule`. Borrowed from the request where possible.
pub fn derive<'r>(
    rule: &'r KeyRule,
    route: &Route,
    uri: &'r Uri,
    headers: &'r Fields,
) -> Result<Cow<'r, str>, MissingKey> {
    match rule {
        KeyRule::Fixed(key) => Ok(Cow::Borrowed(key)),
        KeyRule::Random(keys) => Ok(Cow::Borrowed(&keys[fastrand::usize(..keys.len())])),
        KeyRule::Path(n) => {
            let rest = route.rest(uri.path());
            let segment = rest.split('/').filter(|s| !s.is_empty()).nth(n - 1);
            let segment =
                segment.ok_or_else(|| MissingKey(format!("path segment {n} is missing")))?;
            decode(segment).ok_or_else(|| MissingKey(format!("path segment {n} is not UTF-8")))
        }
        KeyRule::Header(name) => {
            let value = headers
                .get(name)
                .ok_or_else(|| MissingKey(format!("header {name} is missing")))?;
            let value = fields::text(value)
                .ok_or_else(|| MissingKey(format!("header {name} is not text")))?;
            Ok(Cow::Borrowed(value.trim()))
        }
        KeyRule::Query(name) => {
            let query = uri.query().unwrap_or("");
            let raw = query
                .split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .find(|(k, _)| decode(k).as_deref() == Some(&**name))
                .map(|(_, v)| v)
                .ok_or_else(|| MissingKey(format!("query parameter {name} is missing")))?;
            let plus_as_space = raw.replace('+', " ");
            decode(&plus_as_space)
                .map(|v| Cow::Owned(v.into_owned()))
                .ok_or_else(|| MissingKey(format!("query parameter {name} is not UTF-8")))
        }
        KeyRule::Cookie(name) => headers
            .get_all(&http::header::COOKIE)
            .filter_map(fields::text)
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == &**name)
            .map(|(_, v)| Cow::Borrowed(v.trim_matches('"')))
            .ok_or_else(|| MissingKey(format!("cookie {name} is missing"))),
    }
}

fn decode(s: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(s).decode_utf8().ok()
}
