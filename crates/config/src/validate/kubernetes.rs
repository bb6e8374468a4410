//! Checks of `[kubernetes]` and of what `driver = "kubernetes"` needs of each class.

use super::Checks;
use crate::keypath::KeyPath;
use crate::KubernetesConfig;

impl Checks<'_> {
    pub(super) fn kubernetes(&mut self) {
        let driver = self.config.server.driver.as_str();
        let at = KeyPath::top("kubernetes");
        let default = KubernetesConfig::default();
        let kube = match &self.config.kubernetes {
            Some(_) if driver != "kubernetes" => {
                // Settings that are silently ignored would mislead: the user expects a cluster.
                self.fail(
                    at,
                    format!(
                        "[kubernetes] is only read with driver = \"kubernetes\" (server.driver \
                         is {driver:?}): set server.driver = \"kubernetes\" or remove [kubernetes]"
                    ),
                );
                return;
            }
            Some(kube) => kube,
            None if driver == "kubernetes" => &default,
            None => return,
        };
        if let Some(file) = kube.kubeconfig_path(&self.config.base_dir) {
            self.require(file.is_file(), at.key("kubeconfig"), || {
                format!(
                    "kubeconfig {} is not a file (unset it to use in-cluster credentials, \
                     KUBECONFIG or ~/.kube/config)",
                    file.display()
                )
            });
        }
        let namespace = kube.namespace.as_str();
        self.require(dns_label(namespace), at.key("namespace"), || {
            format!(
                "namespace {namespace:?} must be a DNS label: lowercase letters, digits and \
                 '-', at most 63, starting and ending with a letter or digit"
            )
        });
        if let Some(node) = &kube.node {
            let ok = node.len() <= 253 && node.split('.').all(dns_label);
            self.require(ok, at.key("node"), || {
                format!("node {node:?} must be a node's name (a DNS subdomain)")
            });
        }
        if let Some(engine) = &kube.image_engine {
            let ok = ["unix://", "tcp://", "http://"]
                .iter()
                .any(|scheme| engine.len() > scheme.len() && engine.starts_with(scheme));
            self.require(ok, at.key("image_engine"), || {
                format!(
                    "image_engine {engine:?} must be a node's Docker Engine API address: \
                     \"unix:///var/run/docker.sock\" or \"tcp://10.0.0.2:2375\""
                )
            });
        }
        if let Some(registry) = &kube.image_registry {
            self.require(registry_prefix(registry), at.key("image_registry"), || {
                format!(
                    "image_registry {registry:?} must be a registry host and an optional path \
                     where deployed versions are pushed, as \"registry.example.com/team\" or \
                     \"10.0.0.5:5000/valet\": no scheme or tag, a lowercase path, and a host \
                     with a '.' or a port (else Docker takes it for a Docker Hub name)"
                )
            });
        }
        if kube.image_engine.is_none() {
            self.dockerfiles_need_an_engine();
        }
    }

    /// Without `image_engine` nothing can build a Dockerfile where the kubelet would find it.
    fn dockerfiles_need_an_engine(&mut self) {
        for (i, class) in self.config.containers.iter().enumerate() {
            let Some(image) = class.image.as_deref().filter(|i| !i.trim().is_empty()) else {
                continue;
            };
            // The Docker driver's rule for telling a Dockerfile from an image reference.
            let dockerfile = image.starts_with('.')
                || image.starts_with('/')
                || image.to_ascii_lowercase().contains("dockerfile")
                || self.config.base_dir.join(image).is_file();
            self.require(
                !dockerfile,
                KeyPath::top("containers").index(i).key("image"),
                || {
                    format!(
                        "{image:?} is a Dockerfile, which driver = \"kubernetes\" builds only on \
                         a node's engine: set [kubernetes] image_engine, or name an image \
                         reference the kubelet can pull"
                    )
                },
            );
        }
    }
}

