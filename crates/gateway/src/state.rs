//! What every request of a listener shares.

use crate::assets::Assets;
use crate::auth::JwtVerifier;
use crate::routes::RouteTable;
use valet_config::IpNet;
use valet_instances::Instances;

/// Everything a request needs, shared by all connections of the listener.
pub struct GatewayState {
    pub routes: RouteTable,
    pub assets: Option<Assets>,
    pub instances: Instances,
    pub trusted_proxies: Vec<IpNet>,
    /// Checks tokens for routes with `auth = "jwt"`.
    pub jwt: Option<JwtVerifier>,
    /// Whether the listener terminates TLS (for `X-Forwarded-Proto`).
    pub https: bool,
    pub access_log: bool,
    /// Set on a peer listener (cluster mode): the token every request must carry. Such a
    /// listener serves other replicas' forwarded requests and nothing else.
    pub peer_token: Option<Box<[u8]>>,
}
