//! Writing an upload into a fresh folder. Archives are read entry by entry with every path
//! checked: no `..`, no absolute path, no hard link, no symlink that points out of the tree,
//! no device or fifo; and the bytes actually written (not the sizes the headers claim) are
//! counted, so a decompression bomb stops at the limit.

use crate::upload::FileKind;
use crate::DeployError;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Most bytes an archive may unpack to.
pub const MAX_UNPACKED: u64 = 200 * 1024 * 1024;
/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// Writes the upload into `dir` (which exists and is empty).
pub fn unpack(kind: FileKind, bytes: &[u8], dir: &Path) -> Result<(), DeployError> {
    let mut budget = Budget {
        left: MAX_UNPACKED,
        entries: 0,
    };
    match kind {
        FileKind::Python => write_file(&dir.join("app.py"), &mut &bytes[..], &mut budget),
        FileKind::TypeScript => write_file(&dir.join("index.ts"), &mut &bytes[..], &mut budget),
        FileKind::JavaScript => write_file(&dir.join("index.js"), &mut &bytes[..], &mut budget),
        FileKind::TarGz => untar(bytes, dir, &mut budget),
        FileKind::Zip => unzip(bytes, dir, &mut budget),
    }
}

struct Budget {
    left: u64,
    entries: usize,
}

impl Budget {
    fn entry(&mut self) -> Result<(), DeployError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(DeployError::UnsafeArchive(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        Ok(())
    }
}

/// Copies at most the budget's bytes; one more byte means the limit was passed.
fn write_file(path: &Path, from: &mut dyn Read, budget: &mut Budget) -> Result<(), DeployError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DeployError::io("cannot make a folder", e))?;
    }
    let mut file =
        std::fs::File::create(path).map_err(|e| DeployError::io("cannot write a file", e))?;
    let mut limited = from.take(budget.left + 1);
    let written = std::io::copy(&mut limited, &mut file)
        .map_err(|e| DeployError::UnsafeArchive(format!("cannot read the archive: {e}")))?;
    if written > budget.left {
        return Err(DeployError::UnsafeArchive(format!(
            "it unpacks to more than {MAX_UNPACKED} bytes (decompression bomb?)"
        )));
    }
    budget.left -= written;
    Ok(())
}

/// The entry's path below `dir`, refused when it is absolute or climbs out.
fn inside(dir: &Path, name: &Path) -> Result<PathBuf, DeployError> {
    let mut clean = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(DeployError::UnsafeArchive(format!(
                    "entry {} climbs out with '..'",
                    name.display()
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(DeployError::UnsafeArchive(format!(
                    "entry {} has an absolute path",
                    name.display()
                )))
            }
        }
    }
    Ok(dir.join(clean))
}

/// Whether a symlink at `entry` (relative to the tree) pointing at `target` stays inside.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = entry
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as i64
        - 1;
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
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

fn untar(bytes: &[u8], dir: &Path, budget: &mut Budget) -> Result<(), DeployError> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| DeployError::UnsafeArchive(format!("not a readable tar.gz: {e}")))?;
    for entry in entries {
        budget.entry()?;
        let mut entry =
            entry.map_err(|e| DeployError::UnsafeArchive(format!("not a readable tar.gz: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| DeployError::UnsafeArchive(format!("bad entry name: {e}")))?
            .into_owned();
        let path = inside(dir, &name)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&path)
                .map_err(|e| DeployError::io("cannot make a folder", e))?;
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
                return Err(DeployError::UnsafeArchive(format!(
                    "link {} points out of the upload ({})",
                    name.display(),
                    target.display()
                )));
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| DeployError::io("cannot make a folder", e))?;
            }
            std::os::unix::fs::symlink(&target, &path)
                .map_err(|e| DeployError::io("cannot make a link", e))?;
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        } else {
            return Err(DeployError::UnsafeArchive(format!(
                "entry {} is a hard link, device or fifo; only files, folders and links inside the tree are allowed",
                name.display()
            )));
        }
    }
    Ok(())
}

fn unzip(bytes: &[u8], dir: &Path, budget: &mut Budget) -> Result<(), DeployError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| DeployError::UnsafeArchive(format!("not a readable zip: {e}")))?;
    for i in 0..archive.len() {
        budget.entry()?;
        let mut file = archive
            .by_index(i)
            .map_err(|e| DeployError::UnsafeArchive(format!("not a readable zip: {e}")))?;
        let name = PathBuf::from(file.name());
        let path = inside(dir, &name)?;
        if file.is_symlink() {
            return Err(DeployError::UnsafeArchive(format!(
                "entry {} is a link; zip uploads may hold files and folders only",
                name.display()
            )));
        }
        if file.is_dir() {
            std::fs::create_dir_all(&path)
                .map_err(|e| DeployError::io("cannot make a folder", e))?;
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
    }

    /// A zip of `(name, content)` files, names written as given, plus optional links.
    fn zip_of(files: &[(&str, &str)], links: &[(&str, &str)]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, content) in files {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content.as_bytes()).unwrap();
        }
        for (name, target) in links {
            zip.add_symlink(*name, *target, options).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn zips_unpack_into_their_folder_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = zip_of(&[("app/app.py", "print(1)"), ("app/lib/x.py", "")], &[]);
        unpack(FileKind::Zip, &good, dir.path()).unwrap();
        assert_eq!(project_root(dir.path()), dir.path().join("app"));
        assert!(dir.path().join("app/lib/x.py").is_file());
        for (what, bad) in [
            ("..", zip_of(&[("../x.py", "")], &[])),
            ("absolute", zip_of(&[("/tmp/valet-zip-abs.py", "")], &[])),
            ("link", zip_of(&[("app.py", "")], &[("l", "/etc/passwd")])),
        ] {
            let into = tempfile::tempdir().unwrap();
            let err = unpack(FileKind::Zip, &bad, into.path()).unwrap_err();
            assert!(
                matches!(err, DeployError::UnsafeArchive(_)),
                "{what}: {err}"
            );
        }
        assert!(!Path::new("/tmp/valet-zip-abs.py").exists());
    }

    #[test]
    fn paths_that_climb_are_refused() {
        let dir = Path::new("/tmp/x");
        assert!(inside(dir, Path::new("a/../../b")).is_err());
        assert!(inside(dir, Path::new("/etc/passwd")).is_err());
        assert_eq!(inside(dir, Path::new("./a/b")).unwrap(), dir.join("a/b"));
    }
}
