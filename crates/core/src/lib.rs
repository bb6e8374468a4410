//! Types every other valet crate shares. Nothing here does I/O.
#![forbid(unsafe_code)]

pub mod key;
pub mod shutdown;
pub mod state;
pub mod units;

pub use key::{
    replica_key, validate_instance_key, validate_key, InstanceId, KeyError, MAX_KEY_LEN,
    REPLICA_SEP,
};
pub use shutdown::Shutdown;
pub use state::InstanceState;
pub use units::{parse_duration, parse_size, UnitError};
