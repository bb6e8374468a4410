//! The admin token. Until the deploy API's store exists, there is one: `server.admin_token`
//! from the config, or else a random token made at the first start and kept in
//! `<data_dir>/admin-token` (mode 0600), which the CLI beside the config reads too. The admin
//! listener never runs without a token, and the token itself is never logged.

use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use valet_config::Config;

/// Name of the token file inside `data_dir`.
pub const TOKEN_FILE: &str = "admin-token";

/// Shorter configured tokens are refused: they can be guessed.
const MIN_LEN: usize = 16;

/// The token the admin listener accepts. Only its digest is kept.
pub struct AdminToken {
    digest: [u8; 32],
}

/// Where the token came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `server.admin_token`.
    Config,
    /// An existing token file.
    File(PathBuf),
    /// A token file made just now.
    Created(PathBuf),
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// The configured token, or the token file's, made first if it does not exist yet.
    pub fn load_or_create(config: &Config) -> Result<(Self, TokenSource), String> {
        if let Some(token) = configured(config)? {
            return Ok((Self::new(&token), TokenSource::Config));
        }
        let path = token_path(config);
        match read_file(&path) {
            Ok(token) => return Ok((Self::new(&token), TokenSource::File(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot read the admin token {}: {e}",
                    path.display()
                ))
            }
        }
        let token = generate().map_err(|e| format!("cannot make an admin token: {e}"))?;
        write_new(&path, &token)
            .map_err(|e| format!("cannot write the admin token {}: {e}", path.display()))?;
        Ok((Self::new(&token), TokenSource::Created(path)))
    }

    /// Compares digests in constant time: how long a wrong guess takes says nothing about
    /// how much of it was right, and hashing first hides the token's length too.
    pub fn matches(&self, presented: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

/// `<data_dir>/admin-token`.
pub fn token_path(config: &Config) -> PathBuf {
    config.data_dir().join(TOKEN_FILE)
}

/// The token a client beside this config should send (the CLI): the configured one or the
/// file's. Never creates anything.
pub fn read_token(config: &Config) -> Result<String, String> {
    if let Some(token) = configured(config)? {
        return Ok(token);
    }
    let path = token_path(config);
    read_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no admin token: server.admin_token is not set and {} does not exist (has `valet up` run with this config?)",
            path.display()
        ),
        _ => format!("cannot read the admin token {}: {e}", path.display()),
    })
}

fn configured(config: &Config) -> Result<Option<String>, String> {
    match config.server.admin_token.as_deref().map(str::trim) {
        None => Ok(None),
        Some(t) if t.len() < MIN_LEN => Err(format!(
            "server.admin_token must be at least {MIN_LEN} characters (or unset, to have one made)"
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

fn read_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "admin token file is readable by others");
    }
    let mut token = String::new();
    file.read_to_string(&mut token)?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(token)
}

/// 32 bytes from the kernel's CSPRNG, hex-encoded.
fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("valet_{}", hex::encode(bytes)))
}

/// Created with mode 0600 from the start (never briefly world-readable), and only if absent.
fn write_new(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path, token: Option<&str>) -> Config {
        let mut config = Config {
            base_dir: dir.to_path_buf(),
            ..Config::default()
        };
        config.server.admin_token = token.map(str::to_string);
        config
    }

    #[test]
    fn a_token_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), None);
        let (token, source) = AdminToken::load_or_create(&config).unwrap();
        let path = token_path(&config);
        assert_eq!(source, TokenSource::Created(path.clone()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = read_token(&config).unwrap();
        assert!(token.matches(&text));
        assert!(!token.matches("valet_wrong"));
        let (again, source) = AdminToken::load_or_create(&config).unwrap();
        assert_eq!(source, TokenSource::File(path));
        assert!(again.matches(&text));
    }

    #[test]
    fn a_configured_token_wins_and_must_not_be_short() {
        let dir = tempfile::tempdir().unwrap();
        let (token, source) =
            AdminToken::load_or_create(&config_in(dir.path(), Some("s3cret-s3cret-s3cret")))
                .unwrap();
        assert_eq!(source, TokenSource::Config);
        assert!(token.matches("s3cret-s3cret-s3cret"));
        assert!(!dir.path().join(".valet").join(TOKEN_FILE).exists());
        assert!(AdminToken::load_or_create(&config_in(dir.path(), Some("short"))).is_err());
    }
}
