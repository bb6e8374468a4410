//! Writing an upload into a fresh folder. Archives are read entry by entry with every path
//! checked: no `..`, no absolute path, no hard link, no symlink that points out of the tree,
//! no device or fifo; and the bytes actually written (not the sizes the headers claim) are
//! counted, so a decompression bomb stops at the limit. `valet-deploy` unpacks uploads with
//! it; the fuzz target `archive` (`fuzz/`) drives it with arbitrary archives.

#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Most bytes an archive may unpack to.
pub const MAX_UNPACKED: u64 = 200 * 1024 * 1024;
/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// What may go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive leaves its folder, links out of it, holds a forbidden entry, cannot be
    /// read, or is a decompression bomb.
    #[error("unsafe archive: {0}")]
    Unsafe(String),
    /// The folder could not be written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl ArchiveError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The archive formats an upload may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A gzip-compressed tar.
    TarGz,
    Zip,
}

/// Unpacks the archive `bytes` into `dir` (which exists and is empty).
pub fn unpack(format: Format, bytes: &[u8], dir: &Path) -> Result<(), ArchiveError> {
    let mut budget = Budget::new();
    match format {
        Format::TarGz => untar(bytes, dir, &mut budget),
        Format::Zip => unzip(bytes, dir, &mut budget),
    }
}

/// Writes one uploaded file as `path`, within the same byte limit as an archive.
pub fn write_single(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    write_file(path, &mut &bytes[..], &mut Budget::new())
}

struct Budget {
    left: u64,
    entries: usize,
}

impl Budget {
    fn new() -> Self {
        Self {
            left: MAX_UNPACKED,
            entries: 0,
        }
    }

    fn entry(&mut self) -> Result<(), ArchiveError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(ArchiveError::Unsafe(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        Ok(())
    }
}

/// Copies at most the budget's bytes; one more byte means the limit was passed.
fn write_file(path: &Path, from: &mut dyn Read, budget: &mut Budget) -> Result<(), ArchiveError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ArchiveError::io("cannot make a folder", e))?;
    }
    let mut file =
        std::fs::File::create(path).map_err(|e| ArchiveError::io("cannot write a file", e))?;
    let mut limited = from.take(budget.left + 1);
    let written = std::io::copy(&mut limited, &mut file)
        .map_err(|e| ArchiveError::Unsafe(format!("cannot read the archive: {e}")))?;
    if written > budget.left {
        return Err(ArchiveError::Unsafe(format!(
            "it unpacks to more than {MAX_UNPACKED} bytes (decompression bomb?)"
        )));
    }
    budget.left -= written;
    Ok(())
}

/// The entry's path below `dir`, refused when it is absolute or climbs out.
fn inside(dir: &Path, name: &Path) -> Result<PathBuf, ArchiveError> {
    let mut clean = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ArchiveError::Unsafe(format!(
                    "entry {} climbs out with '..'",
                    name.display()
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Unsafe(format!(
                    "entry {} has an absolute path",
                    name.display()
                )))
            }
        }
    }
    Ok(dir.join(clean))
}

/// Refuses an entry below a symlink the archive made earlier: written through the link, it
/// would land wherever the link points rather than where its name says.
fn not_through_link(dir: &Path, path: &Path) -> Result<(), ArchiveError> {
    let Ok(below) = path.strip_prefix(dir) else {
        return Ok(());
    };
    let mut at = dir.to_path_buf();
    let mut parts = below.components().peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            break;
        }
        at.push(part);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(ArchiveError::Unsafe(format!(
                "entry {} goes through the link {}",
                below.display(),
                at.strip_prefix(dir).unwrap_or(&at).display()
            )));
        }
    }
    Ok(())
}

/// Whether a symlink at `entry` (relative to the tree) pointing at `target` stays inside.
/// `..` may only lead the target: after a name, the name may itself be a link (`s -> .`, then
/// `s/..` is the folder's parent), so only climbing through real folders is counted.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = entry
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as i64
        - 1;
    let mut named = false;
    for part in target.components() {
        match part {
            Component::Normal(_) => {
                named = true;
                depth += 1
            }
            Component::ParentDir if named => return false,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn untar(bytes: &[u8], dir: &Path, budget: &mut Budget) -> Result<(), ArchiveError> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Unsafe(format!("not a readable tar.gz: {e}")))?;
    for entry in entries {
        budget.entry()?;
        let mut entry =
            entry.map_err(|e| ArchiveError::Unsafe(format!("not a readable tar.gz: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| ArchiveError::Unsafe(format!("bad entry name: {e}")))?
            .into_owned();
        let path = inside(dir, &name)?;
        not_through_link(dir, &path)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&path)
                .map_err(|e| ArchiveError::io("cannot make a folder", e))?;
        } else if kind.is_file() {
            write_file(&path, &mut entry, budget)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if !link_stays_inside(&name, &target) {
                return Err(ArchiveError::Unsafe(format!(
                    "link {} points out of the upload ({})",
                    name.display(),
                    target.display()
                )));
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ArchiveError::io("cannot make a folder", e))?;
            }
            std::os::unix::fs::symlink(&target, &path)
                .map_err(|e| ArchiveError::io("cannot make a link", e))?;
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        } else {
            return Err(ArchiveError::Unsafe(format!(
                "entry {} is a hard link, device or fifo; only files, folders and links inside the tree are allowed",
                name.display()
            )));
        }
    }
    Ok(())
}

fn unzip(bytes: &[u8], dir: &Path, budget: &mut Budget) -> Result<(), ArchiveError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ArchiveError::Unsafe(format!("not a readable zip: {e}")))?;
    for i in 0..archive.len() {
        budget.entry()?;
        let mut file = archive
            .by_index(i)
            .map_err(|e| ArchiveError::Unsafe(format!("not a readable zip: {e}")))?;
        let name = PathBuf::from(file.name());
        let path = inside(dir, &name)?;
        if file.is_symlink() {
            return Err(ArchiveError::Unsafe(format!(
                "entry {} is a link; zip uploads may hold files and folders only",
                name.display()
            )));
        }
        if file.is_dir() {
            std::fs::create_dir_all(&path)
                .map_err(|e| ArchiveError::io("cannot make a folder", e))?;
        } else {
            write_file(&path, &mut file, budget)?;
        }
    }
    Ok(())
}

/// An archive of one folder (`myapp/app.py`): the folder is the project.
pub fn project_root(dir: &Path) -> PathBuf {
    let entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).collect(),
        Err(_) => return dir.to_path_buf(),
    };
    if let [only] = &entries[..] {
        if only.file_type().is_ok_and(|t| t.is_dir()) {
            return only.path();
        }
    }
    dir.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_inside_and_out() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("c")));
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("b"), Path::new("/etc/passwd")));
        // `s` may be a link to `.`: then `s/..` is the parent of the folder.
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("s/..")));
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../s/./t")));
    }

    #[test]
    fn paths_that_climb_are_refused() {
        let dir = Path::new("/tmp/x");
        assert!(inside(dir, Path::new("a/../../b")).is_err());
        assert!(inside(dir, Path::new("/etc/passwd")).is_err());
        assert_eq!(inside(dir, Path::new("./a/b")).unwrap(), dir.join("a/b"));
    }
}
