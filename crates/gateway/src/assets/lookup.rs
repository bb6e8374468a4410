//! Finding the file for a request: candidates, the canonical-path wall, precompressed siblings
//! and the not-found policies.
//!
//! Everything here is blocking file-system work on purpose: `serve` runs one `lookup` call in
//! `spawn_blocking`, one trip to the blocking pool per request instead of one per syscall.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use super::negotiate::{Accepted, Encoding};
use super::path::{self, RequestPath};
use super::NotFound;

/// An open regular file and what `fstat` said about it when it was opened.
#[derive(Debug)]
pub(crate) struct OpenFile {
    pub file: File,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

/// A file to answer with.
#[derive(Debug)]
pub(crate) struct Found {
    /// File name, for the media type and cache policy (the sibling's `.br` is not part of it).
    pub name: String,
    pub identity: OpenFile,
    /// A precompressed sibling in a coding the client accepts, best first.
    pub precompressed: Option<(Encoding, OpenFile)>,
}

#[derive(Debug)]
pub(crate) enum Lookup {
    /// The file the path names.
    File(Found),
    /// `/dir` is a folder with an index.html: send the client to this folder path (`/dir/`).
    Redirect(String),
    /// single-page-application: index.html for a missing path, status 200.
    SpaIndex(Found),
    /// 404-page: the nearest 404.html, status 404.
    NotFoundPage(Found),
    /// Nothing to send but a plain 404.
    Missing,
}

/// What a lookup needs to know about the request besides its path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    pub not_found: NotFound,
    pub accepted: Accepted,
    /// A browser navigation (a page load), which single-page apps answer even for `a.b` paths.
    pub navigation: bool,
}

/// Finds what to send for `path` under the canonical `root`. `Err` is kept for failures that are
/// not "there is no such asset" (e.g. out of file descriptors), which become a 500.
pub(crate) fn lookup(root: &Path, path: &RequestPath, req: Request) -> io::Result<Lookup> {
    let files = Files {
        root,
        accepted: req.accepted,
    };
    let rel: PathBuf = path.segments.iter().collect();
    match path.file_name() {
        None => {
            if let Some(found) = files.find(&rel.join("index.html"))? {
                return Ok(Lookup::File(found));
            }
        }
        Some(name) => {
            if let Some(found) = files.find(&rel)? {
                return Ok(Lookup::File(found));
            }
            // Workers' html handling: `/about` is also `/about.html`.
            if !name.ends_with(".html") {
                if let Some(found) = files.find(&rel.with_file_name(format!("{name}.html")))? {
                    return Ok(Lookup::File(found));
                }
            }
            // A folder is answered with a redirect to its `/` form, so that relative links in
            // its index.html resolve inside the folder, as on every static host.
            if files.open(&rel.join("index.html"))?.is_some() {
                return Ok(Lookup::Redirect(path::folder_location(path)));
            }
        }
    }
    missing(&files, path, req)
}

fn missing(files: &Files, path: &RequestPath, req: Request) -> io::Result<Lookup> {
    match req.not_found {
        NotFound::SinglePageApplication => {
            // A missing `/app.js` gets a 404, not HTML that a script tag would choke on; page
            // loads still get the app, since client-side routes may contain dots.
            if path.has_extension() && !req.navigation {
                return Ok(Lookup::Missing);
            }
            Ok(files
                .find(Path::new("index.html"))?
                .map_or(Lookup::Missing, Lookup::SpaIndex))
        }
        NotFound::Page404 => Ok(files
            .nearest_404(path)?
            .map_or(Lookup::Missing, Lookup::NotFoundPage)),
        NotFound::None => Ok(Lookup::Missing),
    }
}

struct Files<'a> {
    root: &'a Path,
    accepted: Accepted,
}

impl Files<'_> {
    /// Opens `rel` and the best precompressed sibling the client accepts.
    fn find(&self, rel: &Path) -> io::Result<Option<Found>> {
        let Some(identity) = self.open(rel)? else {
            return Ok(None);
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut precompressed = None;
        for encoding in self.accepted.iter() {
            let sibling = rel.with_file_name(format!("{name}.{}", encoding.extension()));
            if let Some(file) = self.open(&sibling)? {
                precompressed = Some((encoding, file));
                break;
            }
        }
        Ok(Some(Found {
            name,
            identity,
            precompressed,
        }))
    }

    /// Opens `rel` if it is a regular file whose real path (symlinks resolved) stays inside the
    /// root and passes through no dot-folder. Anything else is `None`, indistinguishable from a
    /// file that does not exist.
    fn open(&self, rel: &Path) -> io::Result<Option<OpenFile>> {
        let Some(real) = self.real_path(rel) else {
            return Ok(None);
        };
        // Checked before opening: opening a FIFO or device could block or have side effects.
        if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
            return Ok(None);
        }
        let file = match File::open(&real) {
            Ok(file) => file,
            // Gone since the check, or unreadable: to the client both are just "not here".
            Err(e) if is_absence(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        // fstat of the handle we hold: the size and mtime of exactly what will be streamed.
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some(OpenFile {
            file,
            len: meta.len(),
            modified: meta.modified().ok(),
        }))
    }

    /// Canonical path of `rel` if it exists and lies under the root.
    fn real_path(&self, rel: &Path) -> Option<PathBuf> {
        let real = std::fs::canonicalize(self.root.join(rel)).ok()?;
        let inside = real.strip_prefix(self.root).ok()?;
        let hidden = inside.components().any(|c| match c {
            Component::Normal(name) => {
                let name = name.to_string_lossy();
                name.starts_with('.') && name != ".well-known"
            }
            _ => true,
        });
        (!hidden).then_some(real)
    }

    /// The 404.html closest to the requested folder, walking up to the root.
    fn nearest_404(&self, path: &RequestPath) -> io::Result<Option<Found>> {
        let folder = match path.file_name() {
            Some(_) => &path.segments[..path.segments.len() - 1],
            None => &path.segments[..],
        };
        // Start from the deepest folder that exists, so a long made-up path costs no more
        // lookups than the real tree is deep.
        let mut depth = 0;
        let mut dir = PathBuf::new();
        for segment in folder {
            dir.push(segment);
            match self.real_path(&dir) {
                Some(real) if real.is_dir() => depth += 1,
                _ => break,
            }
        }
        for depth in (0..=depth).rev() {
            let candidate: PathBuf = folder[..depth].iter().collect();
            if let Some(found) = self.find(&candidate.join("404.html"))? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

fn is_absence(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    )
}
