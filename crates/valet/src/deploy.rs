//! Wiring of the deploy API for `valet up`: the store, the deployer (with every project routed
//! to its current version), plans, and JWT checks from `[auth]` for tenants' tokens.

use std::sync::Arc;
use valet_api::{DeployApi, JwtCheck};
use valet_config::Config;
use valet_deploy::Deployer;
use valet_gateway::auth::JwtVerifier;
use valet_instances::Instances;
use valet_store::Store;

/// Opens the store (migrations run here), restores project routes and builds the deploy API.
pub async fn api(config: &Config, instances: &Instances) -> Result<DeployApi, String> {
    let store = Store::open(&config.server.store, &config.data_dir())
        .await
        .map_err(|e| format!("store: {e}"))?;
    tracing::info!(backend = ?store.backend(), "store open");
    let deployer = Arc::new(
        Deployer::new(Arc::new(config.clone()), store, instances.clone())
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
        plans: config.plans.clone(),
        jwt,
    })
}
