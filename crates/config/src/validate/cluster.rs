//! Checks of `[cluster]`: what a replica needs before it may join the others.

use super::Checks;
use crate::keypath::KeyPath;
use std::net::SocketAddr;
use std::time::Duration;

/// Shorter secrets can be guessed; every replica's peer listener trusts whoever has it.
pub const MIN_SECRET: usize = 32;

impl Checks<'_> {
    pub(super) fn cluster(&mut self) {
        let Some(cluster) = &self.config.cluster else {
            return;
        };
        let at = KeyPath::top("cluster");
        let store = &self.config.server.store;
        self.require(
            store.starts_with("postgres://") || store.starts_with("postgresql://"),
            KeyPath::top("server").key("store"),
            || {
                format!(
                    "[cluster] needs the PostgreSQL store, which every replica shares: set \
                     server.store = \"postgres://...\" (not {store:?})"
                )
            },
        );
        let node_ok = !cluster.node.is_empty()
            && cluster.node.len() <= 63
            && cluster
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        self.require(node_ok, at.key("node"), || {
            format!(
                "node {:?} must name this replica: 1-63 letters, digits, '-', '_' or '.', \
                 unique in the cluster",
                cluster.node
            )
        });
        let listen = cluster.listen.parse::<SocketAddr>();
        self.require(listen.is_ok(), at.key("listen"), || {
            format!(
                "listen {:?} must be the peer listener's socket address, like \"0.0.0.0:8789\"",
                cluster.listen
            )
        });
        let server = &self.config.server;
        for (name, other) in [
            ("listen", &server.listen),
            ("admin_listen", &server.admin_listen),
        ] {
            let same = other == &cluster.listen && listen.as_ref().is_ok_and(|a| a.port() != 0);
            self.require(!same, at.key("listen"), || {
                format!("the peer listener must differ from server.{name}")
            });
        }
        match &cluster.advertise {
            Some(advertise) => {
                let ok = advertise
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| !a.ip().is_unspecified() && a.port() != 0);
                self.require(ok, at.key("advertise"), || {
                    format!(
                        "advertise {advertise:?} must be an address the other replicas can dial, \
                         like \"10.0.0.11:8789\" (not a wildcard, not port 0)"
                    )
                });
            }
            None => {
                if let Ok(addr) = &listen {
                    self.require(
                        !addr.ip().is_unspecified() && addr.port() != 0,
                        at.key("advertise"),
                        || {
                            format!(
                                "listen {addr} is not an address the other replicas can dial: \
                                 set advertise to this replica's own address and port"
                            )
                        },
                    );
                }
            }
        }
        match (&cluster.secret, &cluster.secret_file) {
            (Some(_), Some(_)) => {
                self.fail(at.key("secret_file"), "set secret or secret_file, not both")
            }
            (None, None) => self.fail(
                at.clone(),
                format!(
                    "[cluster] needs secret (or secret_file): at least {MIN_SECRET} characters \
                     shared by every replica"
                ),
            ),
            (Some(secret), None) => {
                self.require(secret.trim().len() >= MIN_SECRET, at.key("secret"), || {
                    format!(
                        "secret is {} characters; it must be at least {MIN_SECRET}",
                        secret.trim().len()
                    )
                })
            }
            (None, Some(file)) => {
                let full = self.config.resolve(file);
                match std::fs::read_to_string(&full) {
                    Ok(text) => self.require(
                        text.trim().len() >= MIN_SECRET,
                        at.key("secret_file"),
                        || {
                            format!(
                                "the secret in {} is {} characters; it must be at least \
                                 {MIN_SECRET}",
                                full.display(),
                                text.trim().len()
                            )
                        },
                    ),
                    Err(e) => self.fail(
                        at.key("secret_file"),
                        format!("cannot read {}: {e}", full.display()),
                    ),
                }
            }
        }
        self.duration(at.key("lease_ttl"), &cluster.lease_ttl);
        if let Ok(ttl) = &cluster.lease_ttl.parsed {
            self.require(*ttl >= Duration::from_secs(1), at.key("lease_ttl"), || {
                "lease_ttl must be at least 1s: an owner renews three times per lease_ttl".into()
            });
        }
    }
}
