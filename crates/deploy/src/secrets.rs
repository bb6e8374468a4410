//! Project secrets: sealed with ChaCha20-Poly1305 (ring) before they reach the store, under a
//! key kept apart from it (`<data_dir>/secret.key`, mode 0600, made at first use; or the file
//! named by `VALET_SECRET_KEY_FILE`). A stolen store (or a PostgreSQL dump) holds no secret in
//! clear. The scope and name are the AEAD's associated data, so a sealed value moved to
//! another slot does not open.

use crate::DeployError;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use valet_store::SealedSecret;

/// Largest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Seals and opens secrets with valet's secret key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl SecretBox {
    /// The key file: `VALET_SECRET_KEY_FILE`, else `<data_dir>/secret.key`.
    pub fn key_path(data_dir: &Path) -> PathBuf {
        std::env::var_os("VALET_SECRET_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("secret.key"))
    }

    /// Reads the key, or makes one (32 random bytes, hex, mode 0600) when the file is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, DeployError> {
        let rng = SystemRandom::new();
        let hex_key = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rng.fill(&mut key)
                    .map_err(|_| DeployError::io("no randomness", std::io::Error::other("rng")))?;
                let text = hex::encode(key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| DeployError::io(format!("cannot make {}", path.display()), e))?;
                file.write_all(text.as_bytes())
                    .map_err(|e| DeployError::io(format!("cannot write {}", path.display()), e))?;
                tracing::info!(path = %path.display(), "secret key made (mode 0600)");
                text
            }
            Err(e) => {
                return Err(DeployError::io(
                    format!("cannot read {}", path.display()),
                    e,
                ))
            }
        };
        let bytes = hex::decode(&hex_key)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                DeployError::io(
                    format!("{} is not a 64-digit hex key", path.display()),
                    std::io::Error::from(std::io::ErrorKind::InvalidData),
                )
            })?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| DeployError::io("bad secret key", std::io::Error::other("key")))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// Seals `value` for `name` in `scope`.
    pub fn seal(&self, scope: &str, name: &str, value: &str) -> Result<SealedSecret, DeployError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| DeployError::io("no randomness", std::io::Error::other("rng")))?;
        let mut buf = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(scope, name)),
                &mut buf,
            )
            .map_err(|_| DeployError::io("cannot seal a secret", std::io::Error::other("seal")))?;
        Ok(SealedSecret {
            name: name.to_string(),
            nonce: hex::encode(nonce),
            sealed: hex::encode(buf),
        })
    }

    /// Opens a sealed secret of `scope`; an error (never the value) when it was tampered with
    /// or sealed under another key.
    pub fn open(&self, scope: &str, secret: &SealedSecret) -> Result<String, DeployError> {
        let damaged = || {
            DeployError::io(
                format!(
                    "secret {} of {scope} cannot be opened (other key, or damaged)",
                    secret.name
                ),
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            )
        };
        let nonce: [u8; NONCE_LEN] = hex::decode(&secret.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(damaged)?;
        let mut buf = hex::decode(&secret.sealed).map_err(|_| damaged())?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(scope, &secret.name)),
                &mut buf,
            )
            .map_err(|_| damaged())?;
        String::from_utf8(plain.to_vec()).map_err(|_| damaged())
    }
}

/// The scope of the key check: one value sealed with the key the store's secrets are sealed
/// with, so that a valet started with another key (a replica given a key of its own, a lost
/// `secret.key`) finds out at start, not at the first project secret it cannot open.
const KEY_CHECK_SCOPE: &str = "valet:key-check";
const KEY_CHECK_NAME: &str = "key";

/// Whether the store holds a key check already (then [`SecretBox::is_the_stores_key`] answers
/// by it alone, and needs no scopes).
pub async fn store_has_key_check(store: &valet_store::Store) -> Result<bool, DeployError> {
    let checks = store.secrets(KEY_CHECK_SCOPE).await?;
    Ok(checks.iter().any(|s| s.name == KEY_CHECK_NAME))
}

impl SecretBox {
    /// Whether this key is the one the store's secrets are sealed with. A store with a check
    /// answers by it. A store without one (new, or from before the check) is asked through
    /// the first sealed secret found in `scopes`: if it does not open, the answer is no and no
    /// check is written; otherwise this key leaves its check. Two valets writing the first check
    /// at the same moment: one row goes in, never replaced, and each answers by the row read
    /// back after its write.
    pub async fn is_the_stores_key(
        &self,
        store: &valet_store::Store,
        scopes: &[String],
    ) -> Result<bool, DeployError> {
        let found = |list: Vec<SealedSecret>| list.into_iter().find(|s| s.name == KEY_CHECK_NAME);
        if let Some(check) = found(store.secrets(KEY_CHECK_SCOPE).await?) {
            return Ok(self.open(KEY_CHECK_SCOPE, &check).is_ok());
        }
        for scope in scopes {
            if let Some(sealed) = store.secrets(scope).await?.into_iter().next() {
                if self.open(scope, &sealed).is_err() {
                    return Ok(false);
                }
                break;
            }
        }
        let check = self.seal(KEY_CHECK_SCOPE, KEY_CHECK_NAME, "valet")?;
        // Never replaces a check: another valet's may have gone in first, and the read below
        // answers by whichever is there.
        store.put_secret_if_absent(KEY_CHECK_SCOPE, &check).await?;
        Ok(found(store.secrets(KEY_CHECK_SCOPE).await?)
            .is_some_and(|check| self.open(KEY_CHECK_SCOPE, &check).is_ok()))
    }
}

