//! The Swarm driver: every instance is a Docker Swarm service of one replica, placed by the
//! swarm's scheduler on any node and reached at that node's address, on the ports the node
//! published for its task (host mode: the ingress mesh and virtual IPs need IPVS, and add a
//! hop). valet keeps what Swarm alone does not give: one serving copy per key, restarts with
//! its own backoff (Swarm's restart policy is off), and fencing of a lost node's copy.
//!
//! - [`spec`] turns a spec into a service (the Docker driver's container plan inside);
//! - [`tasks`] reads where a task runs and whether it still does;
//! - [`nodes`] watches the nodes and loads images onto the listed ones;
//! - [`running`] is the handle the instance layer holds;
//! - [`recover`] adopts this valet's services after a restart;
//! - [`volume`] keeps a key with a volume on the node that holds it.
//!
//! Images, class settings, names, labels and logs are the Docker driver's own modules.

mod nodes;
mod project;
mod recover;
mod running;
mod spec;
mod tasks;
mod volume;

pub use spec::{service_name, service_names, OWNER};

use crate::docker::container::Plan;
use crate::docker::error::{conflict, engine};
use crate::docker::image::{ImageSource, Images};
use crate::docker::logs::{self, LogSink};
use crate::docker::settings::{self, ClassSettings};
use crate::driver::{
    remove_data_dir, Adopted, Driver, DriverError, Endpoints, InstanceSpec, PhaseSink, Running,
};
use crate::logs::LogRing;
use async_trait::async_trait;
use bollard::query_parameters::ListServicesOptions;
use bollard::{ClientVersion, Docker};
use nodes::Nodes;
use running::{SwarmInstance, Watched};
use sha2::{Digest, Sha256};
use spec::Service;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasks::Progress;
use valet_config::Config;
use valet_core::InstanceId;

/// The longest a created service may take to have its task running: scheduling, and on a
/// node without the image, a pull (a tag makes Swarm try one even when the node has it).
const LAUNCH_WITHIN: Duration = Duration::from_secs(120);
/// How often a launching service's task is looked at: this is on the cold-start path.
const LAUNCH_POLL: Duration = Duration::from_millis(50);
/// Engine API calls to any node give up after this many seconds.
const REQUEST_TIMEOUT: u64 = 120;

fn unreachable(address: &str, e: bollard::errors::Error) -> DriverError {
    DriverError::io(
        format!("cannot reach the swarm manager's Engine API at {address} ([swarm] docker_host)"),
        std::io::Error::other(e),
    )
}

/// A client of one engine at `address` (`unix://` or `tcp://`), speaking `version`.
fn connect_at(address: &str, version: &ClientVersion) -> Result<Docker, bollard::errors::Error> {
    match address.strip_prefix("tcp://") {
        Some(rest) => {
            Docker::connect_with_http(&format!("http://{rest}"), REQUEST_TIMEOUT, version)
        }
        None if address.starts_with("http://") => {
            Docker::connect_with_http(address, REQUEST_TIMEOUT, version)
        }
        None => Docker::connect_with_unix(address, REQUEST_TIMEOUT, version),
    }
}

/// The manager's Engine API (`[swarm] docker_host`, else `DOCKER_HOST`, else the local
/// socket), its API version negotiated, and how to name it in errors.
pub async fn manager(config: &Config) -> Result<(String, Docker), DriverError> {
    let host = config.swarm.as_ref().and_then(|s| s.docker_host.clone());
    let (address, docker) = match host {
        Some(address) => {
            let docker = connect_at(&address, bollard::API_DEFAULT_VERSION)
                .map_err(|e| unreachable(&address, e))?;
            (address, docker)
        }
        None => {
            let address = std::env::var("DOCKER_HOST").unwrap_or("the local socket".into());
            let docker =
                Docker::connect_with_local_defaults().map_err(|e| unreachable(&address, e))?;
            (address, docker)
        }
    };
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(&address, e))?;
    Ok((address, docker))
}

