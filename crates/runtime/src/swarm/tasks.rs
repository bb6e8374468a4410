//! What valet reads from Swarm's tasks and nodes: where a task's ports are reached (its node's
//! address and the ports published there) and whether it still runs. Pure functions of the
//! Engine API's answers, so they are tested without a swarm.

use crate::driver::{Endpoints, ExitStatus};
use bollard::models::{EndpointPortConfigPublishModeEnum, Node, NodeState, Task, TaskState};
use std::net::{IpAddr, SocketAddr};

/// Where a task stands, as valet acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not placed or not started yet (new, pending, assigned, preparing, starting...).
    Waiting,
    /// Its container runs.
    Running,
    /// It ended, or will never run: why, and the container's exit status when it had one.
    Ended {
        why: String,
        status: Option<ExitStatus>,
    },
}

/// The state of one task.
pub fn progress(task: &Task) -> Progress {
    let status = task.status.as_ref();
    let state = status.and_then(|s| s.state);
    let why = || {
        let status = status.cloned().unwrap_or_default();
        let state = state.map_or("unknown".to_string(), |s| s.to_string());
        match (status.err, status.message) {
            (Some(err), _) if !err.is_empty() => format!("task {state}: {err}"),
            (_, Some(message)) if !message.is_empty() => format!("task {state}: {message}"),
            _ => format!("task {state}"),
        }
    };
    let code = status
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.exit_code);
    match state {
        Some(TaskState::RUNNING) => Progress::Running,
        Some(
            TaskState::COMPLETE
            | TaskState::FAILED
            | TaskState::SHUTDOWN
            | TaskState::REJECTED
            | TaskState::ORPHANED
            | TaskState::REMOVE,
        ) => Progress::Ended {
            why: why(),
            // A task that never had a container (rejected: no such image) reports 0.
            status: code
                .filter(|_| state != Some(TaskState::REJECTED))
                .map(crate::docker::running::status_of),
        },
        _ => Progress::Waiting,
    }
}

/// A task's state and message, for an error saying where a start got stuck.
pub fn describe(task: &Task) -> String {
    let status = task.status.clone().unwrap_or_default();
    let state = status
        .state
        .map_or("unknown".to_string(), |s| s.to_string());
    match status.err.or(status.message) {
        Some(said) if !said.is_empty() => format!("task {state}: {said}"),
        _ => format!("task {state}"),
    }
}

/// The ID of the task's container, once its node made one.
pub fn container(task: &Task) -> Option<String> {
    let status = task.status.as_ref()?.container_status.as_ref()?;
    status.container_id.clone().filter(|id| !id.is_empty())
}

/// Whether Swarm wants this task to run: one it is shutting down or replacing is not current.
pub fn desired_running(task: &Task) -> bool {
    matches!(
        task.desired_state,
        Some(TaskState::RUNNING | TaskState::READY | TaskState::ACCEPTED)
    )
}

/// The address of a node's host-mode published ports. A manager may report `0.0.0.0` as its
/// own address; its manager address says where it really is.
pub fn node_addr(node: &Node) -> Option<IpAddr> {
    let status = node.status.as_ref()?;
    let addr: Option<IpAddr> = status.addr.as_deref().and_then(|a| a.parse().ok());
    match addr {
        Some(ip) if !ip.is_unspecified() => Some(ip),
        _ => {
            let manager = node.manager_status.as_ref()?.addr.as_deref()?;
            let host = manager.rsplit_once(':').map_or(manager, |(h, _)| h);
            host.trim_matches(['[', ']']).parse().ok()
        }
    }
}

/// Whether the swarm counts the node as up.
pub fn node_ready(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY)
}

/// The node's `valet.node` label, or its ID: how logs and errors name it.
pub fn node_name(node: &Node) -> String {
    let label = node
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get("valet.node"));
    match label {
        Some(label) => label.clone(),
        None => node.id.clone().unwrap_or_default(),
    }
}

