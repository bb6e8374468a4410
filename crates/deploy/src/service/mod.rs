//! The deployer: one upload becomes a version, which takes traffic only once it is ready.
//!
//! Order of a deploy, chosen so that a failure at any step leaves the project as it was:
//! unpack into `deploy/staging/<build>`, prepare the runtime (cache), move to
//! `deploy/builds/<build>`, start the version's class and wait for readiness, write the records
//! in one transaction, and only then point the project's route at it and retire the old
//! version. A failure before the commit removes the build folder and stops its instance.
//!
//! This module is the orchestration; `versions.rs` keeps which classes are live and switches
//! and retires them, `secrets.rs` the secrets, and `crate::package` what differs per engine.

mod secrets;
pub use secrets::check_secret_key;
mod sync;
mod versions;

use sync::{lock_map, made_of};
use versions::Live;

use crate::node;
use crate::package::{App, Packager, Prepared, Runtime, Version};
use crate::progress::Progress;
use crate::python;
use crate::unpack::{project_root, unpack};
use crate::upload::{check_name, default_name, FileKind, Upload};
use crate::DeployError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use valet_config::{Config, ContainerClass, DurationValue};
use valet_core::InstanceId;
use valet_instances::{ClassRuntime, Instances, ProjectRef};
use valet_runtime::logfile;
use valet_store::{random_hex, Deployment, NewDeployment, Project, Store, StoredUpload};

/// Every project has one instance, under this key of its version's class.
const KEY: &str = "main";
/// The gateway route projects are served by (the gateway's `PROJECTS_PATTERN`); the
/// `route` label of a project's request series.
const PROJECTS_ROUTE: &str = "/containers/*";
/// The port an app listens on inside a container (the seed's 8000); the process driver
/// picks a free one and passes it as `PORT`.
const APP_PORT: u16 = 8000;
/// Idle time before a project's instance sleeps (the seed's 10 minutes).
const SLEEP_AFTER: &str = "10m";
/// How long a new version may take to accept connections.
const READY_WITHIN: &str = "60s";
/// How long a retired version may finish its requests before it is stopped.
const RETIRE_GRACE: Duration = Duration::from_secs(30);

/// Runs deploys, rollbacks and deletes; cheap to share behind an `Arc`.
pub struct Deployer {
    store: Store,
    instances: Instances,
    config: Arc<Config>,
    /// `<data_dir>/deploy`.
    root: PathBuf,
    public_url: String,
    /// One deploy at a time per project (or per new name).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Seals and opens project secrets.
    secrets: crate::SecretBox,
    /// Makes every class name unique: a version started again (rollback to the current one,
    /// new secrets) gets a class of its own, so the one it replaces can be retired.
    generation: std::sync::atomic::AtomicU64,
    /// How a version becomes runnable on the engine valet runs on.
    packager: Arc<dyn Packager>,
    /// Classes started per project and not yet stopped (the current version, and old ones
    /// still finishing their requests), so a delete stops every one of them.
    live: Arc<Live>,
    /// Each project's identity and metrics, shared by its versions (see `project_ref`).
    refs: Mutex<HashMap<String, Arc<ProjectRef>>>,
    /// Cluster mode: other replicas serve the same projects, so uploads are kept in the
    /// store and every change is followed (see `sync.rs`).
    shared: bool,
    /// What each version's class was made of (its build and its secrets, hashed), by class
    /// name: a replica told of a change compares it with the class it routes.
    made_of: Arc<Mutex<HashMap<Arc<str>, String>>>,
    /// Builds this replica has (or may have) on disk, per project: a project deleted on
    /// another replica has no records left to say which they were.
    builds: Mutex<HashMap<String, std::collections::HashSet<String>>>,
}

/// A version that went live.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The project after the deploy.
    pub project: Project,
    /// The new version.
    pub deployment: Deployment,
    /// `<public_url>/containers/<id>/`.
    pub endpoint: String,
    /// Whether its requirement set was already installed.
    pub reused_cache: bool,
}

