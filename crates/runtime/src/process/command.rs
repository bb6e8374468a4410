//! Turns an [`InstanceSpec`] and the ports picked for it ([`super::ports`]) into a command ready
//! to spawn: filled placeholders, the environment valet promises, and the user to run as.

use crate::driver::{DriverError, InstanceSpec};
use nix::unistd::User;
use std::process::Stdio;
use tokio::process::Command;

/// A named port and the loopback port picked for it.
pub(super) type PickedPort = (String, u16);

/// The port handed over as `PORT` and `{port}`, if the spec has ports at all.
pub(super) fn default_port(
    spec: &InstanceSpec,
    ports: &[PickedPort],
) -> Result<Option<u16>, DriverError> {
    if ports.is_empty() {
        return Ok(None);
    }
    find(ports, &spec.default_port).map(Some).ok_or_else(|| {
        DriverError::Spec(format!(
            "default port `{}` is not one of the named ports",
            spec.default_port
        ))
    })
}

/// Builds the command. `user` has been looked up already (the lookup may block).
pub(super) fn build(
    spec: &InstanceSpec,
    ports: &[PickedPort],
    user: Option<&User>,
) -> Result<Command, DriverError> {
    let default = default_port(spec, ports)?;
    let argv = spec
        .command
        .iter()
        .map(|arg| substitute(arg, default, ports).map_err(DriverError::Spec))
        .collect::<Result<Vec<_>, _>>()?;
    let (program, args) = argv.split_first().ok_or_else(|| {
        DriverError::Spec(format!("class `{}` has an empty command", spec.id.class()))
    })?;

    // A relative program path is relative to the working directory, as all paths in
    // valet.toml are; std leaves that case platform-defined, so make it explicit.
    let mut command = if program.contains('/') {
        Command::new(spec.work_dir.join(program))
    } else {
        Command::new(find_program(program))
    };
    command
        .args(args)
        .current_dir(&spec.work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own session and so its own group (setsid in the spawner's pre-exec hook), so one
        // killpg reaches every descendant, a Ctrl-C on valet's terminal does not hit
        // instances before valet can stop them in order, and no other tenant can join it.
        .kill_on_drop(true);

    // Nothing of valet's own environment: it holds the admin token, the operator's secrets and
    // installer settings, and tenant code must see none of it. What a class wants from there
    // it names (`env_from_host`, `secrets`), and those arrive through `spec.env`.
    command.env_clear();
    for (name, value) in base_env(spec, user) {
        command.env(name, value);
    }
    if let Some(user) = user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    // valet's own variables come last: they are the contract and the spec cannot shadow them.
    if let Some(port) = default {
        command.env("PORT", port.to_string());
    }
    for (name, port) in ports {
        command.env(port_env_name(name), port.to_string());
    }
    command
        .env("VALET_DATA_DIR", &spec.data_dir)
        // The client's key for every replica of it (`scale`), and which replica this is.
        .env("VALET_INSTANCE_KEY", spec.id.user_key())
        .env("VALET_REPLICA", spec.id.replica().to_string())
        .env("VALET_CLASS", spec.id.class());
    Ok(command)
}

/// A bare program name is looked up in valet's own `PATH`, as a shell beside valet would:
/// the instance's `PATH` is the minimal [`INSTANCE_PATH`], and a `command` that worked when
/// typed next to `valet up` (a virtualenv's `uvicorn`, a pyenv `python3`) must keep working.
/// Not found there: the name as it is, for the spawn to fail with "not found".
fn find_program(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| name.into())
}

/// Folders searched for programs: the system's, without root's `sbin` folders or anything of
/// valet's own `PATH` (which may name an operator's private folders).
pub(crate) const INSTANCE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The minimal environment every instance starts from, before its class's `env`: `PATH`, a
/// `HOME` of its own (its user's home, or its data folder when it runs as valet's user, whose
/// home it must not share), `USER`/`LOGNAME` when it has a user, and `LANG`.
pub(crate) fn base_env(spec: &InstanceSpec, user: Option<&User>) -> Vec<(&'static str, String)> {
    let mut env = vec![("PATH", INSTANCE_PATH.to_string())];
    match user {
        Some(user) => {
            env.push(("HOME", user.dir.display().to_string()));
            env.push(("USER", user.name.clone()));
            env.push(("LOGNAME", user.name.clone()));
        }
        None => env.push(("HOME", spec.data_dir.display().to_string())),
    }
    env.push(("LANG", "C.UTF-8".to_string()));
    env
}

/// `VALET_PORT_<NAME>`: upper-cased, and anything a shell variable name cannot hold becomes `_`.
pub(crate) fn port_env_name(name: &str) -> String {
    let suffix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("VALET_PORT_{suffix}")
}

/// Replaces `{port}` and `{port.NAME}` in one argument. Any other braces are left alone.
pub(crate) fn substitute(
    arg: &str,
    default: Option<u16>,
    ports: &[PickedPort],
) -> Result<String, String> {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find("{port") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "{port".len()..];
        let (port, consumed) = if let Some(after) = tail.strip_prefix('}') {
            let port = default.ok_or("`{port}` is used but the class has no ports")?;
            (port, tail.len() - after.len())
        } else if let Some(named) = tail.strip_prefix('.').and_then(|t| t.split_once('}')) {
            let name = named.0;
            let port =
                find(ports, name).ok_or_else(|| format!("`{{port.{name}}}` names no port"))?;
            (port, 1 + name.len() + 1)
        } else {
            // `{portal}` and the like are not placeholders.
            out.push_str("{port");
            rest = tail;
            continue;
        };
        out.push_str(&port.to_string());
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn find(ports: &[PickedPort], name: &str) -> Option<u16> {
    ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<PickedPort> {
        vec![("http".into(), 4000), ("admin".into(), 4001)]
    }

    #[test]
    fn placeholders_are_filled() {
        let sub = |s| substitute(s, Some(4000), &ports());
        assert_eq!(sub("--port={port}").unwrap(), "--port=4000");
        assert_eq!(sub("{port.admin}:{port.http}").unwrap(), "4001:4000");
        assert_eq!(sub("{port}{port}").unwrap(), "40004000");
        assert_eq!(sub("{portal} {port").unwrap(), "{portal} {port");
        assert_eq!(sub("{}").unwrap(), "{}");
    }

    #[test]
    fn unknown_names_and_missing_ports_are_errors() {
        let err = substitute("{port.metrics}", Some(4000), &ports()).unwrap_err();
        assert!(err.contains("port.metrics"), "{err}");
        assert!(substitute("{port}", None, &[]).is_err());
    }

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(port_env_name("http"), "VALET_PORT_HTTP");
        assert_eq!(port_env_name("ws-sync.2"), "VALET_PORT_WS_SYNC_2");
    }
}
