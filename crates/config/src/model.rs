//! The structs behind valet.toml. Key names are a contract (scripts outside the project use
//! them): add keys freely, rename none. Every field says what it does and what it defaults to.
//!
//! The structs accept unknown keys rather than `deny_unknown_fields`: serde would stop at the
//! first one, while the loader ([`crate::load`]) collects them all and reports each at its line.

use crate::values::{DurationValue, SizeValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A whole valet.toml.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// Listeners, storage, driver and proxy limits.
    pub server: ServerConfig,
    /// Static front end served for requests no route claims. Optional.
    pub assets: Option<AssetsConfig>,
    /// Kinds of backend, each run as one instance per key.
    pub containers: Vec<ContainerClass>,
    /// Request patterns and where they go, tried longest pattern first.
    pub routes: Vec<RouteConfig>,
    /// JWT checks for routes with `auth = "jwt"` and for the deploy API.
    pub auth: Option<AuthConfig>,
    /// Limits per plan for the deploy API, by plan name.
    pub plans: BTreeMap<String, PlanConfig>,
    /// `[deploy]`: how uploaded apps are run. Optional.
    pub deploy: DeployConfig,
    /// `[[registries]]`: credentials for pulling images, by registry host. Optional; the
    /// user's Docker config (`~/.docker/config.json`) is read too.
    pub registries: Vec<RegistryConfig>,
    /// `[cluster]`: this valet is one replica of several on one PostgreSQL store. Optional.
    pub cluster: Option<ClusterConfig>,
    /// `[swarm]`: where `driver = "swarm"` finds its Docker Swarm. Optional.
    pub swarm: Option<SwarmConfig>,
    /// `[kubernetes]`: where `driver = "kubernetes"` finds its cluster. Optional.
    pub kubernetes: Option<KubernetesConfig>,
    /// Folder of the config file; relative paths are resolved against it. Set by the loader.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Public gateway address. Default `127.0.0.1:8787`.
    pub listen: String,
    /// Control plane address (admin API, deploy API, metrics, dashboard). Default `127.0.0.1:8788`.
    pub admin_listen: String,
    /// Store, instance data and logs; one valet at a time holds its lock. Default `.valet`.
    pub data_dir: PathBuf,
    /// `"process"` (default), `"docker"`, `"swarm"` (`[swarm]`) or `"kubernetes"`
    /// (`[kubernetes]`).
    pub driver: String,
    /// Base of endpoint URLs handed out. Default `http://` + `listen`.
    pub public_url: Option<String>,
    /// `"sqlite"` (default) or a `postgres://` URL.
    pub store: String,
    /// Optional TLS on the public listener.
    pub tls: Option<TlsConfig>,
    /// Peers whose `X-Forwarded-*` headers are kept; from anyone else they are replaced.
    /// Addresses (`10.0.0.1`) or CIDR blocks (`10.0.0.0/8`).
    pub trusted_proxies: Vec<String>,
    /// Largest proxied request body; `"0"` means no limit. Over it: 413.
    pub max_body_size: SizeValue,
    /// Proxy timeouts.
    pub timeouts: TimeoutsConfig,
    /// Token that opens the admin API (at least 16 characters). Optional; when unset, valet
    /// makes a random one at its first start in `<data_dir>/admin-token` (mode 0600).
    pub admin_token: Option<String>,
    /// Gateway worker threads, each with its own listener (SO_REUSEPORT), runtime and
    /// connection pool. Default: one per CPU core.
    pub workers: Option<usize>,
    /// One log line per proxied request. Default true.
    pub access_log: bool,
    /// A key with no request for this long, whose instance does not run, is forgotten: its
    /// record, its log file, and its data folder when empty (data stays until `valet destroy`).
    /// `"0"`: never. Default `1h`.
    pub forget_after: DurationValue,
    /// Cold starts one client address may cause per `per`, over every class: keys come from
    /// clients, and one client must not churn a class by asking for new keys. Over it: 429
    /// with `Retry-After`. `starts = 0` turns it off. Default 60 per `1m`.
    pub cold_starts_per_client: ColdStartLimit,
}

/// `cold_starts_per_client = { starts, per }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ColdStartLimit {
    /// Starts allowed per window; 0: no limit.
    pub starts: u32,
    /// The window. Default `1m`.
    pub per: DurationValue,
}

