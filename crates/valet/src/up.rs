//! `valet up`: load the config, take the data_dir lock, clean what a killed valet left, start
//! the gateway, and on Ctrl-C or SIGTERM stop every instance gracefully.

use crate::lock;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use valet_config::Config;
use valet_core::Shutdown;
use valet_deploy::{DockerPackager, Packager, ProcessPackager};
use valet_gateway::auth::JwtVerifier;
use valet_gateway::proxy::UpstreamSettings;
use valet_gateway::server::ServerConfig;
use valet_gateway::{assets::Assets, routes::RouteTable, GatewayState, Server};
use valet_instances::Instances;
use valet_runtime::{
    DockerDriver, Driver, KubernetesDriver, ProcessDriver, ProjectEngine, SwarmDriver,
};

pub fn run(path: &Path) -> ExitCode {
    let config = match valet_config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{}", valet_config::render_report(&errors));
            return ExitCode::FAILURE;
        }
    };
    if let Some(warning) = crate::config_mode::warning(path, &config) {
        tracing::warn!("{warning}");
    }
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    tracing::error!(%message, "valet cannot run");
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn serve(config: Config) -> Result<(), String> {
    let data_dir = config.data_dir();
    // Said at start, not refused: assets and config classes work whatever the folder's mode
    // (the README's first command, run as root from a clone under /root, must serve), and
    // each deploy is refused with the same message while the folder stays closed.
    if let Err(message) = projects_can_reach(&config) {
        tracing::warn!(%message, "deployed projects cannot run until this folder is opened");
    }
    let _lock = lock::acquire(&data_dir)?;
    // The logs root lists classes, and so deployed projects' ids: valet's alone.
    restrict_logs(&data_dir)?;
    // Before the driver: it takes the registry passwords opened from the store with the
    // config, as the instance table takes the classes' secrets.
    let mut config = config;
    let store = crate::deploy::open_store(&mut config).await?;
    if let Err(problem) = valet_deploy::check_secret_key(&config, &store).await {
        // A replica with a key of its own would build every project without its secrets
        // (each start failing on the first one); alone, valet still serves what needs none.
        if config.cluster.is_some() {
            return Err(problem);
        }
        tracing::warn!("{problem}");
    }
    let (driver, packager) = engine(&config).await?;
    let adopted = driver
        .recover()
        .await
        .map_err(|e| format!("cleaning up after an earlier run: {e}"))?;

    // Two stages: the gateway stops accepting and drains first, then instances stop, so requests
    // in flight when the signal came are still answered by their instance.
    let (stop_gateway, gateway_shutdown) = Shutdown::new();
    let (stop_instances, instances_shutdown) = Shutdown::new();
    let instances = Instances::new(&config, driver, instances_shutdown.clone());
    // Before anything starts: in cluster mode every start asks the store first.
    let cluster = match valet_cluster::Settings::from_config(&config)? {
        Some(settings) => {
            let cluster =
                valet_cluster::Cluster::join(&settings, &instances, instances_shutdown).await?;
            Some((cluster, settings))
        }
        None => None,
    };
    for found in adopted {
        let id = found.id.clone();
        if !instances.adopt(found) {
            tracing::warn!(instance = %id, "running instance not adopted (class gone or full); stopped");
        }
    }
    let state = Arc::new(gateway_state(&config, instances.clone(), None)?);
    let tls = match &config.server.tls {
        Some(tls) => Some(valet_gateway::tls::acceptor(
            &config.resolve(&tls.cert),
            &config.resolve(&tls.key),
        )?),
        None => None,
    };
    let t = &config.server.timeouts;
    let upstream_settings = UpstreamSettings {
        connect: t.connect.get(),
        first_byte: t.first_byte.get(),
        idle: t.idle.get(),
        max_body: config.server.max_body_size.get(),
    };
    let server_config = ServerConfig {
        state: state.clone(),
        tls,
        header_read: t.header_read.get(),
        upstream: upstream_settings,
    };
    let listen: std::net::SocketAddr = config
        .server
        .listen
        .parse()
        .map_err(|e| format!("listen: {e}"))?;
    let workers = config
        .server
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let server = Server::bind(listen, workers, server_config)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let admin = valet_api::AdminServer::bind(
        &config,
        instances.clone(),
        state.routes.stats(),
        addr,
        gateway_shutdown.clone(),
    )?
    .with_deploy(
        crate::deploy::api(
            &config,
            &instances,
            store,
            packager,
            cluster.as_ref().map(|(c, _)| c),
        )
        .await?,
    );
    tracing::info!(addr = %admin.local_addr().map_err(|e| e.to_string())?, "admin listening");
    tokio::spawn(admin.run());
    tracing::info!(%addr, workers, driver = instances.driver_name(), "valet listening");
    // The peer listener: other replicas' forwarded requests, on a server of its own (its own
    // address, its own workers) that serves nothing else.
    let peers = match &cluster {
        Some((cluster, settings)) => {
            let token = cluster.token().as_bytes().into();
            let peer_config = ServerConfig {
                state: Arc::new(gateway_state(&config, instances.clone(), Some(token))?),
                tls: None,
                header_read: t.header_read.get(),
                upstream: upstream_settings,
            };
            let peer_server =
                Server::bind(settings.listen, workers.min(2), peer_config).map_err(|e| {
                    format!("cannot listen on {} (cluster.listen): {e}", settings.listen)
                })?;
            tracing::info!(addr = %settings.listen, node = %settings.node, "peer listener listening");
            Some(tokio::spawn(peer_server.run(gateway_shutdown.clone())))
        }
        None => None,
    };
    let gateway = tokio::spawn(server.run(gateway_shutdown));
    let limiters = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            limiters.routes.shrink_limiters();
        }
    });
    let pinned = instances.clone();
    tokio::spawn(async move { pinned.start_pinned().await });

    wait_for_signal().await;
    tracing::info!("shutting down: draining connections, then stopping instances");
    stop_gateway.trigger();
    // A second signal means "now": the instances' process groups die with us by their
    // parent-death signal, and the next valet cleans up what is left.
    tokio::select! {
        _ = async {
            let _ = gateway.await;
            if let Some(peers) = peers {
                let _ = peers.await;
            }
            stop_instances.trigger();
            instances.wait_stopped().await;
            if let Some((cluster, _)) = &cluster {
                cluster.drain(std::time::Duration::from_secs(2)).await;
            }
        } => {}
        _ = async {
            // Supervisors like `timeout` or a process-group kill can deliver the same stop twice
            // at once; only a signal that comes later is a person asking to hurry.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            wait_for_signal().await
        } => tracing::warn!("second signal: exiting without waiting"),
    }
    tracing::info!("valet stopped");
    Ok(())
}

