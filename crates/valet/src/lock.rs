//! One valet per data_dir: an exclusive flock on `<data_dir>/lock`, held for the process's life.
//! The kernel drops it when the process dies, however it dies, so there is no stale lock.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

pub struct DataDirLock {
    _lock: Flock<File>,
}

pub fn acquire(data_dir: &Path) -> Result<DataDirLock, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", data_dir.display()))?;
    let path = data_dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        format!(
            "another valet is running with data_dir {} (its lock is held)",
            data_dir.display()
        )
    })?;
    Ok(DataDirLock { _lock: lock })
}
