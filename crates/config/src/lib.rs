//! valet.toml: the structs ([`model`]), string-valued units ([`values`]), instance rules
//! ([`rule`]), and loading with validation that reports every problem with its line
//! ([`load`], [`parse_str`]).
#![forbid(unsafe_code)]

mod access;
pub mod dockerfile;
mod error;
mod keypath;
mod load;
pub mod model;
mod net;
pub mod rule;
mod section;
mod validate;
pub mod values;
pub mod wrangler;

pub use error::{render_report, ConfigError, ConfigErrors};
pub use keypath::{KeyPath, Segment};
pub use load::{load, parse_str};
pub use model::*;
pub use net::{IpNet, IpNetParseError};
pub use rule::InstanceRule;
pub use validate::Problem;
pub use values::{DurationValue, SizeValue};