/// The scope of a valet's services. One valet: a hash of its data folder, as for Docker. In
/// cluster mode every replica must compute the same scope, so that a key's service name
/// collides cluster-wide: a hash of the shared store's URL without its credentials.
pub fn scope_of(config: &Config) -> String {
    if config.cluster.is_none() {
        return crate::docker::names::scope_of(&config.data_dir());
    }
    let store = &config.server.store;
    let (scheme, rest) = store.split_once("://").unwrap_or(("", store));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = path.split('?').next().unwrap_or_default();
    let digest = Sha256::digest(format!("{scheme}://{host}{path}").as_bytes());
    hex::encode(&digest[..6])
}

/// Runs instances as Swarm services. Cheap to clone.
#[derive(Clone)]
pub struct SwarmDriver {
    inner: Arc<Inner>,
}

struct Inner {
    manager: Docker,
    nodes: Arc<Nodes>,
    scope: String,
    /// `[cluster] node`: the label on this replica's services.
    owner: Option<String>,
    classes: HashMap<String, ClassSettings>,
    /// Builds and pulls on the manager's engine.
    images: Images,
    data_dir: PathBuf,
    /// Keys adopted at recovery with a service of an older class config, which serves until
    /// the instance layer has started a successor and seen it ready: the key's next start
    /// makes the successor beside it, under the key's other name, instead of removing it.
    /// Taken by that start (see [`recover`]).
    stale: std::sync::Mutex<HashMap<InstanceId, Stale>>,
    /// Deployed projects' version classes and images.
    projects: project::Projects,
}

/// A serving service of an older class config (recovery adopted it).
#[derive(Debug, Clone)]
struct Stale {
    id: String,
    name: String,
}

impl SwarmDriver {
    /// Connects to the manager (`[swarm] docker_host`, else `DOCKER_HOST`, else the local
    /// socket) and to each listed node, and reads the classes. Fails with a clear message when
    /// the manager does not answer or is not a swarm manager.
    pub async fn connect(config: &Config) -> Result<Self, DriverError> {
        let swarm = config.swarm.clone().unwrap_or_default();
        let (address, manager) = manager(config).await?;
        let info = manager.info().await.map_err(|e| unreachable(&address, e))?;
        let control = info.swarm.as_ref().and_then(|s| s.control_available);
        if control != Some(true) {
            return Err(DriverError::Spec(format!(
                "{address} is not a swarm manager ([swarm] docker_host must be a manager \
                 node's Engine API: `docker swarm init` there, or point at one)"
            )));
        }
        let scope = scope_of(config);
        let version = manager.client_version();
        let nodes = Nodes::new(manager.clone(), &scope, &swarm.nodes, &version).await?;
        let node_cpus = nodes.smallest_cpus().await?;
        let data_dir = config.data_dir();
        tokio::fs::create_dir_all(&data_dir)
            .await
            .map_err(|e| DriverError::io(format!("cannot create {}", data_dir.display()), e))?;
        tracing::info!(
            manager = %address,
            api = %manager.client_version(),
            engine = info.server_version.as_deref().unwrap_or("?"),
            nodes = swarm.nodes.len(),
            node_cpus,
            scope = %scope,
            "swarm driver connected"
        );
        let images = Images::new(
            manager.clone(),
            config.registries.clone(),
            config.server.timeouts.pull.get(),
        );
        let builds = crate::docker::ProjectImages::new(images.clone(), &scope);
        Ok(Self {
            inner: Arc::new(Inner {
                projects: project::Projects::new(builds, node_cpus),
                images,
                classes: settings::all(config, node_cpus),
                owner: config.cluster.as_ref().map(|c| c.node.clone()),
                manager,
                nodes,
                scope,
                data_dir,
                stale: Default::default(),
            }),
        })
    }

