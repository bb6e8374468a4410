//! One instance's Swarm service: the container's command, env and labels are the Docker
//! driver's ([`Plan`]), wrapped in a service of one replica that Swarm never restarts (valet
//! does, with its own backoff) and whose named ports are published on the task's node.

use crate::docker::container::Plan;
use crate::docker::names;
use crate::driver::DriverError;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    Limit, Mount, MountType, MountVolumeOptions, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use valet_core::InstanceId;

/// The label naming the valet replica that owns a service (cluster mode): a replica adopts
/// only its own after a restart.
pub const OWNER: &str = "valet.owner";

/// What a service adds to the container's [`Plan`].
pub struct Service<'a> {
    pub plan: Plan<'a>,
    /// One of the key's two [`service_names`].
    pub name: &'a str,
    /// `[cluster] node` of this replica.
    pub owner: Option<&'a str>,
    /// The node holding the key's volume (its Swarm node ID), where the task must run.
    pub pinned: Option<&'a str>,
    /// Nodes that could not be given the image (their engine did not answer).
    pub avoid: &'a [String],
}

/// Swarm's longest service name (it is a DNS label).
const NAME_MAX: usize = 63;

/// The service (and volume) of one key: fixed per (scope, class, key), so a second service
/// of one key is refused by Swarm itself, cluster-wide. Readable parts of the class and key,
/// then a hash of both; within what Swarm accepts (63 characters of `[a-zA-Z0-9_-]`).
pub fn service_name(scope: &str, id: &InstanceId) -> String {
    service_names(scope, id)[0].clone()
}

/// The two names a key's service may have: [`service_name`], and the name of a successor
/// started beside a serving service of an older class config (Swarm cannot rename a service,
/// and two services cannot share a name). They differ only in the hash. A start removes
/// whatever runs under either name (but the one a successor is started beside), so the pair
/// is Swarm's guard against a second copy as the one name was. A key's volume is always named
/// after the first.
pub fn service_names(scope: &str, id: &InstanceId) -> [String; 2] {
    let readable = |text: &str, most: usize| -> String {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(most)
            .collect()
    };
    let named = |successor: bool| {
        let mut hash = Sha256::new();
        hash.update(id.class().as_bytes());
        hash.update([0]);
        hash.update(id.key().as_bytes());
        if successor {
            hash.update([0, 1]);
        }
        let hash = hex::encode(&hash.finalize()[..8]);
        let name = format!(
            "valet-{scope}-{}-{}-{hash}",
            readable(id.class(), 16),
            readable(id.key(), 10)
        );
        // Dashes may repeat where a part was empty; Swarm accepts them between alphanumerics.
        name.chars().take(NAME_MAX).collect::<String>()
    };
    [named(false), named(true)]
}

