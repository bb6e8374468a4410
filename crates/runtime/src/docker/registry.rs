//! Which registry an image reference names, and the credentials valet hands the engine for
//! it: a `[[registries]]` entry of valet.toml first (its password read from valet's
//! environment), then the user's Docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`: `auths`, `credHelpers`, `credsStore`), as `docker pull` would.
//! Credentials are read at each pull, so a `docker login` while valet runs is seen, and they
//! are never logged: only the host and where they came from are.

use bollard::auth::DockerCredentials;
use std::collections::HashMap;
use std::path::PathBuf;
use valet_config::RegistryConfig;

/// Docker Hub's name in references, and the key `docker login` writes for it.
const HUB: &str = "docker.io";
const HUB_KEYS: [&str; 4] = [
    "https://index.docker.io/v1/",
    "index.docker.io",
    "registry-1.docker.io",
    "docker.io",
];

/// An image reference taken apart the way the engine does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io` when the reference names no registry.
    pub registry: String,
    /// The reference without its tag or digest, as the engine's `fromImage` takes it.
    pub name: String,
    /// The tag (`latest` when none is written) or the digest (`sha256:...`).
    pub tag: String,
}

impl Reference {
    pub fn parse(reference: &str) -> Self {
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (reference, None),
        };
        // A tag's ':' comes after the last '/'; one before it is a registry's port.
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[slash..].rfind(':') {
            Some(colon) => (&name[..slash + colon], Some(&name[slash + colon + 1..])),
            None => (name, None),
        };
        let registry = match name.split_once('/') {
            Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
            _ => HUB,
        };
        Self {
            registry: registry.to_string(),
            name: name.to_string(),
            tag: digest.or(tag).unwrap_or("latest").to_string(),
        }
    }
}

/// Credentials for `registry`, and where they came from (for the log, never the values).
/// `Ok(None)`: pull anonymously. `Err`: a `[[registries]]` entry whose secret is not set.
pub async fn credentials(
    registries: &[RegistryConfig],
    registry: &str,
) -> Result<Option<(DockerCredentials, &'static str)>, String> {
    if let Some(entry) = registries.iter().find(|r| same_host(&r.host, registry)) {
        let password = std::env::var(&entry.password_secret).map_err(|_| {
            format!(
                "no password for registry {registry}: the secret {} ([[registries]] \
                 password_secret) is not set in valet's environment",
                entry.password_secret
            )
        })?;
        let credentials = DockerCredentials {
            username: Some(entry.username.clone()),
            password: Some(password),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        };
        return Ok(Some((credentials, "valet.toml [[registries]]")));
    }
    Ok(from_docker_config(registry)
        .await
        .map(|c| (c, "the Docker config")))
}

/// Every credential valet knows, keyed as the engine's build looks them up: what a
/// Dockerfile's `FROM` pulls with. `[[registries]]` entries override the Docker config's
/// `auths`; entries whose secret is unset are left out (the build then pulls anonymously,
/// and the engine's error says so).
pub async fn all_credentials(registries: &[RegistryConfig]) -> HashMap<String, DockerCredentials> {
    let mut all = HashMap::new();
    let config = match docker_config_path() {
        Some(path) => tokio::fs::read_to_string(path).await.unwrap_or_default(),
        None => String::new(),
    };
    let config: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
    for (key, entry) in config["auths"].as_object().into_iter().flatten() {
        let host = build_key(strip_url(key));
        if let Some(credentials) = from_auth_entry(entry, &host) {
            all.insert(host, credentials);
        }
    }
    for entry in registries {
        let host = build_key(strip_url(&entry.host));
        if let Ok(Some((credentials, _))) = credentials(registries, &entry.host).await {
            all.insert(host, credentials);
        }
    }
    all
}

/// Docker Hub's credentials are found under its v1 index URL, every other registry's under
/// its host.
fn build_key(host: &str) -> String {
    if same_host(host, HUB) {
        HUB_KEYS[0].to_string()
    } else {
        host.to_string()
    }
}

/// Whether a configured host and a reference's registry are the same registry.
fn same_host(configured: &str, registry: &str) -> bool {
    let configured = strip_url(configured);
    if registry == HUB {
        return HUB_KEYS
            .iter()
            .any(|k| strip_url(k).eq_ignore_ascii_case(configured));
    }
    configured.eq_ignore_ascii_case(registry)
}

/// `https://host/v1/` -> `host`: `docker login` writes keys of either form.
fn strip_url(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The user's Docker config's credentials for `registry`, if any. A file that cannot be read
/// or parsed means none (with a warning): a broken config must not stop anonymous pulls.
async fn from_docker_config(registry: &str) -> Option<DockerCredentials> {
    let path = docker_config_path()?;
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    let config: serde_json::Value = match serde_json::from_str(&text) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot parse the Docker config; pulling without its credentials");
            return None;
        }
    };
    let matches = |key: &String| same_host(key, registry);
    let helper = config["credHelpers"]
        .as_object()
        .and_then(|helpers| helpers.iter().find(|(k, _)| matches(k)))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| config["credsStore"].as_str());
    if let Some(helper) = helper {
        if let Some(credentials) = from_helper(helper, registry).await {
            return Some(credentials);
        }
    }
    let auths = config["auths"].as_object()?;
    let (_, entry) = auths.iter().find(|(k, _)| matches(k))?;
    from_auth_entry(entry, registry)
}

