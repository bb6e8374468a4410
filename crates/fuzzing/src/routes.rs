//! Route matching, prefix stripping and key derivation on a fixed route table with every kind
//! of instance rule.

use http::Uri;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use valet_config::Config;
use valet_core::{validate_key, InstanceId, Shutdown, MAX_KEY_LEN};
use valet_gateway::fields::Fields;
use valet_gateway::key::derive;
use valet_gateway::proxy::upstream_uri;
use valet_gateway::routes::{KeyRule, RouteTable, Target};
use valet_instances::Instances;
use valet_runtime::ProcessDriver;

/// A route table built the way `valet up` builds it. Nothing starts: instances start only on a
/// request, and the runtime `Instances` keeps a handle to is never driven.
pub(crate) struct Fixture {
    pub routes: RouteTable,
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    pub fn new(config: &Config) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let driver = Arc::new(ProcessDriver::new(
            std::env::temp_dir().join("valet-fuzz-never-used"),
        ));
        // The trigger is dropped at once; only instance tasks would care, and none runs.
        let (_trigger, shutdown) = Shutdown::new();
        let instances = {
            let _in_runtime = runtime.enter();
            Instances::new(config, driver, shutdown)
        };
        Self {
            routes: RouteTable::build(config, &instances),
            _runtime: runtime,
        }
    }
}

/// Every instance rule, strip prefixes with and without `*`, host-bound routes.
const ROUTES: &str = r#"
[server]
driver = "process"

[[containers]]
class_name = "Api"
command = ["true"]
ports = { http = 3210, dashboard = 6791 }

[[containers]]
class_name = "Projects"
command = ["true"]
ports = { http = 8000 }

[[routes]]
pattern = "/api/*"
container = "Api"
instance = "name:api"
strip_prefix = "/api"

[[routes]]
pattern = "/api/*"
host = "Admin.Example.com"
container = "Api"
instance = "name:admin"

[[routes]]
pattern = "/auth/*"
container = "Api"
instance = "header:X-Tenant"

[[routes]]
pattern = "/realtime"
container = "Api"
instance = "cookie:session"

[[routes]]
pattern = "/dashboard/*"
container = "Api"
instance = "name:api"
port = "dashboard"
strip_prefix = "/dashboard"

[[routes]]
pattern = "/p/*"
container = "Projects"
instance = "path:2"
strip_prefix = "/p/*"

[[routes]]
pattern = "/q/*"
container = "Projects"
instance = "query:project"

[[routes]]
pattern = "/r/*"
container = "Projects"
instance = "random:4"

[[routes]]
pattern = "/*"
container = "Projects"
instance = "path:1"
"#;

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = valet_config::parse_str(ROUTES, Path::new("fuzz.toml"), &std::env::temp_dir())
            .expect("the fuzz route table is valid");
        Fixture::new(&config)
    })
}

/// Input: a `Host` line, a request-target line (`/path?query`), then `name: value` header
/// lines. Finds the route as the handler does, strips its prefix and derives the key.
pub fn routes_and_keys(data: &[u8]) {
    let mut lines = crate::lines(data);
    let host = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let headers = crate::header_map(lines);
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let host = std::str::from_utf8(host)
        .ok()
        .filter(|h| !h.is_empty())
        .map(host_without_port);
    let path = uri.path();
    let Some(route) = fixture().routes.find(host.as_deref(), path) else {
        // `/*` takes every path.
        panic!("no route for {path:?}");
    };
    assert!(route.matches(host.as_deref(), path));
    let Target::Container(target) = &route.target else {
        return;
    };
    if let Some(strip) = &target.strip {
        if let Some((stripped, rest)) = strip.apply(path) {
            assert!(rest.starts_with('/'), "{path:?} left {rest:?}");
            assert!(path.starts_with(stripped), "{path:?} stripped {stripped:?}");
            let whole = format!("{stripped}{rest}");
            assert!(
                whole == path || (rest == "/" && stripped == path),
                "{path:?} split into {stripped:?} and {rest:?}"
            );
            // The remainder of a valid target is a valid target.
            let upstream = upstream_uri(rest, &uri).expect("a stripped path forwards");
            assert_eq!(upstream.path(), rest);
            assert_eq!(upstream.query(), uri.query());
        }
    }
    let fields = Fields::Map(headers.clone());
    let key = match derive(&target.rule, route, &uri, &fields) {
        Ok(key) => key,
        Err(missing) => {
            assert!(!missing.0.is_empty());
            return;
        }
    };
    match &target.rule {
        KeyRule::Fixed(_) | KeyRule::Random(_) => {
            assert!(validate_key(&key).is_ok(), "configured key {key:?} refused")
        }
        KeyRule::Header(_) => assert_eq!(&*key, key.trim(), "header keys are trimmed"),
        KeyRule::Path(_) => assert!(!key.is_empty(), "a path segment is never empty"),
        KeyRule::Query(_) | KeyRule::Cookie(_) => {}
    }
    // What the instance table does with it: refused, or a valid id with a safe file name.
    if validate_key(&key).is_ok() {
        assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
        let slug = InstanceId::new(&*target.class.name, &*key).slug();
        assert!(
            !slug.is_empty() && slug.len() <= 24 + 1 + 16,
            "slug {slug:?}"
        );
        assert!(
            slug.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "slug {slug:?} is not a safe file name"
        );
    }
}

/// `Example.com:8787` -> `example.com`, as the handler reads the `Host` header.
fn host_without_port(host: &str) -> String {
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    name.to_ascii_lowercase()
}
