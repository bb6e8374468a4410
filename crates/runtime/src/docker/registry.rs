//! Which registry an image reference names, and the credentials valet hands the engine for
//! it: a `[[registries]]` entry of valet.toml first (its password read from valet's
//! environment, else from valet's secret store as `valet up` opened it), then the user's
//! Docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: `credHelpers`,
//! `credsStore`, `auths`), as `docker pull` would. Credentials are read at each pull, so a
//! `docker login` while valet runs is seen, and they are never logged: only the host and
//! where they came from are.

use bollard::auth::DockerCredentials;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use valet_config::RegistryConfig;

/// Docker Hub's name in references, and the key `docker login` writes for it.
const HUB: &str = "docker.io";
const HUB_KEYS: [&str; 4] = [
    "https://index.docker.io/v1/",
    "index.docker.io",
    "registry-1.docker.io",
    "docker.io",
];
/// A credential helper that has not answered by then is given up on (a keychain waiting for
/// someone to unlock it must not hold a start for ever).
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A `[[registries]]` entry whose password is known nowhere: neither valet's environment nor
/// its secret store (as far as this process can tell) holds `secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoPassword {
    pub registry: String,
    pub secret: String,
}

impl std::fmt::Display for NoPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { registry, secret } = self;
        write!(
            f,
            "no password for registry {registry}: {secret} ([[registries]] password_secret) is \
             set neither in valet's environment nor in its secret store (`valet secret put \
             {secret} --registry`, then restart valet)"
        )
    }
}

/// Where the Docker config and the credential helpers are found: this process's environment,
/// or a test's.
#[derive(Debug, Clone, Default)]
struct DockerEnv {
    /// The Docker config file, if there is a place for one.
    config: Option<PathBuf>,
    /// `PATH` for finding `docker-credential-<name>`; `None`: this process's.
    path: Option<OsString>,
}

impl DockerEnv {
    fn current() -> Self {
        let config = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
        };
        Self { config, path: None }
    }

    /// The config's JSON; `Null` when there is none or it cannot be read (with a warning for
    /// one that does not parse: a broken config must not stop anonymous pulls).
    async fn read_config(&self) -> serde_json::Value {
        let Some(path) = &self.config else {
            return serde_json::Value::Null;
        };
        let Ok(text) = tokio::fs::read_to_string(path).await else {
            return serde_json::Value::Null;
        };
        match serde_json::from_str(&text) {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot parse the Docker config; pulling without its credentials");
                serde_json::Value::Null
            }
        }
    }
}

/// Credentials for `registry`, and where they came from (for the log, never the values).
/// `Ok(None)`: pull anonymously. `Err`: a `[[registries]]` entry whose password is unknown.
pub async fn credentials(
    registries: &[RegistryConfig],
    registry: &str,
) -> Result<Option<(DockerCredentials, &'static str)>, NoPassword> {
    credentials_in(registries, registry, &DockerEnv::current()).await
}

async fn credentials_in(
    registries: &[RegistryConfig],
    registry: &str,
    env: &DockerEnv,
) -> Result<Option<(DockerCredentials, &'static str)>, NoPassword> {
    if let Some(entry) = registries.iter().find(|r| same_host(&r.host, registry)) {
        return configured(entry, registry).map(Some);
    }
    Ok(from_docker_config(registry, env)
        .await
        .map(|c| (c, "the Docker config")))
}

/// A `[[registries]]` entry's credentials: its password from valet's environment, which wins
/// as it does for class secrets, else from the secret store.
fn configured(
    entry: &RegistryConfig,
    registry: &str,
) -> Result<(DockerCredentials, &'static str), NoPassword> {
    let (password, from) = match std::env::var(&entry.password_secret) {
        Ok(password) => (
            password,
            "[[registries]], password from valet's environment",
        ),
        Err(_) => match &entry.stored_password {
            Some(stored) => (
                stored.expose().to_string(),
                "[[registries]], password from valet's secret store",
            ),
            None => {
                return Err(NoPassword {
                    registry: registry.to_string(),
                    secret: entry.password_secret.clone(),
                })
            }
        },
    };
    let credentials = DockerCredentials {
        username: Some(entry.username.clone()),
        password: Some(password),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    };
    Ok((credentials, from))
}

