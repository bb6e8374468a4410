//! HTTP/1.1 as valet speaks it itself, in layers:
//!
//! - the codec, with no I/O, owns every framing rule once: [`framing`] (list fields such as
//!   `Connection`, `Content-Length` values, header lines), [`hop`] (hop-by-hop fields),
//!   [`request`] (a client's head read, an instance's head written), [`response`] (an
//!   instance's head read, a client's head written) and [`chunked`] bodies;
//! - two sessions on top: [`server`] serves clients on plain TCP (and hands what it does not
//!   fully understand to hyper, through [`rewind`]), [`client`] speaks to instances on the
//!   connections of [`crate::pool`];
//! - [`body`]: an instance's response body, read off its connection as it is polled.
//!
//! [`hop`] holds the hop-by-hop rule for fields, used by both sessions, by the request rewrite
//! ([`crate::forward`]) and by the code around hyper alike.

pub mod body;
pub mod chunked;
pub mod client;
pub mod framing;
pub mod hop;
pub mod request;
pub mod response;
pub mod rewind;
pub mod server;
