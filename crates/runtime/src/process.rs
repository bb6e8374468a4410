//! The process driver: every instance is a local process group.
//!
//! - [`ports`] picks free loopback ports, never the same one for two starting instances;
//! - [`command`] turns a spec into a command (ports, placeholders, env, user);
//! - [`spawner`] forks it from one long-lived thread, with the parent-death signal set;
//! - [`listeners`] confirms that whatever answers on an instance's port is the instance;
//! - [`groups`] records each group under `<state_dir>/groups` so a later valet can clean up;
//! - [`output`] copies stdout and stderr into the log ring and the log file;
//! - [`running`] is the handle the instance layer holds: exit, stop, kill on drop.

pub(crate) mod command;
mod groups;
pub mod listeners;
mod output;
mod ports;
mod running;
mod spawner;

use crate::driver::{Adopted, Driver, DriverError, Endpoints, InstanceSpec, PhaseSink, Running};
use crate::logs::LogRing;
use async_trait::async_trait;
use groups::Groups;
use nix::unistd::User;
use running::ProcessInstance;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runs instances as local processes.
#[derive(Debug, Clone)]
pub struct ProcessDriver {
    groups: Groups,
}

impl ProcessDriver {
    /// `state_dir` is valet's own bookkeeping folder, `<data_dir>/run`.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            groups: Groups::new(state_dir),
        }
    }
}

#[async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    /// Processes never outlive valet on purpose, so nothing is adopted: leftovers are killed.
    async fn recover(&self) -> Result<Vec<Adopted>, DriverError> {
        let groups = self.groups.clone();
        tokio::task::spawn_blocking(move || groups.recover())
            .await
            .map_err(|e| DriverError::io("group recovery panicked", io::Error::other(e)))?
            .map_err(|e| DriverError::io("cannot clean up leftover process groups", e))?;
        Ok(Vec::new())
    }

    /// Never pulls: `phase` hears nothing.
    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        _phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError> {
        let program = spec.command.first().ok_or_else(|| {
            DriverError::Spec(format!("class `{}` has an empty command", spec.id.class()))
        })?;
        prepare_dirs(spec).await?;
        let user = match &spec.user {
            Some(name) => Some(lookup_user(name, &spec.data_dir).await?),
            None => None,
        };
        let ports = ports::pick_ports(&spec.ports)?;
        let command = command::build(spec, &ports, user.as_ref())?;
        let stdout_log = open_log(&spec.log_path).await?;
        let stderr_log = open_log(&spec.log_path).await?;

        let mut child = spawner::spawn(command)
            .await
            .map_err(|e| spawn_error(program, e))?;
        // Only a child that has been waited for lacks an id.
        let pid = child.id().ok_or_else(|| {
            DriverError::io("new process has no pid", io::ErrorKind::NotFound.into())
        })?;
        let logs = Arc::new(LogRing::new(spec.log_lines));
        let pumps = [
            child
                .stdout
                .take()
                .map(|s| output::pump(s, stdout_log, spec.log_path.clone(), logs.clone())),
            child
                .stderr
                .take()
                .map(|s| output::pump(s, stderr_log, spec.log_path.clone(), logs.clone())),
        ];
        let port_numbers: Vec<u16> = ports.iter().map(|(_, port)| *port).collect();
        // Registered before anything can dial the ports: from here on only this group's own
        // listeners pass for them.
        listeners::register(
            pid as i32,
            user.as_ref().map(|u| u.uid.as_raw()),
            &port_numbers,
        );
        let instance = ProcessInstance {
            child,
            pid,
            ports: port_numbers,
            endpoints: endpoints(&ports),
            logs,
            pumps: pumps.into_iter().flatten().collect(),
            groups: self.groups.clone(),
            status: None,
            drain_until: None,
        };
        // Without a record a valet killed now would leak the group, so refuse to run
        // unrecorded; dropping `instance` kills what was just started.
        self.groups
            .record(pid)
            .map_err(|e| DriverError::io("cannot record the instance's process group", e))?;
        tracing::info!(instance = %spec.id, pid, program = %program, "instance process started");
        Ok(Box::new(instance))
    }
}

