//! Static assets against a real directory tree in a tempdir: a `public/` root with a
//! `secret.txt` beside it that no request may ever reveal.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_compression::tokio::bufread::{BrotliDecoder, BrotliEncoder, GzipDecoder};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use valet_gateway::assets::{Assets, NotFound};

const SECRET: &str = "TOP-SECRET-DO-NOT-SERVE";

/// A served folder in a tempdir, removed on drop.
struct Site {
    dir: tempfile::TempDir,
    assets: Assets,
}

/// What came back, body collected.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().expect("ascii header"))
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// Compressible text well above the compression threshold.
fn app_js() -> String {
    "console.log('valet static assets');\n".repeat(200)
}

fn write(root: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

impl Site {
    fn new(not_found: NotFound) -> Site {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        let root = dir.path().join("public");
        write(&root, "index.html", "<h1>home</h1>");
        write(&root, "about.html", "<h1>about</h1>");
        write(&root, "app.js", app_js());
        write(&root, "style.css", "body { color: red }");
        write(&root, "data.json", r#"{"ok":true}"#);
        write(&root, "logo.png", [0x89, b'P', b'N', b'G', 0, 1, 2, 3]);
        write(&root, "digits.txt", "0123456789");
        write(&root, "docs/index.html", "<h1>docs</h1>");
        write(&root, "docs/guide/page.html", "<h1>guide</h1>");
        write(&root, "404.html", "<h1>root 404</h1>");
        write(&root, "docs/404.html", "<h1>docs 404</h1>");
        write(&root, ".env", "SECRET=1");
        write(&root, ".git/config", "[core]");
        std::os::unix::fs::symlink("../secret.txt", root.join("link-out")).unwrap();
        std::os::unix::fs::symlink("..", root.join("dir-out")).unwrap();
        std::os::unix::fs::symlink("digits.txt", root.join("alias.txt")).unwrap();
        let assets = Assets::new(&root, not_found).unwrap();
        Site { dir, assets }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("public")
    }

    async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let uri: Uri = uri.parse().expect("valid uri");
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let response = self.assets.serve(&method, &uri, &map).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body streams").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, uri, headers).await
    }
}

#[tokio::test]
async fn content_types_and_cache_policy() {
    let site = Site::new(NotFound::None);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/logo.png", "image/png"),
    ] {
        let answer = site.get(path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.header("content-type"), content_type, "{path}");
        assert_eq!(answer.header("accept-ranges"), "bytes");
        assert_eq!(answer.header("x-content-type-options"), "nosniff");
    }
    let html = site.get("/", &[]).await;
    assert_eq!(html.text(), "<h1>home</h1>");
    assert_eq!(
        html.header("cache-control"),
        "public, max-age=0, must-revalidate"
    );
    assert_eq!(html.header("content-length"), "13");
    assert_eq!(
        site.get("/logo.png", &[]).await.body[..4],
        [0x89, b'P', b'N', b'G']
    );
}

