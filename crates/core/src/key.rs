//! Instance keys come from clients (a path segment, a header, a cookie), so they are bounded in
//! length and never used raw in a file, process or label name: those use [`InstanceId::slug`].

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// Longest key accepted from a client. Long enough for UUIDs, JWT subjects and project names,
/// short enough that a stream of 10 KB keys cannot bloat the instance table.
pub const MAX_KEY_LEN: usize = 256;

/// Why a client-supplied key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("instance key is empty")]
    Empty,
    #[error("instance key is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("instance key holds a control character")]
    ControlChar,
}

/// Checks a key taken from a request. Any printable text is allowed: the key is only ever
/// compared and hashed, never interpreted as a path.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    if key.chars().any(char::is_control) {
        return Err(KeyError::ControlChar);
    }
    Ok(())
}

/// Separates a key from its replica number in a replica's internal key (`scale`, issue 21).
/// A control character: [`validate_key`] refuses it in every client's key, so a replica's key
/// never equals a key a client can ask for, and its records, logs and slug stay its own.
pub const REPLICA_SEP: char = '\u{1f}';

/// The internal key of replica `replica` of `key`: replica 0 is the key itself (a class
/// without `scale` has only that one), replica n is the key, [`REPLICA_SEP`] and n.
pub fn replica_key(key: &str, replica: u32) -> std::borrow::Cow<'_, str> {
    if replica == 0 {
        key.into()
    } else {
        format!("{key}{REPLICA_SEP}{replica}").into()
    }
}

/// Checks a key valet itself may name, a client's or a replica's ([`replica_key`]), as a
/// peer's forwarded request does: a replica's is a valid client key, [`REPLICA_SEP`] and a
/// number from 1. Returns the replica number (0 for a client's key).
pub fn validate_instance_key(key: &str) -> Result<u32, KeyError> {
    let Some((user, n)) = key.split_once(REPLICA_SEP) else {
        return validate_key(key).map(|()| 0);
    };
    validate_key(user)?;
    // Written as `replica_key` writes it: "01" or "+1" would name a second record.
    match n.parse::<u32>() {
        Ok(number) if number >= 1 && number.to_string() == n => Ok(number),
        _ => Err(KeyError::ControlChar),
    }
}

/// The address of one instance: a class and a key. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    class: Arc<str>,
    key: Arc<str>,
}

impl InstanceId {
    pub fn new(class: impl Into<Arc<str>>, key: impl Into<Arc<str>>) -> Self {
        Self {
            class: class.into(),
            key: key.into(),
        }
    }

    pub fn class(&self) -> &str {
        &self.class
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key a client asked for: [`Self::key`] without a replica's number.
    pub fn user_key(&self) -> &str {
        self.key
            .split_once(REPLICA_SEP)
            .map_or(&self.key, |(key, _)| key)
    }

    /// Which replica of its key this instance is (0 for the key's own instance).
    pub fn replica(&self) -> u32 {
        self.key
            .split_once(REPLICA_SEP)
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }

    /// A name safe for files, process titles and container labels: a readable prefix of the key
    /// (ASCII alphanumerics only) plus a hash of the whole key, so two keys never collide and
    /// `..`, `/`, `%2F` or NUL can never reach a path.
    pub fn slug(&self) -> String {
        let readable: String = self
            .key
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(24)
            .collect();
        let digest = Sha256::digest(self.key.as_bytes());
        let hash = hex::encode(&digest[..8]);
        if readable.is_empty() {
            hash
        } else {
            format!("{readable}-{hash}")
        }
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.replica() {
            0 => write!(f, "{}/{}", self.class, self.key),
            n => write!(f, "{}/{} (replica {n})", self.class, self.user_key()),
        }
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_never_holds_path_characters() {
        for key in ["../../etc/passwd", "a/b", "%2F..%2F", "nul\0byte", "."] {
            let slug = InstanceId::new("C", key).slug();
            assert!(
                slug.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{slug}"
            );
            assert!(!slug.is_empty());
        }
    }

    #[test]
    fn slugs_of_different_keys_differ() {
        let a = InstanceId::new("C", "a/b").slug();
        let b = InstanceId::new("C", "ab").slug();
        assert_ne!(a, b);
    }

    #[test]
    fn keys_are_bounded() {
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert!(matches!(
            validate_key(&"x".repeat(10_000)),
            Err(KeyError::TooLong { .. })
        ));
        assert_eq!(validate_key("a\0b"), Err(KeyError::ControlChar));
        assert_eq!(validate_key("project-42"), Ok(()));
    }

    #[test]
    fn a_replica_key_is_none_a_client_can_send_and_names_its_key_and_number() {
        assert_eq!(replica_key("doc", 0), "doc");
        let third = replica_key("doc", 3);
        assert_eq!(validate_key(&third), Err(KeyError::ControlChar));
        let id = InstanceId::new("C", third.as_ref());
        assert_eq!((id.user_key(), id.replica()), ("doc", 3));
        assert_eq!(id.to_string(), "C/doc (replica 3)");
        assert_ne!(id.slug(), InstanceId::new("C", "doc3").slug());
        assert_eq!(validate_instance_key(&third), Ok(3));
        assert_eq!(validate_instance_key("doc"), Ok(0));
        for bad in [
            "doc\u{1f}0",
            "doc\u{1f}01",
            "doc\u{1f}x",
            "\u{1f}2",
            "a\u{1f}1\u{1f}1",
        ] {
            assert!(validate_instance_key(bad).is_err(), "{bad:?}");
        }
        let own = InstanceId::new("C", "doc");
        assert_eq!(
            (own.user_key(), own.replica(), own.to_string().as_str()),
            ("doc", 0, "C/doc")
        );
    }
}