/// Every secret of `scope`, opened.
pub async fn open_scope(
    store: &valet_store::Store,
    secrets: &SecretBox,
    scope: &str,
) -> Result<Vec<(String, String)>, DeployError> {
    let mut opened = Vec::new();
    for sealed in store.secrets(scope).await? {
        opened.push((sealed.name.clone(), secrets.open(scope, &sealed)?));
    }
    Ok(opened)
}

/// The store scope of a container class's secrets.
pub fn class_scope(class: &str) -> String {
    format!("class:{class}")
}

/// The store scope of `[[registries]]` passwords, by their `password_secret` name. A class's
/// scope always has `class:` before it, so no class can be named into this one.
pub const REGISTRY_SCOPE: &str = "registries";

fn aad(scope: &str, name: &str) -> Vec<u8> {
    format!("{scope}\0{name}").into_bytes()
}

/// A secret's name is the environment variable it becomes: letters, digits and `_`, not
/// starting with a digit, at most 128 characters; `PORT` and `VALET_*` are valet's own.
pub fn check_secret_name(name: &str) -> Result<(), DeployError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(DeployError::BadUpload(format!(
            "secret name {:?} is not an environment variable name (letters, digits, _; not starting with a digit)",
            name.chars().take(130).collect::<String>()
        )));
    }
    if name == "PORT" || name.starts_with("VALET_") {
        return Err(DeployError::BadUpload(format!(
            "secret name {name:?} is reserved for valet"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let secrets = SecretBox::load_or_create(&path).unwrap();
        let sealed = secrets.seal("project:a", "API_KEY", "s3cret").unwrap();
        assert!(!sealed.sealed.contains(&hex::encode("s3cret")));
        assert_eq!(secrets.open("project:a", &sealed).unwrap(), "s3cret");
        assert!(
            secrets.open("project:b", &sealed).is_err(),
            "bound to its scope"
        );
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(
            again.open("project:a", &sealed).unwrap(),
            "s3cret",
            "same key"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn a_key_other_than_the_stores_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = valet_store::Store::open("sqlite", dir.path())
            .await
            .unwrap();
        let store = &store;
        let same_key = |b: SecretBox| async move { b.is_the_stores_key(store, &[]).await.unwrap() };
        let key = |name: &str| SecretBox::load_or_create(&dir.path().join(name)).unwrap();
        assert!(same_key(key("a.key")).await, "the first leaves its check");
        assert!(
            same_key(key("a.key")).await,
            "and the same key passes it again"
        );
        assert!(!same_key(key("b.key")).await, "another key is told");
        assert!(same_key(key("a.key")).await, "and changes nothing");
    }

    #[tokio::test]
    async fn a_store_from_before_the_check_is_asked_through_its_secrets() {
        // Secrets sealed before the check existed: the first valet to ask must not write its
        // check with a key that does not open them.
        let dir = tempfile::tempdir().unwrap();
        let store = valet_store::Store::open("sqlite", dir.path())
            .await
            .unwrap();
        let right = SecretBox::load_or_create(&dir.path().join("a.key")).unwrap();
        let wrong = SecretBox::load_or_create(&dir.path().join("b.key")).unwrap();
        let sealed = right.seal("project:p1", "API_KEY", "s3cret").unwrap();
        store.put_secret("project:p1", &sealed).await.unwrap();
        let scopes = ["class:Api".to_string(), "project:p1".to_string()];
        let told = wrong.is_the_stores_key(&store, &scopes).await.unwrap();
        assert!(!told, "the wrong key is told, and leaves no check");
        let right_in = right.is_the_stores_key(&store, &scopes).await.unwrap();
        assert!(right_in, "the right key leaves its check");
        let after = wrong.is_the_stores_key(&store, &[]).await.unwrap();
        assert!(!after, "the check answers from then on");
    }

    #[test]
    fn names() {
        assert!(check_secret_name("API_KEY").is_ok());
        assert!(check_secret_name("1X").is_err());
        assert!(check_secret_name("A-B").is_err());
        assert!(check_secret_name("PORT").is_err());
        assert!(check_secret_name("VALET_DATA_DIR").is_err());
    }
}
