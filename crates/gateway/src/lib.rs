//! The public listener: routes, static assets and the proxy to instances.
//!
//! A request flows [`server`] -> [`handler`] -> ([`assets`] | [`key`] -> instance lease ->
//! [`proxy`] or [`upgrade`]); [`error`] turns failures into short JSON answers.
#![forbid(unsafe_code)]

// What valet's binary builds on.
pub mod assets;
pub mod auth;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;

// The HTTP/1.1 codec and the request path's pieces are the gateway's own: other crates cannot
// come to depend on them by accident. The `internals` feature opens the ones the fuzz targets
// (`valet-fuzzing`) and the benches drive, and only those.
#[cfg(feature = "internals")]
pub mod body;
#[cfg(not(feature = "internals"))]
pub(crate) mod body;
pub(crate) mod dispatch;
pub(crate) mod error;
#[cfg(feature = "internals")]
pub mod fields;
#[cfg(not(feature = "internals"))]
pub(crate) mod fields;
#[cfg(feature = "internals")]
pub mod forward;
#[cfg(not(feature = "internals"))]
pub(crate) mod forward;
pub(crate) mod handler;
#[cfg(feature = "internals")]
pub mod http1;
#[cfg(not(feature = "internals"))]
pub(crate) mod http1;
#[cfg(feature = "internals")]
pub mod key;
#[cfg(not(feature = "internals"))]
pub(crate) mod key;
#[cfg(feature = "internals")]
pub mod message;
#[cfg(not(feature = "internals"))]
pub(crate) mod message;
#[cfg(feature = "internals")]
pub mod path;
#[cfg(not(feature = "internals"))]
pub(crate) mod path;
pub(crate) mod peer;
pub(crate) mod pool;
pub(crate) mod ratelimit;
pub(crate) mod stream;
pub(crate) mod timer;
#[cfg(feature = "internals")]
pub mod upgrade;
#[cfg(not(feature = "internals"))]
pub(crate) mod upgrade;
pub(crate) mod worker;

pub use server::Server;
pub use state::GatewayState;