/// The `[[registries]]` entry for `registry` whose password this process does not have (not
/// in its environment, none opened from the store): `valet check`, which cannot read the
/// store, cannot check that registry with credentials.
pub fn password_unknown(registries: &[RegistryConfig], registry: &str) -> Option<NoPassword> {
    let entry = registries.iter().find(|r| same_host(&r.host, registry))?;
    configured(entry, registry).err()
}

/// Every credential valet knows, keyed as the engine's build looks them up: what a
/// Dockerfile's `FROM` pulls with. From the Docker config, as the docker CLI hands a build
/// its credentials: `auths`, overridden by what `credsStore` lists, overridden by the
/// `credHelpers` of their hosts; then `[[registries]]` entries over all of them. Entries
/// whose password is unknown are left out (the build then pulls anonymously, and the
/// engine's error says so).
pub async fn all_credentials(registries: &[RegistryConfig]) -> HashMap<String, DockerCredentials> {
    all_credentials_in(registries, &DockerEnv::current()).await
}

async fn all_credentials_in(
    registries: &[RegistryConfig],
    env: &DockerEnv,
) -> HashMap<String, DockerCredentials> {
    let mut all = HashMap::new();
    let config = env.read_config().await;
    for (key, entry) in config["auths"].as_object().into_iter().flatten() {
        let host = build_key(strip_url(key));
        if let Some(credentials) = from_auth_entry(entry, &host) {
            all.insert(host, credentials);
        }
    }
    if let Some(store) = config["credsStore"].as_str().filter(|s| !s.is_empty()) {
        for server in helper_list(store, env).await {
            let host = build_key(strip_url(&server));
            if let Some(credentials) = from_helper(store, &server, &host, env).await {
                all.insert(host, credentials);
            }
        }
    }
    for (server, helper) in config["credHelpers"].as_object().into_iter().flatten() {
        let Some(helper) = helper.as_str().filter(|s| !s.is_empty()) else {
            continue;
        };
        let host = build_key(strip_url(server));
        if let Some(credentials) = from_helper(helper, server, &host, env).await {
            all.insert(host, credentials);
        }
    }
    for entry in registries {
        let host = build_key(strip_url(&entry.host));
        if let Ok((credentials, _)) = configured(entry, &host) {
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

/// The user's Docker config's credentials for `registry`, if any: its host's `credHelpers`
/// helper, else the `credsStore`, else its `auths` entry (as the docker CLI looks them up).
async fn from_docker_config(registry: &str, env: &DockerEnv) -> Option<DockerCredentials> {
    let config = env.read_config().await;
    let matches = |key: &String| same_host(key, registry);
    let helper = config["credHelpers"]
        .as_object()
        .and_then(|helpers| helpers.iter().find(|(k, _)| matches(k)))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| config["credsStore"].as_str())
        .filter(|h| !h.is_empty());
    if let Some(helper) = helper {
        let server = if registry == HUB {
            HUB_KEYS[0]
        } else {
            registry
        };
        if let Some(credentials) = from_helper(helper, server, registry, env).await {
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

/// Runs `docker-credential-<helper> <action>` with `input` on stdin (the protocol `docker
/// login` uses with a keychain); its stdout when it succeeds in time.
async fn run_helper(helper: &str, action: &str, input: &str, env: &DockerEnv) -> Option<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(format!("docker-credential-{helper}"));
    if let Some(path) = &env.path {
        // The child's PATH is also where the program is looked up.
        command.env("PATH", path);
    }
    let mut child = command
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(input.as_bytes()).await.ok()?;
    drop(stdin);
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output());
    let Ok(Ok(output)) = output.await else {
        tracing::warn!(
            helper,
            action,
            "docker credential helper failed or did not answer in time"
        );
        return None;
    };
    output.status.success().then_some(output.stdout)
}

/// Asks the helper for `server`'s credentials (`get`); they are handed on for `registry`.
async fn from_helper(
    helper: &str,
    server: &str,
    registry: &str,
    env: &DockerEnv,
) -> Option<DockerCredentials> {
    let stdout = run_helper(helper, "get", server, env).await?;
    let answer: serde_json::Value = serde_json::from_slice(&stdout).ok()?;
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

/// The servers a credentials store holds (`list`: a JSON object of server -> user name).
async fn helper_list(helper: &str, env: &DockerEnv) -> Vec<String> {
    let Some(stdout) = run_helper(helper, "list", "", env).await else {
        return Vec::new();
    };
    let listed: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_default();
    listed
        .as_object()
        .map(|servers| servers.keys().cloned().collect())
        .unwrap_or_default()
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

    fn entry(host: &str, secret: &str, stored: Option<&str>) -> RegistryConfig {
        RegistryConfig {
            host: host.into(),
            username: "ci".into(),
            password_secret: secret.into(),
            password: None,
            stored_password: stored.map(valet_config::SecretText::new),
        }
    }

    #[tokio::test]
    async fn valet_toml_entries_come_first_and_need_their_secret() {
        let unset = entry("127.0.0.1:5999", "VALET_TEST_REGISTRY_UNSET_SECRET", None);
        let missing = credentials(std::slice::from_ref(&unset), "127.0.0.1:5999").await;
        let error = missing.err().unwrap().to_string();
        assert!(
            error.contains("VALET_TEST_REGISTRY_UNSET_SECRET")
                && error.contains("secret store")
                && error.contains("--registry"),
            "{error}"
        );
        assert!(password_unknown(std::slice::from_ref(&unset), "127.0.0.1:5999").is_some());
        // PATH is set in every test environment: it stands for a password in valet's.
        let from_env = entry("127.0.0.1:5999", "PATH", None);
        let (c, from) = credentials(&[from_env], "127.0.0.1:5999")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_deref(), from),
            (
                Some("ci"),
                "[[registries]], password from valet's environment"
            )
        );
    }

    #[tokio::test]
    async fn a_stored_password_serves_when_the_environment_has_none_and_never_wins_over_it() {
        let stored = entry(
            "127.0.0.1:5999",
            "VALET_TEST_REGISTRY_UNSET_SECRET",
            Some("from-the-store"),
        );
        let (c, from) = credentials(std::slice::from_ref(&stored), "127.0.0.1:5999")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.password.as_deref(), Some("from-the-store"));
        assert_eq!(from, "[[registries]], password from valet's secret store");
        assert!(password_unknown(&[stored], "127.0.0.1:5999").is_none());
        let both = entry("127.0.0.1:5999", "PATH", Some("from-the-store"));
        let (c, _) = credentials(std::slice::from_ref(&both), "127.0.0.1:5999")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            c.password,
            std::env::var("PATH").ok(),
            "the environment wins"
        );
        assert!(
            !format!("{both:?}").contains("from-the-store"),
            "Debug hides it"
        );
    }

    /// A Docker config folder with `config.json` and fake `docker-credential-*` helpers,
    /// found through a PATH of the test's own.
    fn docker_env(
        config: serde_json::Value,
        helpers: &[(&str, &str)],
    ) -> (tempfile::TempDir, DockerEnv) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, script) in helpers {
            let path = bin.join(format!("docker-credential-{name}"));
            std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut path = bin.into_os_string();
        path.push(":/usr/bin:/bin");
        let env = DockerEnv {
            config: Some(config_path),
            path: Some(path),
        };
        (dir, env)
    }

    /// A keychain holding Docker Hub and 127.0.0.1:5001, as `docker login` leaves one.
    const STORE: &str = r#"case "$1" in
