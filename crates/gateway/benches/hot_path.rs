//! The per-request pieces of the proxy path that run before any I/O: route matching, key
//! derivation and header rewriting. `cargo bench -p valet-gateway --bench hot_path`.
//!
//! The route table is built the way `valet up` builds it (config text -> `Instances` with the
//! process driver -> `RouteTable`); nothing starts, because instances start only on a request.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Method;
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::Empty;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use valet_core::Shutdown;
use valet_gateway::fields::{Fields, Span};
use valet_gateway::forward::{prepare_request, ClientInfo, Hop, Rewrite};
use valet_gateway::http1::hop::remove_hop_by_hop;
use valet_gateway::http1::request::encode_request;
use valet_gateway::key::derive;
use valet_gateway::routes::{Route, RouteTable, Target};
use valet_instances::Instances;
use valet_runtime::ProcessDriver;

/// The routes the source documents describe: API, auth, realtime, dashboard on another port,
/// per-project containers, plus one host-bound route and every instance rule.
const CONFIG: &str = r#"
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
max_instances = 100

[[routes]]
pattern = "/api/*"
container = "Api"
instance = "name:api"
strip_prefix = "/api"

[[routes]]
pattern = "/api/*"
host = "admin.example.com"
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
pattern = "/containers/*"
container = "Projects"
instance = "path:1"
strip_prefix = "/containers/*"

[[routes]]
pattern = "/q/*"
container = "Projects"
instance = "query:project"

[[routes]]
pattern = "/r/*"
container = "Projects"
instance = "random:8"
"#;

/// A route table, with the runtime `Instances` was made in (it keeps a handle to spawn
/// instance tasks on; none will be spawned here, but the handle should stay valid).
struct Fixture {
    routes: RouteTable,
    _runtime: tokio::runtime::Runtime,
}

/// The documented routes plus `extra` filler routes, to show how matching scales with the table.
fn table(extra: usize) -> Fixture {
    let mut text = String::from(CONFIG);
    for i in 0..extra {
        text.push_str(&format!(
            "\n[[routes]]\npattern = \"/filler-{i}/*\"\ncontainer = \"Projects\"\ninstance = \"name:f{i}\"\n"
        ));
    }
    let dir = std::env::temp_dir();
    let config = valet_config::parse_str(&text, Path::new("bench.toml"), &dir)
        .expect("bench config is valid");
    let driver = Arc::new(ProcessDriver::new(dir.join("valet-bench-hot-path")));
    // The trigger is dropped at once; that only matters to instance tasks, and none will run.
    let (_trigger, shutdown) = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let instances = {
        let _in_runtime = runtime.enter();
        Instances::new(&config, driver, shutdown)
    };
    Fixture {
        routes: RouteTable::build(&config, &instances),
        _runtime: runtime,
    }
}

fn route_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("routes/find");
    for (name, extra) in [("8-routes", 0), ("108-routes", 100)] {
        let Fixture { routes, .. } = &table(extra);
        group.bench_function(format!("{name}/api-users-42"), |b| {
            b.iter(|| {
                routes
                    .find(
                        black_box(Some("app.example.com")),
                        black_box("/api/users/42"),
                    )
                    .is_some()
            })
        });
        group.bench_function(format!("{name}/containers-p42"), |b| {
            b.iter(|| {
                routes
                    .find(
                        black_box(Some("app.example.com")),
                        black_box("/containers/p42/index.html"),
                    )
                    .is_some()
            })
        });
        // A miss walks the whole table: the worst case, what a static asset request pays.
        group.bench_function(format!("{name}/miss-assets"), |b| {
            b.iter(|| {
                routes
                    .find(
                        black_box(Some("app.example.com")),
                        black_box("/assets/app.js"),
                    )
                    .is_none()
            })
        });
    }
    group.finish();
}

fn container_route<'t>(routes: &'t RouteTable, path: &str) -> &'t Route {
    let route = routes.find(None, path).expect("a route matches");
    assert!(
        matches!(route.target, Target::Container(_)),
        "{path} goes to a container"
    );
    route
}

