//! The Kubernetes driver: every instance is a Pod (restartPolicy Never: valet restarts with its
//! own backoff), reached at its Pod IP. No Service: valet already picks the one Pod of a key,
//! and a Service would add a virtual IP, kube-proxy rules and their sync delay to every cold
//! start, for nothing valet needs.
//!
//! - [`spec`] turns a spec into a Pod, its Secret, a key's claim, the egress policy;
//! - [`pods`] watches this valet's Pods and reads their state;
//! - [`running`] is the handle the instance layer holds;
//! - [`recover`] adopts this valet's Pods after a restart.
//!
//! Images: an image reference is pulled by the kubelet; a Dockerfile is built with the Docker
//! driver's image module on `[kubernetes] image_engine` (the node's engine) and run with
//! `imagePullPolicy: Never`.

mod pods;
mod project;
mod recover;
mod running;
pub mod spec;

use crate::docker::image::{ImageSource, Images};
use crate::docker::logs::LogSink;
use crate::docker::settings::{self, ClassSettings};
use crate::driver::{
    remove_data_dir, Adopted, Driver, DriverError, Endpoints, InstanceSpec, PhaseSink, Running,
};
use crate::logs::LogRing;
use async_trait::async_trait;
use bollard::Docker;
use k8s_openapi::api::core::v1::{
    LocalObjectReference, Namespace, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use pods::{Snapshot, State};
use running::KubePod;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use valet_config::{Config, PullPolicy};

/// The longest a created Pod may take to run its container when nothing says it is stuck:
/// scheduling, a pull by the kubelet, the volume's attach.
const LAUNCH_WITHIN: Duration = Duration::from_secs(120);
/// A claim nobody provisions (no StorageClass, no PersistentVolume) stays Pending for ever;
/// this long after the Pod's creation that is told to the waiting clients.
const CLAIM_PATIENCE: Duration = Duration::from_secs(3);

fn api_error(context: impl Into<String>, e: kube::Error) -> DriverError {
    DriverError::io(context, std::io::Error::other(e))
}

/// Runs instances as Pods. Cheap to clone.
#[derive(Clone)]
pub struct KubernetesDriver {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    namespace: String,
    node: Option<String>,
    scope: String,
    owner: Option<String>,
    classes: HashMap<String, ClassSettings>,
    /// Names of each class's secrets, which go to a Secret.
    secrets: HashMap<String, HashSet<String>>,
    /// Builds Dockerfile classes on `image_engine`.
    images: Option<Images>,
    watch: watch::Receiver<Snapshot>,
    data_dir: std::path::PathBuf,
    /// Deployed projects' version classes, and where their images are built.
    projects: project::Projects,
    /// `[[registries]]`: logins for class images' registries.
    registries: Vec<valet_config::RegistryConfig>,
    /// UIDs of the Pods this replica holds a handle of (started or adopted): any other Pod
    /// of a key this replica starts is a leftover (see [`KubernetesDriver::clear_key`]).
    held: running::Held,
}

impl KubernetesDriver {
    /// Reads the credentials (`[kubernetes] kubeconfig`, else in-cluster, else `KUBECONFIG`
    /// or `~/.kube/config`), asks the apiserver its version, makes the namespace when it is
    /// missing and starts the Pod watch.
    pub async fn connect(config: &Config) -> Result<Self, DriverError> {
        let kube = config.kubernetes.clone().unwrap_or_default();
        let (client_config, credentials) = match kube.kubeconfig_path(&config.base_dir) {
            Some(path) => {
                let file = Kubeconfig::read_from(&path).map_err(|e| {
                    DriverError::Spec(format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                let loaded =
                    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                        .await
                        .map_err(|e| {
                            DriverError::Spec(format!("kubeconfig {}: {e}", path.display()))
                        })?;
                (loaded, format!("kubeconfig {}", path.display()))
            }
            // In a Pod (the kubelet sets KUBERNETES_SERVICE_HOST in every container): its
            // ServiceAccount, whatever kubeconfig the image carries. kube's own inference
            // would try a kubeconfig first.
            None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                let loaded = kube::Config::incluster().map_err(|e| {
                    DriverError::Spec(format!(
                        "in-cluster credentials (KUBERNETES_SERVICE_HOST is set): {e}"
                    ))
                })?;
                (loaded, "in-cluster ServiceAccount".to_string())
            }
            None => {
                let loaded = kube::Config::infer()
                    .await
                    .map_err(|e| DriverError::Spec(format!("kubernetes credentials: {e}")))?;
                (loaded, "KUBECONFIG or ~/.kube/config".to_string())
            }
        };
        let server = client_config.cluster_url.to_string();
        let client = Client::try_from(client_config)
            .map_err(|e| api_error(format!("cannot make a client for {server}"), e))?;
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| api_error(format!("cannot reach the apiserver at {server}"), e))?;
        ensure_namespace(&client, &kube.namespace).await?;
        let scope = crate::swarm::scope_of(config);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &kube.namespace);
        let watch = pods::spawn(pods, spec::scope_selector(&scope));
        let images = match &kube.image_engine {
            Some(address) => Some(Images::new(
                connect_engine(address).await?,
                config.registries.clone(),
                config.server.timeouts.pull.get(),
            )),
            None => None,
        };
        let projects = project::Projects::connect(config, images.as_ref(), &scope).await?;
        let data_dir = config.data_dir();
        tokio::fs::create_dir_all(&data_dir)
            .await
            .map_err(|e| DriverError::io(format!("cannot create {}", data_dir.display()), e))?;
        tracing::info!(
            %server,
            %credentials,
            version = %version.git_version,
            namespace = %kube.namespace,
            node = kube.node.as_deref().unwrap_or("(scheduler)"),
            %scope,
            "kubernetes driver connected"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                // No engine caps CPU here: the scheduler refuses what no node has.
                classes: settings::all(config, u32::MAX),
                secrets: (config.containers.iter())
                    .map(|c| (c.class_name.clone(), c.secrets.iter().cloned().collect()))
                    .collect(),
                owner: config.cluster.as_ref().map(|c| c.node.clone()),
                namespace: kube.namespace,
                node: kube.node,
                client,
                scope,
                images,
                watch,
                data_dir,
                projects,
                held: running::Held::default(),
                registries: config.registries.clone(),
            }),
        })
    }

    /// The label value that marks this valet's Pods.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.inner.client.clone(), &self.inner.namespace)
    }

    fn class(&self, name: &str) -> Result<ClassSettings, DriverError> {
        (self.inner.classes.get(name).cloned())
            .or_else(|| self.inner.projects.classes.get(name))
            .ok_or_else(|| DriverError::Spec(format!("class `{name}` is not in the config")))
    }

    /// What the Pod runs, its pull policy, and what the config hash names: a Dockerfile is
    /// built on the node's engine (by the hash tag, never pulled), a reference goes to the
    /// kubelet as it is.
    async fn image(
        &self,
        class: &str,
        settings: &ClassSettings,
        sink: &mut LogSink,
        phase: PhaseSink<'_>,
    ) -> Result<(String, &'static str, String), DriverError> {
        match (&settings.image, &self.inner.images) {
            (ImageSource::Reference(reference), _) => {
                let pull = match settings.pull {
                    PullPolicy::Always => "Always",
                    PullPolicy::Never => "Never",
                    _ => "IfNotPresent",
                };
                Ok((reference.clone(), pull, reference.clone()))
            }
            (ImageSource::Dockerfile { .. }, Some(images)) => {
                let resolved = images.resolve(class, settings).await?;
                let tag = resolved.reference.clone();
                let id = images
                    .ensure(class, settings, resolved, sink, phase)
                    .await?;
                Ok((tag, "Never", id))
            }
            (ImageSource::Dockerfile { .. }, None) => Err(DriverError::Spec(format!(
                "class `{class}` is a Dockerfile: set [kubernetes] image_engine to build it"
            ))),
        }
    }

    /// The claim of a key with a volume, made when missing.
    async fn ensure_claim(&self, spec: &InstanceSpec) -> Result<String, DriverError> {
        let claims: Api<PersistentVolumeClaim> = self.api();
        let claim = spec::claim(&self.inner.scope, &spec.id, self.inner.owner.as_deref());
        let name = claim.metadata.name.clone().unwrap_or_default();
        match claims.create(&PostParams::default(), &claim).await {
            Ok(_) => tracing::info!(claim = %name, "persistent volume claim created"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_error(format!("cannot create claim {name}"), e)),
        }
        Ok(name)
    }

    /// The egress policy of `enable_internet = false`, made when missing.
    async fn ensure_policy(&self) -> Result<(), DriverError> {
        let policies: Api<NetworkPolicy> = self.api();
        match policies
            .create(&PostParams::default(), &spec::no_egress(&self.inner.scope))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_error("cannot create the egress NetworkPolicy", e)),
        }
    }

    /// Waits on the watch for a new Pod to run; its endpoints. A Pod whose container ran and
    /// ended already is handed over with unreachable endpoints, so the instance layer reports
    /// its exit like any early exit; one that cannot start says why.
    async fn launched(
        &self,
        name: &str,
        uid: &str,
        ports: &[(String, u16)],
        claim: Option<&str>,
    ) -> Result<Endpoints, DriverError> {
        let created = Instant::now();
        let deadline = created + LAUNCH_WITHIN;
        let mut watch = self.inner.watch.clone();
        let mut last = String::from("not seen yet");
        let mut seen = false;
        let mut claim_checked = false;
        loop {
            let state = {
                let snapshot = watch.borrow_and_update();
                match snapshot.get(name, uid) {
                    Some(pod) => {
                        seen = true;
                        Some(pods::state(pod))
                    }
                    None if seen => {
                        Some(State::Stuck("the Pod was deleted while it started".into()))
                    }
                    None => None,
                }
            };
            match state {
                Some(State::Running { ip }) => {
                    let ports = ports
                        .iter()
                        .map(|(n, p)| (n.clone(), SocketAddr::new(ip, *p)))
                        .collect();
                    return Ok(Endpoints { ports });
                }
                Some(State::Ended(..)) => return Ok(crate::docker::reach::unreachable(ports)),
                Some(State::NoImage(why)) => {
                    return Err(DriverError::Image {
                        message: format!("Pod {name}: {why}"),
                        retryable: false,
                    })
                }
                Some(State::Stuck(why)) => {
                    return Err(DriverError::Stuck {
                        message: format!("Pod {name}: {why}"),
                    })
                }
                Some(State::Waiting(why)) => last = why,
                None => {}
            }
            let now = Instant::now();
            if let (Some(claim), false) = (claim, claim_checked) {
                if now >= created + CLAIM_PATIENCE {
                    claim_checked = true;
                    if let Some(why) = self.unbound(claim).await {
                        return Err(DriverError::Stuck {
                            message: format!("Pod {name} waits for its volume: {why}"),
                        });
                    }
                }
            }
            if now >= deadline {
                return Err(DriverError::io(
                    format!("Pod {name} did not run within {LAUNCH_WITHIN:?}"),
                    std::io::Error::other(last),
                ));
            }
            let wake = if claim.is_some() && !claim_checked {
                (created + CLAIM_PATIENCE).min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                changed = watch.changed() => if changed.is_err() {
                    return Err(DriverError::Spec("the kubernetes pod watch ended".into()));
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// Deletes the key's Pods this replica holds no handle of, with their Secrets, before it
    /// makes one: the caller holds the key (its lease, in cluster mode), so such a Pod is a
    /// dead or fenced replica's (or a cancelled start's) and serves nobody any more; left
    /// running, it would be a second copy of the key. Pods are named per start, so nothing
    /// else would remove it. The stale Pod a successor starts beside is held, and stays. With
    /// a volume, waits (bounded) for their containers to stop: the new Pod mounts the same
    /// claim. The apiserver is asked, not the watch, which may lag a Pod made just now.
    async fn clear_key(&self, spec: &InstanceSpec, volume: bool) -> Result<(), DriverError> {
        let labels = spec::labels(&self.inner.scope, &spec.id, None);
        let selector = format!(
            "{},{}={},{}={}",
            spec::scope_selector(&self.inner.scope),
            spec::CLASS,
            labels[spec::CLASS],
            spec::KEY,
            labels[spec::KEY]
        );
        let pods: Api<Pod> = self.api();
        let found = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api_error(format!("cannot list the Pods of {}", spec.id), e))?;
        let secrets: Api<Secret> = self.api();
        let mut gone = Vec::new();
        for pod in found.items {
            let meta = &pod.metadata;
            let (Some(name), Some(uid)) = (meta.name.clone(), meta.uid.clone()) else {
                continue;
            };
            if spec::instance_of(meta).as_ref() != Some(&spec.id) || self.inner.held.has(&uid) {
                continue;
            }
            if meta.deletion_timestamp.is_none() {
                let owner = (meta.labels.as_ref())
                    .and_then(|l| l.get(spec::OWNER).cloned())
                    .unwrap_or_default();
                tracing::info!(instance = %spec.id, pod = %name, %owner, "deleting a pod of the key that this replica does not hold");
                running::delete(&pods, &name, &uid, Duration::ZERO).await;
                running::delete_secret(&secrets, &name).await;
            }
            gone.push((name, uid));
        }
        if volume && !gone.is_empty() {
            let mut watch = self.inner.watch.clone();
            let stopped = async {
                loop {
                    let running = {
                        let snapshot = watch.borrow_and_update();
                        gone.iter()
                            .any(|(name, uid)| match snapshot.get(name, uid) {
                                Some(pod) => !matches!(pods::state(pod), State::Ended(..)),
                                None => !snapshot.synced,
                            })
                    };
                    if !running || watch.changed().await.is_err() {
                        return;
                    }
                }
            };
            if tokio::time::timeout(running::STOPPED_WITHIN, stopped)
                .await
                .is_err()
            {
                tracing::warn!(instance = %spec.id, "a leftover pod of the key not seen stopped in time");
            }
        }
        Ok(())
    }

    /// The pull Secret of a class image from a registry valet has a login for
    /// (`[[registries]]`, else the Docker config, as the Docker driver pulls): the kubelet
    /// pulls with that login, kept in a `kubernetes.io/dockerconfigjson` Secret per registry.
    /// `None`: an anonymous pull (or none: the node's own image, `pull = "never"`).
    async fn class_pull_secret(
        &self,
        settings: &ClassSettings,
        pull: &str,
    ) -> Result<Option<String>, DriverError> {
        let ImageSource::Reference(reference) = &settings.image else {
            return Ok(None);
        };
        if pull == "Never" {
            return Ok(None);
        }
        let host = crate::docker::registry::Reference::parse(reference).registry;
        let found = crate::docker::registry::credentials(&self.inner.registries, &host)
            .await
            .map_err(|no| DriverError::Spec(no.to_string()))?;
        let Some((credentials, _)) = found else {
            return Ok(None);
        };
        let (Some(username), Some(password)) = (credentials.username, credentials.password) else {
            return Ok(None);
        };
        let name = spec::pull_secret_name(&self.inner.scope, &host);
        self.pull_secret(&name, &host, &username, &password).await?;
        Ok(Some(name))
    }

    /// Why a claim is not bound and nobody will bind it, if so.
    async fn unbound(&self, claim: &str) -> Option<String> {
        let claims: Api<PersistentVolumeClaim> = self.api();
        let found = claims.get_opt(claim).await.ok()??;
        unbound_reason(&found)
    }
}

/// A claim that is not Bound, names no StorageClass and that no provisioner took: in a
/// cluster without a default StorageClass nothing will ever bind it. A claim with a class
/// may be waiting for its provisioner or for the Pod's node (`WaitForFirstConsumer`).
fn unbound_reason(claim: &PersistentVolumeClaim) -> Option<String> {
    let name = claim.metadata.name.as_deref().unwrap_or("?");
    let phase = (claim.status.as_ref())
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    if phase == "Bound" {
        return None;
    }
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone());
    let provisioner = (claim.metadata.annotations.as_ref())
        .is_some_and(|a| a.keys().any(|k| k.ends_with("storage-provisioner")));
    (class.is_none() && !provisioner).then(|| {
        format!(
            "PersistentVolumeClaim {name} is {phase}: no StorageClass provisions it and no \
             PersistentVolume is bound to it (give the cluster a default StorageClass)"
        )
    })
}

/// A client of a node's Docker Engine (`unix://`, `tcp://` or `http://`).
async fn connect_engine(address: &str) -> Result<Docker, DriverError> {
    let version = bollard::API_DEFAULT_VERSION;
    let docker = match address.strip_prefix("tcp://") {
        Some(rest) => Docker::connect_with_http(&format!("http://{rest}"), 120, version),
        None if address.starts_with("http://") => Docker::connect_with_http(address, 120, version),
        None => Docker::connect_with_unix(address, 120, version),
    };
    let unreachable = |e: bollard::errors::Error| {
        DriverError::io(
            format!("cannot reach [kubernetes] image_engine at {address}"),
            std::io::Error::other(e),
        )
    };
    docker
        .map_err(unreachable)?
        .negotiate_version()
        .await
        .map_err(unreachable)
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<(), DriverError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let found = namespaces.get_opt(name).await;
    match found {
        Ok(Some(_)) => return Ok(()),
        // Allowed to work in the namespace but not to read it (a Role, not a ClusterRole):
        // it exists, or the first create tells.
        Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
        Err(e) => return Err(api_error(format!("cannot read namespace {name}"), e)),
        Ok(None) => {}
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {
            tracing::info!(namespace = name, "namespace created");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(api_error(format!("cannot create namespace {name}"), e)),
    }
}

#[async_trait]
impl Driver for KubernetesDriver {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn recover(&self) -> Result<Vec<Adopted>, DriverError> {
        recover::run(self).await
    }

    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError> {
        let class = spec.id.class();
        let settings = &self.class(class)?;
        let scope = &self.inner.scope;
        let ring = Arc::new(LogRing::new(spec.log_lines));
        let mut sink = LogSink::open(&spec.log_path, ring.clone()).await;
        let (image, pull, image_id) = self.image(class, settings, &mut sink, phase).await?;
        let config_hash = settings.config_hash(&image_id);
        let claim = match settings.volume {
            Some(_) => Some(self.ensure_claim(spec).await?),
            None => None,
        };
        if !settings.internet {
            self.ensure_policy().await?;
        }
        self.clear_key(spec, settings.volume.is_some()).await?;
        let name = spec::pod_name(scope, &spec.id);
        // A deployed version's secrets are its project's (registered with its class).
        let project_secrets = self.inner.projects.secret_names(class);
        let plan = spec::PodPlan {
            spec,
            settings,
            scope,
            owner: self.inner.owner.as_deref(),
            node: self.inner.node.as_deref(),
            image: &image,
            pull,
            config_hash: &config_hash,
            secrets: self.inner.secrets.get(class).unwrap_or(&project_secrets),
            name: &name,
        };
        let mut pod = plan.pod()?;
        self.inner.projects.pull_with(class, &mut pod);
        if settings.project.is_none() {
            if let Some(secret) = self.class_pull_secret(settings, pull).await? {
                let spec = pod.spec.get_or_insert_with(Default::default);
                spec.image_pull_secrets = Some(vec![LocalObjectReference { name: secret }]);
            }
        }
        let secrets: Api<Secret> = self.api();
        let secret = plan.secret();
        if let Some(secret) = &secret {
            secrets
                .create(&PostParams::default(), secret)
                .await
                .map_err(|e| api_error(format!("class `{class}`: cannot create Secret"), e))?;
        }
        let pods: Api<Pod> = self.api();
        let created = match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => created,
            Err(e) => {
                running::delete_secret(&secrets, &name).await;
                return Err(api_error(format!("class `{class}`: cannot create Pod"), e));
            }
        };
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let mut handle = KubePod {
            _held: self.inner.held.hold(&uid),
            pods: pods.clone(),
            secrets,
            name: name.clone(),
            uid: uid.clone(),
            has_secret: secret.is_some(),
            watch: self.inner.watch.clone(),
            endpoints: Endpoints::default(),
            ring,
            pump: None,
            stopped: false,
            wait_stopped: settings.volume.is_some(),
        };
        // A start that fails deletes its Pod and Secret before it returns: valet may be on its
        // way out, and a delete spawned from `Drop` would not be sent then. (A start that is
        // cancelled has only `Drop`; the next valet's recovery deletes what is left.)
        match self
            .launched(&name, &uid, &spec.ports, claim.as_deref())
            .await
        {
            Ok(endpoints) => handle.endpoints = endpoints,
            Err(e) => {
                handle.stopped = true;
                running::delete(&handle.pods, &name, &uid, Duration::ZERO).await;
                if handle.has_secret {
                    running::delete_secret(&handle.secrets, &name).await;
                }
                return Err(e);
            }
        }
        tracing::info!(instance = %spec.id, pod = %name, %image, "pod started");
        handle.pump = Some(running::follow(&handle, sink));
        Ok(Box::new(handle))
    }

    async fn destroy(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        let claims: Api<PersistentVolumeClaim> = self.api();
        let name = spec::claim_name(&self.inner.scope, &spec.id);
        match claims.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(claim = %name, "persistent volume claim deleted"),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(api_error(format!("cannot delete claim {name}"), e)),
        }
        remove_data_dir(spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(value: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(value).expect("a claim")
    }

    #[test]
    fn a_claim_nobody_will_bind_is_told_and_one_on_its_way_is_not() {
        let orphan = claim(serde_json::json!({"metadata": {"name": "c1"}, "spec": {},
            "status": {"phase": "Pending"}}));
        let why = unbound_reason(&orphan).expect("told");
        assert!(why.contains("PersistentVolumeClaim c1 is Pending"), "{why}");
        let provisioned = claim(serde_json::json!({"metadata": {"name": "c2"},
            "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}));
        assert_eq!(
            unbound_reason(&provisioned),
            None,
            "its provisioner may still come"
        );
        let taken = claim(serde_json::json!({"metadata": {"name": "c3", "annotations":
            {"volume.beta.kubernetes.io/storage-provisioner": "x"}}, "spec": {},
            "status": {"phase": "Pending"}}));
        assert_eq!(unbound_reason(&taken), None);
        let bound = claim(serde_json::json!({"metadata": {"name": "c4"}, "spec": {},
            "status": {"phase": "Bound"}}));
        assert_eq!(unbound_reason(&bound), None);
    }
}
