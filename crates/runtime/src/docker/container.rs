//! One container from an [`InstanceSpec`]: its create body (env, command, ports, labels,
//! volume, limits, network).

use super::names;
use super::provision::Network;
use super::settings::ClassSettings;
use crate::driver::{DriverError, InstanceSpec};
use crate::process::command::{port_env_name, substitute};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, PortBinding,
};
use std::collections::HashMap;

/// Everything needed to create one instance's container.
pub struct Plan<'a> {
    pub spec: &'a InstanceSpec,
    pub settings: &'a ClassSettings,
    pub scope: &'a str,
    pub image: &'a str,
    pub config_hash: &'a str,
    /// The network it joins instead of the default bridge: the internal network (a class
    /// without internet) or a deployed project's own.
    pub network: Option<&'a Network>,
}

impl Plan<'_> {
    pub fn name(&self) -> String {
        match &self.settings.project {
            Some(project) => names::project_container(self.scope, project, &self.spec.id),
            None => names::instance_name(self.scope, &self.spec.id),
        }
    }

    pub fn labels(&self) -> HashMap<String, String> {
        let mut labels = names::instance_labels(self.scope, &self.spec.id);
        labels.insert(names::CONFIG_HASH.into(), self.config_hash.into());
        if let Some(project) = &self.settings.project {
            labels.insert(names::PROJECT.into(), project.clone());
        }
        labels
    }

    /// The command with its port placeholders filled in, and the default port's number.
    pub fn command(&self) -> Result<(Vec<String>, Option<u16>), DriverError> {
        let spec = self.spec;
        let default = default_port(spec)?;
        let cmd = spec
            .command
            .iter()
            .map(|arg| substitute(arg, default, &spec.ports).map_err(DriverError::Spec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((cmd, default))
    }

    pub fn body(&self) -> Result<ContainerCreateBody, DriverError> {
        let spec = self.spec;
        let ports: Vec<(String, u16)> = spec.ports.clone();
        let (cmd, default) = self.command()?;
        let port_keys: Vec<String> = ports.iter().map(|(_, p)| format!("{p}/tcp")).collect();
        // The engine publishes nothing from an internal network.
        let internal = self.network.is_some_and(|n| n.internal);
        let bindings = (!internal).then(|| {
            port_keys
                .iter()
                .map(|key| {
                    // Port 0 lets the engine pick; only loopback is ever published.
                    let loopback = PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    };
                    (key.clone(), Some(vec![loopback]))
                })
                .collect()
        });
        // A project's versions share the project's volume; any other instance has its own.
        let volume = match &self.settings.project {
            Some(project) => names::project_volume(self.scope, project),
            None => self.name(),
        };
        let mounts = self.settings.volume.as_ref().map(|target| {
            vec![Mount {
                target: Some(target.clone()),
                source: Some(volume),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]
        });
        let host = HostConfig {
            port_bindings: bindings,
            mounts,
            nano_cpus: Some(self.settings.resources.nano_cpus),
            memory: Some(self.settings.resources.memory),
            network_mode: self.network.map(|n| n.name.clone()),
            // A deployed project is a stranger's code: no capabilities (it listens above 1024
            // as an unprivileged user) and no way to gain privileges through setuid files.
            cap_drop: self.settings.project.as_ref().map(|_| vec!["ALL".into()]),
            security_opt: (self.settings.project.as_ref())
                .map(|_| vec!["no-new-privileges".into()]),
            // tini as PID 1 passes SIGTERM on: many apps install no handler as PID 1 and
            // would otherwise sit out the whole stop_timeout before being killed.
            init: Some(true),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".into(), "10m".into()),
                    ("max-file".into(), "2".into()),
                ])),
            }),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(self.image.to_string()),
            cmd: (!cmd.is_empty()).then_some(cmd),
            env: Some(self.env(default)),
            exposed_ports: Some(port_keys),
            labels: Some(self.labels()),
            user: spec.user.clone(),
            host_config: Some(host),
            ..Default::default()
        })
    }

    /// The spec's env, then valet's own variables, which the spec cannot shadow. Ports are
    /// the container's own: every container may listen on its configured port.
    pub fn env(&self, default: Option<u16>) -> Vec<String> {
        let spec = self.spec;
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(port) = default {
            env.push(format!("PORT={port}"));
        }
        for (name, port) in &spec.ports {
            env.push(format!("{}={port}", port_env_name(name)));
        }
        if let Some(volume) = &self.settings.volume {
            env.push(format!("VALET_DATA_DIR={volume}"));
        }
        // The client's key for every replica of it (`scale`), and which replica this is.
        env.push(format!("VALET_INSTANCE_KEY={}", spec.id.user_key()));
        env.push(format!("VALET_REPLICA={}", spec.id.replica()));
        env.push(format!("VALET_CLASS={}", spec.id.class()));
        env
    }
}

fn default_port(spec: &InstanceSpec) -> Result<Option<u16>, DriverError> {
    if spec.ports.is_empty() {
        return Ok(None);
    }
    let found = spec.ports.iter().find(|(n, _)| *n == spec.default_port);
    found.map(|(_, p)| Some(*p)).ok_or_else(|| {
        DriverError::Spec(format!(
            "default port `{}` is not one of the named ports",
            spec.default_port
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use valet_core::InstanceId;

    fn project_settings() -> ClassSettings {
        let text =
            "[server]\ndriver = \"docker\"\n[[containers]]\nclass_name = \"project-p1-b1-0\"\n\
                    image = \"valet-s-project-p1:b1\"\ncommand = [\"python3\", \"app.py\"]\n\
                    ports = { http = 8000 }\nvolume = \"/data\"\n";
        let config = valet_config::parse_str(text, Path::new("valet.toml"), Path::new("/srv"))
            .expect("test config is valid");
        ClassSettings::for_project("p1", &config.containers[0], 2)
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            id: InstanceId::new("project-p1-b1-0", "main"),
            command: vec!["python3".into(), "app.py".into()],
            image: Some("valet-s-project-p1:b1".into()),
            ports: vec![("http".into(), 8000)],
            default_port: "http".into(),
            env: vec![("GREETING".into(), "hi".into())],
            work_dir: "/srv".into(),
            data_dir: "/srv/.valet/deploy/data/p1/main".into(),
            log_path: "/srv/.valet/logs/x.log".into(),
            user: None,
            log_lines: 10,
        }
    }

    #[test]
    fn a_project_container_joins_its_network_mounts_its_volume_and_holds_no_privileges() {
        let (settings, spec) = (project_settings(), spec());
        let network = Network {
            name: "valet-s-project-p1".into(),
            internal: false,
        };
        let plan = Plan {
            spec: &spec,
            settings: &settings,
            scope: "s",
            image: "valet-s-project-p1:b1",
            config_hash: "h",
            network: Some(&network),
        };
        let body = plan.body().unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("valet-s-project-p1"));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].source.as_deref(), Some("valet-s-project-p1-data"));
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        let published = host.port_bindings.unwrap()["8000/tcp"].clone().unwrap();
        assert_eq!(published[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(body.labels.unwrap()["valet.project"], "p1");
        let env = body.env.unwrap();
        for wanted in ["GREETING=hi", "PORT=8000", "VALET_DATA_DIR=/data"] {
            assert!(env.iter().any(|e| e == wanted), "{wanted} in {env:?}");
        }
        assert!(
            plan.name().starts_with("valet-s-project-p1-"),
            "{}",
            plan.name()
        );
    }
}