/// The engine `driver = ...` names: the driver that runs instances, and the packager that
/// makes deployed versions runnable on it. Chosen here once; nothing downstream asks which.
async fn engine(config: &Config) -> Result<(Arc<dyn Driver>, Arc<dyn Packager>), String> {
    match config.server.driver.as_str() {
        "process" => Ok((
            Arc::new(ProcessDriver::new(config.data_dir().join("run"))),
            Arc::new(ProcessPackager::new(config)),
        )),
        "docker" => {
            let docker = DockerDriver::connect(config)
                .await
                .map_err(|e| format!("docker driver: {e}"))?;
            Ok(images(config, docker))
        }
        // Versions are built on the manager and loaded onto the listed nodes.
        "swarm" => {
            let swarm = SwarmDriver::connect(config)
                .await
                .map_err(|e| format!("swarm driver: {e}"))?;
            Ok(images(config, swarm))
        }
        // Versions are pushed to image_registry, or built on the node's engine.
        "kubernetes" => {
            let kube = KubernetesDriver::connect(config)
                .await
                .map_err(|e| format!("kubernetes driver: {e}"))?;
            Ok(images(config, kube))
        }
        other => Err(format!("driver {other:?} is not available in this build")),
    }
}

/// A driver that runs images, and the packager that builds versions for it.
fn images<D: Driver + ProjectEngine + Clone>(
    config: &Config,
    driver: D,
) -> (Arc<dyn Driver>, Arc<dyn Packager>) {
    let packager = DockerPackager::new(config, Arc::new(driver.clone()));
    (Arc::new(driver), Arc::new(packager))
}

fn restrict_logs(data_dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let logs = valet_runtime::logfile::root(data_dir);
    std::fs::create_dir_all(&logs)
        .and_then(|()| std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("cannot make {} valet's own: {e}", logs.display()))
}

/// With the process driver, valet as root runs each deployed project as its own user, which
/// must be able to pass through every folder down to `data_dir`.
pub fn projects_can_reach(config: &Config) -> Result<(), String> {
    if config.server.driver != "process" {
        return Ok(());
    }
    valet_deploy::check_reachable(&config.data_dir())
}

fn gateway_state(
    config: &Config,
    instances: Instances,
    peer_token: Option<Box<[u8]>>,
) -> Result<GatewayState, String> {
    let assets = match &config.assets {
        Some(a) => {
            let root = config.resolve(&a.directory);
            let handling = a.not_found_handling.parse().map_err(|e| format!("{e}"))?;
            Some(
                Assets::new(&root, handling)
                    .map_err(|e| format!("assets directory {}: {e}", root.display()))?,
            )
        }
        None => None,
    };
    let jwt = match &config.auth {
        Some(auth) => Some(JwtVerifier::from_config(auth, |p| config.resolve(p))?),
        None => None,
    };
    Ok(GatewayState {
        jwt,
        routes: RouteTable::build(config, &instances),
        assets,
        instances,
        trusted_proxies: config.server.trusted_proxy_nets(),
        https: config.server.tls.is_some(),
        access_log: config.server.access_log,
        peer_token,
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The default soft limit (often 1024) is far below what a gateway holding thousands of client
/// and upstream connections needs; raise it to the hard limit.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
