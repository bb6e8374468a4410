//! Checks of `[[registries]]`: a host as image references write it, and a password that is
//! only ever named, never written.

use super::Checks;
use crate::keypath::KeyPath;
use std::collections::BTreeSet;

impl Checks<'_> {
    pub(super) fn registries(&mut self) {
        let mut seen = BTreeSet::new();
        for (i, registry) in self.config.registries.iter().enumerate() {
            let at = KeyPath::top("registries").index(i);
            let host = registry.host.as_str();
            if let Err(why) = registry_host(host) {
                self.fail(
                    at.key("host"),
                    format!("host {host:?} is not a registry host like \"ghcr.io\" or \"127.0.0.1:5000\": {why}"),
                );
            } else if !seen.insert(host.to_ascii_lowercase()) {
                self.fail(at.key("host"), format!("registry {host:?} is listed twice"));
            }
            self.require(!registry.username.is_empty(), at.key("username"), || {
                "username is empty".into()
            });
            self.env_name(at.key("password_secret"), &registry.password_secret);
            if registry.password.is_some() {
                // valet.toml is read by people and scripts and often committed: the password
                // lives in valet's environment, and valet.toml only names it.
                self.fail(
                    at.key("password"),
                    "a password is never written in valet.toml: put it in valet's environment \
                     and name it with password_secret = \"NAME\"",
                );
            }
        }
    }
}

/// A host as the first part of an image reference: no scheme, no path, no user.
fn registry_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("it is empty");
    }
    if host.contains("://") {
        return Err("write it without a scheme");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if !host.chars().all(ok) {
        return Err("only letters, digits, '.', '-' and a ':port' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn problems(registries: &str) -> String {
        match crate::parse_str(registries, Path::new("valet.toml"), Path::new("/srv")) {
            Ok(_) => String::new(),
            Err(errors) => crate::render_report(&errors),
        }
    }

    #[test]
    fn a_registry_names_its_password_and_never_holds_it() {
        let good = "[[registries]]\nhost = \"127.0.0.1:5000\"\nusername = \"ci\"\npassword_secret = \"REG_PW\"\n";
        assert_eq!(problems(good), "");
        let config = crate::parse_str(good, Path::new("valet.toml"), Path::new("/srv")).unwrap();
        assert_eq!(config.registries[0].password_secret, "REG_PW");

        let clear = "[[registries]]\nhost = \"ghcr.io\"\nusername = \"ci\"\npassword_secret = \"PW\"\npassword = \"hunter2\"\n";
        let report = problems(clear);
        assert!(report.contains("never written in valet.toml"), "{report}");
        assert!(!report.contains("hunter2"), "{report}");

        let bad = "[[registries]]\nhost = \"https://ghcr.io/x\"\nusername = \"\"\npassword_secret = \"1 x\"\n";
        let report = problems(bad);
        for expected in [
            "without a scheme",
            "username is empty",
            "not a valid environment",
        ] {
            assert!(report.contains(expected), "{expected}: {report}");
        }
        let twice = format!("{good}{good}");
        assert!(problems(&twice).contains("listed twice"));
    }

    #[test]
    fn pull_policies_parse_and_default_to_missing() {
        let class = |extra: &str| {
            format!("[server]\ndriver = \"docker\"\n[[containers]]\nclass_name = \"A\"\nimage = \"busybox\"\n{extra}")
        };
        let parse = |text: &str| crate::parse_str(text, Path::new("valet.toml"), Path::new("/srv"));
        let config = parse(&class("")).unwrap();
        assert_eq!(config.containers[0].pull, crate::PullPolicy::Missing);
        let config = parse(&class("pull = \"never\"")).unwrap();
        assert_eq!(config.containers[0].pull, crate::PullPolicy::Never);
        assert!(parse(&class("pull = \"sometimes\"")).is_err());
    }
}
