//! What valet asks the apiserver for: the names, labels and bodies of an instance's Pod, its
//! Secret, its PersistentVolumeClaim and a class's NetworkPolicy. No I/O here, so every rule
//! is unit-tested.
//!
//! Label values may hold at most 63 of `[A-Za-z0-9._-]`: a key (any text a client sent) fits
//! none, so it travels percent-escaped in an annotation, and its slug in a label.

use crate::docker::container::Plan;
use crate::docker::names::escape_key;
use crate::docker::settings::ClassSettings;
use crate::driver::{DriverError, InstanceSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    ResourceRequirements, Secret, SecretKeySelector, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use valet_core::InstanceId;

pub const MANAGED: &str = "valet.managed";
pub const SCOPE: &str = "valet.scope";
/// The class, made label-safe; the exact name is in the [`CLASS_NAME`] annotation.
pub const CLASS: &str = "valet.class";
/// The key's slug (readable part and hash).
pub const KEY: &str = "valet.key-slug";
pub const CONFIG_HASH: &str = "valet.config-hash";
/// `[cluster] node` of the replica that made it.
pub const OWNER: &str = "valet.owner";
/// The deployed project a version's Pod runs (`valet.project`, as the Docker driver's).
pub const PROJECT: &str = crate::docker::names::PROJECT;
/// Annotations: the exact class and the percent-escaped key.
pub const CLASS_NAME: &str = "valet.io/class";
pub const KEY_ESCAPED: &str = "valet.io/key";
/// The one container of an instance's Pod.
pub const CONTAINER: &str = "instance";
/// Size asked of a key's claim: valet.toml has no size per volume yet.
const VOLUME_SIZE: &str = "1Gi";

/// Lowercase `[a-z0-9-]` of `text`, at most `most` characters, no `-` at either end.
fn dns_part(text: &str, most: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(most)
        .collect();
    clean.trim_matches('-').to_string()
}

/// A readable part of `text` and a hash of all of it, so `Web` and `web`, or two keys with the
/// same first characters, stay apart.
fn hashed(text: &str, readable: usize, hash_bytes: usize) -> String {
    let hash = hex::encode(&Sha256::digest(text.as_bytes())[..hash_bytes]);
    match dns_part(text, readable) {
        part if part.is_empty() => hash,
        part => format!("{part}-{hash}"),
    }
}

/// `valet-<scope>-<class>-<key>`: the stem of the key's Pods and its claim's name. Short
/// enough that a Pod's name is its hostname (the kubelet cuts hostnames at 63).
pub fn key_stem(scope: &str, id: &InstanceId) -> String {
    format!(
        "valet-{scope}-{}-{}",
        hashed(id.class(), 8, 3),
        hashed(id.key(), 10, 5)
    )
}

/// A new Pod's name: the key's stem and a random suffix, so a new Pod never waits for the
/// name of the last one, which the kubelet may still be deleting. Its Secret has the same name.
pub fn pod_name(scope: &str, id: &InstanceId) -> String {
    let suffix: String = (0..5)
        .map(|_| fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789").map_or('x', |b| *b as char))
        .collect();
    format!("{}-{suffix}", key_stem(scope, id))
}

/// The key's claim (`volume`): one per key, kept across sleeps until `destroy`.
pub fn claim_name(scope: &str, id: &InstanceId) -> String {
    format!("{}-data", key_stem(scope, id))
}

/// The pull Secret of class images from one registry `host` (`127.0.0.1:5000`, `ghcr.io`).
pub fn pull_secret_name(scope: &str, host: &str) -> String {
    format!("valet-{scope}-registry-{}", hashed(host, 24, 4))
}

/// One NetworkPolicy per valet: it selects the Pods of classes with `enable_internet = false`.
pub fn policy_name(scope: &str) -> String {
    format!("valet-{scope}-no-egress")
}

/// Marks a Pod the egress policy selects.
const INTERNAL: &str = "valet.internal";

/// Labels of everything of one key (Pod, Secret, claim).
pub fn labels(scope: &str, id: &InstanceId, owner: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (SCOPE.to_string(), scope.to_string()),
        (CLASS.to_string(), hashed(id.class(), 40, 3)),
        (KEY.to_string(), label_value(&id.slug())),
    ]);
    if let Some(owner) = owner {
        labels.insert(OWNER.to_string(), label_value(owner));
    }
    labels
}

