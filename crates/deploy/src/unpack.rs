//! Writing an upload into a fresh folder: one source file under its runtime's name, or an
//! archive unpacked by `valet-archive` (entry by entry, every path and link checked, bytes
//! counted as written).

use crate::upload::FileKind;
use crate::DeployError;
use std::path::Path;
use valet_archive::{ArchiveError, Format};

pub use valet_archive::{project_root, MAX_ENTRIES, MAX_UNPACKED};

/// Writes the upload into `dir` (which exists and is empty).
pub fn unpack(kind: FileKind, bytes: &[u8], dir: &Path) -> Result<(), DeployError> {
    let written = match kind {
        FileKind::Python => valet_archive::write_single(&dir.join("app.py"), bytes),
        FileKind::TypeScript => valet_archive::write_single(&dir.join("index.ts"), bytes),
        FileKind::JavaScript => valet_archive::write_single(&dir.join("index.js"), bytes),
        FileKind::TarGz => valet_archive::unpack(Format::TarGz, bytes, dir),
        FileKind::Zip => valet_archive::unpack(Format::Zip, bytes, dir),
    };
    written.map_err(|e| match e {
        ArchiveError::Unsafe(why) => DeployError::UnsafeArchive(why),
        ArchiveError::Io { context, source } => DeployError::io(context, source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
