//! Values that are written as strings in valet.toml and read into typed values. They deserialize
//! from any string without failing, so that one bad duration does not hide the next mistake:
//! [`crate::Config::validate`] reports every unreadable value with its line.

use serde::{Deserialize, Deserializer};
use std::time::Duration;
use valet_core::{parse_duration, parse_size};

/// A duration such as `"30s"` or `"10m"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationValue {
    pub raw: String,
    pub parsed: Result<Duration, String>,
}

impl DurationValue {
    pub fn new(raw: &str) -> Self {
        Self {
            raw: raw.to_string(),
            parsed: parse_duration(raw).map_err(|e| e.to_string()),
        }
    }

    /// The duration. Only call after validation passed; an unreadable value reads as zero.
    pub fn get(&self) -> Duration {
        self.parsed.clone().unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(&String::deserialize(d)?))
    }
}

/// A size such as `"10MB"` or `"1GiB"`; a bare integer is bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeValue {
    pub raw: String,
    pub parsed: Result<u64, String>,
}

impl SizeValue {
    pub fn new(raw: &str) -> Self {
        Self {
            raw: raw.to_string(),
            parsed: parse_size(raw).map_err(|e| e.to_string()),
        }
    }

    /// The size in bytes. Only call after validation passed; an unreadable value reads as zero.
    pub fn get(&self) -> u64 {
        self.parsed.clone().unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Text(s) => Self::new(&s),
            Raw::Bytes(n) => Self {
                raw: n.to_string(),
                parsed: Ok(n),
            },
        })
    }
}
