//! `FakeDriver`: a fake engine for tests of the instance layer, behind the `test-util` feature.
//! It runs nothing. Its instances follow a [`Plan`] per start (ready after a delay, never
//! ready, fail to start, exit after a while, ignore SIGTERM), are crashed on command, and are
//! probed by their own state instead of over the network, so a test on paused tokio time is
//! deterministic and takes milliseconds.

use crate::driver::{
    Adopted, Driver, DriverError, Endpoints, ExitStatus, InstanceSpec, PhaseSink, Running,
    StartPhase,
};
use crate::logs::LogRing;
use crate::probe::{Probe, ProbeError};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How one start of an instance goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Launches, passes its probes `ready_after` later, serves until crashed or stopped.
    Serve { ready_after: Duration },
    /// Launches but never passes a probe.
    NeverReady,
    /// The launch itself fails (a missing program, an engine error), retryable or not.
    FailToStart { retryable: bool },
    /// The launch fails because the image cannot be had: `reason` is what clients are told.
    NoImage { reason: String },
    /// Launches, gets ready after `ready_after`, exits by itself with `code` after `after`.
    ExitAfter {
        ready_after: Duration,
        after: Duration,
        code: i32,
    },
    /// Serves like `Serve`, but ignores the stop request: only the kill after `stop_timeout`
    /// ends it.
    IgnoreStop { ready_after: Duration },
    /// Pulls the image first, for `takes` (the start reports [`StartPhase::Pulling`], then
    /// [`StartPhase::Launching`]), then goes as `then` says.
    Pull { takes: Duration, then: Box<Plan> },
}

impl Plan {
    /// Ready at once.
    pub fn serve() -> Self {
        Self::Serve {
            ready_after: Duration::ZERO,
        }
    }
}

/// What a test can see of one start.
#[derive(Debug, Clone)]
pub struct FakeStart {
    pub key: String,
    pub class: String,
    pub at: Instant,
    /// The spec's environment (cluster mode adds `VALET_NODE` and `VALET_EPOCH`).
    pub env: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    /// Plans queued per key; a key with none gets `default`.
    plans: HashMap<String, VecDeque<Plan>>,
    default: Option<Plan>,
    starts: Vec<FakeStart>,
    /// Exits on command, per key, for the lives running now.
    lives: HashMap<String, Vec<Arc<Life>>>,
    stops: Vec<(String, ExitStatus)>,
}

/// The fake engine. Cheap to clone; clones share their state.
#[derive(Clone, Default)]
pub struct FakeDriver {
    state: Arc<Mutex<State>>,
}

impl FakeDriver {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plan of every start with no plan queued for its key (default: [`Plan::serve`]).
    pub fn default_plan(&self, plan: Plan) {
        self.lock().default = Some(plan);
    }

    /// Queues `plan` for the next start of `key`.
    pub fn plan(&self, key: &str, plan: Plan) {
        self.lock()
            .plans
            .entry(key.into())
            .or_default()
            .push_back(plan);
    }

    /// Starts of `key` so far.
    pub fn starts_of(&self, key: &str) -> usize {
        self.lock().starts.iter().filter(|s| s.key == key).count()
    }

    /// Every start so far, in order.
    pub fn starts(&self) -> Vec<FakeStart> {
        self.lock().starts.clone()
    }

    /// Lives of `key` running now (launched and not ended).
    pub fn alive(&self, key: &str) -> usize {
        self.lock()
            .lives
            .get(key)
            .map_or(0, |lives| lives.iter().filter(|l| !l.ended()).count())
    }

    /// Every live instance, all keys.
    pub fn alive_total(&self) -> usize {
        self.lock()
            .lives
            .values()
            .flatten()
            .filter(|l| !l.ended())
            .count()
    }

    /// Ends every running life of `key` as if its process exited with `code`. Returns how many.
    pub fn crash(&self, key: &str, code: i32) -> usize {
        let lives = self.lock().lives.get(key).cloned().unwrap_or_default();
        let mut crashed = 0;
        for life in lives.iter().filter(|l| !l.ended()) {
            life.end(ExitStatus {
                code: Some(code),
                signal: None,
            });
            crashed += 1;
        }
        crashed
    }

    /// Stops asked of the driver's instances, with how each ended, in order.
    pub fn stops(&self) -> Vec<(String, ExitStatus)> {
        self.lock().stops.clone()
    }

    fn next_plan(&self, key: &str) -> Plan {
        let mut state = self.lock();
        let queued = state.plans.get_mut(key).and_then(VecDeque::pop_front);
        queued
            .or_else(|| state.default.clone())
            .unwrap_or_else(Plan::serve)
    }
}

/// A config for tests of the instance layer on this driver, in a folder of its own (its
/// `data_dir` inside; both go with the returned `TempDir`): class `C`, which runs `["fake"]`
/// with `class_options` (lines of the class's table), its key the path segment after `/c/`;
/// `server_options` are lines of `[server]`, `more` whole tables after them (other classes and
/// their routes).
pub fn one_class_config(
    server_options: &str,
    class_options: &str,
    more: &str,
) -> (valet_config::Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let text = format!(
        r#"
        [server]
        data_dir = "{data}"
        {server_options}

        [[containers]]
        class_name = "C"
        command = ["fake"]
        {class_options}

        [[routes]]
        pattern = "/c/*"
        container = "C"
        instance = "path:1"

        {more}
        "#,
        data = dir.path().join("data").display()
    );
    let config = valet_config::parse_str(&text, &dir.path().join("valet.toml"), dir.path())
        .unwrap_or_else(|e| panic!("a test config that does not parse: {e:?}\n{text}"));
    (config, dir)
}