impl Deployer {
    /// A deployer storing builds under `<data_dir>/deploy`; reads (or makes) the secret key.
    /// `packager` must be the one for `instances`' driver.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        instances: Instances,
        packager: Arc<dyn Packager>,
    ) -> Result<Self, DeployError> {
        let secrets =
            crate::SecretBox::load_or_create(&crate::SecretBox::key_path(&config.data_dir()))?;
        let root = crate::package::deploy_root(&config);
        let public_url = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        Ok(Self {
            secrets,
            packager,
            live: Arc::default(),
            refs: Mutex::default(),
            root,
            store,
            instances,
            config,
            public_url: public_url.trim_end_matches('/').to_string(),
            locks: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            shared: false,
            made_of: Arc::default(),
            builds: Mutex::default(),
        })
    }

    /// Cluster mode: every replica serves every project. Each version's upload is kept in the
    /// store (with its records, in one transaction), and a version another replica owns the
    /// lease of is tried here before it is recorded. Call [`Deployer::follow`] with each
    /// change the store announces.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// The store behind the deploy API.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A project's URL.
    pub fn endpoint(&self, id: &str) -> String {
        format!("{}/containers/{id}/", self.public_url)
    }

    /// At start: removes half-made builds of a valet that was killed mid-deploy and routes
    /// every project to its current version (which sleeps until its first request).
    pub async fn restore(&self) -> Result<usize, DeployError> {
        let _ = tokio::fs::remove_dir_all(self.root.join("staging")).await;
        let mut routed = 0;
        for project in self.store.projects(None).await? {
            // A change announced meanwhile (cluster mode) waits for this project's route.
            let lock = self.lock(&project.id);
            let _held = lock.lock().await;
            if self.shared {
                // Its builds may be here even if this replica did not make them: a delete
                // announced later must find them.
                for d in self.store.deployments(&project.id).await? {
                    self.note_build(&project.id, &d.build);
                }
            }
            if self.instances.project(&project.id).is_some() {
                continue;
            }
            let Some(deployment) = self
                .store
                .deployment(&project.id, project.current_version)
                .await?
            else {
                continue;
            };
            match self.class_for(&deployment, &project.name).await {
                Ok(class) => {
                    self.instances.route_project(&project.id, class);
                    routed += 1;
                }
                // Built on another replica: built here from its kept upload, in the
                // background (an install may take minutes; the other projects serve meanwhile).
                Err(DeployError::NotFound(_)) if self.shared => {}
                Err(e) => tracing::warn!(project = %project.id, error = %e, "project not restored"),
            }
        }
        Ok(routed)
    }

    /// Deploys an upload as a new project of `owner`, or as the next version of `existing`.
    pub async fn deploy(
        &self,
        owner: &str,
        existing: Option<Project>,
        upload: Upload,
    ) -> Result<Deployed, DeployError> {
        self.deploy_reporting(owner, existing, upload, &Progress::none())
            .await
    }

    /// [`Deployer::deploy`], reporting stages and installer output to `progress`.
    pub async fn deploy_reporting(
        &self,
        owner: &str,
        existing: Option<Project>,
        upload: Upload,
        progress: &Progress,
    ) -> Result<Deployed, DeployError> {
        let kind = FileKind::of(&upload.file_name, &upload.bytes)?;
        let name = match (&existing, &upload.name) {
            (Some(p), _) => p.name.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => default_name(&upload.file_name),
        };
        check_name(&name)?;
        // A new name is locked by (owner, name) so two first uploads of one file do not both
        // make the project; under that lock the name is looked up again, since an upload that
        // held it may have made the project meanwhile. An (owner, name) that exists is a new
        // version of that project, never a second project (the store's UNIQUE would refuse it).
        let mut existing = existing;
        let _new_name = match &existing {
            Some(_) => None,
            None => {
                let lock = self.lock(&format!("new\0{owner}\0{name}"));
                let held = lock.lock_owned().await;
                existing = self.store.project_named(owner, &name).await?;
                Some(held)
            }
        };
        let project_id = existing
            .as_ref()
            .map_or_else(|| random_hex(8), |p| p.id.clone());
        // A new project's id is locked too: in cluster mode the store announces the project
        // at its commit, and this replica's own follower must wait until it is routed here.
        let _project = self.lock(&project_id).lock_owned().await;
        let build = random_hex(8);
        progress.stage("unpacking");
        let prepared = self.build(&build, kind, &upload, progress).await?;
        let (runtime, reused_cache) = (prepared.runtime, prepared.reused_cache);
        let new_project = existing.is_none();
        let (app, data) = (self.build_dir(&build), self.data_root(&project_id));
        let version = Version {
            project: &project_id,
            build: &build,
            number: 0,
            app: &app,
            data: &data,
        };
        if let Err(e) = self.packager.package(&version, &prepared, progress).await {
            return Err(self.abandon(new_project, &project_id, &build, e).await);
        }
        let command = prepared.command;
        let requirements = upload.requirements.clone().unwrap_or_default();
        let kept = self.shared.then(|| StoredUpload {
            file_name: upload.file_name.clone(),
            runtime: upload.runtime.clone(),
            requirements: upload.requirements.clone(),
            body: upload.bytes,
        });
        let deployment = Deployment {
            project_id: project_id.clone(),
            version: 0,
            build: build.clone(),
            runtime: runtime.name().into(),
            command,
            requirements,
            created_at: 0,
        };
        progress.stage("starting");
        let started = match self.env_of(&project_id).await {
            Ok(env) => self.start_version(&deployment, &name, env).await,
            Err(e) => Err(e),
        };
        let class = match started {
            Ok(class) => class,
            Err(e) => return Err(self.abandon(new_project, &project_id, &build, e).await),
        };
        let new = NewDeployment {
            project_id: project_id.clone(),
            name,
            owner: owner.to_string(),
            build: build.clone(),
            runtime: deployment.runtime.clone(),
            command: deployment.command.clone(),
            requirements: deployment.requirements.clone(),
        };
        let recorded = self.store.record_deployment_with(&new, kept.as_ref()).await;
        let (project, deployment) = match recorded {
            Ok(recorded) => recorded,
            Err(e) => {
                self.stop_for_good(&project_id, &class).await;
                return Err(self
                    .abandon(new_project, &project_id, &build, e.into())
                    .await);
            }
        };
        self.note_build(&project.id, &build);
        self.switch(&project.id, class);
        tracing::info!(project = %project.id, version = deployment.version, runtime = %deployment.runtime, "version live");
        Ok(Deployed {
            endpoint: self.endpoint(&project.id),
            project,
            deployment,
            reused_cache,
        })
    }

    /// Moves a project back (or forward) to one of its versions, once that version is ready.
    pub async fn rollback(
        &self,
        project: &Project,
        version: i64,
    ) -> Result<Deployment, DeployError> {
        let lock = self.lock(&project.id);
        let _held = lock.lock().await;
        let deployment = self
            .store
            .deployment(&project.id, version)
            .await?
            .ok_or_else(|| {
                DeployError::NotFound(format!("project {} has no version {version}", project.id))
            })?;
        // Built here from its kept upload if another replica made it (cluster mode).
        self.ensure_built(&deployment).await?;
        let env = self.env_of(&project.id).await?;
        let class = self.start_version(&deployment, &project.name, env).await?;
        if !self.store.set_current(&project.id, version).await? {
            self.stop_for_good(&project.id, &class).await;
            return Err(DeployError::NotFound(format!(
                "project {} is gone",
                project.id
            )));
        }
        self.switch(&project.id, class);
        Ok(deployment)
    }

    /// Deletes a project: its route, every running version, its records, its builds, its
    /// data and every version's log; on Docker also its images, volume and network.
    pub async fn delete(&self, project: &Project) -> Result<(), DeployError> {
        let lock = self.lock(&project.id);
        let _held = lock.lock().await;
        let deployments = self.store.deployments(&project.id).await?;
        let mut classes: Vec<Arc<ClassRuntime>> = self.untrack_all(&project.id);
        if let Some(class) = self.instances.unroute_project(&project.id) {
            classes.push(class);
        }
        for class in &classes {
            self.instances.stop(class, KEY, false).await;
        }
        self.store.delete_project(&project.id).await?;
        self.refs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&project.id);
        self.forget_made_of(&classes);
        let mut builds = self.take_builds(&project.id);
        builds.extend(deployments.into_iter().map(|d| d.build));
        for build in builds {
            self.remove_build(&project.id, &build).await;
        }
        self.packager.remove_project(&project.id).await;
        let _ = tokio::fs::remove_dir_all(self.data_root(&project.id)).await;
        self.remove_logs(&project.id).await;
        crate::tenant::remove_user(&project.id).await;
        Ok(())
    }

    /// A project's persistent folder (process driver): the parent of its `VALET_DATA_DIR`,
    /// the same for all its versions.
    fn data_root(&self, project_id: &str) -> PathBuf {
        self.root.join("data").join(project_id)
    }

    /// Removes the log folders of every version of a project, from this run or earlier ones
    /// (class names are `project-<id>-<build>-<n>`; ids are hex, so no prefix of another).
    async fn remove_logs(&self, project_id: &str) {
        let logs = logfile::root(&self.config.data_dir());
        let prefix = format!("project-{project_id}-");
        let Ok(mut entries) = tokio::fs::read_dir(&logs).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
    }

    /// The last `lines` lines of the output of a project's current version.
    pub fn logs(&self, project_id: &str, lines: usize) -> Vec<String> {
        match self.instances.project(project_id) {
            Some(class) => log_tail(&class, lines),
            None => Vec::new(),
        }
    }

    /// State of a project's instance (`stopped` when it sleeps or never ran).
    pub fn state(&self, project_id: &str) -> String {
        self.instances
            .project(project_id)
            .and_then(|class| self.instances.instance_of(&class, KEY))
            .map_or_else(|| "stopped".to_string(), |i| i.state().to_string())
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Unpacks and prepares an upload into `builds/<build>`. On failure nothing is left.
    async fn build(
        &self,
        build: &str,
        kind: FileKind,
        upload: &Upload,
        progress: &Progress,
    ) -> Result<Prepared, DeployError> {
        let staging = self.root.join("staging").join(build);
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| DeployError::io("cannot make a staging folder", e))?;
        let result = self.prepare(build, kind, upload, &staging, progress).await;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        result
    }

    async fn prepare(
        &self,
        build: &str,
        kind: FileKind,
        upload: &Upload,
        staging: &Path,
        progress: &Progress,
    ) -> Result<Prepared, DeployError> {
        let bytes = upload.bytes.clone();
        let into = staging.to_path_buf();
        tokio::task::spawn_blocking(move || unpack(kind, &bytes, &into))
            .await
            .map_err(|e| DeployError::io("unpacking stopped", std::io::Error::other(e)))??;
        let dir = project_root(staging);
        let runtime = runtime_of(upload.runtime.as_deref(), &dir)?;
        let requirements = upload.requirements.as_deref().unwrap_or("");
        let requirements = match runtime {
            Runtime::Python => {
                if !dir.join("app.py").is_file() {
                    return Err(DeployError::BadUpload(
                        "a python upload needs app.py at its top".into(),
                    ));
                }
                let mut reqs = python::parse_requirements(requirements)?;
                if let Ok(text) = std::fs::read_to_string(dir.join("requirements.txt")) {
                    reqs.extend(python::parse_requirements(&(text + "\n"))?);
                }
                reqs
            }
            Runtime::Node => node::parse_requirements(requirements)?,
        };
        let app = App {
            runtime,
            dir: &dir,
            requirements: &requirements,
        };
        let prepared = self.packager.prepare(&app, progress).await?;
        let target = self.root.join("builds").join(build);
        tokio::fs::create_dir_all(self.root.join("builds"))
            .await
            .map_err(|e| DeployError::io("cannot make the builds folder", e))?;
        tokio::fs::rename(&dir, &target)
            .await
            .map_err(|e| DeployError::io("cannot move a build into place", e))?;
        Ok(prepared)
    }

    /// Undoes a deploy that failed after its build was made: the build goes, and when the
    /// project was to be new, whatever was made for it (data folder, logs, its system user and
    /// anything that user still runs; on Docker its network and volume), so a refused first
    /// upload leaves nothing. Returns `error`.
    async fn abandon(
        &self,
        new_project: bool,
        project_id: &str,
        build: &str,
        error: DeployError,
    ) -> DeployError {
        self.remove_build(project_id, build).await;
        if new_project {
            self.packager.remove_project(project_id).await;
            let _ = tokio::fs::remove_dir_all(self.data_root(project_id)).await;
            self.remove_logs(project_id).await;
            crate::tenant::remove_user(project_id).await;
        }
        error
    }

    /// Removes a build that will not run: its folder, and what its packager made of it.
    async fn remove_build(&self, project_id: &str, build: &str) {
        let _ = tokio::fs::remove_dir_all(self.build_dir(build)).await;
        self.packager.remove_version(project_id, build).await;
    }

    /// A build's folder: the app as prepared.
    fn build_dir(&self, build: &str) -> PathBuf {
        self.root.join("builds").join(build)
    }

    /// The class that runs one version with the project's secrets as env.
    async fn class_for(
        &self,
        deployment: &Deployment,
        name: &str,
    ) -> Result<Arc<ClassRuntime>, DeployError> {
        let env = self.env_of(&deployment.project_id).await?;
        self.class_with_env(deployment, name, env).await
    }

    /// Makes a version's class and starts it, returning once it is ready. In cluster mode the
    /// project's one lease may be another replica's (it runs the current version there): the
    /// class then routes to that replica, and whether this version starts at all is not
    /// known yet. It is then started once more here under a lease of its own (a trial, which
    /// counts as the project's instance no more than the outgoing version does during a
    /// switch), and stopped when ready: a version that cannot start never takes traffic,
    /// whichever replica owns the project.
    async fn start_version(
        &self,
        deployment: &Deployment,
        name: &str,
        env: Vec<(String, String)>,
    ) -> Result<Arc<ClassRuntime>, DeployError> {
        let project = &deployment.project_id;
        let class = self.class_with_env(deployment, name, env.clone()).await?;
        self.start(project, &class).await?;
        let elsewhere = self
            .instances
            .instance_of(&class, KEY)
            .is_some_and(|inst| inst.remote().is_some());
        if !(self.shared && elsewhere) {
            return Ok(class);
        }
        let n = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tried = match self.class_leased(deployment, name, env, Some(n)).await {
            Ok(trial) => {
                tracing::info!(project = %project, "project owned by another replica: trying the new version here");
                let tried = self.start(project, &trial).await;
                if tried.is_ok() {
                    self.stop_for_good(project, &trial).await;
                }
                tried
            }
            Err(e) => Err(e),
        };
        if let Err(e) = tried {
            self.stop_for_good(project, &class).await;
            return Err(e);
        }
        Ok(class)
    }

    /// The project's shared identity and series, made on first use: every version of it
    /// counts into the same metrics, so a new version does not reset them.
    fn project_ref(&self, id: &str, name: &str) -> Arc<ProjectRef> {
        let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        refs.entry(id.to_string())
            .or_insert_with(|| Arc::new(ProjectRef::new(id, name, PROJECTS_ROUTE)))
            .clone()
    }

    /// The class that runs one version, in its build folder.
    async fn class_with_env(
        &self,
        deployment: &Deployment,
        name: &str,
        env: Vec<(String, String)>,
    ) -> Result<Arc<ClassRuntime>, DeployError> {
        self.class_leased(deployment, name, env, None).await
    }

    /// [`Self::class_with_env`]; with `trial`, a class that runs the version under a lease of
    /// its own rather than the project's.
    async fn class_leased(
        &self,
        deployment: &Deployment,
        name: &str,
        env: Vec<(String, String)>,
        trial: Option<u64>,
    ) -> Result<Arc<ClassRuntime>, DeployError> {
        let made_of = made_of(&deployment.build, &env);
        let project = &deployment.project_id;
        let (app, data) = (self.build_dir(&deployment.build), self.data_root(project));
        let version = Version {
            project,
            build: &deployment.build,
            number: deployment.version,
            app: &app,
            data: &data,
        };
        let runnable = self.packager.runnable(&version).await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut class = ContainerClass::new(&format!(
            "project-{project}-{}-{generation}",
            deployment.build
        ));
        class.command = with_root_path(&deployment.command, &root_path(project));
        class.ports = [("http".to_string(), APP_PORT)].into();
        class.sleep_after = DurationValue::new(SLEEP_AFTER);
        class.max_instances = 1;
        class.readiness.timeout = DurationValue::new(READY_WITHIN);
        class.stop_timeout = DurationValue::new("5s");
        class.image = runnable.image;
        class.volume = runnable.volume;
        let mut runtime = ClassRuntime::from_config(&self.config, &class);
        // Cluster mode: one lease per project whatever the version or the replica that built
        // it (the class name differs per build and per process).
        runtime.lease_name = format!("project:{project}").into();
        runtime.work_dir = app;
        // One data folder per project, not per version: data outlives upgrades and rollbacks.
        runtime.data_root = data;
        // Set here rather than in the class table: values never pass through a config file.
        // Their names tell an engine that keeps secrets apart (Kubernetes) which they are.
        let secret_names: Vec<String> = env.iter().map(|(name, _)| name.clone()).collect();
        runtime.env.extend(env);
        // The prefix valet strips, for an app that builds its own links (a server it starts
        // itself: `uvicorn.run(app, root_path=os.environ["VALET_ROOT_PATH"])`).
        runtime
            .env
            .push(("VALET_ROOT_PATH".into(), root_path(project)));
        runtime.user = runnable.user;
        runtime.serve_project(self.project_ref(project, name));
        // Its one key, as a `name:` rule's: `valet logs PROJECT` needs no key.
        runtime.fixed_keys = vec![KEY.to_string()];
        if let Some(trial) = trial {
            // Its own lease, which nobody else holds: see `start_version`.
            runtime.lease_name = format!("project:{project}:trial:{trial}").into();
        }
        self.packager.register(project, &class, &secret_names);
        lock_map(&self.made_of).insert(runtime.name.clone(), made_of);
        Ok(Arc::new(runtime))
    }

    /// Starts a version and waits until it is ready; on failure stops it and returns its log.
    async fn start(&self, project_id: &str, class: &Arc<ClassRuntime>) -> Result<(), DeployError> {
        self.track(project_id, class);
        match self.instances.start(class, KEY).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let log = log_tail(class, 30);
                self.stop_for_good(project_id, class).await;
                let _ = tokio::fs::remove_dir_all(&class.log_root).await;
                let mut message = e.to_string();
                // A clean exit says nothing by itself: say what the source shows it lacks.
                if message.contains("(exit code 0)") {
                    let source = tokio::fs::read_to_string(class.work_dir.join("app.py")).await;
                    if let Some(hint) = source
                        .ok()
                        .and_then(|s| python::clean_exit_hint(&class.command, &s))
                    {
                        message = format!("{message}; {hint}");
                    }
                }
                if let Some(module) = missing_module(&log) {
                    message = format!(
                        "{message}; it imports {module:?}, which is not installed: add it to \
                         its requirements"
                    );
                }
                Err(DeployError::NotReady { message, log })
            }
        }
    }
}

