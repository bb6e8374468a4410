//! What a deploy can fail with, each with a code for scripts. Errors of the request change
//! nothing on disk or in the store. Which HTTP status each is answered with is the API's
//! (crates/api/src/error.rs): the pipeline also runs from the CLI and at start-up.

use valet_store::StoreError;

/// A deploy, rollback or delete failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The request is malformed (missing file, bad field, empty file).
    #[error("{0}")]
    BadUpload(String),
    /// The file is not an index.ts, index.js, app.py, .tar.gz or .zip.
    #[error("{0}")]
    UnsupportedFile(String),
    /// The upload, or what it unpacks to, is larger than allowed.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// `runtime` names no runtime valet has.
    #[error("unknown runtime {0:?}: use \"python\" or \"node\"")]
    UnknownRuntime(String),
    /// The project name is empty, too long or has control characters.
    #[error("{0}")]
    BadName(String),
    /// An archive tries to leave its folder, links out of it, or is a decompression bomb.
    #[error("unsafe archive: {0}")]
    UnsafeArchive(String),
    /// Requirements could not be installed; `log` is the installer's own output.
    #[error("{tool} failed to install the requirements: {log}")]
    Install {
        /// `pip` or `npm`.
        tool: &'static str,
        /// The installer's last lines.
        log: String,
    },
    /// The TypeScript does not parse.
    #[error("index.ts does not compile: {0}")]
    Compile(String),
    /// The new version did not become ready; it took no traffic.
    #[error("the new version did not become ready: {message}")]
    NotReady {
        /// Why (exit, timeout).
        message: String,
        /// Its last log lines.
        log: Vec<String>,
    },
    /// No such project or version (or not yours).
    #[error("{0}")]
    NotFound(String),
    /// A plan limit (or ownership) forbids it.
    #[error("{0}")]
    Forbidden(String),
    /// What runs projects cannot now (the Docker Engine does not answer, or lacks the
    /// runtime's base image): the operator's to fix, not the uploader's.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation failed on valet's side.
    #[error("{context}: {source}")]
    Io {
        /// What valet was doing.
        context: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

impl DeployError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether valet (or what runs projects) failed, rather than the request: logged as an
    /// error, and its details kept from the client.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Io { .. })
    }

    /// A short code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUpload(_) => "bad_upload",
            Self::UnsupportedFile(_) => "unsupported_file",
            Self::TooLarge { .. } => "too_large",
            Self::UnknownRuntime(_) => "unknown_runtime",
            Self::BadName(_) => "bad_name",
            Self::UnsafeArchive(_) => "unsafe_archive",
            Self::Install { .. } => "install_failed",
            Self::Compile(_) => "compile_failed",
            Self::NotReady { .. } => "not_ready",
            Self::NotFound(_) => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Unavailable(_) => "unavailable",
            Self::Store(_) | Self::Io { .. } => "internal",
        }
    }

    /// The message a client may see: internal errors are logged, not shown (no paths).
    pub fn public_message(&self) -> String {
        if self.is_internal() {
            return "internal error; see valet's log".into();
        }
        self.to_string()
    }
}