async fn prepare_dirs(spec: &InstanceSpec) -> Result<(), DriverError> {
    // Checked here because a missing working directory fails the spawn with the same
    // "not found" as a missing program, and the message would blame the program.
    if !tokio::fs::metadata(&spec.work_dir)
        .await
        .is_ok_and(|m| m.is_dir())
    {
        return Err(DriverError::Spec(format!(
            "working directory {} does not exist",
            spec.work_dir.display()
        )));
    }
    create_dir(&spec.data_dir).await?;
    if let Some(parent) = spec.log_path.parent() {
        create_dir(parent).await?;
        // valet alone writes and reads logs (it copies the instance's output): the names in
        // a class's log folder (keys) are no other user's business. The logs root is made
        // 0700 at start (up.rs), which knows the layout.
        restrict(parent).await?;
    }
    Ok(())
}

async fn restrict(dir: &Path) -> Result<(), DriverError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(|e| DriverError::io(format!("cannot restrict {}", dir.display()), e))
}

async fn create_dir(dir: &Path) -> Result<(), DriverError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| DriverError::io(format!("cannot create {}", dir.display()), e))
}

async fn open_log(path: &Path) -> Result<tokio::fs::File, DriverError> {
    output::open_log(path)
        .await
        .map_err(|e| DriverError::io(format!("cannot open log file {}", path.display()), e))
}

/// Looks the user up (NSS may block, hence the blocking thread) and hands it the instance's
/// data directory, which valet created and the instance must be able to write.
async fn lookup_user(name: &str, data_dir: &Path) -> Result<User, DriverError> {
    let owned = name.to_owned();
    let found = tokio::task::spawn_blocking(move || User::from_name(&owned))
        .await
        .map_err(|e| DriverError::io("user lookup panicked", io::Error::other(e)))?
        .map_err(|e| DriverError::io(format!("cannot look up user `{name}`"), e.into()))?;
    let user = found.ok_or_else(|| DriverError::Spec(format!("unknown user `{name}`")))?;
    give_folder(data_dir, &user).map_err(|e| {
        DriverError::io(
            format!("cannot give {} to user `{name}`", data_dir.display()),
            e,
        )
    })?;
    Ok(user)
}

/// Gives the instance's data folder to its user, mode 0700 (its own alone: other classes and
/// their users must not read it). The folder's parent may belong to a tenant (a deployed
/// project's data folder), who could have put a symlink in its place to make valet, as root,
/// hand over any folder of the machine: so the folder is opened without following a symlink,
/// must be a directory, and is changed through that descriptor only.
fn give_folder(dir: &Path, user: &User) -> io::Result<()> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let folder = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY).bits())
        .open(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("not a plain folder (a symlink or a file in its place?): {e}"),
            )
        })?;
    std::os::unix::fs::fchown(&folder, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
    folder.set_permissions(std::fs::Permissions::from_mode(0o700))
}

/// A program that is missing or not executable will not appear by retrying: that is the
/// spec's fault. Anything else (no memory, too many processes) may pass.
fn spawn_error(program: &str, e: io::Error) -> DriverError {
    match e.kind() {
        io::ErrorKind::NotFound => DriverError::Spec(format!("program `{program}` not found: {e}")),
        io::ErrorKind::PermissionDenied => {
            DriverError::Spec(format!("cannot run program `{program}`: {e}"))
        }
        _ => DriverError::io(format!("cannot start `{program}`"), e),
    }
}

fn endpoints(ports: &[command::PickedPort]) -> Endpoints {
    Endpoints {
        ports: ports
            .iter()
            .map(|(name, port)| (name.clone(), SocketAddr::from((Ipv4Addr::LOCALHOST, *port))))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_symlink_in_place_of_a_data_folder_is_never_followed() {
        let me = User::from_uid(nix::unistd::getuid()).unwrap().unwrap();
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let planted = root.path().join("data");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();

        let error = give_folder(&planted, &me).unwrap_err();
        assert!(error.to_string().contains("not a plain folder"), "{error}");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the symlink's target was left alone");

        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        give_folder(&real, &me).unwrap();
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
