//! The build context of a Dockerfile as a tar archive, made byte-for-byte reproducible (sorted
//! entries, zero timestamps and owners) so its hash names the image: the same context and
//! build args give the same tag, and an unchanged context is never rebuilt.

use std::io;
use std::path::{Path, PathBuf};

/// A context folder, minus what must not be sent.
pub struct Context {
    pub root: PathBuf,
    /// Absolute paths left out: valet's own data folder, whose logs and store change all the
    /// time and would make every start a rebuild.
    pub exclude: Vec<PathBuf>,
}

impl Context {
    /// The tar archive of the context. Blocking: call from a blocking thread.
    pub fn archive(&self) -> io::Result<Vec<u8>> {
        let ignore = Ignore::read(&self.root);
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        self.add_dir(&mut builder, &self.root, &ignore)?;
        builder.into_inner()
    }

    fn add_dir(
        &self,
        builder: &mut tar::Builder<Vec<u8>>,
        dir: &Path,
        ignore: &Ignore,
    ) -> io::Result<()> {
        let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path.strip_prefix(&self.root).unwrap_or(&path);
            if self.exclude.iter().any(|x| path.starts_with(x)) || ignore.matches(relative) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            let mut header = tar::Header::new_gnu();
            // Deterministic: fixed timestamps and owners, so only content and modes count.
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
            if meta.is_dir() {
                builder.append_data(&mut header, relative, io::empty())?;
                self.add_dir(builder, &path, ignore)?;
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                builder.append_link(&mut header, relative, target)?;
            } else if meta.is_file() {
                let file = std::fs::File::open(&path)?;
                builder.append_data(&mut header, relative, file)?;
            }
            // Sockets, fifos and devices cannot be part of an image.
        }
        Ok(())
    }
}

/// The patterns of a `.dockerignore`: `*`, `?` and `**`, a leading `/` ignored, and a pattern
/// that names a folder leaves out everything below it. `!` exceptions are not supported and
/// are skipped with a warning rather than guessed at.
struct Ignore {
    patterns: Vec<Vec<String>>,
}

impl Ignore {
    fn read(root: &Path) -> Self {
        let text = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
        let mut patterns = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('!') {
                tracing::warn!(pattern = line, ".dockerignore exceptions are not supported");
                continue;
            }
            let parts = line
                .trim_matches('/')
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .map(str::to_string)
                .collect::<Vec<_>>();
            if !parts.is_empty() {
                patterns.push(parts);
            }
        }
        Self { patterns }
    }

    fn matches(&self, relative: &Path) -> bool {
        let parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        // A match on any leading part of the path covers everything below it.
        self.patterns
            .iter()
            .any(|p| (1..=parts.len()).any(|n| path_matches(p, &parts[..n])))
    }
}

fn path_matches(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| path_matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, tail)) => {
                glob(first.as_bytes(), name.as_bytes()) && path_matches(rest, tail)
            }
            None => false,
        },
    }
}

/// One path segment against `*` and `?`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        (Some((b'?', rest)), Some((_, tail))) => glob(rest, tail),
        (Some((p, rest)), Some((n, tail))) => p == n && glob(rest, tail),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(lines: &str) -> Ignore {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), lines).unwrap();
        Ignore::read(dir.path())
    }

    #[test]
    fn dockerignore_patterns() {
        let i = ignore("# comment\nnode_modules\n/*.log\n**/tmp\ndocs/?.md\n!keep\n");
        assert!(i.matches(Path::new("node_modules/a/b.js")));
        assert!(i.matches(Path::new("app.log")));
        assert!(!i.matches(Path::new("src/app.log")));
        assert!(i.matches(Path::new("a/b/tmp/x")));
        assert!(i.matches(Path::new("docs/a.md")));
        assert!(!i.matches(Path::new("docs/ab.md")));
        assert!(!i.matches(Path::new("src/main.rs")));
    }

    #[test]
    fn the_archive_is_reproducible_and_leaves_out_excluded_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(dir.path().join(".valet")).unwrap();
        let context = Context {
            root: dir.path().to_path_buf(),
            exclude: vec![dir.path().join(".valet")],
        };
        let first = context.archive().unwrap();
        std::fs::write(dir.path().join(".valet/log"), "changes all the time").unwrap();
        assert_eq!(first, context.archive().unwrap());
        std::fs::write(dir.path().join("app.py"), "print()").unwrap();
        assert_ne!(first, context.archive().unwrap());
    }
}