fn key_derivation(c: &mut Criterion) {
    let fixture = table(0);
    let routes = &fixture.routes;
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("tenant-7"));
    headers.insert(
        "cookie",
        HeaderValue::from_static("theme=dark; session=abc123; lang=en"),
    );
    let headers = Fields::Map(headers);
    let cases = [
        ("name", "/api/users/42"),
        ("path1", "/containers/p42/index.html"),
        ("path1-percent-encoded", "/containers/p%2042/index.html"),
        ("header", "/auth/login"),
        ("cookie", "/realtime"),
        ("query", "/q/search?page=2&project=p42"),
        ("random8", "/r/x"),
    ];
    let mut group = c.benchmark_group("key/derive");
    for (name, path) in cases {
        let route = container_route(routes, path.split('?').next().unwrap_or(path));
        let Target::Container(target) = &route.target else {
            unreachable!()
        };
        let uri: Uri = path.parse().expect("valid URI");
        derive(&target.rule, route, &uri, &headers).expect("the key is present");
        group.bench_function(name, |b| {
            b.iter(|| {
                derive(
                    black_box(&target.rule),
                    route,
                    black_box(&uri),
                    black_box(&headers),
                )
                .is_ok()
            })
        });
    }
    group.finish();
}

/// What a browser sends on an API call: the typical size of a header map to rewrite.
fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/projects/42"),
        ("cookie", "theme=dark; session=abc123; lang=en"),
        ("connection", "keep-alive"),
        ("sec-fetch-mode", "cors"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h
}

/// `headers` as the fields of a head valet parsed: `name: value` lines and spans into them.
fn spans_of(headers: &HeaderMap) -> Fields {
    let mut head = Vec::new();
    let mut spans = Vec::new();
    for (name, value) in headers {
        let at = head.len() as u32;
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        let value_at = head.len() as u32;
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
        spans.push(Span {
            name: (at, name.as_str().len() as u32),
            value: (value_at, value.len() as u32),
        });
    }
    Fields::Spans {
        head: Bytes::from(head),
        spans,
    }
}

fn header_rewriting(c: &mut Criterion) {
    let client = ClientInfo {
        peer: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        peer_header: HeaderValue::from_static("203.0.113.9"),
        trusted: false,
        https: true,
        host: Some(HeaderValue::from_static("app.example.com")),
        new_request_id: None,
    };
    let plain = browser_headers();
    let mut naming = browser_headers();
    naming.insert(
        "connection",
        HeaderValue::from_static("keep-alive, x-debug-trace"),
    );
    naming.insert("x-debug-trace", HeaderValue::from_static("1"));
    naming.insert("keep-alive", HeaderValue::from_static("timeout=5"));

    let mut group = c.benchmark_group("forward");
    // Each sample rewrites a fresh clone; iter_batched_ref keeps the cloning out of the timing.
    group.bench_function("remove_hop_by_hop", |b| {
        b.iter_batched_ref(|| plain.clone(), remove_hop_by_hop, BatchSize::SmallInput)
    });
    group.bench_function("remove_hop_by_hop-connection-names-a-header", |b| {
        b.iter_batched_ref(|| naming.clone(), remove_hop_by_hop, BatchSize::SmallInput)
    });
    // The hot path: the rewritten head written straight from the client's fields, as spans
    // of its head (parsed by valet) and as hyper's map.
    let spans = spans_of(&plain);
    let map = Fields::Map(plain.clone());
    let body = Empty::<Bytes>::new();
    for (name, fields) in [
        ("encode_request-spans", &spans),
        ("encode_request-map", &map),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let rewrite = Rewrite {
                    client: &client,
                    prefix: None,
                    fallback_host: None,
                    hop: Hop::Instance,
                };
                let mut out = BytesMut::with_capacity(1024);
                encode_request(
                    &Method::GET,
                    "/api/users/42",
                    black_box(fields),
                    Some(&rewrite),
                    &body,
                    &mut out,
                );
                out
            })
        });
    }
    group.bench_function("prepare_request", |b| {
        b.iter_batched_ref(
            || plain.clone(),
            |h| prepare_request(h, &client, None, Hop::Instance),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("prepare_request-with-prefix", |b| {
        b.iter_batched_ref(
            || plain.clone(),
            |h| {
                prepare_request(
                    h,
                    &client,
                    Some(HeaderValue::from_static("/api")),
                    Hop::Instance,
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, route_matching, key_derivation, header_rewriting);
criterion_main!(benches);
