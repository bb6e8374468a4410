//! Routes compiled once from config: longest pattern first, host-bound routes before host-less
//! ones of the same length. Matching is a scan over a short list with no allocation.

use crate::error::GatewayError;
use crate::ratelimit::RouteLimiter;
use std::sync::Arc;
use valet_config::{Config, InstanceRule};
use valet_instances::{ClassRuntime, Instances};
use valet_metrics::{RouteStats, UNROUTED};

/// Where a matched request goes.
pub enum Target {
    Assets,
    Container(ContainerTarget),
    /// `/containers/<id>/*`: the deploy API's projects, looked up per request in the
    /// instance table's in-memory project map (never in the store).
    Projects,
}

/// The pattern that reaches deployed projects, unless the config routes it elsewhere.
pub const PROJECTS_PATTERN: &str = "/containers/*";
/// Every project has one instance, under this key of its version's class.
pub const PROJECT_KEY: &str = "main";
/// The `class` label of `/containers/*` requests that named no existing project.
pub const NO_PROJECT: &str = "(no project)";
const WEBSOCKET: &str = "websocket";

/// A route to a container class, with everything resolved that a request needs.
pub struct ContainerTarget {
    pub class: Arc<ClassRuntime>,
    /// Index of the route's port in the class's port list.
    pub port: usize,
    pub rule: KeyRule,
    pub strip: Option<StripPrefix>,
}

/// The instance rule, ready for per-request use.
pub enum KeyRule {
    Fixed(Box<str>),
    Path(usize),
    Header(http::HeaderName),
    Query(Box<str>),
    Cookie(Box<str>),
    /// Pre-made key strings, one picked per request.
    Random(Vec<Box<str>>),
}

/// One compiled route.
pub struct Route {
    /// The pattern as written, for logs and metrics.
    pub pattern: Box<str>,
    /// Fixed part of the pattern, without a trailing `/*` (or `*`).
    prefix: Box<str>,
    /// `prefix` in lower case, matched against a lenient backend's reading of a path.
    folded: Box<str>,
    /// Whether the pattern ended in `*` (matches the prefix and everything under it).
    wildcard: bool,
    host: Option<Box<str>>,
    pub target: Target,
    /// `auth = "jwt"`: a valid token is required before any instance is woken.
    pub jwt: bool,
    pub limiter: Option<RouteLimiter>,
    /// `upgrades`: the protocols a request may switch this route's connections to (lower case).
    pub upgrades: Box<[Box<str>]>,
    /// This route's request counts and latency, registered here so recording is lookup-free.
    pub stats: Arc<RouteStats>,
}

/// A prefix to remove, split into segments; `*` matches any one segment.
pub struct StripPrefix {
    segments: Vec<Box<str>>,
}

impl Route {
    /// Whether this route takes `path` on `host` (host already without port, lowercased).
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        self.matches_prefix(&self.prefix, host, path)
    }

    fn matches_prefix(&self, prefix: &str, host: Option<&str>, path: &str) -> bool {
        if let Some(want) = &self.host {
            if host != Some(&**want) {
                return false;
            }
        }
        if !self.wildcard {
            return path == prefix;
        }
        if prefix.is_empty() {
            return true;
        }
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// The path after the pattern's fixed prefix, for `path:<n>` keys.
    pub fn rest<'p>(&self, path: &'p str) -> &'p str {
        path.get(self.prefix.len()..).unwrap_or("")
    }
}

impl StripPrefix {
    pub fn new(prefix: &str) -> Self {
        let segments = prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(Into::into)
            .collect();
        Self { segments }
    }

    /// Splits `path` into (stripped prefix, remaining path). `None` when the path does not start
    /// with the prefix, in which case nothing is stripped. The remaining path always starts
    /// with `/`.
    pub fn apply<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        let mut end = 0;
        for want in &self.segments {
            let rest = &path[end..];
            let rest = rest.strip_prefix('/')?;
            let len = rest.find('/').unwrap_or(rest.len());
            let seg = &rest[..len];
            if seg.is_empty() || (&**want != "*" && seg != &**want) {
                return None;
            }
            end += 1 + len;
        }
        let remaining = &path[end..];
        Some((
            &path[..end],
            if remaining.is_empty() { "/" } else { remaining },
        ))
    }
}