/// Each named port at the node's address and the port the node published for its target.
pub fn endpoints(ports: &[(String, u16)], task: &Task, addr: IpAddr) -> Result<Endpoints, String> {
    let published = task
        .status
        .as_ref()
        .and_then(|s| s.port_status.as_ref())
        .and_then(|p| p.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(ports.len());
    for (name, target) in ports {
        let port = published
            .iter()
            .filter(|p| p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST))
            .filter(|p| p.target_port == Some(i64::from(*target)))
            .find_map(|p| u16::try_from(p.published_port?).ok().filter(|&p| p != 0))
            .ok_or_else(|| format!("port {target} ({name}) is not published on the task's node"))?;
        out.push((name.clone(), SocketAddr::new(addr, port)));
    }
    Ok(Endpoints { ports: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> Task {
        serde_json::from_value(json).expect("a task as the Engine API sends it")
    }

    #[test]
    fn endpoints_are_the_node_address_and_the_ports_published_there() {
        // As Engine 20.10 reports a host-mode port it picked (listed twice, as it does).
        let running = task(serde_json::json!({
            "ID": "t1", "NodeID": "n2", "DesiredState": "running",
            "Status": {
                "State": "running",
                "ContainerStatus": {"ContainerID": "c1", "ExitCode": 0},
                "PortStatus": {"Ports": [
                    {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 32768, "PublishMode": "host"},
                    {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 32768, "PublishMode": "host"},
                    {"Protocol": "tcp", "TargetPort": 9000, "PublishedPort": 32769, "PublishMode": "host"}
                ]}
            }
        }));
        let addr: IpAddr = "10.77.0.12".parse().unwrap();
        let ports = [("http".to_string(), 8080), ("admin".to_string(), 9000)];
        let found = endpoints(&ports, &running, addr).unwrap();
        assert_eq!(found.get("http"), Some("10.77.0.12:32768".parse().unwrap()));
        assert_eq!(
            found.get("admin"),
            Some("10.77.0.12:32769".parse().unwrap())
        );
        assert_eq!(progress(&running), Progress::Running);
        assert!(desired_running(&running));
        let missing = endpoints(&[("other".to_string(), 7000)], &running, addr);
        assert!(missing.unwrap_err().contains("7000"));
    }

    #[test]
    fn ended_tasks_carry_their_exit_code_or_their_error() {
        let failed = task(serde_json::json!({
            "ID": "t1", "DesiredState": "shutdown",
            "Status": {"State": "failed", "Err": "task: non-zero exit (3)",
                       "ContainerStatus": {"ExitCode": 3}}
        }));
        let Progress::Ended { why, status } = progress(&failed) else {
            panic!("failed is an end")
        };
        assert_eq!(status.unwrap().code, Some(3));
        assert!(why.contains("non-zero exit (3)"), "{why}");
        assert!(!desired_running(&failed));
        let killed = task(serde_json::json!({
            "Status": {"State": "failed", "ContainerStatus": {"ExitCode": 137}}
        }));
        let Progress::Ended { status, .. } = progress(&killed) else {
            panic!()
        };
        assert_eq!(status.unwrap().signal, Some(9));
        let rejected = task(serde_json::json!({
            "Status": {"State": "rejected", "Err": "No such image: sha256:abc",
                       "ContainerStatus": {"ExitCode": 0}}
        }));
        let Progress::Ended { why, status } = progress(&rejected) else {
            panic!()
        };
        assert_eq!(status, None, "no container ran");
        assert!(why.contains("No such image"), "{why}");
        let pending = task(serde_json::json!({"Status": {"State": "pending"}}));
        assert_eq!(progress(&pending), Progress::Waiting);
    }

    #[test]
    fn a_manager_reporting_no_address_is_found_at_its_manager_address() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "ID": "n1",
            "Spec": {"Labels": {"valet.node": "n1"}},
            "Status": {"State": "ready", "Addr": "0.0.0.0"},
            "ManagerStatus": {"Addr": "10.77.0.11:2377", "Leader": true}
        }))
        .unwrap();
        assert_eq!(node_addr(&node), Some("10.77.0.11".parse().unwrap()));
        assert!(node_ready(&node));
        assert_eq!(node_name(&node), "n1");
        let down: Node = serde_json::from_value(serde_json::json!({
            "ID": "n2", "Status": {"State": "down", "Addr": "10.77.0.12"}
        }))
        .unwrap();
        assert!(!node_ready(&down));
        assert_eq!(node_addr(&down), Some("10.77.0.12".parse().unwrap()));
        assert_eq!(node_name(&down), "n2");
    }
}
