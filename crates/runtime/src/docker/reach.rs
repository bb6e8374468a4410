//! Where valet reaches a running container's ports.
//!
//! Ports are published on 127.0.0.1 (for operators, and as the fallback), but valet itself
//! connects to the container's own address on its network whenever the host can route there:
//! a published loopback port is served by docker-proxy, which accepts a connection before the
//! app listens and then drops it. Through it a TCP readiness probe passes at once and the cold
//! request gets a 502; on the container's address a connect is refused until the app listens,
//! and no userland proxy sits on the hot path. A rootless engine keeps container addresses in
//! its own network namespace, so there valet uses the published port.

use crate::driver::Endpoints;
use bollard::models::ContainerInspectResponse;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// How valet reaches containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// The container's address on this network (the internal network, or `bridge`).
    Network(&'a str),
    /// The published loopback port.
    Published,
}

impl<'a> Reach<'a> {
    /// `internal`: the class's internal network, if it has no internet. `rootless`: whether the
    /// engine runs rootless.
    pub fn choose(internal: Option<&'a str>, rootless: bool) -> Self {
        match (internal, rootless) {
            (Some(network), _) => Self::Network(network),
            (None, true) => Self::Published,
            (None, false) => Self::Network("bridge"),
        }
    }
}

/// Endpoints of each named port. On a network without an address for the container (a daemon
/// without the default bridge), the published port serves instead.
pub fn endpoints(
    ports: &[(String, u16)],
    inspect: &ContainerInspectResponse,
    reach: Reach<'_>,
) -> Result<Endpoints, String> {
    let settings = inspect
        .network_settings
        .as_ref()
        .ok_or("no network settings")?;
    let address = match reach {
        Reach::Network(network) => settings
            .networks
            .as_ref()
            .and_then(|n| n.get(network))
            .and_then(|e| e.ip_address.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok()),
        Reach::Published => None,
    };
    let mut out = Vec::with_capacity(ports.len());
    for (name, port) in ports {
        let addr = match address {
            Some(ip) => SocketAddr::new(ip, *port),
            None => {
                let published = settings
                    .ports
                    .as_ref()
                    .and_then(|p| p.get(&format!("{port}/tcp")))
                    .and_then(|b| b.as_ref())
                    .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()))
                    .ok_or_else(|| format!("port {port} has no address and is not published"))?;
                SocketAddr::from((Ipv4Addr::LOCALHOST, published))
            }
        };
        out.push((name.clone(), addr));
    }
    Ok(Endpoints { ports: out })
}

/// Endpoints of a container that has exited already: nothing listens on port 0.
pub fn unreachable(ports: &[(String, u16)]) -> Endpoints {
    let nowhere = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    Endpoints {
        ports: ports
            .iter()
            .map(|(name, _)| (name.clone(), nowhere))
            .collect(),
    }
}