impl Default for ColdStartLimit {
    fn default() -> Self {
        Self {
            starts: 60,
            per: DurationValue::new("1m"),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8787".into(),
            admin_listen: "127.0.0.1:8788".into(),
            data_dir: PathBuf::from(".valet"),
            driver: "process".into(),
            public_url: None,
            store: "sqlite".into(),
            tls: None,
            trusted_proxies: Vec::new(),
            max_body_size: SizeValue::new("0"),
            timeouts: TimeoutsConfig::default(),
            admin_token: None,
            workers: None,
            access_log: true,
            forget_after: DurationValue::new("1h"),
            cold_starts_per_client: ColdStartLimit::default(),
        }
    }
}

/// `tls = { cert, key }`: PEM files, relative to the config's folder.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `timeouts = { connect, first_byte, idle, header_read, pull }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TimeoutsConfig {
    /// Opening a connection to an instance. Default `5s`.
    pub connect: DurationValue,
    /// From sending the request to the response head (for a request with a body, from when
    /// the client's body was read to its end). Default `60s`.
    pub first_byte: DurationValue,
    /// Longest silence inside a body, either way: a client or an instance that sends nothing
    /// more of a body, or an instance that takes nothing more of an upload. Default `5m`.
    pub idle: DurationValue,
    /// Reading a client's request head, counted from the end of the previous exchange on a
    /// keep-alive connection: it is also how long an idle client connection stays open.
    /// Default `10s`.
    pub header_read: DurationValue,
    /// Pulling one image from its registry (the Docker driver). A pull is not counted against
    /// a class's `readiness.timeout`: requests that wait on a start wait out the pull too,
    /// up to this long, and the readiness clock starts when the container does. Default `10m`.
    pub pull: DurationValue,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect: DurationValue::new("5s"),
            first_byte: DurationValue::new("60s"),
            idle: DurationValue::new("5m"),
            header_read: DurationValue::new("10s"),
            pull: DurationValue::new("10m"),
        }
    }
}

/// `[assets]`.
#[derive(Debug, Clone, Deserialize)]
pub struct AssetsConfig {
    /// Folder of static files, relative to the config's folder.
    pub directory: PathBuf,
    /// What a request for a missing file gets: `"single-page-application"` (index.html),
    /// `"404-page"` (the nearest 404.html, status 404) or `"none"` (plain 404). Default `"none"`.
    #[serde(default = "default_not_found")]
    pub not_found_handling: String,
}

fn default_not_found() -> String {
    "none".into()
}

/// One `[[containers]]` entry: a kind of backend.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerClass {
    /// Name routes refer to.
    pub class_name: String,
    /// Process driver: argv, with `{port}` / `{port.NAME}` placeholders.
    #[serde(default)]
    pub command: Vec<String>,
    /// Docker driver: a Dockerfile path or an image reference.
    pub image: Option<String>,
    /// Docker driver: `ARG` values for a Dockerfile build; part of the image's tag hash.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// Docker driver: when an image reference is pulled from its registry. Default `missing`.
    #[serde(default)]
    pub pull: PullPolicy,
    /// Named ports inside the instance. Default `{ http = 8080 }`.
    #[serde(default = "default_ports")]
    pub ports: BTreeMap<String, u16>,
    /// The port used when a route names none. Default: `http`, or the only port.
    pub default_port: Option<String>,
    /// Environment of the instance.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of secrets handed over as environment variables.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Names of variables of valet's own environment handed to the instance. An instance gets
    /// nothing else of valet's environment: a minimal `PATH`, `HOME`, `LANG`, this class's
    /// `env`, its `secrets` and the variables valet sets (`PORT`, `VALET_*`).
    #[serde(default)]
    pub env_from_host: Vec<String>,
    /// Idle time before the instance is stopped. Default `10m`; `"0"` never sleeps.
    #[serde(default = "default_sleep_after")]
    pub sleep_after: DurationValue,
    /// Most instances of this class alive at once. Default 20.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Instances kept running (see DESIGN.md). Default 0.
    #[serde(default)]
    pub min_instances: u32,
    /// Requests that may wait for one starting instance; more get 503. Default 10000.
    #[serde(default = "default_max_waiting")]
    pub max_waiting: u32,
    /// Most requests one instance handles at once; more wait (within `timeouts.first_byte`) for
    /// one to finish. Each in-flight HTTP/1.1 request needs its own connection, so this also
    /// caps the connections opened to an instance: set it for apps with a small listen backlog
    /// or a fixed worker count. WebSockets are not counted. Default 0: no limit.
    #[serde(default)]
    pub max_concurrent_requests: u32,
    /// Cloudflare's instance types: lite, basic, standard-1..4. Default basic.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// CPU share override (cores).
    pub cpu: Option<f64>,
    /// Memory limit override.
    pub memory: Option<SizeValue>,
    /// Whether the instance may reach the internet. Default true.
    #[serde(default = "yes")]
    pub enable_internet: bool,
    /// Path of per-instance persistent storage inside the instance.
    pub volume: Option<String>,
    /// Run instances as this user (valet must be root to switch).
    pub user: Option<String>,
    /// How a start is judged done. Default: TCP connect within 30s.
    #[serde(default)]
    pub readiness: ReadinessConfig,
    /// Optional probe that restarts a hung instance.
    pub liveness: Option<LivenessConfig>,
    /// Time between SIGTERM and SIGKILL. Default `10s`.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: DurationValue,
    /// Several instances (replicas) per key when its load asks for them. Absent: one
    /// instance per key.
    pub scale: Option<ScaleConfig>,
}

