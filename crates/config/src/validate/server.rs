//! Checks of `[server]`, `[assets]`, `[auth]` and `[plans.*]`.

use super::Checks;
use crate::keypath::KeyPath;
use crate::net::IpNet;
use std::net::SocketAddr;

/// Values of `not_found_handling`, Workers' names.
const NOT_FOUND_HANDLING: [&str; 3] = ["single-page-application", "404-page", "none"];

impl Checks<'_> {
    pub(super) fn server(&mut self) {
        let server = &self.config.server;
        let at = KeyPath::top("server");
        for (name, addr) in [
            ("listen", &server.listen),
            ("admin_listen", &server.admin_listen),
        ] {
            self.require(addr.parse::<SocketAddr>().is_ok(), at.key(name), || {
                format!("{addr:?} is not a socket address like \"127.0.0.1:8787\" or \"[::]:80\"")
            });
        }
        // Port 0 asks the OS for a free port, so two "127.0.0.1:0" (tests do that) never clash.
        let clash = server.listen == server.admin_listen
            && server
                .listen
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.port() != 0);
        self.require(!clash, at.key("admin_listen"), || {
            "admin_listen must differ from listen: the control plane needs its own listener".into()
        });
        if let Some(token) = &server.admin_token {
            // A short token can be guessed; unset, valet makes a random one.
            self.require(token.trim().len() >= 16, at.key("admin_token"), || {
                "admin_token must be at least 16 characters (or unset, to have one made)".into()
            });
        }
        if let Some(workers) = server.workers {
            self.require((1..=1024).contains(&workers), at.key("workers"), || {
                format!("workers must be between 1 and 1024, not {workers}")
            });
        }
        match server.driver.as_str() {
            "process" | "docker" | "swarm" | "kubernetes" => {}
            other => self.fail(
                at.key("driver"),
                format!(
                    "unknown driver {other:?} (use \"process\", \"docker\", \"swarm\" or \"kubernetes\")"
                ),
            ),
        }
        let store = server.store.as_str();
        let store_ok = store == "sqlite"
            || store.starts_with("postgres://")
            || store.starts_with("postgresql://");
        self.require(store_ok, at.key("store"), || {
            format!("store {store:?} must be \"sqlite\" or a \"postgres://\" URL")
        });
        if let Some(url) = &server.public_url {
            let ok = url.starts_with("http://") || url.starts_with("https://");
            self.require(ok, at.key("public_url"), || {
                format!("public_url {url:?} must start with http:// or https://")
            });
        }
        self.require(
            !server.data_dir.as_os_str().is_empty(),
            at.key("data_dir"),
            || "data_dir must not be empty".into(),
        );
        if let Some(tls) = &server.tls {
            self.file_exists(at.key("tls").key("cert"), &tls.cert, "certificate file");
            self.file_exists(at.key("tls").key("key"), &tls.key, "key file");
        }
        for (i, proxy) in server.trusted_proxies.iter().enumerate() {
            if let Err(e) = proxy.parse::<IpNet>() {
                self.fail(at.key("trusted_proxies").index(i), e.to_string());
            }
        }
        self.size(at.key("max_body_size"), &server.max_body_size);
        self.duration(at.key("forget_after"), &server.forget_after);
        self.duration(
            at.key("cold_starts_per_client").key("per"),
            &server.cold_starts_per_client.per,
        );
        let timeouts = &server.timeouts;
        let at = at.key("timeouts");
        self.duration(at.key("connect"), &timeouts.connect);
        self.duration(at.key("first_byte"), &timeouts.first_byte);
        self.duration(at.key("idle"), &timeouts.idle);
        self.duration(at.key("header_read"), &timeouts.header_read);
        self.duration(at.key("pull"), &timeouts.pull);
        if timeouts.pull.parsed.as_ref().is_ok_and(|d| d.is_zero()) {
            self.fail(at.key("pull"), "timeouts.pull must be longer than 0");
        }
    }

    pub(super) fn assets(&mut self) {
        let Some(assets) = &self.config.assets else {
            return;
        };
        let at = KeyPath::top("assets");
        let directory = self.config.resolve(&assets.directory);
        if !directory.is_dir() {
            let why = if directory.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            self.fail(
                at.key("directory"),
                format!("{} {why}", directory.display()),
            );
        }
        let handling = assets.not_found_handling.as_str();
        self.require(
            NOT_FOUND_HANDLING.contains(&handling),
            at.key("not_found_handling"),
            || {
                format!(
                    "not_found_handling {handling:?} is unknown (use {})",
                    NOT_FOUND_HANDLING.map(|h| format!("{h:?}")).join(", ")
                )
            },
        );
    }

    pub(super) fn auth(&mut self) {
        let Some(auth) = &self.config.auth else {
            return;
        };
        let at = KeyPath::top("auth");
        if let Some(secret) = &auth.jwt_secret {
            self.require(!secret.is_empty(), at.key("jwt_secret"), || {
                "jwt_secret is empty: anyone could sign tokens".into()
            });
        }
        self.require(
            auth.jwt_secret.is_some() || !auth.jwt_public_keys.is_empty(),
            at,
            || "[auth] needs jwt_secret (HS256) or jwt_public_keys (RS256 / ES256)".into(),
        );
        for (i, key) in auth.jwt_public_keys.iter().enumerate() {
            let at = KeyPath::top("auth").key("jwt_public_keys").index(i);
            self.file_exists(at, key, "public key file");
        }
    }

    pub(super) fn plans(&mut self) {
        for (name, plan) in &self.config.plans {
            self.size(
                KeyPath::top("plans").key(name).key("max_upload"),
                &plan.max_upload,
            );
        }
    }
}
