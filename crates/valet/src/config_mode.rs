//! A valet.toml that holds a secret must be valet's alone. When valet runs as root the process
//! driver runs each project as its own system user; a config readable by group or others
//! would hand those projects the admin token, the JWT signing secret or the database password.
//! `valet up` and `valet check` warn about it; they do not refuse, since the file may be
//! shared on purpose on a single-user machine.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use valet_config::Config;

/// The warning for `path`, when `config` (read from it) holds a secret and the file's mode
/// lets group or others read it.
pub fn warning(path: &Path, config: &Config) -> Option<String> {
    let secrets = secrets_in(config);
    if secrets.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    if mode & 0o044 == 0 {
        return None;
    }
    let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
        (true, true) => "group and others",
        (true, false) => "its group",
        _ => "others",
    };
    let file = path.display();
    Some(format!(
        "{file} holds secrets ({}) and is readable by {who} (mode {mode:04o}); projects \
         running as other users could read them: run `chmod 600 {file}`",
        secrets.join(", ")
    ))
}

/// The keys of `config` that hold a secret.
fn secrets_in(config: &Config) -> Vec<&'static str> {
    let mut found = Vec::new();
    if config.server.admin_token.is_some() {
        found.push("server.admin_token");
    }
    if config.auth.as_ref().is_some_and(|a| a.jwt_secret.is_some()) {
        found.push("auth.jwt_secret");
    }
    if has_password(&config.server.store) {
        found.push("the password in server.store");
    }
    if config.cluster.as_ref().is_some_and(|c| c.secret.is_some()) {
        found.push("cluster.secret");
    }
    found
}

/// Whether a `postgres://user:password@host/db` URL carries a password.
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(admin_token: Option<&str>, store: &str) -> Config {
        let mut config = Config::default();
        config.server.admin_token = admin_token.map(str::to_string);
        config.server.store = store.to_string();
        config
    }

    fn file_with_mode(dir: &Path, mode: u32) -> std::path::PathBuf {
        let path = dir.join("valet.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_readable_file_with_a_secret_is_named_with_its_mode_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_mode(dir.path(), 0o644);
        let text = warning(&path, &config(Some("x".repeat(32).as_str()), "sqlite")).unwrap();
        let file = path.display().to_string();
        assert!(text.starts_with(&file), "{text}");
        assert!(text.contains("server.admin_token"), "{text}");
        assert!(text.contains("group and others (mode 0644)"), "{text}");
        assert!(text.ends_with(&format!("`chmod 600 {file}`")), "{text}");
        let path = file_with_mode(dir.path(), 0o640);
        let text = warning(&path, &config(Some("t"), "sqlite")).unwrap();
        assert!(text.contains("its group (mode 0640)"), "{text}");
    }

    #[test]
    fn a_private_file_or_one_without_secrets_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_mode(dir.path(), 0o600);
        assert_eq!(warning(&path, &config(Some("t"), "sqlite")), None);
        // Write and execute bits for others let no one read it.
        let path = file_with_mode(dir.path(), 0o711);
        assert_eq!(warning(&path, &config(Some("t"), "sqlite")), None);
        let path = file_with_mode(dir.path(), 0o644);
        assert_eq!(warning(&path, &config(None, "sqlite")), None);
    }

    #[test]
    fn a_jwt_secret_or_a_database_password_is_a_secret() {
        let mut with_jwt = config(None, "sqlite");
        with_jwt.auth = Some(valet_config::AuthConfig {
            jwt_secret: Some("s".into()),
            ..Default::default()
        });
        assert_eq!(secrets_in(&with_jwt), ["auth.jwt_secret"]);
        assert_eq!(
            secrets_in(&config(None, "postgres://valet:pw@db:5432/valet")).len(),
            1
        );
        assert!(secrets_in(&config(None, "postgres://valet@db/valet")).is_empty());
        assert!(secrets_in(&config(None, "postgres://db/valet?user=a:b")).is_empty());
    }
}
