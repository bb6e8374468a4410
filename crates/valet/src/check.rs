//! `valet check`: every problem of a config, with its line and column, and warnings about
//! what valid keys will not get on this host and about a config file that holds a secret
//! and others can read.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use valet_config::Config;
use valet_runtime::docker::{check_images, engine_cpus, ImageCheck, Resources};

/// How long `check` waits for the engine's CPU count before counting this machine's.
const ENGINE_WAIT: Duration = Duration::from_secs(3);

/// "1 class", "2 classes": the summary line is read by people, so it speaks as they do.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn run(path: &Path, pull: bool) -> ExitCode {
    match valet_config::load(path) {
        Ok(config) => {
            // A warning: only deployed projects need the folder open (see up.rs).
            if let Err(message) = crate::up::projects_can_reach(&config) {
                eprintln!("{}: warning: {message}", path.display());
            }
            println!(
                "{}: ok ({}, {}, driver {})",
                path.display(),
                counted(config.containers.len(), "class", "classes"),
                counted(config.routes.len(), "route", "routes"),
                config.server.driver
            );
            let file_mode = crate::config_mode::warning(path, &config);
            for warning in file_mode.into_iter().chain(warnings(&config)) {
                eprintln!("warning: {warning}");
            }
            if pull && !images_resolve(&config) {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}", valet_config::render_report(&errors));
            ExitCode::FAILURE
        }
    }
}

/// `--pull`: every class's image reference must resolve (its registry knows it, or with
/// `pull = "never"` the engine has it). The deploy API's base images are only warned about:
/// a config that deploys nothing does not need them, and so is an image whose registry's
/// password is not in this environment (it may be in the secret store, which `check` cannot
/// read). Prints one line per image.
fn images_resolve(config: &Config) -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start an async runtime");
        return false;
    };
    // Kubernetes builds versions on image_engine or the local engine, not where this looks.
    let deploy = matches!(config.server.driver.as_str(), "docker" | "swarm");
    let checks = match runtime.block_on(check_images(config, deploy)) {
        Ok(checks) => checks,
        Err(e) => {
            eprintln!("error: images cannot be checked: {e}");
            return false;
        }
    };
    let mut ok = true;
    for check in checks {
        let ImageCheck {
            what,
            required,
            reference,
            outcome,
            local_only,
            unchecked,
        } = check;
        match (outcome, required) {
            // Its password may be in valet's secret store, which only `valet up` reads.
            (Err(why), _) if unchecked => eprintln!("warning: {what}: {why}"),
            (Ok(found), _) => {
                println!("{what}: image {reference} resolves ({found})");
                if let Some(why) = local_only {
                    eprintln!("warning: {what}: {why}; only this engine's copy can start");
                }
            }
            (Err(why), true) => {
                eprintln!("error: {what}: {why}");
                ok = false;
            }
            (Err(why), false) => eprintln!("warning: {what} (needed to deploy apps): {why}"),
        }
    }
    ok
}

/// Valid but not what it says: the Docker driver clamps a CPU limit above the host's cores,
/// since the engine refuses such a container.
fn warnings(config: &Config) -> Vec<String> {
    if config.server.driver != "docker" {
        return deploy_warning(config).into_iter().collect();
    }
    let host_cpus = host_cpus();
    let mut warnings = Vec::new();
    for class in &config.containers {
        let wanted = Resources::requested(class).cpus();
        if wanted <= f64::from(host_cpus) {
            continue;
        }
        let asked = match class.cpu {
            Some(cpu) => format!("cpu = {cpu}"),
            None => format!("instance_type = \"{}\"", class.instance_type),
        };
        warnings.push(format!(
            "class `{}`: {asked} asks for {wanted} CPUs but the host has {host_cpus}; \
             the docker driver clamps it to {host_cpus}",
            class.class_name
        ));
    }
    warnings
}

/// Valid, but deployed projects (`valet deploy`) will be refused: what their driver lacks to
/// get a version's image to where it runs, and the key that gives it.
fn deploy_warning(config: &Config) -> Option<String> {
    let refused = "deployed projects (valet deploy) will be refused";
    match config.server.driver.as_str() {
        "swarm" if config.swarm.as_ref().is_none_or(|s| s.nodes.is_empty()) => Some(format!(
            "{refused}: list every node's Engine API in [swarm] nodes, and valet loads each \
             version's image (built on the manager) onto them"
        )),
        "kubernetes" => {
            let kube = config.kubernetes.clone().unwrap_or_default();
            (kube.image_registry.is_none() && kube.image_engine.is_none()).then(|| {
                format!(
                    "{refused}: set [kubernetes] image_registry (versions are pushed there \
                     and every node pulls them) or image_engine (the Pods' node's Docker \
                     Engine, where versions are built and run with imagePullPolicy: Never)"
                )
            })
        }
        _ => None,
    }
}

/// The engine's count (it may run elsewhere, through DOCKER_HOST); this machine's when no
/// engine answers in time, so `check` works without one.
fn host_cpus() -> u32 {
    let local = || std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return local();
    };
    runtime.block_on(async {
        match tokio::time::timeout(ENGINE_WAIT, engine_cpus()).await {
            Ok(Ok(cpus)) => cpus,
            _ => local(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{counted, deploy_warning};
    use std::path::Path;

    fn warning(text: &str) -> Option<String> {
        let config = valet_config::parse_str(text, Path::new("valet.toml"), Path::new("/srv"))
            .expect("test config is valid");
        deploy_warning(&config)
    }

    #[test]
    fn the_summary_counts_in_words_a_reader_expects() {
        assert_eq!(counted(1, "class", "classes"), "1 class");
        assert_eq!(counted(0, "route", "routes"), "0 routes");
        assert_eq!(counted(3, "route", "routes"), "3 routes");
    }

    #[test]
    fn a_deploy_that_would_be_refused_is_warned_with_the_key_that_fixes_it() {
        let swarm = warning("[server]\ndriver = \"swarm\"\n").expect("warned");
        assert!(swarm.contains("[swarm] nodes"), "{swarm}");
        let listed = "[server]\ndriver = \"swarm\"\n[swarm]\nnodes = [\"tcp://10.0.0.2:2375\"]\n";
        assert_eq!(warning(listed), None);
        let kube = warning("[server]\ndriver = \"kubernetes\"\n").expect("warned");
        assert!(
            kube.contains("image_registry") && kube.contains("image_engine"),
            "{kube}"
        );
        for key in [
            "image_registry = \"registry.example.com/valet\"",
            "image_engine = \"unix:///run/node.sock\"",
        ] {
            let text = format!("[server]\ndriver = \"kubernetes\"\n[kubernetes]\n{key}\n");
            assert_eq!(warning(&text), None, "{key}");
        }
        assert_eq!(warning("[server]\ndriver = \"docker\"\n"), None);
    }
}
