//! The swarm's nodes as valet sees them: each node's state and address (from the manager),
//! whether its own engine still answers (when `[swarm] nodes` lists it), and the images loaded
//! onto each listed node.
//!
//! A node whose dockerd died keeps its containers running, and the manager marks it Down only
//! after its heartbeats stop (about 13 s here). valet cannot stop or observe a task there any
//! more, so a listed node whose engine stops answering counts as lost at once: its instances
//! report an exit, start again elsewhere, and the old copy is never routed to again.

use super::tasks;
use crate::docker::error::engine;
use crate::driver::DriverError;
use bollard::models::Task;
use bollard::query_parameters::{ImportImageOptions, ListTasksOptions};
use bollard::Docker;
use futures_util::future::join_all;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often node states and engines are looked at.
const POLL: Duration = Duration::from_millis(300);
/// An engine that has not answered for this long is taken for dead.
const ENGINE_SILENT: Duration = Duration::from_millis(900);
/// The longest one ping may take.
const PING_WITHIN: Duration = Duration::from_millis(700);

/// One node, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub ready: bool,
    pub addr: Option<IpAddr>,
    /// Its `valet.node` label, or its ID.
    pub name: String,
    /// Its engine is listed in `[swarm] nodes` and has not answered for a while.
    pub engine_silent: bool,
}

impl NodeView {
    /// Whether instances on it must be taken for gone.
    pub fn lost(&self) -> bool {
        !self.ready || self.engine_silent
    }
}

/// A listed node's engine.
struct Listed {
    address: String,
    docker: Docker,
    /// Its Swarm node ID, once its engine answered.
    node_id: Mutex<Option<String>>,
}

/// The tasks of this valet's services (every replica's, in cluster mode), as one look found
/// them: one request for all instances, instead of one per instance.
#[derive(Debug, Default)]
pub struct TaskSnapshot {
    /// When the look began: a service created after it may be missing.
    pub taken_at: Option<Instant>,
    pub by_service: HashMap<String, Vec<Task>>,
}

pub struct Nodes {
    manager: Docker,
    /// The label filter of this valet's services.
    scope: String,
    listed: Vec<Listed>,
    view: watch::Receiver<HashMap<String, NodeView>>,
    tasks: watch::Receiver<Arc<TaskSnapshot>>,
    /// One load of an image at a time, so instances starting together share it.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Nodes {
    /// Connects to every listed engine (without waiting for any) and starts watching the
    /// nodes; the watch ends when the last handle is dropped.
    /// Listed nodes speak the manager's negotiated API `version`: the nodes of one swarm run
    /// one engine version, and a node that is down when valet starts could not negotiate.
    pub async fn new(
        manager: Docker,
        scope: &str,
        addresses: &[String],
        version: &bollard::ClientVersion,
    ) -> Result<Arc<Self>, DriverError> {
        let mut listed = Vec::new();
        for address in addresses {
            let docker = super::connect_at(address, version).map_err(|e| {
                DriverError::io(
                    format!("[swarm] nodes: cannot use {address}"),
                    std::io::Error::other(e),
                )
            })?;
            listed.push(Listed {
                address: address.clone(),
                docker,
                node_id: Mutex::new(None),
            });
        }
        let (tx, view) = watch::channel(HashMap::new());
        let (tasks_tx, tasks) = watch::channel(Arc::default());
        let nodes = Arc::new(Self {
            manager,
            scope: scope.to_string(),
            listed,
            view,
            tasks,
            loading: Mutex::default(),
        });
        nodes.look(&tx, &mut HashMap::new()).await;
        tokio::spawn(watch_nodes(Arc::downgrade(&nodes), tx, tasks_tx));
        Ok(nodes)
    }

    /// The latest look at this valet's tasks.
    pub fn tasks(&self) -> watch::Receiver<Arc<TaskSnapshot>> {
        self.tasks.clone()
    }

    /// One look at every task of this valet's services; the last one stays when the manager
    /// does not answer.
    async fn look_at_tasks(&self, tx: &watch::Sender<Arc<TaskSnapshot>>) {
        let taken_at = Instant::now();
        let options = ListTasksOptions {
            filters: Some(crate::docker::names::scope_filter(&self.scope)),
        };
        let Ok(found) = self.manager.list_tasks(Some(options)).await else {
            return;
        };
        let mut by_service: HashMap<String, Vec<Task>> = HashMap::new();
        for task in found {
            if let Some(service) = task.service_id.clone() {
                by_service.entry(service).or_default().push(task);
            }
        }
        let snapshot = TaskSnapshot {
            taken_at: Some(taken_at),
            by_service,
        };
        let _ = tx.send(Arc::new(snapshot));
    }

    /// The latest view of every node, by node ID.
    pub fn view(&self) -> watch::Receiver<HashMap<String, NodeView>> {
        self.view.clone()
    }

    pub fn get(&self, node_id: &str) -> Option<NodeView> {
        self.view.borrow().get(node_id).cloned()
    }

    /// The engine of a node by its Swarm ID, if `[swarm] nodes` lists it.
    pub fn engine(&self, node_id: &str) -> Option<Docker> {
        self.listed
            .iter()
            .find(|l| {
                l.node_id
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_deref()
                    == Some(node_id)
            })
            .map(|l| l.docker.clone())
    }