/// Picks the runtime: the upload's `runtime` field, else what its files say.
fn runtime_of(requested: Option<&str>, dir: &Path) -> Result<Runtime, DeployError> {
    match requested.map(str::trim).filter(|r| !r.is_empty()) {
        Some("python" | "python3") => Ok(Runtime::Python),
        Some("node" | "nodejs" | "typescript" | "javascript") => Ok(Runtime::Node),
        Some(other) => Err(DeployError::UnknownRuntime(
            other.chars().take(40).collect(),
        )),
        None if dir.join("app.py").is_file() => Ok(Runtime::Python),
        None if dir.join("index.ts").is_file() || dir.join("index.js").is_file() => {
            Ok(Runtime::Node)
        }
        None => Err(DeployError::BadUpload(
            "the upload has no app.py, index.ts or index.js at its top".into(),
        )),
    }
}

/// The module an app's last output says it could not import (Python's `ModuleNotFoundError`,
/// Node's `Cannot find module`), the commonest reason a fresh upload does not start.
fn missing_module(log: &[String]) -> Option<String> {
    log.iter().rev().find_map(|line| {
        let quoted = line
            .split_once("No module named ")
            .or_else(|| line.split_once("Cannot find module "))?
            .1;
        let name = quoted.trim().trim_matches(|c| c == '\'' || c == '"');
        // Node names relative files too (`./routes`): those are the app's own, not a package.
        (!name.is_empty() && !name.starts_with('.') && !name.starts_with('/'))
            .then(|| name.to_string())
    })
}

