//! What the Docker driver needs to know about each class beyond an [`InstanceSpec`]: the image
//! source, the volume, resource limits and network isolation. Read once from the config when
//! the driver is made, so the instance layer stays driver-neutral.
//!
//! [`InstanceSpec`]: crate::driver::InstanceSpec

use super::image::ImageSource;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use valet_config::{Config, ContainerClass, PullPolicy};

const NANOS_PER_CPU: f64 = 1e9;
const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

/// CPU and memory the engine enforces on a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// `HostConfig.NanoCpus`: billionths of a core.
    pub nano_cpus: i64,
    /// `HostConfig.Memory`: bytes.
    pub memory: i64,
}

impl Resources {
    /// Cloudflare's instance types, by name: (vCPU, memory).
    pub fn of_instance_type(name: &str) -> Option<Self> {
        let (cpu, memory) = match name {
            "lite" => (1.0 / 16.0, 256 * MIB),
            "basic" => (0.25, GIB),
            "standard-1" => (0.5, 4 * GIB),
            "standard-2" => (1.0, 6 * GIB),
            "standard-3" => (2.0, 8 * GIB),
            "standard-4" => (4.0, 12 * GIB),
            _ => return None,
        };
        Some(Self {
            nano_cpus: cores_to_nanos(cpu),
            memory,
        })
    }

    /// The class's instance type with its `cpu` / `memory` overrides, CPU clamped to the
    /// engine's cores: Docker refuses a container asking for more CPUs than the host has.
    pub fn for_class(class: &ContainerClass, host_cpus: u32) -> Self {
        let mut resources = Self::requested(class);
        let most = i64::from(host_cpus.max(1)) * NANOS_PER_CPU as i64;
        if resources.nano_cpus > most {
            tracing::warn!(
                class = %class.class_name,
                wanted = resources.nano_cpus as f64 / NANOS_PER_CPU,
                host_cpus,
                "cpu limit above the engine's cores; clamped"
            );
            resources.nano_cpus = most;
        }
        resources
    }

    /// What the class asks for, before any clamp: its instance type with its `cpu` /
    /// `memory` overrides. `valet check` compares this with the host.
    pub fn requested(class: &ContainerClass) -> Self {
        let mut resources = Self::of_instance_type(&class.instance_type)
            .unwrap_or_else(|| Self::of_instance_type("basic").expect("basic is known"));
        if let Some(cpu) = class.cpu {
            resources.nano_cpus = cores_to_nanos(cpu);
        }
        if let Some(memory) = &class.memory {
            resources.memory = i64::try_from(memory.get()).unwrap_or(i64::MAX);
        }
        resources
    }

    /// CPUs as a fraction of cores.
    pub fn cpus(&self) -> f64 {
        self.nano_cpus as f64 / NANOS_PER_CPU
    }
}

fn cores_to_nanos(cores: f64) -> i64 {
    (cores * NANOS_PER_CPU).round() as i64
}

/// One class, as the Docker driver runs it.
#[derive(Debug, Clone)]
pub struct ClassSettings {
    pub image: ImageSource,
    /// When an image reference is pulled (a Dockerfile's `FROM` is pulled by the engine).
    pub pull: PullPolicy,
    pub build_args: BTreeMap<String, String>,
    /// Mount path of the per-instance named volume.
    pub volume: Option<String>,
    pub resources: Resources,
    /// `false`: the container sits on an internal network only.
    pub internet: bool,
    pub stop_timeout: Duration,
    /// Named ports inside the container.
    pub ports: Vec<(String, u16)>,
    /// Everything else that shapes a container (command, env, ports, user), in a stable form,
    /// so a change shows in the config hash.
    pub shape: String,
    /// The id of the deployed project this class runs a version of: its containers join the
    /// project's own network and mount the project's volume, which all its versions share.
    pub project: Option<String>,
}

impl ClassSettings {
    pub fn from_config(config: &Config, class: &ContainerClass, host_cpus: u32) -> Self {
        let image = class.image.as_deref().unwrap_or_default();
        let image = ImageSource::parse(image, &config.base_dir, &config.data_dir());
        Self::from_class(image, class, host_cpus)
    }

    /// A deployed project's version: `class.image` is the version's image, built already.
    pub fn for_project(project_id: &str, class: &ContainerClass, host_cpus: u32) -> Self {
        let image = ImageSource::Reference(class.image.clone().unwrap_or_default());
        Self {
            project: Some(project_id.to_string()),
            // Built here by the deployer and in no registry: a missing one is not pulled.
            pull: PullPolicy::Never,
            ..Self::from_class(image, class, host_cpus)
        }
    }