/// All routes, in match order.
pub struct RouteTable {
    routes: Vec<Route>,
    /// Whether any route has `auth`: only then is a path read the way lenient backends do.
    guarded: bool,
    /// Counts of requests no route matched (assets, or 404).
    pub unrouted: Arc<RouteStats>,
}

impl RouteTable {
    /// Compiles the config's routes. Validation has already run, so lookups cannot fail.
    pub fn build(config: &Config, instances: &Instances) -> Self {
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|r| {
                let (prefix, wildcard) = split_pattern(&r.pattern);
                let target = match &r.container {
                    None => Target::Assets,
                    Some(name) => {
                        let class = instances.class(name).expect("validated class").clone();
                        let port = r
                            .port
                            .as_deref()
                            .and_then(|p| class.port_index(p))
                            .unwrap_or(class.default_port);
                        Target::Container(ContainerTarget {
                            port,
                            rule: KeyRule::from(r.rule()),
                            strip: r.strip_prefix.as_deref().map(StripPrefix::new),
                            class,
                        })
                    }
                };
                let label = match &r.host {
                    Some(host) => format!("{}{}", host.to_ascii_lowercase(), r.pattern),
                    None => r.pattern.clone(),
                };
                let class = r.container.as_deref().unwrap_or("");
                Route {
                    stats: Arc::new(RouteStats::new(&label, class)),
                    pattern: r.pattern.as_str().into(),
                    folded: prefix.to_ascii_lowercase().into(),
                    prefix: prefix.into(),
                    wildcard,
                    host: r.host.as_deref().map(|h| {
                        let h = h.strip_suffix('.').unwrap_or(h);
                        h.to_ascii_lowercase().into()
                    }),
                    target,
                    jwt: r.auth.as_deref() == Some("jwt"),
                    limiter: r
                        .rate_limit
                        .as_ref()
                        .map(|l| RouteLimiter::new(l.requests, l.per.get(), &l.by)),
                    upgrades: r
                        .upgrades
                        .iter()
                        .map(|p| p.to_ascii_lowercase().into())
                        .collect(),
                }
            })
            .collect();
        if !config.routes.iter().any(|r| r.pattern == PROJECTS_PATTERN) {
            let (prefix, wildcard) = split_pattern(PROJECTS_PATTERN);
            routes.push(Route {
                // Only requests for no existing project count here: a project's own go to
                // its series (`class="project:<name>"`), so none is ever `class=""`.
                stats: Arc::new(RouteStats::new(PROJECTS_PATTERN, NO_PROJECT)),
                pattern: PROJECTS_PATTERN.into(),
                folded: prefix.to_ascii_lowercase().into(),
                prefix: prefix.into(),
                wildcard,
                host: None,
                target: Target::Projects,
                jwt: false,
                limiter: None,
                // A route's default (`upgrades` unset): deployed apps may use WebSockets.
                upgrades: Box::new([WEBSOCKET.into()]),
            });
        }
        // Longest pattern first; among equals, a route bound to a host wins.
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        Self {
            guarded: routes.iter().any(|r| r.jwt),
            routes,
            unrouted: Arc::new(RouteStats::new(UNROUTED, "")),
        }
    }

    /// Every route's stats and the unrouted ones, for the admin listener's `/metrics`.
    pub fn stats(&self) -> Vec<Arc<RouteStats>> {
        self.routes
            .iter()
            .map(|r| r.stats.clone())
            .chain(std::iter::once(self.unrouted.clone()))
            .collect()
    }

    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(host, path))
    }

    /// The route a request takes ([`RouteTable::find`] on its normalised path), unless a
    /// lenient backend would serve that path as one under a route with `auth` while valet's
    /// reading takes it to a route without (or to none): `/private%2Fx`, `/PRIVATE/x` or
    /// `/private;a/x` where `/private/*` needs a token and `/*` does not. Many backends decode
    /// `%2F` before routing (WSGI and ASGI servers), route without regard to case (Express,
    /// ASP.NET) or drop `;` parameters (servlet containers), so such a request would reach the
    /// protected handler unchecked. It has no single meaning and is refused (400), the rule
    /// `path::normalise` applies to dot segments. The protected route itself is unaffected:
    /// there the token is checked whatever the spelling.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<Option<&Route>, GatewayError> {
        let found = self.find(host, path);
        if !self.guarded || found.is_some_and(|r| r.jwt) {
            return Ok(found);
        }
        let Some(reading) = crate::path::lenient_reading(path) else {
            return Ok(found);
        };
        let read_as = self
            .routes
            .iter()
            .find(|r| r.matches_prefix(&r.folded, host, &reading));
        match read_as {
            Some(guarded) if guarded.jwt => Err(GatewayError::BadRequest {
                code: "ambiguous_path",
                message: format!(
                    "the request path reads as {} (a route that requires a token) to a \
                     backend that decodes %2F or \\, ignores case or drops ;parameters",
                    guarded.pattern
                ),
            }),
            _ => Ok(found),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// Lets rate limiters forget idle clients.
    pub fn shrink_limiters(&self) {
        self.routes
            .iter()
            .filter_map(|r| r.limiter.as_ref())
            .for_each(RouteLimiter::shrink);
    }
}