list) echo '{"https://index.docker.io/v1/":"hubuser","127.0.0.1:5001":"storeuser"}' ;;
get) read -r server
  case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hubpw"}' ;;
  127.0.0.1:5001) echo '{"ServerURL":"127.0.0.1:5001","Username":"storeuser","Secret":"storepw"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
  esac ;;
*) exit 1 ;;
esac
"#;
    /// A helper for one registry that holds a token.
    const TOKEN: &str = r#"read -r server
[ "$1" = get ] && [ "$server" = ghcr.io ] || exit 1
echo '{"Username":"<token>","Secret":"tok"}'
"#;

    #[tokio::test]
    async fn builds_get_the_credentials_of_helpers_and_stores_too() {
        let config = serde_json::json!({
            "auths": {
                "127.0.0.1:5001": { "auth": "YXV0aHVzZXI6YXV0aHB3" },
                "127.0.0.1:5002": { "auth": "dTI6cDI=" },
                "https://index.docker.io/v1/": {},
            },
            "credsStore": "teststore",
            "credHelpers": { "ghcr.io": "testtoken" },
        });
        let (_dir, env) = docker_env(config, &[("teststore", STORE), ("testtoken", TOKEN)]);
        let all = all_credentials_in(&[], &env).await;
        let user = |host: &str| all.get(host).and_then(|c| c.username.clone());
        let password = |host: &str| all.get(host).and_then(|c| c.password.clone());
        assert_eq!(
            user("127.0.0.1:5001").as_deref(),
            Some("storeuser"),
            "the store over auths"
        );
        assert_eq!(password("127.0.0.1:5001").as_deref(), Some("storepw"));
        assert_eq!(
            user("127.0.0.1:5002").as_deref(),
            Some("u2"),
            "auths the store lacks"
        );
        assert_eq!(
            password(HUB_KEYS[0]).as_deref(),
            Some("hubpw"),
            "Hub under its index URL"
        );
        let token = all.get("ghcr.io").and_then(|c| c.identitytoken.clone());
        assert_eq!(
            token.as_deref(),
            Some("tok"),
            "a credHelpers helper's token"
        );
        assert_eq!(all.len(), 4, "{:?}", all.keys());

        // [[registries]] over all of them.
        let stored = entry(
            "127.0.0.1:5001",
            "VALET_TEST_REGISTRY_UNSET_SECRET",
            Some("mine"),
        );
        let all = all_credentials_in(&[stored], &env).await;
        let c = &all["127.0.0.1:5001"];
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("ci"), Some("mine"))
        );

        // A pull asks the same helpers, one registry at a time.
        let (c, from) = credentials_in(&[], "ghcr.io", &env).await.unwrap().unwrap();
        assert_eq!(
            (c.identitytoken.as_deref(), from),
            (Some("tok"), "the Docker config")
        );
        let (c, _) = credentials_in(&[], "docker.io", &env)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.password.as_deref(), Some("hubpw"));
        // Not in the store: the auths entry.
        let (c, _) = credentials_in(&[], "127.0.0.1:5002", &env)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.username.as_deref(), Some("u2"));
    }

    #[tokio::test]
    async fn a_store_that_fails_leaves_the_auths() {
        let config = serde_json::json!({
            "auths": { "127.0.0.1:5002": { "auth": "dTI6cDI=" } },
            "credsStore": "broken",
        });
        let (_dir, env) = docker_env(config, &[("broken", "exit 3\n")]);
        let all = all_credentials_in(&[], &env).await;
        assert_eq!(all.len(), 1);
        assert_eq!(all["127.0.0.1:5002"].username.as_deref(), Some("u2"));
        // A store that is not installed at all: the same.
        let config = serde_json::json!({
            "auths": { "127.0.0.1:5002": { "auth": "dTI6cDI=" } },
            "credsStore": "not-installed-anywhere",
        });
        let (_dir, env) = docker_env(config, &[]);
        assert_eq!(all_credentials_in(&[], &env).await.len(), 1);
    }
}
