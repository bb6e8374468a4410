//! The public listener: routes, static assets and the proxy to instances.
//!
//! A request flows [`server`] -> [`handler`] -> ([`assets`] | [`key`] -> instance lease ->
//! [`proxy`] or [`upgrade`]); [`error`] turns failures into short JSON answers.
#![forbid(unsafe_code)]

pub mod assets;
pub mod auth;
pub mod body;
pub mod dispatch;
pub mod error;
pub mod fields;
pub mod forward;
pub mod handler;
pub mod http1;
pub mod key;
pub mod message;
pub mod path;
pub mod peer;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod state;
pub mod stream;
pub mod timer;
pub mod tls;
pub mod upgrade;
pub mod worker;

pub use server::Server;
pub use state::GatewayState;