impl ContainerTarget {
    /// The target of a deployed project's request (`/containers/<id>/...`), if the project
    /// exists: its current version's class, key [`PROJECT_KEY`], `/containers/<id>` stripped.
    pub fn project(instances: &Instances, path: &str) -> Option<Self> {
        let class = instances.project(Self::project_id(path)?)?;
        Some(Self {
            port: class.default_port,
            rule: KeyRule::Fixed(PROJECT_KEY.into()),
            strip: Some(StripPrefix::new(PROJECTS_PATTERN)),
            class,
        })
    }
}

impl ContainerTarget {
    /// The project id a `/containers/<id>/...` path names.
    pub fn project_id(path: &str) -> Option<&str> {
        let rest = path.strip_prefix("/containers/")?;
        rest.split('/').next().filter(|id| !id.is_empty())
    }

    /// Why a `/containers/...` path has no target: a project still being built here is
    /// 503 with `Retry-After`, anything else 404.
    pub(crate) fn missing(instances: &Instances, path: &str) -> GatewayError {
        match Self::project_id(path) {
            Some(id) if instances.is_project_arriving(id) => GatewayError::ProjectArriving,
            _ => GatewayError::NotFound,
        }
    }
}

/// `/api/*` -> (`/api`, true); `/*` -> (``, true); `/exact` -> (`/exact`, false).
fn split_pattern(pattern: &str) -> (&str, bool) {
    match pattern.strip_suffix('*') {
        Some(prefix) => (prefix.strip_suffix('/').unwrap_or(prefix), true),
        None => (pattern, false),
    }
}

impl From<InstanceRule> for KeyRule {
    fn from(rule: InstanceRule) -> Self {
        match rule {
            InstanceRule::Name(key) => Self::Fixed(key.into()),
            InstanceRule::Path(n) => Self::Path(n),
            InstanceRule::Header(name) => Self::Header(
                http::HeaderName::try_from(name.as_str()).expect("validated header name"),
            ),
            InstanceRule::Query(name) => Self::Query(name.into()),
            InstanceRule::Cookie(name) => Self::Cookie(name.into()),
            InstanceRule::Random(n) => Self::Random((0..n).map(|i| i.to_string().into()).collect()),
        }
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn a_project_still_building_here_is_503_with_retry_after_then_404_once_gone() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            valet_config::parse_str("", std::path::Path::new("valet.toml"), dir.path()).unwrap();
        let driver = Arc::new(valet_runtime::ProcessDriver::new(dir.path().join("data")));
        let (_trigger, shutdown) = valet_core::Shutdown::new();
        let instances = Instances::new(&config, driver, shutdown);
        let path = "/containers/p1/api/x";
        assert!(ContainerTarget::project(&instances, path).is_none());
        assert!(matches!(
            ContainerTarget::missing(&instances, path),
            GatewayError::NotFound
        ));

        let building = instances.project_arriving("p1");
        let again = instances.project_arriving("p1");
        let answer = ContainerTarget::missing(&instances, path).into_response();
        assert_eq!(answer.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()[http::header::RETRY_AFTER], "1");
        assert!(matches!(
            ContainerTarget::missing(&instances, "/containers/p2/"),
            GatewayError::NotFound
        ));
        drop(building);
        assert!(
            matches!(
                ContainerTarget::missing(&instances, path),
                GatewayError::ProjectArriving
            ),
            "a second build of it is still under way"
        );
        drop(again);
        assert!(matches!(
            ContainerTarget::missing(&instances, path),
            GatewayError::NotFound
        ));
    }
    use super::*;

