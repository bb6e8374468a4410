//! Load clients for `bench/run.sh`: the measurements wrk and oha cannot make (cold starts,
//! bursts to one cold key, many keys, WebSocket and SSE). Each prints one `RESULT k=v ...` line
//! that the script turns into the table.
#![forbid(unsafe_code)]

pub mod burst;
pub mod cold;
pub mod http;
pub mod keys;
pub mod sse;
pub mod stats;
pub mod ws;
