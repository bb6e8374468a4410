//! The admin listener (`server.admin_listen`): the control plane beside the public gateway.
//!
//! - `/healthz`, `/readyz`: probes, no token.
//! - `/`, `/dashboard/*`: the dashboard's page, script and style, embedded in the binary; the
//!   page asks for the token and sends it with every API call, so serving it needs none.
//! - `/metrics`, `/v1/...`: need `Authorization: Bearer <admin token>` ([`token`]).
//!
//! It runs on valet's main runtime, never on a gateway worker, so a slow scrape or a log
//! follower never delays proxied requests.
#![forbid(unsafe_code)]

mod auth;
mod dashboard;
pub mod deploy;
mod deploy_stream;
mod error;
mod instances;
mod logs;
mod observe;
mod owned;
pub mod principal;
mod secrets;
pub mod token;
mod tokens;
mod upload_body;
mod views;

pub use deploy::DeployApi;
pub use error::ApiError;
pub use principal::{JwtCheck, Principal};
pub use token::{AdminToken, TokenSource};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use valet_config::Config;
use valet_core::Shutdown;
use valet_instances::Instances;
use valet_metrics::RouteStats;

/// What every admin handler reads.
pub struct Admin {
    pub(crate) instances: Instances,
    /// One per gateway route, plus the one for unrouted requests.
    pub(crate) routes: Vec<Arc<RouteStats>>,
    pub(crate) token: AdminToken,
    /// Ends log followers, and turns `/readyz` to 503, once valet begins to stop.
    pub(crate) shutdown: Shutdown,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) listen: String,
    pub(crate) admin_listen: String,
    /// The deploy API, when valet runs with a store.
    pub(crate) deploy: Option<DeployApi>,
}

impl Admin {
    pub fn new(
        instances: Instances,
        routes: Vec<Arc<RouteStats>>,
        token: AdminToken,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            instances,
            routes,
            token,
            shutdown,
            started: Instant::now(),
            started_at: SystemTime::now(),
            listen: String::new(),
            admin_listen: String::new(),
            deploy: None,
        }
    }
}

/// Every admin route.
pub fn router(admin: Arc<Admin>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(observe::metrics))
        .route("/v1/status", get(observe::status))
        .route("/v1/cluster", get(observe::cluster))
        .route("/v1/stats", get(observe::stats))
        .route("/v1/classes", get(instances::classes))
        .route("/v1/classes/{class}", get(instances::class))
        .route("/v1/instances", get(instances::list))
        .route("/v1/instances/{class}/{key}", get(instances::get))
        .route("/v1/instances/{class}/{key}/start", post(instances::start))
        .route("/v1/instances/{class}/{key}/stop", post(instances::stop))
        .route(
            "/v1/instances/{class}/{key}/destroy",
            post(instances::destroy),
        )
        .route("/v1/instances/{class}/{key}/logs", get(logs::logs))
        .route_layer(middleware::from_fn_with_state(
            admin.clone(),
            auth::require_token,
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .merge(dashboard::routes())
        .merge(guarded)
        .merge(deploy::routes(admin.clone()))
        .fallback(|| async { ApiError::NotFound("no such admin endpoint".into()) })
        .with_state(admin)
}

async fn readyz(
    axum::extract::State(admin): axum::extract::State<Arc<Admin>>,
) -> (StatusCode, Json<serde_json::Value>) {
    if admin.shutdown.is_shutdown() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "stopping" })),
        )
    } else {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
    }
}

/// The admin listener, bound and ready to serve.
pub struct AdminServer {
    listener: std::net::TcpListener,
    admin: Arc<Admin>,
}

impl AdminServer {
    /// Loads (or makes) the admin token and binds `server.admin_listen`. Binding happens here,
    /// before the gateway serves, so that anyone who sees the gateway up finds the admin up too.
    pub fn bind(
        config: &Config,
        instances: Instances,
        routes: Vec<Arc<RouteStats>>,
        gateway: SocketAddr,
        shutdown: Shutdown,
    ) -> Result<Self, String> {
        let (token, source) = AdminToken::load_or_create(config)?;
        match &source {
            TokenSource::Config => tracing::info!("admin token from server.admin_token"),
            TokenSource::File(path) => {
                tracing::info!(path = %path.display(), "admin token read from its file")
            }
            TokenSource::Created(path) => {
                tracing::info!(path = %path.display(), "admin token made (mode 0600)")
            }
        }
        let addr = &config.server.admin_listen;
        let listener = std::net::TcpListener::bind(addr.as_str())
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on {addr} (admin_listen): {e}"))?;
        let mut admin = Admin::new(instances, routes, token, shutdown);
        admin.listen = gateway.to_string();
        admin.admin_listen = listener
            .local_addr()
            .map_or_else(|_| addr.clone(), |a| a.to_string());
        Ok(Self {
            listener,
            admin: Arc::new(admin),
        })
    }

    /// Turns on the deploy API. Call before [`AdminServer::run`].
    pub fn with_deploy(mut self, deploy: DeployApi) -> Self {
        if let Some(admin) = Arc::get_mut(&mut self.admin) {
            admin.deploy = Some(deploy);
        }
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until shutdown, then lets open requests finish (log followers end at once).
    pub async fn run(self) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "cannot register the admin listener"),
        };
        let mut shutdown = self.admin.shutdown.clone();
        let app = router(self.admin);
        let served =
            axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }
}
