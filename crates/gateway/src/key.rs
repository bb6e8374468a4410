//! Deriving the instance key from a request. A rule whose value is missing answers 400: a
//! request without its header or cookie must never fall into a shared instance.

use crate::fields::{self, Fields};
use crate::routes::{KeyRule, Route};
use http::Uri;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

/// Why no key could be read: a message, and the error code of the 400 answer.
#[derive(Debug, PartialEq, Eq)]
pub struct MissingKey(pub String, pub &'static str);

impl MissingKey {
    fn missing(what: String) -> Self {
        Self(format!("{what} is missing"), "missing_instance_key")
    }

    fn malformed(what: String, how: &str) -> Self {
        Self(format!("{what} is {how}"), "missing_instance_key")
    }

    /// The key's source was sent more than once. valet would key on one value and the instance
    /// might read another (frameworks differ: first, last, a list), so one client could be
    /// served by another key's instance while that instance trusts the other value.
    fn ambiguous(what: String) -> Self {
        Self(
            format!("{what} is sent more than once"),
            "ambiguous_instance_key",
        )
    }
}

/// The one item of `items`, if there is exactly one.
fn one<T>(mut items: impl Iterator<Item = T>, what: impl Fn() -> String) -> Result<T, MissingKey> {
    let first = items.next().ok_or_else(|| MissingKey::missing(what()))?;
    match items.next() {
        Some(_) => Err(MissingKey::ambiguous(what())),
        None => Ok(first),
    }
}

/// The field a rule reads its key from (a lower-case name), if it reads one: the request's
/// `Connection` must not name it, or the instance would not get the value valet keyed on (see
/// [`crate::forward::connection_names_own`]).
pub fn source(rule: &KeyRule) -> Option<&[u8]> {
    match rule {
        KeyRule::Header(name) => Some(name.as_str().as_bytes()),
        KeyRule::Cookie(_) => Some(http::header::COOKIE.as_str().as_bytes()),
        KeyRule::Fixed(_) | KeyRule::Random(_) | KeyRule::Path(_) | KeyRule::Query(_) => None,
    }
}

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
            let what = || format!("path segment {n}");
            let segment = segment.ok_or_else(|| MissingKey::missing(what()))?;
            decode(segment).ok_or_else(|| MissingKey::malformed(what(), "not UTF-8"))
        }
        KeyRule::Header(name) => {
            // A `_` lookalike counts as the same field: CGI-style backends read both as one.
            let wanted = name.as_str().as_bytes();
            let values = headers
                .iter()
                .filter(|(n, _)| fields::same_field(n, wanted))
                .map(|(_, v)| v);
            let what = || format!("header {name}");
            let value = one(values, what)?;
            let value =
                fields::text(value).ok_or_else(|| MissingKey::malformed(what(), "not text"))?;
            Ok(Cow::Borrowed(value.trim()))
        }
        KeyRule::Query(name) => {
            let query = uri.query().unwrap_or("");
            let values = query
                .split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .filter(|(k, _)| decode(k).as_deref() == Some(&**name))
                .map(|(_, v)| v);
            let what = || format!("query parameter {name}");
            let raw = one(values, what)?;
            let plus_as_space = raw.replace('+', " ");
            decode(&plus_as_space)
                .map(|v| Cow::Owned(v.into_owned()))
                .ok_or_else(|| MissingKey::malformed(what(), "not UTF-8"))
        }
        KeyRule::Cookie(name) => {
            let values = headers
                .get_all(&http::header::COOKIE)
                .filter_map(fields::text)
                .flat_map(|h| h.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .filter(|(k, _)| *k == &**name)
                .map(|(_, v)| Cow::Borrowed(v.trim_matches('"')));
            one(values, || format!("cookie {name}"))
        }
    }
}

fn decode(s: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(s).decode_utf8().ok()
}