/// `scale = { max_replicas, target_concurrency }`: a key gets another replica when its
/// requests in flight per ready replica reach `target_concurrency`, up to `max_replicas`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ScaleConfig {
    /// Most replicas one key runs at once (each counts against `max_instances`).
    pub max_replicas: u32,
    /// Requests in flight per ready replica at which another replica starts. Default 1.
    #[serde(default = "default_target_concurrency")]
    pub target_concurrency: u32,
}

fn default_target_concurrency() -> u32 {
    1
}

fn default_ports() -> BTreeMap<String, u16> {
    BTreeMap::from([("http".to_string(), 8080)])
}
fn default_sleep_after() -> DurationValue {
    DurationValue::new("10m")
}
fn default_max_instances() -> u32 {
    20
}
fn default_max_waiting() -> u32 {
    10_000
}
fn default_instance_type() -> String {
    "basic".into()
}
fn default_stop_timeout() -> DurationValue {
    DurationValue::new("10s")
}
fn yes() -> bool {
    true
}

impl ContainerClass {
    /// A class of this name with every other key at its default, for classes made at run
    /// time (deployed projects) rather than read from valet.toml. The defaults are read from
    /// the serde attributes above, so there is one copy of each.
    pub fn new(class_name: &str) -> Self {
        let mut table = toml::Table::new();
        table.insert("class_name".into(), class_name.into());
        toml::Value::Table(table)
            .try_into()
            .expect("a class with only a name takes every default")
    }

    /// The port name a route uses when it names none.
    pub fn default_port_name(&self) -> Option<&str> {
        if let Some(name) = &self.default_port {
            return Some(name);
        }
        if self.ports.contains_key("http") || self.ports.len() != 1 {
            return self.ports.keys().find(|k| *k == "http").map(String::as_str);
        }
        self.ports.keys().next().map(String::as_str)
    }
}

/// `pull = "missing" | "always" | "never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pulled before a start when the engine does not have it.
    #[default]
    Missing,
    /// Pulled before every cold start, so a moved tag is followed; when the registry cannot
    /// be reached, a copy already on the engine serves (with a warning).
    Always,
    /// Never pulled: a start without the image on the engine is refused.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

/// One `[[registries]]` entry: what valet hands the engine when it pulls from `host`.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryConfig {
    /// The registry as image references name it: `ghcr.io`, `registry.example.com:5000`,
    /// `docker.io` for Docker Hub.
    pub host: String,
    /// The account name.
    pub username: String,
    /// Name of the secret holding the password or token: a variable of valet's environment,
    /// else the value stored with `valet secret put NAME --registry` (valet's secret store,
    /// read at `valet up`). The password itself is never written in valet.toml.
    pub password_secret: String,
    /// Never used: present so that a password written here in clear is refused by name
    /// rather than as an unknown key. Its value is not kept.
    #[serde(default)]
    pub password: Option<serde::de::IgnoredAny>,
    /// The value of `password_secret` in valet's secret store, opened by `valet up` when its
    /// environment does not set that name. Never read from valet.toml.
    #[serde(skip)]
    pub stored_password: Option<SecretText>,
}

/// A secret's value held in memory: its `Debug` never shows it, so a config printed whole
/// (a `{:?}` in a log line) does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that hands it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// `readiness = { path, timeout, interval }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReadinessConfig {
    /// HTTP path that must answer 2xx/3xx; without it a TCP connect is enough.
    pub path: Option<String>,
    /// Whole start deadline. Default `30s`.
    pub timeout: DurationValue,
    /// Longest pause between probes. Default `50ms`; probes start 1 ms apart and back off to it.
    pub interval: DurationValue,
    /// Port name to probe. Default: the class's default port.
    pub port: Option<String>,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            path: None,
            timeout: DurationValue::new("30s"),
            interval: DurationValue::new("50ms"),
            port: None,
        }
    }
}

