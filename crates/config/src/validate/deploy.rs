//! Checks of `[deploy]`.

use super::Checks;
use crate::keypath::KeyPath;

impl Checks<'_> {
    pub(super) fn deploy(&mut self) {
        let deploy = &self.config.deploy;
        let at = KeyPath::top("deploy");
        for (name, image) in [
            ("node_image", &deploy.node_image),
            ("python_image", &deploy.python_image),
        ] {
            if let Err(why) = image_reference(image) {
                self.fail(
                    at.key(name),
                    format!("{name} {image:?} is not an image reference like \"python:3.11-slim\": {why}"),
                );
            }
        }
    }
}

/// A loose check of an image reference: it becomes a Dockerfile's `FROM` line, so whitespace
/// or a newline there would add instructions, and a path is not an image.
fn image_reference(image: &str) -> Result<(), &'static str> {
    if image.is_empty() {
        return Err("it is empty");
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it holds whitespace");
    }
    if image.starts_with(['-', '/', '.']) {
        return Err("it must not start with '-', '/' or '.'");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if !image.chars().all(ok) {
        return Err("only letters, digits and . _ - / : @ are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn problems(deploy: &str) -> Vec<String> {
        let text = format!("[deploy]\n{deploy}\n");
        match crate::parse_str(&text, Path::new("valet.toml"), Path::new("/srv")) {
            Ok(_) => Vec::new(),
            Err(errors) => vec![crate::render_report(&errors)],
        }
    }

    #[test]
    fn base_images_default_and_are_checked() {
        let config = crate::parse_str("", Path::new("valet.toml"), Path::new("/srv")).unwrap();
        assert_eq!(config.deploy.node_image, "node:20-slim");
        assert_eq!(config.deploy.python_image, "python:3.11-slim");
        assert!(problems("node_image = \"registry.local:5000/node:20@sha256:ab\"").is_empty());
        let bad = problems("python_image = \"python:3.11\\nRUN rm -rf /\"");
        assert!(bad[0].contains("python_image"), "{bad:?}");
        assert!(!problems("node_image = \"\"").is_empty());
        assert!(!problems("node_image = \"./Dockerfile\"").is_empty());
        assert!(
            !problems("nope = 1").is_empty(),
            "unknown keys are reported"
        );
    }
}
