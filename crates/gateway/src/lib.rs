//! The public listener: routes, static assets and the proxy to instances.
#![forbid(unsafe_code)]

pub mod assets;
pub mod body;