/// `liveness = { path, interval, failures, timeout }`.
#[derive(Debug, Clone, Deserialize)]
pub struct LivenessConfig {
    /// HTTP path that must answer 2xx/3xx; without it a TCP connect is enough.
    pub path: Option<String>,
    /// Time between probes. Default `10s`.
    #[serde(default = "default_liveness_interval")]
    pub interval: DurationValue,
    /// Failed probes in a row that restart the instance. Default 3.
    #[serde(default = "default_liveness_failures")]
    pub failures: u32,
    /// One probe's deadline. Default `2s`.
    #[serde(default = "default_liveness_timeout")]
    pub timeout: DurationValue,
}

fn default_liveness_interval() -> DurationValue {
    DurationValue::new("10s")
}
fn default_liveness_failures() -> u32 {
    3
}
fn default_liveness_timeout() -> DurationValue {
    DurationValue::new("2s")
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteConfig {
    /// Path prefix, optionally ending in `*`: `/api/*` matches `/api` and `/api/...`, not `/apiary`.
    pub pattern: String,
    /// Only requests for this host (port, case and a final dot ignored). Optional.
    pub host: Option<String>,
    /// Container class the route goes to. Without it the route serves `[assets]`.
    pub container: Option<String>,
    /// How the instance key is derived: `name:<fixed>`, `path:<n>`, `header:<Name>`,
    /// `query:<name>`, `cookie:<name>`, `random:<N>`. Default `name:default`.
    #[serde(default = "default_instance_rule")]
    pub instance: String,
    /// Named port of the class. Default: the class's default port.
    pub port: Option<String>,
    /// Prefix removed before the request reaches the backend; may hold `*` for one segment.
    pub strip_prefix: Option<String>,
    /// `"jwt"` to require a valid JWT before any instance is woken. The token is
    /// `Authorization: Bearer` (the scheme in any case), an `access_token` cookie or an
    /// `access_token` query parameter; two different tokens anywhere among them (or a second
    /// `Authorization` field) are 400, an `Authorization` that holds no bearer token 401. A path
    /// that a lenient backend would read as one under such a route (`%2F`, any case, `;`
    /// parameters) while valet routes it elsewhere is 400 `ambiguous_path`.
    pub auth: Option<String>,
    /// Optional rate limit; over it: 429 with Retry-After.
    pub rate_limit: Option<RateLimitConfig>,
    /// Protocols a client may switch to with `Upgrade` on this route, each a protocol name
    /// (`"h2c"`), or a name and version (`"TLS/1.0"`) to allow that version only. A request
    /// that offers any other goes to the instance as an ordinary request without its `Upgrade`:
    /// after a 101 the connection is a raw tunnel that later requests take past routing and
    /// `auth`. `HTTP2-Settings` never passes. Default `["websocket"]`; `[]` forwards none.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
}

fn default_instance_rule() -> String {
    "name:default".into()
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".into()]
}

/// `rate_limit = { requests, per, by }`.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitConfig {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length. Default `1s`.
    #[serde(default = "default_per")]
    pub per: DurationValue,
    /// Bucket: `"ip"` (client address, default) or `"route"` (one bucket for all).
    #[serde(default = "default_by")]
    pub by: String,
}

fn default_per() -> DurationValue {
    DurationValue::new("1s")
}
fn default_by() -> String {
    "ip".into()
}

/// `[cluster]`: several valet replicas on one PostgreSQL store, exactly one instance per key
/// cluster-wide. Each (class, key) has one owner replica at a time (a lease in the store); the
/// others forward its requests to the owner's peer listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// This replica's name, unique in the cluster (a second replica with the same name refuses
    /// to start while the first lives). Required.
    pub node: String,
    /// Peer listener: where the other replicas forward requests for keys this one owns.
    /// Required, e.g. `"0.0.0.0:8789"`.
    pub listen: String,
    /// How the other replicas reach `listen` (an address they can dial). Default: `listen`,
    /// which must then not be a wildcard address.
    pub advertise: Option<String>,
    /// Shared by every replica, at least 32 characters: every forwarded request carries a
    /// token made from it, and the peer listener refuses anything else. This or `secret_file`.
    pub secret: Option<String>,
    /// A file holding the secret (relative to the config's folder); its surrounding whitespace
    /// is ignored.
    pub secret_file: Option<PathBuf>,
    /// An owner that cannot renew its leases for this long loses its keys; it stops serving
    /// them before that. Default `5s`, at least `1s`.
    pub lease_ttl: DurationValue,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node: String::new(),
            listen: String::new(),
            advertise: None,
            secret: None,
            secret_file: None,
            lease_ttl: DurationValue::new("5s"),
        }
    }
}

