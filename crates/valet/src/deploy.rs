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
/// where valet's own environment does not set them already. Runs before the instance table
/// is made from `config`.
pub async fn open_store(config: &mut Config) -> Result<Store, String> {
    let store = Store::open(&config.server.store, &config.data_dir())
        .await
        .map_err(|e| format!("store: {e}"))?;
    tracing::info!(backend = ?store.backend(), "store open");
    if config.containers.iter().all(|c| c.secrets.is_empty()) {
        return Ok(store);
    }
    let secrets = SecretBox::load_or_create(&SecretBox::key_path(&config.data_dir()))
        .map_err(|e| format!("secrets: {e}"))?;
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

/// Restores project routes and builds the deploy API on the open store.
pub async fn api(
    config: &Config,
    instances: &Instances,
    store: Store,
    packager: Arc<dyn Packager>,
) -> Result<DeployApi, String> {
    let deployer = Arc::new(
        Deployer::new(Arc::new(config.clone()), store, instances.clone(), packager)
            .map_err(|e| format!("deploy: {e}"))?,
    );
    let projects = deployer
        .restore()
        .await
        .map_err(|e| format!("restoring deployed projects: {e}"))?;
    tracing::info!(projects, "deployed projects routed");
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
