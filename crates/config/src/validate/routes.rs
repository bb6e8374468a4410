//! Checks of each `[[routes]]` entry: its pattern, where it goes, and how it picks an instance.

use super::{listing, Checks};
use crate::keypath::KeyPath;
use crate::model::RouteConfig;
use crate::rule::InstanceRule;
use std::collections::BTreeMap;

impl Checks<'_> {
    pub(super) fn routes(&mut self) {
        // (pattern, host) -> first index, so a duplicate points at the route it repeats.
        let mut seen: BTreeMap<(&str, Option<String>), usize> = BTreeMap::new();
        for (i, route) in self.config.routes.iter().enumerate() {
            let at = KeyPath::top("routes").index(i);
            self.pattern(&at, route);
            self.target(&at, route);
            if let Err(reason) = InstanceRule::parse(&route.instance) {
                self.fail(at.key("instance"), reason);
            }
            self.route_guards(&at, route);
            // Hosts compare without case, as HTTP does.
            let host = route.host.as_ref().map(|h| h.to_ascii_lowercase());
            match seen.get(&(route.pattern.as_str(), host.clone())) {
                Some(first) => self.fail(
                    at.key("pattern"),
                    format!("duplicate route: routes[{first}] has the same pattern and host"),
                ),
                None => {
                    seen.insert((&route.pattern, host), i);
                }
            }
        }
    }

    fn pattern(&mut self, at: &KeyPath, route: &RouteConfig) {
        let pattern = &route.pattern;
        let segments: Vec<&str> = pattern.split('/').collect();
        let star_ok = segments
            .iter()
            .enumerate()
            .all(|(n, s)| !s.contains('*') || (*s == "*" && n == segments.len() - 1));
        self.require(
            pattern.starts_with('/') && star_ok,
            at.key("pattern"),
            || {
                format!(
                "pattern {pattern:?} must start with \"/\" and may hold \"*\" only as its last \
                 segment, like \"/api/*\""
            )
            },
        );
        if let Some(host) = &route.host {
            self.require(!host.trim().is_empty(), at.key("host"), || {
                "host is empty".into()
            });
        }
        let Some(strip) = &route.strip_prefix else {
            return;
        };
        let stars: Vec<&str> = strip.split('/').filter(|s| s.contains('*')).collect();
        let ok = strip.starts_with('/') && stars.len() <= 1 && stars.iter().all(|s| *s == "*");
        self.require(ok, at.key("strip_prefix"), || {
            format!(
                "strip_prefix {strip:?} must start with \"/\" and may hold one \"*\" for one \
                 whole segment, like \"/containers/*\""
            )
        });
        if ok && star_ok && !could_strip(pattern, strip) {
            self.fail(
                at.key("strip_prefix"),
                format!("strip_prefix {strip:?} never matches a path of pattern {pattern:?}"),
            );
        }
    }

    /// The class and port a route goes to, or the assets it serves.
    fn target(&mut self, at: &KeyPath, route: &RouteConfig) {
        let Some(name) = &route.container else {
            let has_assets = self.config.assets.is_some() || self.broken.assets;
            self.require(has_assets, at.clone(), || {
                "a route without container serves [assets], but there is no [assets] section".into()
            });
            return;
        };
        let Some(class) = self.config.class(name) else {
            if !self.broken.classes.contains(name) {
                let defined = self.config.containers.iter().map(|c| c.class_name.as_str());
                let defined = listing(defined);
                self.fail(
                    at.key("container"),
                    format!("unknown container class {name:?} (defined: {defined})"),
                );
            }
            return;
        };
        if let Some(port) = &route.port {
            self.require(class.ports.contains_key(port), at.key("port"), || {
                let defined = listing(class.ports.keys().map(String::as_str));
                format!("class {name:?} has no port {port:?} (defined: {defined})")
            });
        }
    }

    fn route_guards(&mut self, at: &KeyPath, route: &RouteConfig) {
        match route.auth.as_deref() {
            None => {}
            Some("jwt") => {
                // An [auth] without keys is reported on [auth] itself, once.
                let has_auth = self.config.auth.is_some() || self.broken.auth;
                self.require(has_auth, at.key("auth"), || {
                    "auth = \"jwt\" needs an [auth] section with jwt_secret or jwt_public_keys"
                        .into()
                });
            }
            Some(other) => {
                self.fail(
                    at.key("auth"),
                    format!("unknown auth {other:?} (only \"jwt\")"),
                );
            }
        }
        for (i, protocol) in route.upgrades.iter().enumerate() {
            self.require(is_protocol(protocol), at.key("upgrades").index(i), || {
                format!(
                    "upgrade {protocol:?} is no protocol name: write a token, optionally with \
                     \"/version\", like \"websocket\" or \"h2c\""
                )
            });
        }
        let Some(limit) = &route.rate_limit else {
            return;
        };
        let here = at.key("rate_limit");
        self.require(limit.requests >= 1, here.key("requests"), || {
            "rate_limit requests must be at least 1".into()
        });
        self.duration(here.key("per"), &limit.per);
        if limit.per.parsed.as_ref().is_ok_and(|per| per.is_zero()) {
            self.fail(here.key("per"), "rate_limit per must be longer than 0");
        }
        let by = limit.by.as_str();
        self.require(by == "ip" || by == "route", here.key("by"), || {
            format!("rate_limit by {by:?} is unknown (use \"ip\" or \"route\")")
        });
    }
}

/// RFC 9110 7.8: `protocol-name ["/" protocol-version]`, both tokens, as `Upgrade` lists them.
fn is_protocol(protocol: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match protocol.split_once('/') {
        Some((name, version)) => token(name) && token(version),
        None => token(protocol),
    }
}

/// Whether `strip` can be a prefix of a path `pattern` matches: where both have a fixed
/// segment, the two must agree. A `*` on either side matches any segment.
fn could_strip(pattern: &str, strip: &str) -> bool {
    let pattern = pattern.split('/').filter(|s| !s.is_empty());
    let strip = strip.split('/').filter(|s| !s.is_empty());
    for (p, s) in pattern.zip(strip) {
        if p == "*" {
            return true; // The pattern's final `*` takes any rest.
        }
        if s != "*" && s != p {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{could_strip, is_protocol};

    #[test]
    fn upgrades_are_protocol_names_with_an_optional_version() {
        for ok in ["websocket", "h2c", "TLS/1.0", "x-my.proto"] {
            assert!(is_protocol(ok), "{ok}");
        }
        for bad in ["", "web socket", "websocket,h2c", "/1", "a/", "a/b/c", "é"] {
            assert!(!is_protocol(bad), "{bad}");
        }
    }

    #[test]
    fn strip_prefix_must_agree_with_the_pattern() {
        assert!(could_strip("/api/*", "/api"));
        assert!(could_strip("/containers/*", "/containers/*"));
        assert!(could_strip("/dashboard/*", "/dashboard/"));
        assert!(could_strip("/a/b", "/*/b"));
        assert!(!could_strip("/api/*", "/v1"));
        assert!(!could_strip("/a/b/*", "/a/c"));
    }
}