/// One launched fake instance.
struct Life {
    ready_at: Option<Instant>,
    ignore_stop: bool,
    exit: watch::Sender<Option<ExitStatus>>,
}

impl Life {
    fn ended(&self) -> bool {
        self.exit.borrow().is_some()
    }

    fn end(&self, status: ExitStatus) {
        self.exit.send_if_modified(|exit| {
            if exit.is_none() {
                *exit = Some(status);
                true
            } else {
                false
            }
        });
    }
}

/// Fake ports never collide and are never dialed: only their number is seen.
static NEXT_PORT: AtomicU16 = AtomicU16::new(20_000);

#[async_trait]
impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn recover(&self) -> Result<Vec<Adopted>, DriverError> {
        Ok(Vec::new())
    }

    async fn start_reporting(
        &self,
        spec: &InstanceSpec,
        phase: PhaseSink<'_>,
    ) -> Result<Box<dyn Running>, DriverError> {
        let key = spec.id.key().to_string();
        let mut plan = self.next_plan(&key);
        self.lock().starts.push(FakeStart {
            key: key.clone(),
            class: spec.id.class().to_string(),
            at: Instant::now(),
            env: spec.env.clone(),
        });
        if let Plan::Pull { takes, then } = plan {
            phase(StartPhase::Pulling);
            tokio::time::sleep(takes).await;
            phase(StartPhase::Launching);
            plan = *then;
        }
        // Readiness delays count from the launch, after any pull.
        let now = Instant::now();
        let (ready_after, exit_after, ignore_stop) = match plan {
            Plan::FailToStart { retryable: true } => {
                return Err(DriverError::io(
                    "fake engine refused",
                    std::io::ErrorKind::Other.into(),
                ))
            }
            Plan::FailToStart { retryable: false } => {
                return Err(DriverError::Spec("fake program not found".into()))
            }
            Plan::NoImage { reason } => {
                return Err(DriverError::Image {
                    message: reason,
                    retryable: false,
                })
            }
            Plan::Serve { ready_after } => (Some(ready_after), None, false),
            Plan::NeverReady => (None, None, false),
            Plan::ExitAfter {
                ready_after,
                after,
                code,
            } => (Some(ready_after), Some((after, code)), false),
            Plan::IgnoreStop { ready_after } => (Some(ready_after), None, true),
            Plan::Pull { then, .. } => {
                return Err(DriverError::Spec(format!(
                    "fake plan: one pull per start, not a pull then {then:?}"
                )))
            }
        };
        let (exit, _) = watch::channel(None);
        let life = Arc::new(Life {
            ready_at: ready_after.map(|d| now + d),
            ignore_stop,
            exit,
        });
        if let Some((after, code)) = exit_after {
            let life = life.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                life.end(ExitStatus {
                    code: Some(code),
                    signal: None,
                });
            });
        }
        self.lock()
            .lives
            .entry(key.clone())
            .or_default()
            .push(life.clone());
        let ports = spec
            .ports
            .iter()
            .map(|(name, _)| {
                let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
                (name.clone(), SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            })
            .collect();
        Ok(Box::new(FakeRunning {
            key,
            life,
            driver: self.clone(),
            endpoints: Endpoints { ports },
            logs: Arc::new(LogRing::new(spec.log_lines.max(1))),
        }))
    }
}

struct FakeRunning {
    key: String,
    life: Arc<Life>,
    driver: FakeDriver,
    endpoints: Endpoints,
    logs: Arc<LogRing>,
}

#[async_trait]
impl Running for FakeRunning {
    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn logs(&self) -> Arc<LogRing> {
        self.logs.clone()
    }

    fn prober(&self) -> Arc<dyn Probe> {
        Arc::new(LifeProbe(self.life.clone()))
    }

    async fn exited(&mut self) -> ExitStatus {
        let mut exit = self.life.exit.subscribe();
        loop {
            if let Some(status) = *exit.borrow_and_update() {
                return status;
            }
            if exit.changed().await.is_err() {
                // The sender lives in `self.life`: never dropped while we wait.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn stop(&mut self, timeout: Duration) -> ExitStatus {
        if !self.life.ended() {
            if self.life.ignore_stop {
                tokio::time::sleep(timeout).await;
                self.life.end(ExitStatus {
                    code: None,
                    signal: Some(9),
                });
            } else {
                self.life.end(ExitStatus {
                    code: None,
                    signal: Some(15),
                });
            }
        }
        let status = self.life.exit.borrow().unwrap_or_default();
        self.driver.lock().stops.push((self.key.clone(), status));
        status
    }
}

impl Drop for FakeRunning {
    fn drop(&mut self) {
        // Dropping a Running kills it, as with every driver.
        self.life.end(ExitStatus {
            code: None,
            signal: Some(9),
        });
    }
}

/// Probes a fake life by its plan: ready once its `ready_after` has passed, until it ends.
struct LifeProbe(Arc<Life>);

#[async_trait]
impl Probe for LifeProbe {
    async fn probe(
        &self,
        _addr: SocketAddr,
        _path: Option<&str>,
        _timeout: Duration,
    ) -> Result<(), ProbeError> {
        match self.0.ready_at {
            _ if self.0.ended() => Err(ProbeError::Failed("connect: refused (exited)".into())),
            Some(at) if Instant::now() >= at => Ok(()),
            _ => Err(ProbeError::Failed(
                "connect: refused (not listening yet)".into(),
            )),
        }
    }
}
