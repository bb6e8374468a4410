//! What a client uploads, and how its file name decides what it is.

use crate::DeployError;

/// Longest project name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// One upload, as the deploy API received it.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The file's name as sent (`index.ts`, `app.py`, `site.tar.gz`, ...).
    pub file_name: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Project name; default: derived from the file name.
    pub name: Option<String>,
    /// `python` or `node`, overriding detection.
    pub runtime: Option<String>,
    /// `"express cors"` or a requirements.txt body.
    pub requirements: Option<String>,
}

/// What kind of file was uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// One Python file, kept as `app.py`.
    Python,
    /// One TypeScript file, kept as `index.ts`.
    TypeScript,
    /// One JavaScript file, kept as `index.js`.
    JavaScript,
    /// A gzip-compressed tar of a project folder.
    TarGz,
    /// A zip of a project folder.
    Zip,
}

impl FileKind {
    /// Decides from the name and checks the content agrees (an archive's magic bytes, a
    /// source file's UTF-8).
    pub fn of(file_name: &str, bytes: &[u8]) -> Result<Self, DeployError> {
        if bytes.is_empty() {
            return Err(DeployError::BadUpload("the uploaded file is empty".into()));
        }
        let lower = file_name.to_ascii_lowercase();
        let kind = if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Self::TarGz
        } else if lower.ends_with(".zip") {
            Self::Zip
        } else if lower.ends_with(".py") {
            Self::Python
        } else if lower.ends_with(".ts") {
            Self::TypeScript
        } else if lower.ends_with(".js") || lower.ends_with(".mjs") {
            Self::JavaScript
        } else {
            return Err(DeployError::UnsupportedFile(format!(
                "cannot deploy {file_name:?}: upload index.ts, index.js, app.py, a .tar.gz or a .zip"
            )));
        };
        let agrees = match kind {
            Self::TarGz => bytes.starts_with(&[0x1f, 0x8b]),
            Self::Zip => bytes.starts_with(b"PK\x03\x04"),
            _ => std::str::from_utf8(bytes).is_ok(),
        };
        if !agrees {
            return Err(DeployError::UnsupportedFile(format!(
                "{file_name:?} is not what its name says (not a {})",
                kind.describe()
            )));
        }
        Ok(kind)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::TarGz => "gzip-compressed tar",
            Self::Zip => "zip archive",
            _ => "UTF-8 text file",
        }
    }
}

/// Checks a project name: 1 to 64 characters, no control characters, no `/`.
pub fn check_name(name: &str) -> Result<(), DeployError> {
    let chars = name.chars().count();
    if chars == 0 || name.trim().is_empty() {
        return Err(DeployError::BadName("the project name is empty".into()));
    }
    if chars > MAX_NAME_CHARS {
        return Err(DeployError::BadName(format!(
            "the project name has {chars} characters; at most {MAX_NAME_CHARS} are allowed"
        )));
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(DeployError::BadName(
            "the project name may not hold control characters or '/'".into(),
        ));
    }
    Ok(())
}

/// The name a project gets when the upload names none: the file name without extensions.
pub fn default_name(file_name: &str) -> String {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let stem = base.split('.').next().unwrap_or(base);
    let stem: String = stem.chars().take(MAX_NAME_CHARS).collect();
    if stem.trim().is_empty() {
        "app".into()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name_and_content() {
        assert_eq!(
            FileKind::of("app.py", b"print(1)").unwrap(),
            FileKind::Python
        );
        assert_eq!(
            FileKind::of("index.ts", b"let a = 1").unwrap(),
            FileKind::TypeScript
        );
        assert!(FileKind::of("a.tar.gz", b"not gzip").is_err());
        assert!(FileKind::of("app.exe", b"MZ").is_err());
        assert!(FileKind::of("app.py", b"").is_err());
        assert!(FileKind::of("app.py", &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("my-app").is_ok());
        assert!(check_name("héllo").is_ok());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name("  ").is_err());
        assert_eq!(default_name("index.ts"), "index");
    }
}
