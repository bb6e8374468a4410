//! Checks of `[swarm]` and of what `driver = "swarm"` cannot do yet.

use super::Checks;
use crate::keypath::KeyPath;

impl Checks<'_> {
    pub(super) fn swarm(&mut self) {
        let driver = self.config.server.driver.as_str();
        let Some(swarm) = &self.config.swarm else {
            if driver == "swarm" {
                self.classes_on_swarm();
            }
            return;
        };
        let at = KeyPath::top("swarm");
        if driver != "swarm" {
            // Settings that are silently ignored would mislead: the user expects a swarm.
            self.fail(
                at,
                format!(
                    "[swarm] is only read with driver = \"swarm\" (server.driver is \
                     {driver:?}): set server.driver = \"swarm\" or remove [swarm]"
                ),
            );
            return;
        }
        if let Some(host) = &swarm.docker_host {
            self.engine_address(at.key("docker_host"), host);
        }
        for (i, node) in swarm.nodes.iter().enumerate() {
            self.engine_address(at.key("nodes").index(i), node);
            if swarm.nodes[..i].contains(node) {
                self.fail(
                    at.key("nodes").index(i),
                    format!("{node:?} is listed twice"),
                );
            }
        }
        match swarm.publish.as_str() {
            "host" => {}
            "network" => self.fail(
                at.key("publish"),
                "publish = \"network\" needs valet itself on the swarm (a task on an overlay \
                 network it shares with the instances), which is not available yet: use \
                 publish = \"host\" (each instance's port published on its node)",
            ),
            other => self.fail(
                at.key("publish"),
                format!("publish {other:?} must be \"host\""),
            ),
        }
        if swarm.network.is_some() {
            self.fail(
                at.key("network"),
                "network is for publish = \"network\", which is not available yet: remove it",
            );
        }
        self.classes_on_swarm();
    }

    /// An Engine API address bollard can dial.
    fn engine_address(&mut self, key: KeyPath, address: &str) {
        let ok = ["unix://", "tcp://", "http://"]
            .iter()
            .any(|scheme| address.len() > scheme.len() && address.starts_with(scheme));
        self.require(ok, key, || {
            format!(
                "{address:?} must be an Engine API address: \"unix:///var/run/docker.sock\" \
                 or \"tcp://10.0.0.2:2375\""
            )
        });
    }

    /// What a class asks of Swarm that host-mode publishing cannot give.
    fn classes_on_swarm(&mut self) {
        for (i, class) in self.config.containers.iter().enumerate() {
            let at = KeyPath::top("containers").index(i);
            self.require(class.enable_internet, at.key("enable_internet"), || {
                "enable_internet = false is not available with driver = \"swarm\": an \
                 internal overlay network publishes no ports, so valet could not reach the \
                 instance from outside the swarm"
                    .into()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_problems as problems;

    const CLASS: &str = "[[containers]]\nclass_name = \"A\"\nimage = \"busybox\"\n";

    #[test]
    fn a_swarm_with_host_publishing_and_engine_addresses_is_valid() {
        let text = format!(
            "[server]\ndriver = \"swarm\"\n[swarm]\ndocker_host = \"unix:///run/m.sock\"\n\
             nodes = [\"unix:///run/m.sock\", \"tcp://10.0.0.2:2375\"]\npublish = \"host\"\n{CLASS}"
        );
        assert_eq!(problems(&text), []);
        let bare = format!("[server]\ndriver = \"swarm\"\n{CLASS}");
        assert_eq!(problems(&bare), [], "[swarm] is optional");
    }

    #[test]
    fn unknown_drivers_name_swarm_among_the_choices() {
        let found = problems("[server]\ndriver = \"nomad\"\n");
        assert_eq!(found[0].0, "server.driver");
        assert!(found[0].1.contains("\"swarm\""), "{found:?}");
    }

    #[test]
    fn a_swarm_section_with_another_driver_is_refused() {
        let found = problems(&format!("[server]\ndriver = \"docker\"\n[swarm]\n{CLASS}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "swarm");
        assert!(found[0].1.contains("driver = \"swarm\""), "{found:?}");
    }

    #[test]
    fn network_publishing_bad_addresses_and_internal_classes_are_refused_with_reasons() {
        let text =
            "[server]\ndriver = \"swarm\"\n[swarm]\ndocker_host = \"/var/run/docker.sock\"\n\
                    nodes = [\"tcp://a:2375\", \"tcp://a:2375\"]\npublish = \"network\"\n\
                    network = \"valet\"\n[[containers]]\nclass_name = \"A\"\n\
                    image = \"busybox\"\nenable_internet = false\n";
        let found = problems(text);
        let about = |key: &str| {
            found
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| panic!("no problem at {key}: {found:?}"))
        };
        assert!(about("swarm.docker_host").contains("unix://"));
        assert!(about("swarm.nodes[1]").contains("listed twice"));
        assert!(about("swarm.publish").contains("valet itself on the swarm"));
        assert!(about("swarm.network").contains("not available yet"));
        assert!(about("containers[0].enable_internet").contains("publishes no ports"));
        assert_eq!(found.len(), 5, "{found:?}");
        let odd = problems(&format!(
            "[server]\ndriver = \"swarm\"\n[swarm]\npublish = \"ingress\"\n{CLASS}"
        ));
        assert_eq!(odd[0].0, "swarm.publish");
    }
}