/// The path prefix a project is served under, which valet strips before its app sees a
/// request (`/containers/<id>`).
fn root_path(project: &str) -> String {
    format!("{}/{project}", PROJECTS_ROUTE.trim_end_matches("/*"))
}

/// An app valet serves with uvicorn gets `--root-path`: its links and its docs' `openapi.json`
/// then carry the prefix the browser must use, though requests reach it without it. Added when
/// the class is made, so versions recorded before this get it too.
fn with_root_path(command: &[String], root_path: &str) -> Vec<String> {
    let mut command = command.to_vec();
    let by_uvicorn = command
        .windows(2)
        .any(|w| w[0] == "-m" && w[1] == "uvicorn");
    if by_uvicorn && !command.iter().any(|a| a == "--root-path") {
        command.extend(["--root-path".to_string(), root_path.to_string()]);
    }
    command
}

/// The last lines of a version's log file.
fn log_tail(class: &ClassRuntime, lines: usize) -> Vec<String> {
    let log = logfile::path(&class.log_root, &InstanceId::new(class.name.clone(), KEY));
    // 16 KiB a line: a version's last words, not a dump.
    let budget = (lines as u64 + 1).saturating_mul(16 * 1024);
    logfile::tail(&log, lines, budget).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_module_is_named() {
        let python = [
            "Traceback (most recent call last):".to_string(),
            "ModuleNotFoundError: No module named 'uvicorn'".to_string(),
        ];
        assert_eq!(missing_module(&python).as_deref(), Some("uvicorn"));
        let node = ["Error: Cannot find module 'express'".to_string()];
        assert_eq!(missing_module(&node).as_deref(), Some("express"));
        let own = ["Error: Cannot find module './routes'".to_string()];
        assert_eq!(missing_module(&own), None);
    }

    #[test]
    fn an_app_under_uvicorn_gets_its_root_path() {
        let uvicorn: Vec<String> = ["py", "-m", "uvicorn", "app:app", "--port", "{port}"]
            .map(String::from)
            .to_vec();
        let root = root_path("ab12");
        assert_eq!(root, "/containers/ab12");
        assert_eq!(
            with_root_path(&uvicorn, &root)[6..],
            ["--root-path", "/containers/ab12"]
        );
        let script = vec!["py".to_string(), "app.py".to_string()];
        assert_eq!(with_root_path(&script, &root), script);
    }
}
