//! valet.toml: the structs ([`model`]), string-valued units ([`values`]), instance rules
//! ([`rule`]), and loading with validation that reports every problem with its line.
#![forbid(unsafe_code)]

pub mod model;
pub mod rule;
pub mod values;

pub use model::*;
pub use rule::InstanceRule;
pub use values::{DurationValue, SizeValue};
