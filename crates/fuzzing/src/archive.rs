//! Archive extraction: tar.gz and zip uploads, either built from a description of entries (so
//! checksums and compression stay valid and the fuzzer explores names, links and their order)
//! or taken as raw bytes (to reach the parsers' corners).

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use valet_archive::{unpack, Format};

/// Input: a mode byte, then for modes 0 and 1 entries `kind name \0 content \0` (kind & 7: 0
/// file, 1 folder, 2 symlink, 3 hard link, 4 fifo, 5 character device; content is a file's
/// bytes or a link's target), for mode 2 a raw tar (gzipped here), for mode 3 a raw zip, for
/// mode 4 a raw tar.gz. Mode 0 builds a tar.gz, mode 1 a zip. Whatever the archive holds and
/// whether or not it is refused, nothing may be written outside the folder it unpacks into,
/// and no link left inside it may point out of it.
pub fn archive(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (format, bytes) = match mode % 5 {
        0 => (Format::TarGz, gzip(&tar_of(rest))),
        1 => (Format::Zip, zip_of(rest)),
        2 => (Format::TarGz, gzip(rest)),
        3 => (Format::Zip, rest.to_vec()),
        _ => (Format::TarGz, rest.to_vec()),
    };
    // root/a/b/up: an escape of up to three levels lands in a folder that is checked.
    let root = tempfile::tempdir().expect("a temporary folder");
    let up = root.path().join("a/b/up");
    std::fs::create_dir_all(&up).expect("the upload folder");
    let _ = unpack(format, &bytes, &up);
    for (folder, only) in [("", "a"), ("a", "b"), ("a/b", "up")] {
        let names: Vec<_> = std::fs::read_dir(root.path().join(folder))
            .expect("readable")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            [only],
            "something was written beside the upload folder"
        );
    }
    let up = std::fs::canonicalize(&up).expect("the upload folder exists");
    links_stay_inside(&up, &up);
}

/// Every symlink under `dir` resolves inside `top` (or does not resolve at all, while its
/// dangling part would stay inside too).
fn links_stay_inside(top: &Path, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            let resolved = resolve(&path, 0);
            assert!(
                resolved.starts_with(top),
                "link {} resolves to {} outside {}",
                path.display(),
                resolved.display(),
                top.display()
            );
        } else if kind.is_dir() {
            links_stay_inside(top, &path);
        }
    }
}

/// Where `path` leads, following links; the part that does not exist is taken as written.
fn resolve(path: &Path, depth: usize) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    if depth < 40 {
        if let Ok(target) = std::fs::read_link(path) {
            let base = path.parent().unwrap_or(Path::new("/"));
            return resolve(&base.join(target), depth + 1);
        }
    }
    let (Some(parent), Some(name)) = (path.parent(), path.components().next_back()) else {
        return path.to_path_buf();
    };
    let mut resolved = resolve(parent, depth + 1);
    match name {
        Component::ParentDir => {
            resolved.pop();
        }
        Component::Normal(name) => resolved.push(name),
        _ => {}
    }
    resolved
}

/// `(kind, name, content)` entries from the description.
fn entries(data: &[u8]) -> Vec<(u8, &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&kind, after)) = rest.split_first() {
        let mut parts = after.splitn(3, |b| *b == 0);
        let name = parts.next().unwrap_or_default();
        let content = parts.next().unwrap_or_default();
        rest = parts.next().unwrap_or_default();
        out.push((kind & 7, name, content));
        if out.len() >= 64 {
            break;
        }
    }
    out
}

fn tar_of(data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (kind, name, content) in entries(data) {
        let mut header = tar::Header::new_gnu();
        // Names and link targets go in as raw bytes: the builder's setters refuse `..`.
        let old = header.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
        let (entry_type, body): (tar::EntryType, &[u8]) = match kind {
            0 => (tar::EntryType::Regular, content),
            1 => (tar::EntryType::Directory, b""),
            2 => (tar::EntryType::Symlink, b""),
            3 => (tar::EntryType::Link, b""),
            4 => (tar::EntryType::Fifo, b""),
            5 => (tar::EntryType::Char, b""),
            6 => (tar::EntryType::XHeader, content),
            _ => (tar::EntryType::Regular, content),
        };
        if matches!(entry_type, tar::EntryType::Symlink | tar::EntryType::Link) {
            let old = header.as_old_mut();
            let n = content.len().min(old.linkname.len());
            old.linkname[..n].copy_from_slice(&content[..n]);
        }
        header.set_entry_type(entry_type);
        header.set_mode(if kind == 1 { 0o755 } else { 0o644 });
        header.set_size(body.len() as u64);
        header.set_cksum();
        if builder.append(&header, body).is_err() {
            break;
        }
    }
    builder.into_inner().unwrap_or_default()
}

fn zip_of(data: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (kind, name, content) in entries(data) {
        let name = String::from_utf8_lossy(name).into_owned();
        let target = String::from_utf8_lossy(content).into_owned();
        let added = match kind {
            1 => zip.add_directory(name, options),
            2 => zip.add_symlink(name, target, options),
            _ => zip
                .start_file(name, options)
                .and_then(|()| zip.write_all(content).map_err(Into::into)),
        };
        if added.is_err() {
            break;
        }
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(raw).expect("writing to memory");
    gz.finish().expect("writing to memory")
}