/// A registry and repository prefix images can be pushed under: `host[:port][/path]`, where
/// the host is one the engine takes for a registry (a '.', a port, or `localhost`), and the
/// path is what a repository name allows.
fn registry_prefix(text: &str) -> bool {
    let (host, path) = text.split_once('/').unwrap_or((text, ""));
    let host_ok = (host.contains(['.', ':']) || host == "localhost")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    let path = path.trim_end_matches('/');
    let path_ok = path.is_empty()
        || path.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
    host_ok && path_ok
}

/// An RFC 1123 label, as Kubernetes wants namespace and node name parts.
fn dns_label(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| alnum(c) || c == '-')
        && text.starts_with(alnum)
        && text.ends_with(alnum)
}

#[cfg(test)]
mod tests {
    use super::super::test_problems as problems;
    use std::path::Path;

    const CLASS: &str = "[[containers]]\nclass_name = \"A\"\nimage = \"busybox\"\n";

    #[test]
    fn a_cluster_with_a_node_and_an_image_engine_is_valid() {
        let text = format!(
            "[server]\ndriver = \"kubernetes\"\n[kubernetes]\nnamespace = \"apps\"\n\
             node = \"node-1.lab\"\nimage_engine = \"unix:///run/node.sock\"\n{CLASS}\
             [[containers]]\nclass_name = \"B\"\nimage = \"./Dockerfile\"\n"
        );
        assert_eq!(problems(&text), []);
        let bare = format!("[server]\ndriver = \"kubernetes\"\n{CLASS}");
        assert_eq!(problems(&bare), [], "[kubernetes] is optional");
    }

    #[test]
    fn a_kubernetes_section_with_another_driver_is_refused() {
        let found = problems(&format!(
            "[server]\ndriver = \"docker\"\n[kubernetes]\n{CLASS}"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "kubernetes");
        assert!(found[0].1.contains("driver = \"kubernetes\""), "{found:?}");
    }

    #[test]
    fn each_bad_setting_is_named_with_its_fix() {
        let found = problems(&format!(
            "[server]\ndriver = \"kubernetes\"\n[kubernetes]\nkubeconfig = \"missing.yaml\"\n\
             namespace = \"Valet_NS\"\nnode = \"-x\"\nimage_engine = \"/var/run/docker.sock\"\n\
             image_registry = \"https://registry.example.com\"\n{CLASS}"
        ));
        let about = |key: &str| {
            found
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| panic!("no problem at {key}: {found:?}"))
        };
        assert!(about("kubernetes.kubeconfig").contains("/srv/missing.yaml is not a file"));
        assert!(about("kubernetes.namespace").contains("DNS label"));
        assert!(about("kubernetes.node").contains("node's name"));
        assert!(about("kubernetes.image_engine").contains("unix://"));
        assert!(about("kubernetes.image_registry").contains("no scheme or tag"));
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn an_image_registry_is_a_host_the_engine_takes_for_one_and_a_repository_path() {
        for good in [
            "registry.example.com",
            "127.0.0.1:5000/valet",
            "localhost/a/b",
            "r.io/team/",
        ] {
            assert!(super::registry_prefix(good), "{good}");
        }
        for bad in [
            "team/valet",
            "https://r.io",
            "r.io/Team",
            "r.io/a:tag",
            "r.io//a",
            "",
        ] {
            assert!(!super::registry_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn a_kubeconfig_under_home_is_found_there() {
        let kube = crate::KubernetesConfig {
            kubeconfig: Some("~/.kube/config".into()),
            ..Default::default()
        };
        let home = std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
        assert_eq!(
            kube.kubeconfig_path(Path::new("/srv")),
            Some(home.join(".kube/config"))
        );
        let relative = crate::KubernetesConfig {
            kubeconfig: Some("lab/kubeconfig".into()),
            ..Default::default()
        };
        assert_eq!(
            relative.kubeconfig_path(Path::new("/srv")),
            Some("/srv/lab/kubeconfig".into())
        );
    }

    #[test]
    fn a_dockerfile_class_needs_an_image_engine() {
        let found = problems(
            "[server]\ndriver = \"kubernetes\"\n\
             [[containers]]\nclass_name = \"A\"\nimage = \"./app/Dockerfile\"\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "containers[0].image");
        assert!(found[0].1.contains("image_engine"), "{found:?}");
    }
}
