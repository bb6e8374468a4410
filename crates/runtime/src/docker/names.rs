//! Names and labels of what valet makes on the engine. Keys come from clients, so they reach a
//! name only as the hashed slug and a label only percent-escaped; the scope (a hash of the data
//! folder) keeps two valets sharing one engine out of each other's containers.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use valet_core::InstanceId;

pub const MANAGED: &str = "valet.managed";
pub const SCOPE: &str = "valet.scope";
pub const CLASS: &str = "valet.class";
pub const KEY: &str = "valet.key";
pub const CONFIG_HASH: &str = "valet.config-hash";

/// Everything but unreserved URL characters is escaped in the key label.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Which valet owns something: a hash of its data folder, which one valet at a time holds.
pub fn scope_of(data_dir: &Path) -> String {
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

/// Keeps what engine names allow (`[a-zA-Z0-9_.-]`), at most 40 characters.
pub fn sanitize(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '-',
        })
        .take(40)
        .collect();
    if clean.is_empty() {
        "class".into()
    } else {
        clean
    }
}

/// The container's name, which is also its volume's: one per (valet, class, key), so the
/// engine itself refuses a second container for one instance.
pub fn instance_name(scope: &str, id: &InstanceId) -> String {
    format!("valet-{scope}-{}-{}", sanitize(id.class()), id.slug())
}

/// The internal network of one valet (`enable_internet = false`).
pub fn internal_network(scope: &str) -> String {
    format!("valet-{scope}-internal")
}

pub fn escape_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ESCAPE).to_string()
}

pub fn unescape_key(label: &str) -> Option<String> {
    percent_decode_str(label)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// Labels on everything valet makes for one instance.
pub fn instance_labels(scope: &str, id: &InstanceId) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (SCOPE.to_string(), scope.to_string()),
        (CLASS.to_string(), id.class().to_string()),
        (KEY.to_string(), escape_key(id.key())),
    ])
}

/// Engine filter for everything of one valet.
pub fn scope_filter(scope: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{MANAGED}=true"), format!("{SCOPE}={scope}")],
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_stay_out_of_names_and_round_trip_through_labels() {
        let id = InstanceId::new("Api Class", "../../etc/passwd\u{e9} x=1");
        let name = instance_name("abc", &id);
        assert!(name.starts_with("valet-abc-Api-Class-"), "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        let label = escape_key(id.key());
        assert!(!label.contains('/') && !label.contains(' ') && !label.contains('='));
        assert_eq!(unescape_key(&label).as_deref(), Some(id.key()));
    }

    #[test]
    fn scopes_differ_per_data_folder() {
        assert_ne!(
            scope_of(Path::new("/a/.valet")),
            scope_of(Path::new("/b/.valet"))
        );
        assert_eq!(scope_of(Path::new("/a/.valet")).len(), 12);
    }
}
