//! Records of the process groups valet started, so that a valet killed with SIGKILL can be
//! cleaned up after by the next one.
//!
//! The parent-death signal takes down each instance's leader, but never its descendants
//! (uvicorn workers, npm -> node). They keep the leader's process group, so one file per group,
//! `groups/<pgid>`, holding the leader's pid and start time, is enough to find them again. The
//! start time (field 22 of `/proc/<pid>/stat`) tells our leader from a process that merely got
//! its recycled pid.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The folder of group records, `<state_dir>/groups`.
#[derive(Debug, Clone)]
pub(super) struct Groups {
    dir: PathBuf,
}

/// What `/proc/<pid>/stat` says about one process, as far as recovery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    zombie: bool,
    pgid: i32,
    start_time: u64,
}

impl Groups {
    pub(super) fn new(state_dir: PathBuf) -> Self {
        Self {
            dir: state_dir.join("groups"),
        }
    }

    /// Records the group led by `pid` (its pgid is its pid: it was spawned as the leader of a
    /// session of its own).
    pub(super) fn record(&self, pid: u32) -> io::Result<()> {
        let start_time = read_stat(pid as i32)
            .ok_or_else(|| io::Error::other(format!("cannot read /proc/{pid}/stat")))?
            .start_time;
        std::fs::create_dir_all(&self.dir)?;
        // Pids of every tenant's instance: valet's bookkeeping, nobody else's.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::write(
            self.dir.join(pid.to_string()),
            format!("{pid} {start_time}\n"),
        )
    }

    /// Drops the record of a group that has been killed and reaped.
    pub(super) fn forget(&self, pid: u32) {
        let path = self.dir.join(pid.to_string());
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove group record");
            }
        }
    }

    /// Kills every recorded group that is still ours and removes all records. Blocking: it
    /// reads `/proc`, so run it off the async threads.
    pub(super) fn recover(&self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| parse_record(&s))
            {
                Some((pid, start_time)) => clean_group(pid, start_time),
                None => tracing::warn!(path = %path.display(), "unreadable group record skipped"),
            }
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }
}

fn parse_record(text: &str) -> Option<(i32, u64)> {
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start_time = fields.next()?.parse().ok()?;
    Some((pid, start_time))
}

/// Kills what is left of the group `pid` led, if it is provably ours.
fn clean_group(pid: i32, start_time: u64) {
    let ours = match read_stat(pid) {
        // The leader is still there (the parent-death signal may not have reached it yet).
        Some(stat) => stat.start_time == start_time,
        // The leader is gone. Linux never hands out a pid still used as a group id, so live
        // processes in group `pid` that started after our leader are its descendants.
        None => !members(pid, start_time).is_empty(),
    };
    if !ours {
        tracing::debug!(pgid = pid, "recorded process group already gone");
        return;
    }
    match killpg(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) => tracing::info!(pgid = pid, "killed leftover process group"),
        Err(e) => tracing::warn!(pgid = pid, error = %e, "cannot kill leftover process group"),
    }
}

/// Live (non-zombie) processes in group `pgid` started no earlier than `since`.
fn members(pgid: i32, since: u64) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            read_stat(pid).is_some_and(|s| !s.zombie && s.pgid == pgid && s.start_time >= since)
        })
        .collect()
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(Stat {
        zombie: *fields.first()? == "Z",
        pgid: fields.get(5 - 3)?.parse().ok()?,
        start_time: fields.get(22 - 3)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let line = "4242 (a (b) c) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                zombie: false,
                pgid: 4240,
                start_time: 987654
            }
        );
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_record("12 345\n"), Some((12, 345)));
        assert_eq!(parse_record("12"), None);
        assert_eq!(parse_record("x 1"), None);
    }

    /// The case the records exist for: valet died, the parent-death signal took the leader,
    /// and its reaped leader left a grandchild behind in the group.
    #[test]
    fn recover_kills_the_descendants_of_a_leader_that_is_gone() {
        let state = tempfile::tempdir().unwrap();
        let groups = Groups::new(state.path().to_path_buf());
        let mut leader = Command::new("sh")
            // The grandchild must hold neither pipe, or readers would wait for it.
            .args(["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The leader is alive or a zombie until waited for, so its stat is readable.
        groups.record(leader.id()).unwrap();
        let output = std::io::read_to_string(leader.stdout.take().unwrap()).unwrap();
        let orphan: i32 = output.trim().parse().unwrap();
        let _cleanup = KillOnDrop(orphan);
        leader.wait().unwrap();
        assert!(read_stat(leader.id() as i32).is_none(), "leader reaped");
        assert!(is_alive(orphan), "grandchild outlives its leader");

        groups.recover().unwrap();

        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(orphan) {
            assert!(
                Instant::now() < deadline,
                "grandchild {orphan} survived recover"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            std::fs::read_dir(state.path().join("groups"))
                .unwrap()
                .count(),
            0
        );
    }

    /// Kills a process the test made when an assertion fails before the test could.
    struct KillOnDrop(i32);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // Only on failure: after a pass the pid is dead and may already be someone else's.
            if std::thread::panicking() {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.0), Signal::SIGKILL);
            }
        }
    }

    fn is_alive(pid: i32) -> bool {
        read_stat(pid).is_some_and(|s| !s.zombie)
    }
}