    fn route(pattern: &str, host: Option<&str>) -> Route {
        let (prefix, wildcard) = split_pattern(pattern);
        Route {
            pattern: pattern.into(),
            folded: prefix.to_ascii_lowercase().into(),
            prefix: prefix.into(),
            wildcard,
            host: host.map(Into::into),
            target: Target::Assets,
            jwt: false,
            limiter: None,
            upgrades: Box::new([]),
            stats: Arc::new(RouteStats::new(pattern, "")),
        }
    }

    #[test]
    fn wildcard_matches_prefix_and_below_but_not_siblings() {
        let r = route("/api/*", None);
        assert!(r.matches(None, "/api"));
        assert!(r.matches(None, "/api/"));
        assert!(r.matches(None, "/api/users/1"));
        assert!(!r.matches(None, "/apiary"));
        assert!(!r.matches(None, "/"));
    }

    #[test]
    fn exact_and_catch_all_patterns() {
        assert!(route("/health", None).matches(None, "/health"));
        assert!(!route("/health", None).matches(None, "/health/x"));
        assert!(route("/*", None).matches(None, "/anything/at/all"));
    }

    #[test]
    fn host_bound_routes_match_only_their_host() {
        let r = route("/*", Some("example.com"));
        assert!(r.matches(Some("example.com"), "/"));
        assert!(!r.matches(Some("other.com"), "/"));
        assert!(!r.matches(None, "/"));
    }

    #[test]
    fn a_path_a_lenient_backend_reads_into_a_route_with_auth_is_refused() {
        let table = |routes: Vec<Route>| RouteTable {
            guarded: routes.iter().any(|r| r.jwt),
            routes,
            unrouted: Arc::new(RouteStats::new(UNROUTED, "")),
        };
        let private = Route {
            jwt: true,
            ..route("/private/*", None)
        };
        // Longest first, as `build` sorts them.
        let routes = table(vec![private, route("/Mixed/*", None), route("/*", None)]);
        let ambiguous = |path: &str| {
            matches!(
                routes.route(None, path),
                Err(GatewayError::BadRequest {
                    code: "ambiguous_path",
                    ..
                })
            )
        };
        for path in ["/PRIVATE/x", "/private%2Fx", "/private\\x", "/private;a/x"] {
            assert!(ambiguous(path), "{path}");
        }
        // The protected route itself, and paths that read into no protected route, pass.
        let pattern = |path| routes.route(None, path).unwrap().map(|r| &*r.pattern);
        assert_eq!(pattern("/private/x"), Some("/private/*"));
        assert_eq!(pattern("/other%2Fx"), Some("/*"));
        assert_eq!(pattern("/Mixed/x"), Some("/Mixed/*"));
        assert_eq!(pattern("/MIXED/x"), Some("/*"));
        // Without a route with auth, nothing is read twice.
        let open = table(vec![route("/private/*", None), route("/*", None)]);
        assert!(open.route(None, "/PRIVATE/x").is_ok());
    }

    #[test]
    fn rest_is_the_path_after_the_fixed_prefix() {
        let r = route("/containers/*", None);
        assert_eq!(r.rest("/containers/abc/x"), "/abc/x");
    }

    #[test]
    fn strip_prefix_with_a_wildcard_segment() {
        let strip = StripPrefix::new("/containers/*");
        assert_eq!(
            strip.apply("/containers/abc/x/y"),
            Some(("/containers/abc", "/x/y"))
        );
        assert_eq!(
            strip.apply("/containers/abc"),
            Some(("/containers/abc", "/"))
        );
        assert_eq!(strip.apply("/containers"), None);
        assert_eq!(strip.apply("/other/abc"), None);
        let plain = StripPrefix::new("/api");
        assert_eq!(plain.apply("/api/hello?x"), Some(("/api", "/hello?x")));
        assert_eq!(plain.apply("/apiary"), None);
    }
}
