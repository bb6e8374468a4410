//! What containers need besides their image: the per-instance volume and the internal network.

use super::error::{conflict, engine, not_found};
use super::names;
use crate::driver::DriverError;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::RemoveVolumeOptions;
use bollard::Docker;
use std::collections::HashMap;
use valet_core::InstanceId;

/// A network a container joins instead of the default bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// Internal: no route out, and no ports published from it.
    pub internal: bool,
}

/// Creates the instance's named volume with valet's labels, or finds it. The engine answers a
/// create of an existing name with that volume, so this is idempotent and keeps its data.
pub async fn volume(docker: &Docker, scope: &str, id: &InstanceId) -> Result<String, DriverError> {
    let name = names::instance_name(scope, id);
    create_volume(docker, name, names::instance_labels(scope, id)).await
}

/// Creates a deployed project's volume (shared by its versions), or finds it.
pub async fn project_volume(
    docker: &Docker,
    scope: &str,
    project: &str,
) -> Result<String, DriverError> {
    let name = names::project_volume(scope, project);
    let mut labels = names::project_labels(scope, project);
    // `valet volumes ls` shows it under this class name.
    labels.insert(names::CLASS.to_string(), format!("project-{project}"));
    create_volume(docker, name, labels).await
}

/// Creates the named volume with `labels`; the engine answers a create of an existing name
/// with that volume.
async fn create_volume(
    docker: &Docker,
    name: String,
    labels: HashMap<String, String>,
) -> Result<String, DriverError> {
    let request = VolumeCreateRequest {
        name: Some(name.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_volume(request)
        .await
        .map_err(|e| engine(format!("cannot create volume {name}"), e))?;
    Ok(name)
}

/// A deployed project's own bridge network, created on first use. Not internal: the app may
/// reach the internet, and its port is published on loopback. Docker's isolation rules keep
/// bridges apart, so one project's containers cannot reach another's.
///
/// The caller serializes calls: Engine 20.10 accepts two networks of one name.
pub async fn project_network(
    docker: &Docker,
    scope: &str,
    project: &str,
) -> Result<Network, DriverError> {
    let name = names::project_network(scope, project);
    match docker.inspect_network(&name, None).await {
        Ok(_) => {
            return Ok(Network {
                name,
                internal: false,
            })
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine(format!("cannot inspect network {name}"), e)),
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(names::project_labels(scope, project)),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => tracing::info!(network = %name, project, "project network created"),
        Err(e) if conflict(&e) => {}
        Err(e) => return Err(engine(format!("cannot create network {name}"), e)),
    }
    Ok(Network {
        name,
        internal: false,
    })
}

/// Deletes the instance's named volume and its data (admin `destroy`). The container is gone
/// by then (the instance layer stops it first, and a stopped container is removed), so a
/// volume still in use means something else mounted it: that is an error, not a force.
pub async fn remove_volume(
    docker: &Docker,
    scope: &str,
    id: &InstanceId,
) -> Result<(), DriverError> {
    let name = names::instance_name(scope, id);
    match docker
        .remove_volume(&name, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => {
            tracing::info!(instance = %id, volume = %name, "volume removed");
            Ok(())
        }
        // Never made (a class without a volume, or an instance that never started).
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(engine(format!("cannot remove volume {name}"), e)),
    }
}

/// The internal network of this valet, created on first use. Internal: the engine gives it
/// no route out (and publishes no ports from it), so its containers reach nothing but each
/// other and the host's end of the bridge, through which valet reaches them.
///
/// The caller serializes calls: Engine 20.10 accepts two networks of one name.
pub async fn internal_network(docker: &Docker, scope: &str) -> Result<String, DriverError> {
    let name = names::internal_network(scope);
    match docker.inspect_network(&name, None).await {
        Ok(network) if network.internal == Some(true) => return Ok(name),
        Ok(_) => {
            return Err(DriverError::Spec(format!(
                "network {name} exists but is not internal; remove it and valet makes it anew"
            )))
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine(format!("cannot inspect network {name}"), e)),
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        internal: Some(true),
        labels: Some(HashMap::from([
            (names::MANAGED.to_string(), "true".to_string()),
            (names::SCOPE.to_string(), scope.to_string()),
        ])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = %name, "internal network created");
            Ok(name)
        }
        Err(e) if conflict(&e) => Ok(name),
        Err(e) => Err(engine(format!("cannot create network {name}"), e)),
    }
}
