//! Wiring of the deploy API for `valet up`: the store, the deployer (with every project routed
//! to its current version), plans, and JWT checks from `[auth]` for tenants' tokens.

use std::sync::Arc;
use valet_api::{DeployApi, JwtCheck};
use valet_config::Config;
use valet_deploy::{Deployer, Packager, SecretBox};
use valet_gateway::auth::JwtVerifier;
use valet_instances::Instances;
use valet_store::Store;

/// Opens the store (migrations run here) and puts each class's stored secrets into its env,
/// and the stored `[[registries]]` passwords into their entries, where valet's own
/// environment does not set them already. Runs before the driver and the instance table are
/// made from `config`.
pub async fn open_store(config: &mut Config) -> Result<Store, String> {
    let store = Store::open(&config.server.store, &config.data_dir())
        .await
        .map_err(|e| format!("store: {e}"))?;
    tracing::info!(backend = ?store.backend(), "store open");
    let registries_need = config
        .registries
        .iter()
        .any(|r| std::env::var_os(&r.password_secret).is_none());
    if config.containers.iter().all(|c| c.secrets.is_empty()) && !registries_need {
        return Ok(store);
    }
    let secrets = SecretBox::load_or_create(&SecretBox::key_path(&config.data_dir()))
        .map_err(|e| format!("secrets: {e}"))?;
    if registries_need {
        registry_passwords(config, &store, &secrets).await?;
    }
    for class in &mut config.containers {
        let scope = valet_deploy::class_scope(&class.class_name);
        let opened = valet_deploy::open_scope(&store, &secrets, &scope)
            .await
            .map_err(|e| format!("secrets of class {}: {e}", class.class_name))?;
        for (name, value) in opened {
            if class.secrets.contains(&name) && std::env::var_os(&name).is_none() {
                class.env.insert(name, value);
            }
        }
    }
    Ok(store)
}

/// Puts the stored password of each `[[registries]]` entry whose `password_secret` valet's
/// environment does not set into the entry. An entry whose password is in neither is said
/// once here (by name), since every pull from its registry will fail until it is.
async fn registry_passwords(
    config: &mut Config,
    store: &Store,
    secrets: &SecretBox,
) -> Result<(), String> {
    let scope = valet_deploy::REGISTRY_SCOPE;
    let stored = valet_deploy::open_scope(store, secrets, scope)
        .await
        .map_err(|e| format!("registry passwords: {e}"))?;
    for entry in &mut config.registries {
        let name = &entry.password_secret;
        if std::env::var_os(name).is_some() {
            continue;
        }
        match stored.iter().find(|(n, _)| n == name) {
            Some((_, value)) => {
                entry.stored_password = Some(valet_config::SecretText::new(value.as_str()));
                tracing::info!(registry = %entry.host, secret = %name, "registry password from valet's secret store");
            }
            None => tracing::warn!(
                registry = %entry.host,
                secret = %name,
                "registry password is set neither in valet's environment nor in its secret store: \
                 pulls from this registry fail until it is (`valet secret put {name} --registry`, \
                 then restart valet)"
            ),
        }
    }
    Ok(())
}

/// Restores project routes and builds the deploy API on the open store.
pub async fn api(
    config: &Config,
    instances: &Instances,
    store: Store,
    packager: Arc<dyn Packager>,
    cluster: Option<&valet_cluster::Cluster>,
) -> Result<DeployApi, String> {
    let mut deployer = Deployer::new(Arc::new(config.clone()), store, instances.clone(), packager)
        .map_err(|e| format!("deploy: {e}"))?;
    if cluster.is_some() {
        deployer = deployer.shared();
    }
    let deployer = Arc::new(deployer);
    if let Some(cluster) = cluster {
        // Before the store is read below: a change committed after that read is announced
        // to this hook, one committed before is in what is read.
        let follower = deployer.clone();
        cluster.follow_projects(Arc::new(move |changed| follower.follow(changed)));
    }
    let projects = deployer
        .restore()
        .await
        .map_err(|e| format!("restoring deployed projects: {e}"))?;
    tracing::info!(projects, "deployed projects routed");
    if cluster.is_some() {
        // Projects another replica built, built here from their kept uploads (background).
        deployer.follow(None);
    }
    let jwt: Option<JwtCheck> = match &config.auth {
        Some(auth) => {
            let verifier = JwtVerifier::from_config(auth, |p| config.resolve(p))?;
            Some(Arc::new(move |token: &str| {
                let claims = verifier.verify(token)?;
                let user = claims
                    .sub
                    .ok_or_else(|| "the token has no sub claim".to_string())?;
                Ok((user, claims.plan))
            }))
        }
        None => None,
    };
    Ok(DeployApi {
        deployer,
        plans: valet_deploy::Plans::new(config.plans.clone()),
        jwt,
    })
}
