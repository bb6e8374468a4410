//! Accessors the rest of valet reads the config through. They assume [`Config::validate`]
//! passed (the loader guarantees it), so they answer plainly instead of returning `Result`s.

use crate::model::{Config, ContainerClass, RouteConfig, ServerConfig};
use crate::net::IpNet;
use crate::rule::InstanceRule;
use std::path::{Path, PathBuf};

impl Config {
    /// `p` as valet uses it: relative paths are relative to the config file's folder, so
    /// `valet up` behaves the same from any working directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The data folder (store, instance data, logs), resolved.
    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.server.data_dir)
    }

    /// The container class named `name`.
    pub fn class(&self, name: &str) -> Option<&ContainerClass> {
        self.containers.iter().find(|c| c.class_name == name)
    }
}

impl RouteConfig {
    /// The route's instance rule. After validation it always parses; were it not to, the raw
    /// text becomes one fixed key, which keeps requests on a single instance instead of panicking.
    pub fn rule(&self) -> InstanceRule {
        InstanceRule::parse(&self.instance)
            .unwrap_or_else(|_| InstanceRule::Name(self.instance.clone()))
    }
}

impl ServerConfig {
    /// Base of the endpoint URLs valet hands out, without a trailing `/`: `public_url` when set,
    /// else `http://` (or `https://` with `tls`) plus `listen`.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    /// `trusted_proxies` as address blocks. Entries that do not parse are left out (validation
    /// reports them), so a bad entry trusts nobody rather than everybody.
    pub fn trusted_proxy_nets(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TlsConfig;

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let config = Config {
            base_dir: PathBuf::from("/srv/app"),
            ..Config::default()
        };
        assert_eq!(
            config.resolve(Path::new("public")),
            PathBuf::from("/srv/app/public")
        );
        assert_eq!(
            config.resolve(Path::new("/etc/cert.pem")),
            PathBuf::from("/etc/cert.pem")
        );
        assert_eq!(config.data_dir(), PathBuf::from("/srv/app/.valet"));
    }

    #[test]
    fn public_url_defaults_to_the_listener() {
        let mut server = ServerConfig::default();
        assert_eq!(server.public_url(), "http://127.0.0.1:8787");
        server.tls = Some(TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        });
        assert_eq!(server.public_url(), "https://127.0.0.1:8787");
        server.public_url = Some("https://valet.example.com/".into());
        assert_eq!(server.public_url(), "https://valet.example.com");
    }

    #[test]
    fn trusted_proxies_become_blocks() {
        let server = ServerConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()],
            ..ServerConfig::default()
        };
        let nets = server.trusted_proxy_nets();
        assert_eq!(nets.len(), 2);
        assert!(nets[0].contains("10.9.8.7".parse().unwrap()));
        assert!(nets[1].contains("::1".parse().unwrap()));
    }
}