/// A label value from any text: `[A-Za-z0-9._-]`, at most 63, alphanumeric at both ends.
fn label_value(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .take(63)
        .collect();
    clean
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Selects every Pod (or Secret, claim) of one valet.
pub fn scope_selector(scope: &str) -> String {
    format!("{MANAGED}=true,{SCOPE}={scope}")
}

/// The instance an object of this valet belongs to, from its annotations.
pub fn instance_of(meta: &ObjectMeta) -> Option<InstanceId> {
    let notes = meta.annotations.as_ref()?;
    let class = notes.get(CLASS_NAME)?;
    let key = crate::docker::names::unescape_key(notes.get(KEY_ESCAPED)?)?;
    valet_core::validate_key(&key).ok()?;
    Some(InstanceId::new(class.as_str(), key))
}

/// One instance's Pod and, when it has secrets, its Secret.
pub struct PodPlan<'a> {
    pub spec: &'a InstanceSpec,
    pub settings: &'a ClassSettings,
    pub scope: &'a str,
    pub owner: Option<&'a str>,
    /// `spec.nodeName`, for clusters without a scheduler.
    pub node: Option<&'a str>,
    pub image: &'a str,
    /// `Always`, `IfNotPresent` or `Never`.
    pub pull: &'a str,
    pub config_hash: &'a str,
    /// Names of the class's secrets: these go to the Secret, never into the Pod's body.
    pub secrets: &'a HashSet<String>,
    pub name: &'a str,
}

impl PodPlan<'_> {
    fn meta(&self) -> ObjectMeta {
        let mut labels = labels(self.scope, &self.spec.id, self.owner);
        labels.insert(CONFIG_HASH.into(), self.config_hash.into());
        if !self.settings.internet {
            labels.insert(INTERNAL.into(), "true".into());
        }
        // A deployed version's Pod (and Secret) names its project, as its container does
        // with the Docker driver: `kubectl get pods -l valet.project=ID`.
        if let Some(project) = &self.settings.project {
            labels.insert(PROJECT.into(), label_value(project));
        }
        let annotations = BTreeMap::from([
            (CLASS_NAME.to_string(), self.spec.id.class().to_string()),
            (KEY_ESCAPED.to_string(), escape_key(self.spec.id.key())),
        ]);
        ObjectMeta {
            name: Some(self.name.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }
    }

    fn plan(&self) -> Plan<'_> {
        Plan {
            spec: self.spec,
            settings: self.settings,
            scope: self.scope,
            image: self.image,
            config_hash: self.config_hash,
            network: None,
        }
    }

    /// The Secret with the instance's secret values, or `None` when the class has none set.
    pub fn secret(&self) -> Option<Secret> {
        let data: BTreeMap<String, ByteString> = (self.spec.env.iter())
            .filter(|(k, _)| self.secrets.contains(k))
            .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
            .collect();
        (!data.is_empty()).then(|| Secret {
            metadata: self.meta(),
            data: Some(data),
            ..Default::default()
        })
    }

    pub fn pod(&self) -> Result<Pod, DriverError> {
        let plan = self.plan();
        let (command, default) = plan.command()?;
        let env = plan
            .env(default)
            .into_iter()
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                let from_secret = self.secrets.contains(name);
                Some(EnvVar {
                    name: name.to_string(),
                    value: (!from_secret).then(|| value.to_string()),
                    value_from: from_secret.then(|| EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: self.name.to_string(),
                            key: name.to_string(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                })
            })
            .collect();
        let ports = self
            .spec
            .ports
            .iter()
            .map(|(name, port)| ContainerPort {
                // Port names are at most 15 characters of [a-z0-9-].
                name: Some(
                    label_value(&name.to_ascii_lowercase())
                        .chars()
                        .take(15)
                        .collect(),
                )
                .filter(|n: &String| !n.is_empty() && !n.contains(['.', '_'])),
                container_port: i32::from(*port),
                protocol: Some("TCP".into()),
                ..Default::default()
            })
            .collect();
        let resources = &self.settings.resources;
        let quantities = BTreeMap::from([
            (
                "cpu".to_string(),
                Quantity(format!("{}m", (resources.nano_cpus / 1_000_000).max(1))),
            ),
            ("memory".to_string(), Quantity(resources.memory.to_string())),
        ]);
        let claim = claim_name(self.scope, &self.spec.id);
        let mounts = self.settings.volume.as_ref().map(|path| {
            vec![VolumeMount {
                name: "data".into(),
                mount_path: path.clone(),
                ..Default::default()
            }]
        });
        let volumes = self.settings.volume.as_ref().map(|_| {
            vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: None,
                }),
                ..Default::default()
            }]
        });
        let container = Container {
            name: CONTAINER.into(),
            image: Some(self.image.to_string()),
            image_pull_policy: Some(self.pull.to_string()),
            // The image's entrypoint stays; `command` of valet.toml is the argument list, as
            // with the Docker driver.
            args: (!command.is_empty()).then_some(command),
            env: Some(env),
            ports: Some(ports),
            resources: Some(ResourceRequirements {
                requests: Some(quantities.clone()),
                limits: Some(quantities),
                ..Default::default()
            }),
            volume_mounts: mounts,
            ..Default::default()
        };
        let grace = self.settings.stop_timeout.as_secs_f64().ceil() as i64;
        Ok(Pod {
            metadata: self.meta(),
            spec: Some(PodSpec {
                containers: vec![container],
                node_name: self.node.map(str::to_string),
                // valet restarts a crashed instance with its own backoff.
                restart_policy: Some("Never".into()),
                termination_grace_period_seconds: Some(grace),
                // Instances talk to their clients, not to the apiserver.
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                volumes,
                ..Default::default()
            }),
            status: None,
        })
    }
}

