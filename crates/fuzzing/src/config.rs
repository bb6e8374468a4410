//! `valet.toml` parsing and validation, then compiling the routes of every config that passes.

use crate::routes::Fixture;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Parses `data` as `valet.toml`. An accepted config must compile into a route table (the
/// table's `expect`s rely on validation), and every route must be found by its own pattern. A
/// refused one must render its errors.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config = match valet_config::parse_str(&text, Path::new("fuzz.toml"), base_dir()) {
        Ok(config) => config,
        Err(errors) => {
            let rendered = errors.to_string();
            assert!(!rendered.is_empty(), "a refused config says why");
            return;
        }
    };
    let fixture = Fixture::new(&config);
    for route in &config.routes {
        // The pattern's own prefix, e.g. `/api/*` -> `/api`, `/*` -> `/`.
        let path = match route.pattern.strip_suffix('*') {
            Some(prefix) => match prefix.strip_suffix('/') {
                Some("") | None => "/".to_string(),
                Some(p) => p.to_string(),
            },
            None => route.pattern.clone(),
        };
        let host = route.host.as_deref().map(str::to_ascii_lowercase);
        let found = fixture.routes.find(host.as_deref(), &path);
        assert!(
            found.is_some(),
            "route {:?} (host {host:?}) does not take its own path {path:?}",
            route.pattern
        );
    }
}

/// An empty folder the config's relative paths resolve against, with a few names a config
/// may mention.
fn base_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("valet-fuzz-config-{}", std::process::id()));
        for sub in ["public", "static", "dist"] {
            let _ = std::fs::create_dir_all(dir.join(sub));
        }
        for file in ["app.py", "index.js", "cert.pem", "key.pem"] {
            let _ = std::fs::write(dir.join(file), b"");
        }
        dir
    })
}
