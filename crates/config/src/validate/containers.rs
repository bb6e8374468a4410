//! Checks of each `[[containers]]` entry: names, how it runs, ports, limits and probes.

use super::{listing, Checks};
use crate::keypath::KeyPath;
use crate::model::ContainerClass;
use std::collections::BTreeMap;

/// Cloudflare's instance types, kept by name so a wrangler config carries over.
const INSTANCE_TYPES: [&str; 6] = [
    "lite",
    "basic",
    "standard-1",
    "standard-2",
    "standard-3",
    "standard-4",
];

impl Checks<'_> {
    pub(super) fn containers(&mut self) {
        // First index of each name, to point a duplicate at the original.
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, class) in self.config.containers.iter().enumerate() {
            let at = KeyPath::top("containers").index(i);
            self.class_name(&at, class);
            if let Some(first) = seen.get(class.class_name.as_str()) {
                let name = &class.class_name;
                self.fail(
                    at.key("class_name"),
                    format!("class {name:?} is already defined by containers[{first}]"),
                );
            } else {
                seen.insert(&class.class_name, i);
            }
            self.launch(&at, class);
            self.ports(&at, class);
            self.limits(&at, class);
            self.probes(&at, class);
            self.scale(&at, class);
        }
    }

    /// `scale`: bounds, and no replicas of a key that keeps data (replicas would each get
    /// their own copy of the key's volume, which is no longer one key's state).
    fn scale(&mut self, at: &KeyPath, class: &ContainerClass) {
        let Some(scale) = &class.scale else {
            return;
        };
        let here = at.key("scale");
        let name = &class.class_name;
        self.require(scale.max_replicas >= 1, here.key("max_replicas"), || {
            "scale max_replicas must be at least 1".into()
        });
        let (replicas, max) = (scale.max_replicas, class.max_instances);
        self.require(replicas <= max, here.key("max_replicas"), || {
            format!(
                "scale max_replicas ({replicas}) is more than max_instances ({max}): every \
                 replica counts against max_instances"
            )
        });
        self.require(
            scale.target_concurrency >= 1,
            here.key("target_concurrency"),
            || "scale target_concurrency must be at least 1".into(),
        );
        self.require(class.volume.is_none(), here.clone(), || {
            format!(
                "class {name:?} sets both scale and volume: replicas of a key cannot share one \
                 volume, so a class with a volume runs one instance per key (remove scale or volume)"
            )
        });
    }

    fn class_name(&mut self, at: &KeyPath, class: &ContainerClass) {
        let name = &class.class_name;
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        // Class names end up in URLs, metrics labels and container names.
        self.require(ok, at.key("class_name"), || {
            format!("class_name {name:?} must be non-empty and use only A-Z, a-z, 0-9, _ and -")
        });
    }

    /// What starts an instance: a command for the process driver, an image for docker.
    fn launch(&mut self, at: &KeyPath, class: &ContainerClass) {
        match self.config.server.driver.as_str() {
            "process" => {
                let ok = class
                    .command
                    .first()
                    .is_some_and(|program| !program.is_empty());
                self.require(ok, at.key("command"), || {
                    "the process driver needs a command, e.g. command = [\"python3\", \"app.py\"]"
                        .into()
                });
            }
            driver @ ("docker" | "swarm" | "kubernetes") => {
                let ok = class
                    .image
                    .as_deref()
                    .is_some_and(|image| !image.trim().is_empty());
                self.require(ok, at.key("image"), || {
                    format!(
                        "the {driver} driver needs an image: a Dockerfile path or an image reference"
                    )
                });
            }
            _ => {} // An unknown driver is reported once, on server.driver.
        }
        for (i, arg) in class.command.iter().enumerate() {
            for name in port_placeholders(arg) {
                self.require(
                    class.ports.contains_key(name),
                    at.key("command").index(i),
                    || {
                        format!(
                            "{{port.{name}}} names no port of this class (defined: {})",
                            listing(class.ports.keys().map(String::as_str))
                        )
                    },
                );
            }
        }
        for name in class.env.keys() {
            self.env_name(at.key("env").key(name), name);
        }
        for (i, name) in class.env_from_host.iter().enumerate() {
            self.env_name(at.key("env_from_host").index(i), name);
        }
        for (i, name) in class.secrets.iter().enumerate() {
            self.env_name(at.key("secrets").index(i), name);
        }
    }

    fn ports(&mut self, at: &KeyPath, class: &ContainerClass) {
        self.require(!class.ports.is_empty(), at.key("ports"), || {
            "a class needs at least one port, e.g. ports = { http = 8080 }".into()
        });
        for (name, number) in &class.ports {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            // Port names become VALET_PORT_<NAME> variables and {port.NAME} placeholders.
            self.require(ok, at.key("ports").key(name), || {
                format!("port name {name:?} must use only a-z, 0-9 and _")
            });
            self.require(*number != 0, at.key("ports").key(name), || {
                format!("port {name:?} must be a number from 1 to 65535")
            });
        }
        let defined = || listing(class.ports.keys().map(String::as_str));
        match &class.default_port {
            Some(name) => self.require(
                class.ports.contains_key(name),
                at.key("default_port"),
                || {
                    format!(
                        "default_port {name:?} is not one of the ports (defined: {})",
                        defined()
                    )
                },
            ),
            None if class.ports.len() > 1 => {
                self.require(class.default_port_name().is_some(), at.key("ports"), || {
                    format!(
                        "several ports and none named \"http\": set default_port to one of {}",
                        defined()
                    )
                })
            }
            None => {}
        }
        if let Some(name) = &class.readiness.port {
            self.require(
                class.ports.contains_key(name),
                at.key("readiness").key("port"),
                || {
                    format!(
                        "readiness port {name:?} is not one of the ports (defined: {})",
                        defined()
                    )
                },
            );
        }
    }

    fn limits(&mut self, at: &KeyPath, class: &ContainerClass) {
        self.duration(at.key("sleep_after"), &class.sleep_after);
        self.duration(at.key("stop_timeout"), &class.stop_timeout);
        if let Some(memory) = &class.memory {
            self.size(at.key("memory"), memory);
        }
        let kind = class.instance_type.as_str();
        self.require(
            INSTANCE_TYPES.contains(&kind),
            at.key("instance_type"),
            || {
                format!(
                    "instance_type {kind:?} is unknown (use {})",
                    INSTANCE_TYPES.join(", ")
                )
            },
        );
        if let Some(cpu) = class.cpu {
            self.require(cpu.is_finite() && cpu > 0.0, at.key("cpu"), || {
                format!("cpu must be more than 0 cores, got {cpu}")
            });
        }
        self.require(class.max_instances >= 1, at.key("max_instances"), || {
            "max_instances must be at least 1".into()
        });
        let (min, max) = (class.min_instances, class.max_instances);
        self.require(min <= max, at.key("min_instances"), || {
            format!("min_instances ({min}) is more than max_instances ({max})")
        });
        self.require(class.max_waiting >= 1, at.key("max_waiting"), || {
            "max_waiting must be at least 1: with 0 every cold start would fail".into()
        });
    }

    fn probes(&mut self, at: &KeyPath, class: &ContainerClass) {
        let readiness = &class.readiness;
        let here = at.key("readiness");
        self.probe_path(here.key("path"), readiness.path.as_deref());
        self.duration(here.key("timeout"), &readiness.timeout);
        self.duration(here.key("interval"), &readiness.interval);
        let Some(liveness) = &class.liveness else {
            return;
        };
        let here = at.key("liveness");
        self.probe_path(here.key("path"), liveness.path.as_deref());
        self.duration(here.key("interval"), &liveness.interval);
        self.duration(here.key("timeout"), &liveness.timeout);
        self.require(liveness.failures >= 1, here.key("failures"), || {
            "liveness failures must be at least 1".into()
        });
    }

    fn probe_path(&mut self, key: KeyPath, path: Option<&str>) {
        if let Some(path) = path {
            self.require(path.starts_with('/'), key, || {
                format!("probe path {path:?} must start with \"/\"")
            });
        }
    }
}

/// The NAMEs of every `{port.NAME}` in one command argument (a bare `{port}` names none).
fn port_placeholders(arg: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find("{port.") {
        let after = &rest[start + "{port.".len()..];
        let Some(end) = after.find('}') else { break };
        names.push(&after[..end]);
        rest = &after[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::port_placeholders;

    #[test]
    fn finds_every_named_port_placeholder() {
        assert_eq!(port_placeholders("--port={port}"), Vec::<&str>::new());
        assert_eq!(
            port_placeholders("{port.api}:{port.dash}"),
            vec!["api", "dash"]
        );
        assert_eq!(port_placeholders("{port.}"), vec![""]);
        assert_eq!(port_placeholders("{port.open"), Vec::<&str>::new());
    }
}