    /// The label value that marks this valet's services.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    fn class(&self, name: &str) -> Result<ClassSettings, DriverError> {
        (self.inner.classes.get(name).cloned())
            .or_else(|| self.inner.projects.classes.get(name))
            .ok_or_else(|| DriverError::Spec(format!("class `{name}` is not in the config")))
    }

    fn owner(&self) -> Option<&str> {
        self.inner.owner.as_deref()
    }

    /// The class's image on the manager (built or pulled there), then on every listed node.
    /// Returns what services are created from, the image ID, and the nodes that lack it.
    async fn image(
        &self,
        class: &str,
        settings: &ClassSettings,
        sink: &mut LogSink,
        phase: PhaseSink<'_>,
    ) -> Result<(String, String, Vec<String>), DriverError> {
        let images = &self.inner.images;
        let resolved = images.resolve(class, settings).await?;
        let reference = resolved.reference.clone();
        let id = images
            .ensure(class, settings, resolved, sink, phase)
            .await?;
        if self.inner.nodes.distributes() {
            let avoid = self.inner.nodes.distribute(&reference, &id).await;
            // By ID: a tag makes each node ask a registry first.
            return Ok((id.clone(), id, avoid));
        }
        match &settings.image {
            // Each node has it or pulls it.
            ImageSource::Reference(reference) => Ok((reference.clone(), id, Vec::new())),
            // Built on the manager only: nodes without it reject the task, and the start says
            // why (see `launched`).
            ImageSource::Dockerfile { .. } => Ok((id.clone(), id, Vec::new())),
        }
    }

    /// Removes every service of these names (by ID: what the listing returned, nothing newer)
    /// but `keep`. With `wait`, until their tasks are gone, so two containers never share a
    /// volume.
    async fn remove_named(
        &self,
        names: &[String],
        keep: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<(), DriverError> {
        let manager = &self.inner.manager;
        let mut ids = Vec::new();
        for name in names {
            let options = ListServicesOptions {
                filters: Some(HashMap::from([(
                    "name".to_string(),
                    vec![name.to_string()],
                )])),
                ..Default::default()
            };
            let found = manager
                .list_services(Some(options))
                .await
                .map_err(|e| engine("cannot list services", e))?;
            // The name filter matches prefixes.
            ids.extend(
                found
                    .into_iter()
                    .filter(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
                    .filter_map(|s| s.id)
                    .filter(|id| Some(id.as_str()) != keep),
            );
        }
        self.remove_ids(&ids, wait).await;
        Ok(())
    }

    /// Removes these services by ID; with `wait`, until their running containers stopped (at
    /// most that long).
    async fn remove_ids(&self, ids: &[String], wait: Option<Duration>) {
        let manager = &self.inner.manager;
        // Where their containers run, asked before the manager forgets their tasks.
        let mut containers = Vec::new();
        for id in ids {
            if wait.is_some() {
                let found = running::list(manager, id).await.unwrap_or_default();
                for task in found
                    .iter()
                    .filter(|t| tasks::progress(t) == Progress::Running)
                {
                    let engine = task
                        .node_id
                        .as_deref()
                        .and_then(|n| self.inner.nodes.engine(n));
                    if let (Some(engine), Some(container)) = (engine, tasks::container(task)) {
                        containers.push((engine, container));
                    }
                }
            }
            tracing::info!(service = %id, "removing an earlier service of the key");
            running::remove(manager, id).await;
        }
        let Some(within) = wait else {
            return;
        };
        let deadline = Instant::now() + within;
        for (engine, container) in containers {
            while Instant::now() < deadline {
                match engine.inspect_container(&container, None).await {
                    Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    _ => break,
                }
            }
        }
    }

    /// Waits for a new service's task to run; where it runs and its endpoints. A task that
    /// ran and ended already is handed over with unreachable endpoints, so the instance layer
    /// reports its exit and output like any early exit; one that never ran is an error.
    /// `pulled`: the image reference the nodes pull themselves, if they do.
    async fn launched(
        &self,
        service: &str,
        ports: &[(String, u16)],
        pulled: Option<&str>,
    ) -> Result<(Watched, Endpoints, Option<String>), DriverError> {
        let manager = &self.inner.manager;
        let deadline = Instant::now() + LAUNCH_WITHIN;
        let mut last = String::from("no task yet");
        loop {
            let found = running::list(manager, service)
                .await
                .map_err(|e| engine("cannot list the service's tasks", e))?;
            for task in found
                .iter()
                .filter(|t| tasks::desired_running(t) || found.len() == 1)
            {
                let (Some(task_id), Some(node)) = (task.id.clone(), task.node_id.clone()) else {
                    continue;
                };
                let container = tasks::container(task);
                let watched = Watched {
                    manager: manager.clone(),
                    nodes: self.inner.nodes.clone(),
                    service: service.to_string(),
                    task: task_id,
                    node: node.clone(),
                    container: container.clone(),
                };
                match tasks::progress(task) {
                    Progress::Running => {
                        let addr = match self.inner.nodes.get(&node).and_then(|n| n.addr) {
                            Some(addr) => Some(addr),
                            None => manager
                                .inspect_node(&node)
                                .await
                                .ok()
                                .and_then(|n| tasks::node_addr(&n)),
                        };
                        let addr = addr.ok_or_else(|| {
                            DriverError::io(
                                format!("swarm node {node} reports no address"),
                                std::io::Error::other("no address"),
                            )
                        })?;
                        let endpoints = tasks::endpoints(ports, task, addr).map_err(|e| {
                            DriverError::io("service endpoints", std::io::Error::other(e))
                        })?;
                        return Ok((watched, endpoints, container));
                    }
                    Progress::Ended {
                        status: Some(_), ..
                    } => return Ok((watched, crate::docker::reach::unreachable(ports), container)),
                    Progress::Ended { why, status: None } => {
                        let name = self.inner.nodes.get(&node).map_or(node, |n| n.name);
                        if let Some(reference) = pulled.filter(|_| why.contains("No such image")) {
                            return Err(not_pulled(&name, reference, &why));
                        }
                        let hint = if why.contains("No such image") {
                            if self.inner.nodes.distributes() {
                                " (the image could not be loaded onto that node)"
                            } else {
                                ": without [swarm] nodes, every node must have the image \
                                 already or be able to pull it; list every node's Engine API \
                                 in [swarm] nodes and valet loads it there"
                            }
                        } else {
                            ""
                        };
                        return Err(DriverError::Spec(format!(
                            "swarm node {name} did not run the service: {why}{hint}"
                        )));
                    }
                    Progress::Waiting => {
                        if let Some(seen) = self.inner.nodes.get(&node).filter(|n| n.lost()) {
                            return Err(DriverError::io(
                                format!("swarm node {} was lost while the task started", seen.name),
                                std::io::Error::other(tasks::describe(task)),
                            ));
                        }
                        last = tasks::describe(task);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(DriverError::io(
                    format!("the service's task did not start within {LAUNCH_WITHIN:?}"),
                    std::io::Error::other(last),
                ));
            }
            tokio::time::sleep(LAUNCH_POLL).await;
        }
    }

    /// Follows the task's output: from its container on its node's engine when valet knows
    /// that engine, else through the manager's service logs.
    fn follow(
        &self,
        watched: &Watched,
        container: Option<String>,
        tail: &str,
        sink: LogSink,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if let (Some(engine), Some(container)) = (self.inner.nodes.engine(&watched.node), container)
        {
            return Some(logs::follow(engine, container, tail, sink));
        }
        let options = logs::following(tail);
        let frames = self
            .inner
            .manager
            .service_logs(&watched.service, Some(options));
        Some(logs::pump(frames, watched.service.clone(), sink))
    }
}

#[async_trait]
impl Driver for SwarmDriver {
    fn name(&self) -> &'static str {
        "swarm"
    }

    async fn recover(&self) -> Result<Vec<Adopted>, DriverError> {
        let adopted = recover::run(self).await?;
        recover::prebuild(self.clone());
        Ok(adopted)
    }

    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError> {
        let class = spec.id.class();
        let settings = &self.class(class)?;
        let manager = &self.inner.manager;
        let scope = &self.inner.scope;
        let ring = Arc::new(LogRing::new(spec.log_lines));
        let mut sink = LogSink::open(&spec.log_path, ring.clone()).await;
        let (image, image_id, mut avoid) = self.image(class, settings, &mut sink, phase).await?;
        avoid.extend(self.inner.nodes.lost());
        avoid.sort();
        avoid.dedup();
        let config_hash = settings.config_hash(&image_id);
        let names = service_names(scope, &spec.id);
        // The key's volume (and its record) keep the first name whatever the service's.
        let volume_name = &names[0];
        // A successor of an adopted stale service starts beside it under the other name; a
        // class with a volume never has one (recovery removed its stale service: two copies
        // must not share the volume).
        let beside = match settings.volume {
            Some(_) => None,
            None => self.take_stale(&spec.id),
        };
        let name = match &beside {
            Some(stale) if stale.name == names[0] => names[1].clone(),
            _ => names[0].clone(),
        };
        let pinned = match settings.volume {
            Some(_) => volume::pinned(manager, volume_name).await?,
            None => None,
        };
        let service = Service {
            plan: Plan {
                spec,
                settings,
                scope,
                image: &image,
                config_hash: &config_hash,
                network: None,
            },
            name: &name,
            owner: self.owner(),
            pinned: pinned.as_deref(),
            avoid: &avoid,
        };
        let body = service.spec()?;
        // A service of these names is a leftover (one that ended, or a fenced owner's copy):
        // the caller holds the key (its lease, in cluster mode), so it is not serving. Only
        // the stale service a successor is started beside serves, until the instance layer
        // stops it.
        let settle = settings
            .volume
            .as_ref()
            .map(|_| settings.stop_timeout + Duration::from_secs(5));
        let keep = beside.as_ref().map(|s| s.id.as_str());
        if let Some(stale) = &beside {
            tracing::info!(instance = %spec.id, stale = %stale.id, %name, "starting a successor beside the stale service");
        }
        self.remove_named(&names, keep, settle).await?;
        // Without [swarm] nodes a node pulls an image reference itself: the service carries
        // the credentials valet pulls with (X-Registry-Auth, as `docker service create
        // --with-registry-auth`), read again at each create like a pull's.
        let pulled = (image != image_id).then_some(image.as_str());
        let auth = match pulled {
            Some(reference) if settings.pull != valet_config::PullPolicy::Never => {
                node_credentials(&self.inner.images.registries, reference).await?
            }
            _ => None,
        };
        let created = match manager.create_service(body.clone(), auth.clone()).await {
            Err(e) if conflict(&e) => {
                // Created meanwhile by a start this replica no longer knows of (one that was
                // cancelled): the key is ours, so it goes.
                self.remove_named(&names, keep, settle).await?;
                manager.create_service(body, auth).await
            }
            other => other,
        };
        let created =
            created.map_err(|e| engine(format!("class `{class}`: cannot create service"), e))?;
        let Some(id) = created.id else {
            return Err(DriverError::Spec(
                "the manager returned no service ID".into(),
            ));
        };
        let (watched, endpoints, container) = match self.launched(&id, &spec.ports, pulled).await {
            Ok(launched) => launched,
            Err(e) => {
                running::remove(manager, &id).await;
                return Err(e);
            }
        };
        if settings.volume.is_some() && pinned.is_none() {
            volume::pin(manager, scope, &spec.id, volume_name, &watched.node).await?;
        }
        let node = self
            .inner
            .nodes
            .get(&watched.node)
            .map_or(watched.node.clone(), |n| n.name);
        tracing::info!(instance = %spec.id, service = %id, %name, %node, %image, "service started");
        let pump = self.follow(&watched, container, "all", sink);
        Ok(Box::new(SwarmInstance::watch(
            watched, endpoints, ring, pump,
        )))
    }

    async fn destroy(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let name = service_name(&self.inner.scope, &spec.id);
        volume::destroy(&self.inner.manager, &self.inner.nodes, &name).await?;
        remove_data_dir(spec).await
    }
}

impl SwarmDriver {
    /// The stale service recovery adopted for this key, if its successor is not started yet.
    fn take_stale(&self, id: &InstanceId) -> Option<Stale> {
        let mut stale = self.inner.stale.lock().unwrap_or_else(|e| e.into_inner());
        stale.remove(id)
    }

    fn instance_of(&self, labels: &HashMap<String, String>) -> Option<InstanceId> {
        use crate::docker::names;
        let class = labels.get(names::CLASS)?;
        let key = names::unescape_key(labels.get(names::KEY)?)?;
        valet_core::validate_key(&key).ok()?;
        Some(InstanceId::new(class.as_str(), key))
    }
}

/// The credentials a service hands the node that pulls `reference`: the ones a pull on the
/// manager uses. The manager keeps them in the swarm's store for that node's pull (`service
/// inspect` does not show them); valet never logs them.
async fn node_credentials(
    registries: &[valet_config::RegistryConfig],
    reference: &str,
) -> Result<Option<bollard::auth::DockerCredentials>, DriverError> {
    use crate::docker::registry::{credentials, Reference};
    let registry = Reference::parse(reference).registry;
    match credentials(registries, &registry).await {
        Ok(Some((found, from))) => {
            tracing::debug!(image = reference, %registry, credentials = from, "the service carries the registry's credentials");
            Ok(Some(found))
        }
        Ok(None) => Ok(None),
        Err(no) => Err(DriverError::Image {
            message: format!("cannot hand swarm nodes credentials for image `{reference}`: {no}"),
            retryable: false,
        }),
    }
}

/// A node rejected the task for want of the image it was to pull itself: the engine only
/// logs the pull's own error there, so the message says what the pull depends on.
fn not_pulled(node: &str, reference: &str, why: &str) -> DriverError {
    let registry = crate::docker::registry::Reference::parse(reference).registry;
    tracing::warn!(%node, image = reference, %registry, error = why, "a swarm node could not pull the image");
    DriverError::Image {
        message: format!(
            "a swarm node could not pull image `{reference}` from {registry} ({why}): the node \
             pulls with the credentials valet has for {registry} ([[registries]], else the \
             Docker config), handed on with the service; check them, that every node reaches \
             the registry, and that a plain-HTTP registry outside 127.0.0.0/8 is in every \
             node's insecure-registries"
        ),
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str, dir: &str) -> Config {
        valet_config::parse_str(text, Path::new("valet.toml"), Path::new(dir))
            .expect("test config is valid")
    }

    #[test]
    fn replicas_of_one_cluster_share_a_scope_whatever_their_folders_and_credentials() {
        let replica = |user: &str, node: &str| {
            format!(
                "[server]\ndriver = \"swarm\"\nstore = \"postgres://{user}@db:5432/valet?sslmode=disable\"\n\
                 [cluster]\nnode = \"{node}\"\nlisten = \"10.0.0.1:8789\"\n\
                 secret = \"{}\"\n",
                "s".repeat(32)
            )
        };
        let a = config(&replica("valet:pw1", "gw-a"), "/srv/a");
        let b = config(&replica("other:pw2", "gw-b"), "/srv/b");
        assert_eq!(scope_of(&a), scope_of(&b));
        assert_eq!(scope_of(&a).len(), 12);
        let elsewhere = config(
            &replica("valet:pw1", "gw-a").replace("db:5432/valet", "db:5432/other"),
            "/srv/a",
        );
        assert_ne!(scope_of(&a), scope_of(&elsewhere), "another cluster");
        // One valet alone: its data folder, as for Docker.
        let alone = config("[server]\ndriver = \"swarm\"\n", "/srv/a");
        let other = config("[server]\ndriver = \"swarm\"\n", "/srv/b");
        assert_ne!(scope_of(&alone), scope_of(&other));
    }

    #[test]
    fn a_node_that_could_not_pull_names_image_and_registry_to_clients() {
        let reference = "10.0.0.2:5000/team/app:v1";
        let error = not_pulled("vm", reference, "task rejected: No such image: x");
        let told = error.public_reason().expect("told to the waiting requests");
        assert!(
            told.contains(&format!("image `{reference}` from 10.0.0.2:5000")),
            "{told}"
        );
        assert!(told.contains("credentials"), "{told}");
        assert!(!error.retryable());
    }

    #[tokio::test]
    async fn a_registry_whose_password_is_unknown_fails_the_start_naming_its_secret() {
        let toml = "[server]\ndriver = \"swarm\"\n\n[[registries]]\nhost = \"10.0.0.2:5000\"\n\
                    username = \"ci\"\npassword_secret = \"VALET_UNIT_NEVER_SET_PASSWORD\"\n";
        let config = config(toml, "/srv/a");
        let error = node_credentials(&config.registries, "10.0.0.2:5000/team/app:v1")
            .await
            .expect_err("no password to hand on");
        let told = error.public_reason().expect("told to the waiting requests");
        assert!(told.contains("VALET_UNIT_NEVER_SET_PASSWORD"), "{told}");
        assert!(told.contains("10.0.0.2:5000/team/app:v1"), "{told}");
    }
}