/// One `auths` entry: `auth` (base64 of `user:password`), or `username` and `password`, or
/// an `identitytoken`.
fn from_auth_entry(entry: &serde_json::Value, registry: &str) -> Option<DockerCredentials> {
    let field = |name: &str| entry[name].as_str().filter(|s| !s.is_empty());
    let mut credentials = DockerCredentials {
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    };
    if let Some(auth) = field("auth") {
        let decoded = String::from_utf8(decode_base64(auth)?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        credentials.username = Some(user.to_string());
        credentials.password = Some(password.to_string());
    } else if let (Some(user), Some(password)) = (field("username"), field("password")) {
        credentials.username = Some(user.to_string());
        credentials.password = Some(password.to_string());
    }
    credentials.identitytoken = field("identitytoken").map(str::to_string);
    let any = credentials.password.is_some() || credentials.identitytoken.is_some();
    any.then_some(credentials)
}

/// Standard base64 (padding optional), as `docker login` writes `auth`: a few lines rather
/// than a dependency for one field.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for byte in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// Asks `docker-credential-<helper> get` (the protocol `docker login` uses with a keychain).
async fn from_helper(helper: &str, registry: &str) -> Option<DockerCredentials> {
    use tokio::io::AsyncWriteExt;
    let server = if registry == HUB {
        HUB_KEYS[0]
    } else {
        registry
    };
    let mut child = tokio::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(server.as_bytes()).await.ok()?;
    drop(stdin);
    let output = child.wait_with_output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let user = answer["Username"].as_str()?;
    let secret = answer["Secret"].as_str()?.to_string();
    let mut credentials = DockerCredentials {
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    };
    // A helper that holds a token says so with this user name (docker's convention).
    if user == "<token>" {
        credentials.identitytoken = Some(secret);
    } else {
        credentials.username = Some(user.to_string());
        credentials.password = Some(secret);
    }
    Some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(reference: &str) -> (String, String, String) {
        let r = Reference::parse(reference);
        (r.registry, r.name, r.tag)
    }

    #[test]
    fn references_name_their_registry_repository_and_tag() {
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(parts("nginx"), s("docker.io", "nginx", "latest"));
        assert_eq!(parts("nginx:1.27"), s("docker.io", "nginx", "1.27"));
        assert_eq!(
            parts("library/nginx:1"),
            s("docker.io", "library/nginx", "1")
        );
        assert_eq!(
            parts("127.0.0.1:5000/valet/app"),
            s("127.0.0.1:5000", "127.0.0.1:5000/valet/app", "latest")
        );
        assert_eq!(
            parts("ghcr.io/get-convex/convex-backend:abc"),
            s("ghcr.io", "ghcr.io/get-convex/convex-backend", "abc")
        );
        assert_eq!(
            parts("localhost/x@sha256:ab"),
            s("localhost", "localhost/x", "sha256:ab")
        );
    }

    #[test]
    fn docker_login_keys_match_their_registry() {
        assert!(same_host("https://index.docker.io/v1/", "docker.io"));
        assert!(same_host("docker.io", "docker.io"));
        assert!(same_host("https://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(same_host("GHCR.io", "ghcr.io"));
        assert!(!same_host("127.0.0.1:5001", "127.0.0.1:5000"));
    }

    #[test]
    fn auth_entries_decode() {
        let entry = serde_json::json!({ "auth": "dXNlcjpwYTpzcw==" });
        let c = from_auth_entry(&entry, "r:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("pa:ss"));
        assert!(from_auth_entry(&serde_json::json!({}), "r:1").is_none());
        assert_eq!(decode_base64("YQ").unwrap(), b"a");
        assert_eq!(decode_base64("YWJjZA==").unwrap(), b"abcd");
        assert!(decode_base64("a*b").is_none());
    }

    #[tokio::test]
    async fn valet_toml_entries_come_first_and_need_their_secret() {
        let entry = RegistryConfig {
            host: "127.0.0.1:5999".into(),
            username: "ci".into(),
            password_secret: "VALET_TEST_REGISTRY_UNSET_SECRET".into(),
            password: None,
        };
        let missing = credentials(std::slice::from_ref(&entry), "127.0.0.1:5999").await;
        let error = missing.err().unwrap();
        assert!(
            error.contains("VALET_TEST_REGISTRY_UNSET_SECRET"),
            "{error}"
        );
        let entry = RegistryConfig {
            password_secret: "PATH".into(),
            ..entry
        };
        let (c, from) = credentials(&[entry], "127.0.0.1:5999")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_deref(), from),
            (Some("ci"), "valet.toml [[registries]]")
        );
    }
}