    /// The nodes whose instances are taken for gone: no new task may go there either (the
    /// manager still schedules onto a node whose engine died, until it marks it Down).
    pub fn lost(&self) -> Vec<String> {
        let view = self.view.borrow();
        view.iter()
            .filter(|(_, n)| n.lost())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether any node is listed: images are then loaded onto them.
    pub fn distributes(&self) -> bool {
        !self.listed.is_empty()
    }

    /// The fewest cores of any node: a service may not ask for more.
    pub async fn smallest_cpus(&self) -> Result<u32, DriverError> {
        let nodes = self.manager.list_nodes(None).await.map_err(|e| {
            engine(
                "cannot list the swarm's nodes (is docker_host a manager?)",
                e,
            )
        })?;
        let least = nodes
            .iter()
            .filter_map(|n| n.description.as_ref()?.resources.as_ref()?.nano_cpus)
            .min()
            .unwrap_or(1_000_000_000);
        Ok(u32::try_from(least / 1_000_000_000).unwrap_or(1).max(1))
    }

    /// Loads an image from the manager onto every listed node that lacks it. Returns the IDs
    /// of nodes that could not get it (their engine does not answer): tasks must avoid them.
    /// `reference` is what is exported (a tag keeps its name on the nodes), `id` what is
    /// checked.
    pub async fn distribute(&self, reference: &str, id: &str) -> Vec<String> {
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading.entry(id.to_string()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        // Asked of each node at every start, not remembered: a node that was rebuilt or
        // pruned has lost what it had.
        let loads = self.listed.iter().map(|node| async move {
            match self.load(node, reference, id).await {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(node = %node.address, image = id, error = %e, "cannot load the image onto the node; its tasks go elsewhere");
                    node.node_id.lock().unwrap_or_else(|e| e.into_inner()).clone()
                }
            }
        });
        join_all(loads).await.into_iter().flatten().collect()
    }

    /// Every listed node's engine, with the address `[swarm] nodes` gives it.
    pub fn engines(&self) -> Vec<(String, Docker)> {
        (self.listed.iter())
            .map(|node| (node.address.clone(), node.docker.clone()))
            .collect()
    }

    /// Removes an image (by ID) from every listed node that has it, as [`Self::distribute`]
    /// put it there. Returns each node that kept it, with why: a node whose engine does not
    /// answer keeps it until someone prunes it there.
    pub async fn remove_image(&self, id: &str) -> Vec<(String, String)> {
        let removals = self.listed.iter().map(|node| async move {
            let removed = crate::docker::project::remove_image(&node.docker, id).await;
            removed.err().map(|e| (node.address.clone(), e.to_string()))
        });
        join_all(removals).await.into_iter().flatten().collect()
    }

    async fn load(&self, node: &Listed, reference: &str, id: &str) -> Result<(), String> {
        if node.docker.inspect_image(id).await.is_ok() {
            return Ok(());
        }
        let started = Instant::now();
        // Streamed from the manager's engine into the node's: nothing lands on valet's disk.
        let export = self.manager.export_image(reference);
        let options = ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        let mut import = node.docker.import_image_stream(options, export, None);
        while let Some(answer) = import.next().await {
            answer.map_err(|e| e.to_string())?;
        }
        node.docker
            .inspect_image(id)
            .await
            .map_err(|e| format!("loaded, but the node has no image {id}: {e}"))?;
        tracing::info!(node = %node.address, image = id, took = ?started.elapsed(), "image loaded onto node");
        Ok(())
    }

    /// One look at the manager's node list and every listed engine. `silent_since`: when each
    /// listed engine stopped answering.
    async fn look(
        &self,
        tx: &watch::Sender<HashMap<String, NodeView>>,
        silent_since: &mut HashMap<String, Instant>,
    ) {
        let pings = self.listed.iter().map(|node| async move {
            let answer = tokio::time::timeout(PING_WITHIN, node.docker.ping()).await;
            let alive = matches!(answer, Ok(Ok(_)));
            if alive
                && node
                    .node_id
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_none()
            {
                if let Ok(info) = node.docker.info().await {
                    let id = info
                        .swarm
                        .and_then(|s| s.node_id)
                        .filter(|id| !id.is_empty());
                    *node.node_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
                }
            }
            alive
        });
        let alive = join_all(pings).await;
        let mut silent = HashSet::new();
        for (node, alive) in self.listed.iter().zip(alive) {
            if alive {
                silent_since.remove(&node.address);
                continue;
            }
            let since = *silent_since
                .entry(node.address.clone())
                .or_insert_with(Instant::now);
            let id = node
                .node_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(id) = id.filter(|_| since.elapsed() >= ENGINE_SILENT) {
                silent.insert(id);
            }
        }
        // The manager not answering tells nothing about the nodes: keep the last view.
        let Ok(nodes) = self.manager.list_nodes(None).await else {
            return;
        };
        let view = nodes
            .iter()
            .filter_map(|node| {
                let id = node.id.clone()?;
                let seen = NodeView {
                    ready: tasks::node_ready(node),
                    addr: tasks::node_addr(node),
                    name: tasks::node_name(node),
                    engine_silent: silent.contains(&id),
                };
                Some((id, seen))
            })
            .collect();
        tx.send_if_modified(|old| {
            let changed = *old != view;
            if changed {
                for (id, seen) in &view {
                    if old.get(id).map(NodeView::lost) != Some(seen.lost()) {
                        tracing::info!(node = %seen.name, id, ready = seen.ready, engine_silent = seen.engine_silent, "swarm node changed");
                    }
                }
                *old = view;
            }
            changed
        });
    }
}

async fn watch_nodes(
    nodes: std::sync::Weak<Nodes>,
    tx: watch::Sender<HashMap<String, NodeView>>,
    tasks: watch::Sender<Arc<TaskSnapshot>>,
) {
    let mut silent_since = HashMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        let Some(nodes) = nodes.upgrade() else {
            return;
        };
        tokio::join!(
            nodes.look(&tx, &mut silent_since),
            nodes.look_at_tasks(&tasks)
        );
    }
}
