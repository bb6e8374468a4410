//! A key's volume lives on the node that first ran it: Swarm has no volume that follows a task.
//! Which node that is, is kept in the swarm itself, as a Swarm config object named after the
//! key's service and labelled with the node's ID, so every valet replica (and a restarted one)
//! finds it through the manager alone. The key's services are then constrained to that node;
//! `destroy` removes the volume through that node's engine and then the record.

use super::nodes::Nodes;
use crate::docker::error::{conflict, engine, not_found};
use crate::docker::names;
use crate::driver::DriverError;
use bollard::models::{ConfigSpec, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListConfigsOptions, ListContainersOptions, RemoveVolumeOptions};
use bollard::Docker;
use std::collections::HashMap;
use valet_core::InstanceId;

/// The label holding the node's ID on the record.
const NODE_ID: &str = "valet.node-id";

fn record_name(service: &str) -> String {
    format!("{service}-node")
}

/// The record of a key's volume: its ID and the node's ID.
async fn record(manager: &Docker, service: &str) -> Result<Option<(String, String)>, DriverError> {
    let name = record_name(service);
    let options = ListConfigsOptions {
        filters: Some(HashMap::from([("name".to_string(), vec![name.clone()])])),
    };
    let found = manager
        .list_configs(Some(options))
        .await
        .map_err(|e| engine("cannot list swarm configs", e))?;
    // The name filter matches prefixes.
    Ok(found.into_iter().find_map(|config| {
        let spec = config.spec?;
        (spec.name.as_deref() == Some(&name)).then_some(())?;
        Some((config.id?, spec.labels?.get(NODE_ID)?.clone()))
    }))
}

/// The node holding the key's volume, if it has been made.
pub async fn pinned(manager: &Docker, service: &str) -> Result<Option<String>, DriverError> {
    Ok(record(manager, service).await?.map(|(_, node)| node))
}

/// Records that the key's volume is on `node`. Only the key's starter records (it holds the
/// key), so an existing record can only be its own from an earlier start.
pub async fn pin(
    manager: &Docker,
    scope: &str,
    id: &InstanceId,
    service: &str,
    node: &str,
) -> Result<(), DriverError> {
    let mut labels = names::instance_labels(scope, id);
    labels.insert(NODE_ID.into(), node.into());
    let spec = ConfigSpec {
        name: Some(record_name(service)),
        labels: Some(labels),
        // A config must hold data; the node's ID is in its label, where a filter reads it.
        data: Some("dmFsZXQ=".into()),
        ..Default::default()
    };
    match manager.create_config(spec).await {
        Ok(_) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(e) => Err(engine("cannot record the volume's node", e)),
    }
}

/// Removes the key's volume on its node, then the record.
pub async fn destroy(manager: &Docker, nodes: &Nodes, service: &str) -> Result<(), DriverError> {
    let Some((record, node)) = record(manager, service).await? else {
        // Never made: the key never ran, or its class has no volume.
        return Ok(());
    };
    let Some(docker) = nodes.engine(&node) else {
        let name = nodes.get(&node).map_or(node.clone(), |n| n.name);
        return Err(DriverError::Spec(format!(
            "volume {service} is on swarm node {name}, whose Engine API valet does not know: \
             list it in [swarm] nodes, or remove the volume there by hand"
        )));
    };
    // The key's last container may still be there, stopped: Swarm removes a removed service's
    // containers a moment later. A stopped leftover goes now; a running one means the key
    // runs, and the volume stays.
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "volume".to_string(),
            vec![service.to_string()],
        )])),
        ..Default::default()
    };
    let users = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| engine("cannot list the volume's containers", e))?;
    for user in users {
        let Some(id) = user.id else { continue };
        if user.state == Some(ContainerSummaryStateEnum::RUNNING) {
            return Err(DriverError::Spec(format!(
                "volume {service} is in use by running container {id}"
            )));
        }
        crate::docker::running::remove(&docker, &id).await;
    }
    match docker
        .remove_volume(service, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => tracing::info!(volume = service, node, "volume removed"),
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine(format!("cannot remove volume {service}"), e)),
    }
    match manager.delete_config(&record).await {
        Err(e) if !not_found(&e) => Err(engine("cannot remove the volume's record", e)),
        _ => Ok(()),
    }
}