/// `[swarm]`: with `driver = "swarm"` every instance is a Docker Swarm service, placed by the
/// swarm on any node and reached at that node's address.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SwarmConfig {
    /// A manager node's Engine API, `unix://...` or `tcp://host:port`. Default: `DOCKER_HOST`,
    /// else the local socket.
    pub docker_host: Option<String>,
    /// Every node's Engine API address. valet builds (or pulls) a class's image once on the
    /// manager and loads it onto each of these, then creates services by image ID, so no node
    /// pulls. Empty: every node must have the image already, or be able to pull it.
    pub nodes: Vec<String>,
    /// How valet reaches an instance: `"host"` (the task's node address and a port published
    /// there). `"network"` (an overlay network valet shares) needs valet on the swarm and is
    /// not available yet.
    pub publish: String,
    /// The overlay network of `publish = "network"`; refused until that exists.
    pub network: Option<String>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            docker_host: None,
            nodes: Vec::new(),
            publish: "host".into(),
            network: None,
        }
    }
}

/// `[kubernetes]`: with `driver = "kubernetes"` every instance is a Pod, reached at its Pod IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KubernetesConfig {
    /// A kubeconfig file, relative to the config's folder. Unset: in-cluster credentials when
    /// valet runs in a Pod (`KUBERNETES_SERVICE_HOST` is set), else `KUBECONFIG` or
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Where valet makes its Pods, Secrets, PersistentVolumeClaims and NetworkPolicies; valet
    /// creates it when it is missing. Default `"valet"`.
    pub namespace: String,
    /// `spec.nodeName` of every Pod, for clusters without a scheduler. Unset: the scheduler
    /// places Pods.
    pub node: Option<String>,
    /// The Docker Engine API of the node(s) where a Dockerfile class's image is built; Pods use
    /// it with `imagePullPolicy: Never`. Unset: a class must name an image reference, which the
    /// kubelet pulls as usual.
    pub image_engine: Option<String>,
    /// A registry and path (`registry.example.com/team`) every node pulls from: each deployed
    /// project's version is built on `image_engine` (else the local Docker Engine), pushed
    /// there, and its Pods name it. Unset: versions are built on `image_engine` and run with
    /// `imagePullPolicy: Never`. Dockerfile classes still need `image_engine`.
    pub image_registry: Option<String>,
}

impl KubernetesConfig {
    /// `kubeconfig` as a path: `~/` is the user's home, a relative path is relative to the
    /// config's folder.
    pub fn kubeconfig_path(&self, base_dir: &std::path::Path) -> Option<PathBuf> {
        let path = self.kubeconfig.as_ref()?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        match (path.strip_prefix("~"), home) {
            (Ok(rest), Some(home)) => Some(home.join(rest)),
            _ => Some(base_dir.join(path)),
        }
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            namespace: "valet".into(),
            node: None,
            image_engine: None,
            image_registry: None,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AuthConfig {
    /// HS256 shared secret.
    pub jwt_secret: Option<String>,
    /// PEM public keys for RS256 / ES256, relative to the config's folder.
    pub jwt_public_keys: Vec<PathBuf>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
}

/// `[plans.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PlanConfig {
    /// Projects one user may have.
    pub max_projects: u32,
    /// Running instances per project.
    pub max_running: u32,
    /// Largest upload.
    pub max_upload: SizeValue,
    /// Deploys (new projects and new versions) one user may make in any hour; more answer
    /// 429 with `Retry-After`. 0 means no limit. Default 30: generous for people, but it
    /// keeps a script from keeping the builder busy.
    pub deploys_per_hour: u32,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            max_projects: 3,
            max_running: 1,
            max_upload: SizeValue::new("10MB"),
            deploys_per_hour: 30,
        }
    }
}

/// `[deploy]`: settings of the deploy API's uploaded apps.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DeployConfig {
    /// With `driver = "docker"`: the image a Node app's image is built on; pulled from its
    /// registry when the engine lacks it. Default `node:20-slim`.
    pub node_image: String,
    /// With `driver = "docker"`: the image a Python app's image is built on; its Python
    /// runs the app with the requirements (installed on the host) on `PYTHONPATH`. Pulled
    /// when the engine lacks it. Default `python:3.11-slim`.
    pub python_image: String,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            node_image: "node:20-slim".into(),
            python_image: "python:3.11-slim".into(),
        }
    }
}