impl Service<'_> {
    pub fn labels(&self) -> HashMap<String, String> {
        let mut labels = self.plan.labels();
        if let Some(owner) = self.owner {
            labels.insert(OWNER.into(), owner.into());
        }
        labels
    }

    pub fn spec(&self) -> Result<ServiceSpec, DriverError> {
        let (plan, settings) = (&self.plan, self.plan.settings);
        let (cmd, default) = plan.command()?;
        let labels = self.labels();
        let mounts = settings.volume.as_ref().map(|target| {
            vec![Mount {
                target: Some(target.clone()),
                source: Some(service_name(plan.scope, &plan.spec.id)),
                typ: Some(MountType::VOLUME),
                // The node's engine makes the volume at the first start: labelled, it is
                // found (and listed) like the Docker driver's.
                volume_options: Some(MountVolumeOptions {
                    labels: Some(names::instance_labels(plan.scope, &plan.spec.id)),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
        let container = TaskSpecContainerSpec {
            image: Some(plan.image.to_string()),
            // An empty command keeps the image's own, as `docker run` does.
            args: None,
            command: (!cmd.is_empty()).then_some(cmd),
            // Secrets are in the env, which only the engine and the container see: never in
            // labels, which anyone listing services reads.
            env: Some(plan.env(default)),
            // The same labels on the container: what a node runs can be traced to its key.
            labels: Some(labels.clone()),
            user: plan.spec.user.clone(),
            mounts,
            stop_grace_period: Some(nanos(settings.stop_timeout)),
            // tini as PID 1 passes SIGTERM on, as with the Docker driver.
            init: Some(true),
            ..Default::default()
        };
        let constraints: Vec<String> = (self.pinned.iter())
            .map(|node| format!("node.id=={node}"))
            .chain(self.avoid.iter().map(|node| format!("node.id!={node}")))
            .collect();
        let ports = plan
            .spec
            .ports
            .iter()
            .map(|(name, port)| EndpointPortConfig {
                name: Some(name.clone()),
                target_port: Some(i64::from(*port)),
                // Unset: each node picks a free port of its own for the task (Engine 20.10
                // does), reported in the task's PortStatus.
                published_port: None,
                // On the task's node only: the ingress mesh needs IPVS and adds a hop.
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            })
            .collect();
        Ok(ServiceSpec {
            name: Some(self.name.to_string()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(container),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: Some(settings.resources.nano_cpus),
                        memory_bytes: Some(settings.resources.memory),
                        pids: None,
                    }),
                    ..Default::default()
                }),
                // valet decides restarts: Swarm's own would start a second copy behind
                // valet's back, without its backoff or its lease.
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                placement: (!constraints.is_empty()).then(|| TaskSpecPlacement {
                    constraints: Some(constraints),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                // DNS round robin: no virtual IP, which needs IPVS.
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: Some(ports),
            }),
            ..Default::default()
        })
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Engine filter for the services of one valet (and, in cluster mode, of one replica).
pub fn filter(scope: &str, owner: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut filter = names::scope_filter(scope);
    if let Some(owner) = owner {
        filter
            .entry("label".into())
            .or_default()
            .push(format!("{OWNER}={owner}"));
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::settings::ClassSettings;
    use crate::driver::InstanceSpec;
    use std::path::Path;
    use valet_core::InstanceId;

    fn settings(extra: &str) -> ClassSettings {
        let text = format!(
            "[server]\ndriver = \"swarm\"\n[[containers]]\nclass_name = \"Web\"\n\
             image = \"busybox\"\ncommand = [\"httpd\", \"-p\", \"{{port}}\"]\n\
             ports = {{ http = 8080, admin = 9000 }}\nstop_timeout = \"3s\"\n\
             instance_type = \"standard-4\"\n{extra}"
        );
        let config = valet_config::parse_str(&text, Path::new("valet.toml"), Path::new("/srv"))
            .expect("test config is valid");
        crate::docker::settings::all(&config, 2)
            .remove("Web")
            .unwrap()
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            id: InstanceId::new("Web", "tenant/1"),
            command: vec!["httpd".into(), "-p".into(), "{port}".into()],
            image: Some("busybox".into()),
            ports: vec![("http".into(), 8080), ("admin".into(), 9000)],
            default_port: "http".into(),
            env: vec![("TOKEN".into(), "s3cret".into())],
            work_dir: "/srv".into(),
            data_dir: "/srv/.valet/data/x".into(),
            log_path: "/srv/.valet/logs/x.log".into(),
            user: None,
            log_lines: 10,
        }
    }

    /// The plan of `spec` in scope `s1`, by image ID.
    fn plan<'a>(spec: &'a InstanceSpec, settings: &'a ClassSettings) -> Plan<'a> {
        Plan {
            spec,
            settings,
            scope: "s1",
            image: "sha256:abc",
            config_hash: "h1",
            network: None,
        }
    }

    #[test]
    fn a_service_is_one_unrestarted_replica_by_image_id_published_on_its_node() {
        let (settings, spec) = (settings(""), spec());
        let name = service_name("s1", &spec.id);
        let service = Service {
            plan: plan(&spec, &settings),
            name: &name,
            owner: Some("gw-a"),
            pinned: None,
            avoid: &[],
        };
        let made = service.spec().unwrap();
        assert_eq!(made.name.as_ref(), Some(&name));
        assert!(name.starts_with("valet-s1-Web-"), "{name}");
        let labels = made.labels.unwrap();
        assert_eq!(labels["valet.scope"], "s1");
        assert_eq!(labels["valet.class"], "Web");
        assert_eq!(labels["valet.key"], "tenant%2F1");
        assert_eq!(labels["valet.config-hash"], "h1");
        assert_eq!(labels[OWNER], "gw-a");
        assert!(
            !labels.values().any(|v| v.contains("s3cret")),
            "no secret in labels"
        );
        let replicas = made.mode.unwrap().replicated.unwrap().replicas;
        assert_eq!(replicas, Some(1));
        let task = made.task_template.unwrap();
        let restart = task.restart_policy.unwrap().condition;
        assert_eq!(restart, Some(TaskSpecRestartPolicyConditionEnum::NONE));
        let limits = task.resources.unwrap().limits.unwrap();
        // standard-4 asks for 4 cores; the smallest node has 2.
        assert_eq!(limits.nano_cpus, Some(2_000_000_000));
        assert_eq!(limits.memory_bytes, Some(12 * 1024 * 1024 * 1024));
        assert!(task.placement.is_none(), "anywhere without a volume");
        let container = task.container_spec.unwrap();
        assert_eq!(container.image.as_deref(), Some("sha256:abc"));
        assert_eq!(
            container.command,
            Some(vec!["httpd".into(), "-p".into(), "8080".into()])
        );
        assert_eq!(container.stop_grace_period, Some(3_000_000_000));
        let env = container.env.unwrap();
        for wanted in ["TOKEN=s3cret", "PORT=8080", "VALET_PORT_ADMIN=9000"] {
            assert!(env.iter().any(|e| e == wanted), "{wanted} in {env:?}");
        }
        assert!(container.mounts.is_none());
        let endpoint = made.endpoint_spec.unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        let ports = endpoint.ports.unwrap();
        assert_eq!(ports.len(), 2);
        for port in &ports {
            assert_eq!(
                port.publish_mode,
                Some(EndpointPortConfigPublishModeEnum::HOST)
            );
            assert_eq!(port.published_port, None, "the node picks the port");
        }
        assert_eq!(ports[0].target_port, Some(8080));
    }

    #[test]
    fn a_key_with_a_volume_mounts_it_by_its_name_and_stays_on_its_node() {
        let (settings, spec) = (settings("volume = \"/data\""), spec());
        // A successor's service (were a key with a volume ever given one) still mounts the
        // key's volume, named after the first name.
        let [volume, successor] = service_names("s1", &spec.id);
        let service = Service {
            plan: plan(&spec, &settings),
            name: &successor,
            owner: None,
            pinned: Some("node7"),
            avoid: &["node9".to_string()],
        };
        let made = service.spec().unwrap();
        assert!(!made.labels.unwrap().contains_key(OWNER));
        let task = made.task_template.unwrap();
        let constraints = task.placement.unwrap().constraints.unwrap();
        assert_eq!(constraints, ["node.id==node7", "node.id!=node9"]);
        let mounts = task.container_spec.unwrap().mounts.unwrap();
        assert_eq!(mounts[0].source, Some(volume));
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
    }

    #[test]
    fn service_names_fit_swarm_and_differ_per_key() {
        let long = InstanceId::new(
            "C".repeat(40).as_str(),
            format!("{}.x/y", "k".repeat(300)).as_str(),
        );
        let name = service_name("0123456789ab", &long);
        assert!(name.len() <= 63, "{name}");
        let [first, successor] = service_names("0123456789ab", &long);
        assert_eq!(first, name);
        assert!(successor.len() <= 63, "{successor}");
        assert_ne!(
            successor, name,
            "a successor beside the first needs a name of its own"
        );
        assert_eq!(successor[..40], name[..40], "the same readable part");
        assert!(name.starts_with("valet-0123456789ab-CCCC"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let other = InstanceId::new(
            "C".repeat(40).as_str(),
            format!("{}.x/z", "k".repeat(300)).as_str(),
        );
        assert_ne!(name, service_name("0123456789ab", &other));
        let odd = InstanceId::new("A", "../..");
        let name = service_name("s", &odd);
        assert!(name.starts_with("valet-s-A--"), "{name}");
        assert!(name.chars().last().unwrap().is_ascii_alphanumeric());
    }

    #[test]
    fn the_filter_narrows_to_one_replica_in_cluster_mode() {
        let labels = &filter("s1", Some("gw-a"))["label"];
        assert!(labels.contains(&"valet.scope=s1".to_string()));
        assert!(labels.contains(&"valet.owner=gw-a".to_string()));
        assert_eq!(filter("s1", None)["label"].len(), 2);
    }
}
