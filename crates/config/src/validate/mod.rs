//! The checks behind `valet check`: everything that can be known wrong before anything starts.
//! Checks never stop at the first problem; each one names the key it is about, and the loader
//! turns that key into a line and column.

mod cluster;
mod containers;
mod deploy;
mod kubernetes;
mod registries;
mod routes;
mod server;
mod swarm;

use crate::keypath::KeyPath;
use crate::values::{DurationValue, SizeValue};
use crate::Config;
use std::collections::BTreeSet;
use std::path::Path;

/// One failed check: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value lives, e.g. `containers[0].sleep_after`.
    pub key: KeyPath,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

/// Parts of the file that failed to deserialize, and so are missing from the [`Config`].
/// Checks that refer to them stay quiet: their own error is already reported, and "unknown
/// class" on top of "missing field command" would send the user after a problem that is not one.
#[derive(Debug, Default)]
pub(crate) struct Broken {
    /// `class_name`s of `[[containers]]` entries that did not deserialize.
    pub classes: BTreeSet<String>,
    /// `[assets]` is present but did not deserialize.
    pub assets: bool,
    /// `[auth]` is present but did not deserialize.
    pub auth: bool,
}

impl Config {
    /// Every problem of this config, in no particular order. Empty means valid. Paths such as
    /// `assets.directory` are checked against the file system, relative to `base_dir`.
    pub fn validate(&self) -> Vec<Problem> {
        self.validate_around(&Broken::default())
    }

    pub(crate) fn validate_around(&self, broken: &Broken) -> Vec<Problem> {
        let mut checks = Checks {
            config: self,
            broken,
            problems: Vec::new(),
        };
        checks.server();
        checks.assets();
        checks.auth();
        checks.plans();
        checks.deploy();
        checks.registries();
        checks.cluster();
        checks.swarm();
        checks.kubernetes();
        checks.containers();
        checks.routes();
        checks.problems
    }
}

/// The running state of one validation pass.
pub(crate) struct Checks<'c> {
    config: &'c Config,
    broken: &'c Broken,
    problems: Vec<Problem>,
}

impl Checks<'_> {
    fn fail(&mut self, key: KeyPath, message: impl Into<String>) {
        self.problems.push(Problem {
            key,
            message: message.into(),
        });
    }

    /// Fails unless `ok`; saves an `if` at each of the many one-line checks.
    fn require(&mut self, ok: bool, key: KeyPath, message: impl FnOnce() -> String) {
        if !ok {
            self.fail(key, message());
        }
    }

    fn duration(&mut self, key: KeyPath, value: &DurationValue) {
        if let Err(reason) = &value.parsed {
            self.fail(key, reason.clone());
        }
    }

    fn size(&mut self, key: KeyPath, value: &SizeValue) {
        if let Err(reason) = &value.parsed {
            self.fail(key, reason.clone());
        }
    }

    /// A file the config names must exist now: finding out at the first TLS handshake or the
    /// first JWT is too late.
    fn file_exists(&mut self, key: KeyPath, path: &Path, what: &str) {
        let full = self.config.resolve(path);
        if !full.is_file() {
            let why = if full.exists() {
                "is not a file"
            } else {
                "does not exist"
            };
            self.fail(key, format!("{what} {} {why}", full.display()));
        }
    }

    /// Environment variable names as a POSIX shell accepts them; anything else is lost or
    /// mangled on the way into the instance.
    fn env_name(&mut self, key: KeyPath, name: &str) {
        let mut chars = name.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        self.require(ok, key, || {
            format!("{name:?} is not a valid environment variable name (letters, digits, _; not starting with a digit)")
        });
    }
}

/// `a, b, c`, or `none` for an empty list: for "defined: ..." hints.
fn listing<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// `(key, message)` of every problem of a config text, for the sections' tests.
#[cfg(test)]
fn test_problems(text: &str) -> Vec<(String, String)> {
    let (file, base) = (
        std::path::Path::new("valet.toml"),
        std::path::Path::new("/srv"),
    );
    match crate::parse_str(text, file, base) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .errors
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect(),
    }
}