/// The claim of a key with a `volume`.
pub fn claim(scope: &str, id: &InstanceId, owner: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(scope, id)),
            labels: Some(labels(scope, id, owner)),
            annotations: Some(BTreeMap::from([
                (CLASS_NAME.to_string(), id.class().to_string()),
                (KEY_ESCAPED.to_string(), escape_key(id.key())),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(VOLUME_SIZE.into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Denies every egress of the Pods of `enable_internet = false` classes (ingress, valet's
/// requests, stays open). Enforced only by a CNI that implements NetworkPolicy.
pub fn no_egress(scope: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(scope)),
            labels: Some(BTreeMap::from([
                (MANAGED.to_string(), "true".to_string()),
                (SCOPE.to_string(), scope.to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (SCOPE.to_string(), scope.to_string()),
                    (INTERNAL.to_string(), "true".to_string()),
                ])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(Vec::new()),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn settings(extra: &str) -> ClassSettings {
        let text = format!(
            "[server]\ndriver = \"kubernetes\"\n[[containers]]\nclass_name = \"Web_App\"\n\
             image = \"busybox:1\"\ncommand = [\"httpd\", \"-p\", \"{{port}}\"]\n\
             ports = {{ http = 8080, admin = 9000 }}\ndefault_port = \"http\"\n\
             instance_type = \"lite\"\nstop_timeout = \"2500ms\"\n{extra}"
        );
        let config = valet_config::parse_str(&text, Path::new("valet.toml"), Path::new("/srv"))
            .expect("test config is valid");
        ClassSettings::from_config(&config, &config.containers[0], u32::MAX)
    }

    fn spec(key: &str) -> InstanceSpec {
        InstanceSpec {
            id: InstanceId::new("Web_App", key),
            command: vec!["httpd".into(), "-p".into(), "{port}".into()],
            image: Some("busybox:1".into()),
            ports: vec![("http".into(), 8080), ("admin".into(), 9000)],
            default_port: "http".into(),
            env: vec![
                ("GREETING".into(), "hi".into()),
                ("TOKEN".into(), "t0p".into()),
            ],
            work_dir: PathBuf::from("/srv"),
            data_dir: PathBuf::from("/srv/.valet/data"),
            log_path: PathBuf::from("/srv/.valet/logs/x.log"),
            user: None,
            log_lines: 10,
        }
    }

    fn dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    }

    #[test]
    fn names_are_dns_names_whatever_the_class_and_key() {
        for key in ["one", "User/42?x=ü", "-lead", "a".repeat(300).as_str(), "_"] {
            let id = InstanceId::new("Web_App", key);
            let pod = pod_name("0123456789ab", &id);
            assert!(dns_subdomain(&pod) && pod.len() <= 63, "{pod}");
            assert!(dns_subdomain(&claim_name("0123456789ab", &id)));
            for value in labels("0123456789ab", &id, Some("gw a/1")).values() {
                let ok = value.len() <= 63
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && value.starts_with(|c: char| c.is_ascii_alphanumeric());
                assert!(ok, "label value {value:?}");
            }
        }
        for host in ["127.0.0.1:5000", "Registry.Example.com:443", "ghcr.io"] {
            let name = pull_secret_name("0123456789ab", host);
            assert!(dns_subdomain(&name) && name.len() <= 63, "{name}");
        }
        assert_ne!(
            pull_secret_name("s", "a.io"),
            pull_secret_name("s", "b.io"),
            "one per registry"
        );
        let id = InstanceId::new("Web_App", "one");
        assert_ne!(
            pod_name("s", &id),
            pod_name("s", &id),
            "a new name per start"
        );
        assert_ne!(
            key_stem("s", &InstanceId::new("web", "k")),
            key_stem("s", &InstanceId::new("Web", "k")),
            "classes that differ in case stay apart"
        );
    }

    #[test]
    fn the_pod_carries_the_class_and_keeps_secrets_in_the_secret() {
        let settings = settings("");
        let spec = spec("User/42");
        let secrets = HashSet::from(["TOKEN".to_string()]);
        let plan = PodPlan {
            spec: &spec,
            settings: &settings,
            scope: "0123456789ab",
            owner: None,
            node: Some("node-1"),
            image: "busybox:1",
            pull: "IfNotPresent",
            config_hash: "abc",
            secrets: &secrets,
            name: "valet-pod-x",
        };
        let pod = plan.pod().unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("t0p"), "no secret value in the Pod: {text}");
        let pod_spec = pod.spec.as_ref().unwrap();
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod_spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(pod_spec.termination_grace_period_seconds, Some(3));
        assert_eq!(pod_spec.automount_service_account_token, Some(false));
        let container = &pod_spec.containers[0];
        assert_eq!(container.args.as_ref().unwrap(), &["httpd", "-p", "8080"]);
        let env = container.env.as_ref().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name).unwrap();
        assert_eq!(var("GREETING").value.as_deref(), Some("hi"));
        assert_eq!(var("PORT").value.as_deref(), Some("8080"));
        let reference = var("TOKEN").value_from.as_ref().unwrap();
        assert_eq!(
            reference.secret_key_ref.as_ref().unwrap().name,
            "valet-pod-x"
        );
        let ports = container.ports.as_ref().unwrap();
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[1].container_port, 9000);
        let limits = container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["cpu"].0, "62m");
        assert_eq!(limits["memory"].0, (256 * 1024 * 1024).to_string());
        let meta = &pod.metadata;
        assert_eq!(
            instance_of(meta),
            Some(spec.id.clone()),
            "the key comes back"
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[CONFIG_HASH], "abc");
        assert!(!labels.contains_key(INTERNAL));
        assert!(
            !labels.contains_key(PROJECT),
            "a class's Pod is no project's"
        );
        assert!(pod_spec.volumes.is_none());

        let secret = plan.secret().expect("a Secret");
        let data = secret.data.unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data["TOKEN"].0, b"t0p");
        let none = HashSet::new();
        let plain = PodPlan {
            secrets: &none,
            ..plan
        };
        assert!(plain.secret().is_none(), "no Secret without secrets");
    }

    #[test]
    fn a_deployed_versions_pod_and_secret_name_its_project() {
        let mut settings = settings("");
        settings.project = Some("p-4f2a9c".into());
        let spec = spec("k");
        let secrets = HashSet::from(["TOKEN".to_string()]);
        let plan = PodPlan {
            spec: &spec,
            settings: &settings,
            scope: "s1",
            owner: None,
            node: None,
            image: "i",
            pull: "Never",
            config_hash: "h",
            secrets: &secrets,
            name: "p",
        };
        let pod = plan.pod().unwrap();
        assert_eq!(pod.metadata.labels.unwrap()[PROJECT], "p-4f2a9c");
        let secret = plan.secret().unwrap();
        assert_eq!(secret.metadata.labels.unwrap()[PROJECT], "p-4f2a9c");
    }

    #[test]
    fn a_volume_is_a_claim_per_key_and_no_internet_a_policy() {
        let settings = settings("volume = \"/data\"\nenable_internet = false");
        let spec = spec("k");
        let none = HashSet::new();
        let plan = PodPlan {
            spec: &spec,
            settings: &settings,
            scope: "s1",
            owner: Some("gw-a"),
            node: None,
            image: "i",
            pull: "Never",
            config_hash: "h",
            secrets: &none,
            name: "p",
        };
        let pod = plan.pod().unwrap();
        let pod_spec = pod.spec.unwrap();
        let volume = &pod_spec.volumes.unwrap()[0];
        let claim_ref = volume.persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim_ref.claim_name, claim_name("s1", &spec.id));
        let mount = &pod_spec.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, "/data");
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels[INTERNAL], "true");
        assert_eq!(labels[OWNER], "gw-a");
        let env = pod_spec.containers[0].env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == "VALET_DATA_DIR"));

        let made = claim("s1", &spec.id, None);
        assert_eq!(made.metadata.name, Some(claim_name("s1", &spec.id)));
        let claim_spec = made.spec.unwrap();
        assert_eq!(claim_spec.access_modes.unwrap(), ["ReadWriteOnce"]);

        let policy = no_egress("s1").spec.unwrap();
        assert_eq!(policy.policy_types.unwrap(), ["Egress"]);
        assert_eq!(policy.egress.unwrap().len(), 0, "no egress allowed");
        let selected = policy.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(selected[INTERNAL], "true");
        assert_eq!(selected[SCOPE], "s1");
    }
}
