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
macro_rules! internals {
    ($($module:ident),* $(,)?) => {
        $(
            #[cfg(feature = "internals")]
            pub mod $module;
            #[cfg(not(feature = "internals"))]
            pub(crate) mod $module;
        )*
    };
}
internals!(body, fields, forward, http1, key, message, path, upgrade);
pub(crate) mod balance;
pub(crate) mod dispatch;
pub(crate) mod error;
pub(crate) mod handler;
pub(crate) mod peer;
pub(crate) mod pool;
pub(crate) mod ratelimit;
pub(crate) mod stream;
pub(crate) mod timer;
pub(crate) mod worker;

pub use server::Server;
pub use state::GatewayState;
