//! With the process driver, each project runs as its own unprivileged system user
//! (`valet-<project id>`), made at its first deploy when valet runs as root. Its build folder
//! is given to that user with mode 0700, so one tenant cannot read another's code, and
//! valet's own files (store, secret key, admin token: mode 0600, root's) stay out of reach.
//! Without root, projects run as valet's user (the README says what that does not isolate).

use crate::DeployError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The system user of a project, made if missing. `None` when valet is not root.
pub async fn ensure_user(project_id: &str) -> Result<Option<String>, DeployError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = user_name(project_id);
    if lookup(&name).await? {
        return Ok(Some(name));
    }
    let status = tokio::process::Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
        .args(["--shell", "/usr/sbin/nologin", "--user-group", &name])
        .status()
        .await
        .map_err(|e| DeployError::io("cannot run useradd", e))?;
    // Another deploy of the same project may have made it meanwhile: look again.
    if !status.success() && !lookup(&name).await? {
        return Err(DeployError::io(
            format!("useradd {name} failed ({status})"),
            std::io::Error::other("useradd"),
        ));
    }
    Ok(Some(name))
}

/// Gives a build folder to the project's user, readable by it alone.
pub async fn hand_over(dir: &Path, user: &str) -> Result<(), DeployError> {
    let status = tokio::process::Command::new("chown")
        .args(["-R", "-h", &format!("{user}:{user}")])
        .arg(dir)
        .status()
        .await
        .map_err(|e| DeployError::io("cannot run chown", e))?;
    if !status.success() {
        return Err(DeployError::io(
            format!("chown of a build to {user} failed ({status})"),
            std::io::Error::other("chown"),
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| DeployError::io("cannot restrict a build folder", e))
}

/// Gives a project's data folder to its user, mode 0700: the folder itself only, since what
/// is inside was made by the app as that user already.
pub async fn hand_over_folder(dir: &Path, user: &str) -> Result<(), DeployError> {
    let name = user.to_string();
    let found = tokio::task::spawn_blocking(move || nix::unistd::User::from_name(&name))
        .await
        .map_err(|e| DeployError::io("user lookup stopped", std::io::Error::other(e)))?
        .map_err(|e| DeployError::io("cannot look up a user", e.into()))?
        .ok_or_else(|| DeployError::io(format!("no user {user}"), std::io::Error::other("user")))?;
    nix::unistd::chown(dir, Some(found.uid), Some(found.gid))
        .map_err(|e| DeployError::io("cannot give a data folder to its user", e.into()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| DeployError::io("cannot restrict a data folder", e))
}

/// The first folder on the way to `path` (from `/` down, `path` itself included) that lets no
/// other user pass (no `o+x`), with its mode. A project's user is in no one's group, so
/// without `o+x` on every folder above its build the kernel refuses the build as its working
/// directory, and the spawn reports it as "cannot run program ...: Permission denied", naming
/// the interpreter instead of the folder. Folders that do not exist yet are skipped: valet
/// makes them passable.
pub fn blocked_folder(path: &Path) -> Option<(PathBuf, u32)> {
    // A relative data_dir passes through the working directory's ancestors too.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut on_the_way: Vec<&Path> = path.ancestors().collect();
    on_the_way.reverse();
    on_the_way.into_iter().find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        let mode = meta.permissions().mode() & 0o7777;
        (meta.is_dir() && mode & 0o001 == 0).then(|| (dir.to_path_buf(), mode))
    })
}

/// Refuses a folder (`data_dir`, a build's parent) that the project users cannot reach (valet
/// as root runs each deployed project as its own user), naming the folder to open. `Ok` when
/// valet is not root: then projects run as valet's own user.
pub fn check_reachable(folder: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    match blocked_folder(folder) {
        None => Ok(()),
        Some((blocked, mode)) => Err(format!(
            "deployed projects cannot reach {}: {} (mode {mode:o}) lets no other user pass, \
             and valet, run as root, starts each project as its own user; \
             run `chmod o+x {}` or set server.data_dir to a folder other users can pass",
            folder.display(),
            blocked.display(),
            blocked.display()
        )),
    }
}

/// Removes a deleted project's user, after killing every process it still runs: a tenant's
/// process that left its instance's session (setsid, a daemon) survives the instance's stop,
/// and would otherwise keep running, and keep the user, after the project is gone.
pub async fn remove_user(project_id: &str) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let name = user_name(project_id);
    let Ok(Some(user)) = tokio::task::spawn_blocking({
        let name = name.clone();
        move || nix::unistd::User::from_name(&name)
    })
    .await
    .unwrap_or(Ok(None)) else {
        return;
    };
    // Twice: a process may fork while the first round is under way.
    for _ in 0..2 {
        kill_all_of(user.uid.as_raw());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    match tokio::process::Command::new("userdel")
        .arg(&name)
        .status()
        .await
    {
        Ok(status) if status.success() => {}
        Ok(status) => {
            tracing::warn!(user = %name, %status, "userdel failed; the project's user is left behind")
        }
        Err(e) => tracing::warn!(user = %name, error = %e, "cannot remove a project's user"),
    }
}

/// SIGKILLs every process whose real user is `uid` (read from /proc).
fn kill_all_of(uid: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let real_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok());
        if real_uid == Some(uid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// `valet-<id>`: project ids are 16 hex digits, well under the 32 characters a name may have.
fn user_name(project_id: &str) -> String {
    let id: String = project_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!("valet-{id}")
}

async fn lookup(name: &str) -> Result<bool, DeployError> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || nix::unistd::User::from_name(&name))
        .await
        .map_err(|e| DeployError::io("user lookup stopped", std::io::Error::other(e)))?
        .map(|found| found.is_some())
        .map_err(|e| DeployError::io("cannot look up a user", e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_closed_folder_on_the_way_is_named() {
        let top = tempfile::tempdir().unwrap();
        let open = top.path().join("open");
        let closed = open.join("closed");
        let inner = closed.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let not_yet = inner.join("data");
        assert_eq!(blocked_folder(&not_yet), Some((closed.clone(), 0o700)));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o751)).unwrap();
        assert_eq!(blocked_folder(&not_yet), None);
    }
}