    fn from_class(image: ImageSource, class: &ContainerClass, host_cpus: u32) -> Self {
        let mut env: BTreeMap<&str, String> = class
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        // Secrets are read where the instance layer reads them, so a changed secret replaces
        // the container on the next start of valet.
        for name in class.secrets.iter().chain(&class.env_from_host) {
            if let Ok(value) = std::env::var(name) {
                env.entry(name).or_insert(value);
            }
        }
        let shape = serde_json::json!({
            "command": class.command,
            "env": env,
            "ports": class.ports,
            "default_port": class.default_port_name(),
            "user": class.user,
        })
        .to_string();
        Self {
            image,
            pull: class.pull,
            build_args: class.build_args.clone(),
            volume: class.volume.clone(),
            resources: Resources::for_class(class, host_cpus),
            internet: class.enable_internet,
            stop_timeout: class.stop_timeout.get(),
            ports: class.ports.iter().map(|(n, p)| (n.clone(), *p)).collect(),
            shape,
            project: None,
        }
    }

    /// Hash of everything a container of this class is made from, given the image it runs.
    /// A running container whose label differs was made from an older config.
    pub fn config_hash(&self, image_id: &str) -> String {
        let mut hash = Sha256::new();
        for part in [
            image_id,
            &self.shape,
            self.volume.as_deref().unwrap_or(""),
            &self.resources.nano_cpus.to_string(),
            &self.resources.memory.to_string(),
            if self.internet {
                "internet"
            } else {
                "internal"
            },
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hex::encode(&hash.finalize()[..16])
    }
}

/// Settings of every class, by class name.
pub fn all(config: &Config, host_cpus: u32) -> HashMap<String, ClassSettings> {
    config
        .containers
        .iter()
        .map(|class| {
            let settings = ClassSettings::from_config(config, class, host_cpus);
            (class.class_name.clone(), settings)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn class(extra: &str) -> (Config, ContainerClass) {
        let text = format!(
            "[server]\ndriver = \"docker\"\n[[containers]]\nclass_name = \"A\"\nimage = \"busybox\"\n{extra}"
        );
        let config = valet_config::parse_str(&text, Path::new("valet.toml"), Path::new("/srv"))
            .expect("test config is valid");
        let class = config.containers[0].clone();
        (config, class)
    }

    #[test]
    fn instance_types_map_to_cloudflare_sizes() {
        let lite = Resources::of_instance_type("lite").unwrap();
        assert_eq!(lite.nano_cpus, 62_500_000);
        assert_eq!(lite.memory, 256 * MIB);
        let s4 = Resources::of_instance_type("standard-4").unwrap();
        assert_eq!((s4.nano_cpus, s4.memory), (4_000_000_000, 12 * GIB));
        assert_eq!(Resources::of_instance_type("huge"), None);
    }

    #[test]
    fn overrides_apply_and_cpu_is_clamped_to_the_host() {
        let (_, c) = class("instance_type = \"standard-1\"\nmemory = \"300MiB\"");
        let r = Resources::for_class(&c, 2);
        assert_eq!((r.nano_cpus, r.memory), (500_000_000, 300 * MIB));
        let (_, c) = class("instance_type = \"standard-4\"");
        assert_eq!(Resources::for_class(&c, 2).nano_cpus, 2_000_000_000);
        let (_, c) = class("cpu = 0.1");
        assert_eq!(Resources::for_class(&c, 2).nano_cpus, 100_000_000);
    }

    #[test]
    fn the_config_hash_follows_what_shapes_the_container() {
        let (config, c) = class("");
        let base = ClassSettings::from_config(&config, &c, 2);
        let same = ClassSettings::from_config(&config, &c, 2);
        assert_eq!(base.config_hash("sha256:1"), same.config_hash("sha256:1"));
        assert_ne!(base.config_hash("sha256:1"), base.config_hash("sha256:2"));
        let (config, c) = class("env = { A = \"1\" }");
        let env = ClassSettings::from_config(&config, &c, 2);
        assert_ne!(base.config_hash("x"), env.config_hash("x"));
        let (config, c) = class("enable_internet = false");
        let internal = ClassSettings::from_config(&config, &c, 2);
        assert_ne!(base.config_hash("x"), internal.config_hash("x"));
    }
}
