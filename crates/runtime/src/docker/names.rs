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
/// The deployed project a container, image, volume or network belongs to.
pub const PROJECT: &str = "valet.project";

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

/// A deployed project's own network, volume and image repository share this stem. Project ids
/// are made by valet (hex), but they are sanitized like any name all the same.
fn project_stem(scope: &str, project: &str) -> String {
    format!(
        "valet-{scope}-project-{}",
        sanitize(project).to_ascii_lowercase()
    )
}

/// The network of one deployed project: its versions' containers and nothing else.
pub fn project_network(scope: &str, project: &str) -> String {
    project_stem(scope, project)
}

/// The container of one version's instance. Version classes differ only at the end of long
/// names, past what [`instance_name`] keeps, so a hash of the whole class name tells them apart.
pub fn project_container(scope: &str, project: &str, id: &InstanceId) -> String {
    let class = hex::encode(&Sha256::digest(id.class().as_bytes())[..6]);
    format!("{}-{class}-{}", project_stem(scope, project), id.slug())
}

/// The volume of one deployed project, shared by its versions (`VALET_DATA_DIR`).
pub fn project_volume(scope: &str, project: &str) -> String {
    format!("{}-data", project_stem(scope, project))
}

/// The image of one version (build) of a deployed project.
pub fn project_image(scope: &str, project: &str, build: &str) -> String {
    format!(
        "{}:{}",
        project_stem(scope, project),
        sanitize(build).to_ascii_lowercase()
    )
}

/// Labels on what valet makes for a project as a whole (its network, volume, images).
pub fn project_labels(scope: &str, project: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (SCOPE.to_string(), scope.to_string()),
        (PROJECT.to_string(), project.to_string()),
    ])
}

/// Engine filter for everything of one project of one valet.
pub fn project_filter(scope: &str, project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{MANAGED}=true"),
            format!("{SCOPE}={scope}"),
            format!("{PROJECT}={project}"),
        ],
    )])
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
    fn a_replicas_key_gets_a_container_name_and_a_printable_label_of_its_own() {
        // `scale` (issue 21): the replica's key holds a control character.
        let own = InstanceId::new("Api", "doc");
        let replica = InstanceId::new("Api", valet_core::replica_key("doc", 2).as_ref());
        assert_ne!(instance_name("abc", &own), instance_name("abc", &replica));
        let label = escape_key(replica.key());
        assert!(label.chars().all(|c| c.is_ascii_graphic()), "{label:?}");
        assert_eq!(unescape_key(&label).as_deref(), Some(replica.key()));
    }

    #[test]
    fn versions_of_a_project_get_containers_of_their_own() {
        let one = InstanceId::new("project-64b25bc228a4b50f-a6f26f934d89f317-1", "main");
        let two = InstanceId::new("project-64b25bc228a4b50f-a6f26f934d89f317-2", "main");
        assert_eq!(
            instance_name("s", &one),
            instance_name("s", &two),
            "truncated alike"
        );
        let (a, b) = (
            project_container("s", "p", &one),
            project_container("s", "p", &two),
        );
        assert_ne!(a, b);
        assert!(a.starts_with("valet-s-project-p-"), "{a}");
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