#[tokio::test]
async fn folders_and_html_handling() {
    let site = Site::new(NotFound::None);
    assert_eq!(site.get("/docs/", &[]).await.text(), "<h1>docs</h1>");
    assert_eq!(site.get("/about", &[]).await.text(), "<h1>about</h1>");
    assert_eq!(site.get("/about.html", &[]).await.text(), "<h1>about</h1>");
    let redirect = site.get("/docs?x=1", &[]).await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(redirect.header("location"), "/docs/?x=1");
    // A folder without index.html is simply missing.
    assert_eq!(
        site.get("/docs/guide/", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // A symlink that stays inside the root is served.
    assert_eq!(site.get("/alias.txt", &[]).await.text(), "0123456789");
}

#[tokio::test]
async fn etag_and_last_modified_revalidate() {
    let site = Site::new(NotFound::None);
    let first = site.get("/style.css", &[]).await;
    let etag = first.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(site.get("/style.css", &[]).await.header("etag"), etag);

    for inm in [etag.as_str(), "*", &format!("\"nope\", W/{etag}")] {
        let answer = site.get("/style.css", &[("if-none-match", inm)]).await;
        assert_eq!(answer.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(answer.body.is_empty());
        assert_eq!(answer.header("etag"), etag);
    }
    let stale = site
        .get("/style.css", &[("if-none-match", "\"old\"")])
        .await;
    assert_eq!(stale.status, StatusCode::OK);

    let modified = first.header("last-modified").to_owned();
    let answer = site
        .get("/style.css", &[("if-modified-since", &modified)])
        .await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    let failed = site.get("/style.css", &[("if-match", "\"other\"")]).await;
    assert_eq!(failed.status, StatusCode::PRECONDITION_FAILED);

    // A new version of the file gets a new ETag.
    let file = fs::File::options()
        .append(true)
        .open(site.root().join("style.css"))
        .unwrap();
    fs::write(site.root().join("style.css"), "body { color: blue }").unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let changed = site.get("/style.css", &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.header("etag"), etag);
    assert_eq!(changed.text(), "body { color: blue }");
}

#[tokio::test]
async fn byte_ranges() {
    let site = Site::new(NotFound::None);
    for (range, bytes, content_range) in [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
    ] {
        let answer = site.get("/digits.txt", &[("range", range)]).await;
        assert_eq!(answer.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(answer.text(), bytes, "{range}");
        assert_eq!(answer.header("content-range"), content_range);
        assert_eq!(answer.header("content-length"), bytes.len().to_string());
    }
    let unsatisfiable = site.get("/digits.txt", &[("range", "bytes=10-")]).await;
    assert_eq!(unsatisfiable.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(unsatisfiable.header("content-range"), "bytes */10");
    assert!(unsatisfiable.body.is_empty());

    let several = site.get("/digits.txt", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(
        (several.status, several.text()),
        (StatusCode::OK, "0123456789")
    );

    let etag = site.get("/digits.txt", &[]).await.header("etag").to_owned();
    let current = [("range", "bytes=0-0"), ("if-range", etag.as_str())];
    assert_eq!(site.get("/digits.txt", &current).await.text(), "0");
    let outdated = [("range", "bytes=0-0"), ("if-range", "\"old\"")];
    let full = site.get("/digits.txt", &outdated).await;
    assert_eq!((full.status, full.text()), (StatusCode::OK, "0123456789"));

    // Ranges are never combined with compression.
    let headers = [("range", "bytes=0-6"), ("accept-encoding", "gzip, br")];
    let answer = site.get("/app.js", &headers).await;
    assert_eq!(answer.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(answer.header("content-encoding"), "");
    assert_eq!(answer.text(), "console");
}

async fn decode(encoding: &str, body: &[u8]) -> String {
    let mut out = String::new();
    match encoding {
        "gzip" => GzipDecoder::new(body).read_to_string(&mut out).await,
        "br" => BrotliDecoder::new(body).read_to_string(&mut out).await,
        other => panic!("unexpected encoding {other}"),
    }
    .unwrap();
    out
}

#[tokio::test]
async fn compression_follows_accept_encoding() {
    let site = Site::new(NotFound::None);
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0.5, br;q=0.2", "gzip"),
    ] {
        let answer = site.get("/app.js", &[("accept-encoding", accept)]).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("content-encoding"), expected, "{accept}");
        assert_eq!(answer.header("vary"), "accept-encoding");
        assert_eq!(answer.header("content-length"), "");
        assert!(answer.body.len() < app_js().len() / 4);
        assert_eq!(decode(expected, &answer.body).await, app_js());
        assert!(answer.header("etag").starts_with("W/\""));
    }
    for accept in ["identity", "deflate", "gzip;q=0, br;q=0", "*;q=0"] {
        let answer = site.get("/app.js", &[("accept-encoding", accept)]).await;
        assert_eq!(answer.header("content-encoding"), "", "{accept}");
        assert_eq!(answer.text(), app_js());
        assert_eq!(answer.header("vary"), "accept-encoding");
    }
    // Small files and already-compressed types go as they are.
    let small = site.get("/style.css", &[("accept-encoding", "br")]).await;
    assert_eq!(small.header("content-encoding"), "");
    let png = site.get("/logo.png", &[("accept-encoding", "br")]).await;
    assert_eq!(png.header("content-encoding"), "");
}

#[tokio::test]
async fn precompressed_sibling_is_preferred() {
    let site = Site::new(NotFound::None);
    let original = "let precompressed = true;\n".repeat(100);
    write(&site.root(), "pre.js", &original);
    let mut packed = Vec::new();
    BrotliEncoder::new(original.as_bytes())
        .read_to_end(&mut packed)
        .await
        .unwrap();
    write(&site.root(), "pre.js.br", &packed);

    let answer = site
        .get("/pre.js", &[("accept-encoding", "gzip, br")])
        .await;
    assert_eq!(answer.header("content-encoding"), "br");
    assert_eq!(
        answer.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(answer.header("content-length"), packed.len().to_string());
    assert_eq!(&answer.body[..], &packed[..]);
    assert_eq!(decode("br", &answer.body).await, original);
    // Without brotli: gzip made on the fly from the original.
    let gzip = site.get("/pre.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(decode("gzip", &gzip.body).await, original);
}

#[tokio::test]
async fn single_page_application_fallback() {
    let site = Site::new(NotFound::SinglePageApplication);
    for path in ["/dashboard", "/users/42/settings", "/deep/path/"] {
        let answer = site.get(path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.text(), "<h1>home</h1>");
        assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
    }
    // A missing script is a 404, unless a browser navigates to a dotted client route.
    assert_eq!(
        site.get("/missing.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let navigate = site
        .get("/users/jane.doe", &[("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(
        (navigate.status, navigate.text()),
        (StatusCode::OK, "<h1>home</h1>")
    );
    // Existing files still win.
    assert_eq!(site.get("/app.js", &[]).await.text(), app_js());
}

#[tokio::test]
async fn nearest_404_page() {
    let site = Site::new(NotFound::Page404);
    for (path, page) in [
        ("/docs/nope", "<h1>docs 404</h1>"),
        ("/docs/guide/nope.html", "<h1>docs 404</h1>"),
        ("/docs/no/such/folder/", "<h1>docs 404</h1>"),
        ("/nope", "<h1>root 404</h1>"),
        ("/other/nope", "<h1>root 404</h1>"),
    ] {
        let answer = site.get(path, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.text(), page, "{path}");
        assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
    }
}

#[tokio::test]
async fn none_answers_plain_json_404() {
    let site = Site::new(NotFound::None);
    let answer = site.get("/nope", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("content-type"), "application/json");
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["error"], "not_found");
}

#[tokio::test]
async fn nothing_leaves_the_root() {
    for mode in [
        NotFound::None,
        NotFound::SinglePageApplication,
        NotFound::Page404,
    ] {
        let site = Site::new(mode);
        let root = site.root().display().to_string();
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/..%2fsecret.txt",
            "/%252e%252e/secret.txt",
            "/%252e%252e%252fsecret.txt",
            "/a/..\\..\\secret.txt",
            "/a/..%5c..%5csecret.txt",
            "/docs\\..\\..\\secret.txt",
            "/docs/../../secret.txt",
            "/./../secret.txt",
            "/%00",
            "/secret.txt%00.html",
            "/link-out",
            "/dir-out/secret.txt",
            "/.env",
            "/.git/config",
            "/%2egit/config",
        ] {
            let answer = site.get(path, &[("sec-fetch-mode", "navigate")]).await;
            let body = String::from_utf8_lossy(&answer.body);
            assert!(!body.contains(SECRET), "{path} revealed the secret");
            assert!(
                !body.contains("SECRET=1") && !body.contains("[core]"),
                "{path}"
            );
            assert!(!body.contains(&root), "{path} revealed a path");
            // The only 200 is the single-page app's own index.html.
            match mode {
                NotFound::SinglePageApplication if answer.status == StatusCode::OK => {
                    assert_eq!(body, "<h1>home</h1>", "{path}")
                }
                _ => assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path} in {mode:?}"),
            }
        }
        // A symlink that leaves and comes back in ends inside the root: that one is fine.
        let back_in = site.get("/dir-out/public/digits.txt", &[]).await;
        assert_eq!(back_in.text(), "0123456789");
    }
}

#[tokio::test]
async fn head_and_methods() {
    let site = Site::new(NotFound::None);
    let head = site.send(Method::HEAD, "/app.js", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), app_js().len().to_string());
    assert_eq!(
        head.header("content-type"),
        "text/javascript; charset=utf-8"
    );

    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let answer = site.send(method.clone(), "/app.js", &[]).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.header("allow"), "GET, HEAD");
    }
}

#[test]
fn not_found_handling_names() {
    assert_eq!(
        "single-page-application".parse(),
        Ok(NotFound::SinglePageApplication)
    );
    assert_eq!("404-page".parse(), Ok(NotFound::Page404));
    assert_eq!("none".parse(), Ok(NotFound::None));
    assert!("spa".parse::<NotFound>().is_err());
}
