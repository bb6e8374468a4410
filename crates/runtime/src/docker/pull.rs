//! Pulling image references from their registries through the Engine API, by a class's
//! `pull` policy: `missing` (the default) pulls what the engine lacks, `always` pulls before
//! each cold start, `never` refuses a start without the image.
//!
//! A pull's progress is kept as milestones (one line per layer and step, not every byte
//! count), in valet's log and the instance's. A failed pull is an [`DriverError::Image`]
//! naming the image, the registry and the registry's own answer: the one start error clients
//! are told in full, since nothing in it is about this machine. Failures are remembered for a
//! few seconds, so the instance layer's quick restarts and a burst of keys answer at once
//! instead of asking the registry again (an unreachable one can take many seconds to say so).

use super::error::{engine, not_found};
use super::registry::{credentials, Reference};
use super::Images;
use crate::driver::{DriverError, PhaseSink, StartPhase};
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use valet_config::PullPolicy;

/// How long a failed pull answers for the next starts of the same reference.
const REMEMBER_FAILURE: Duration = Duration::from_secs(10);
/// `pull = "always"`: a pull this recent serves the starts that follow it (a burst of keys
/// pulls once).
const FRESH_PULL: Duration = Duration::from_secs(2);
/// Clients get the registry's answer, cut to this many bytes.
const REASON_BYTES: usize = 300;
/// Registry answers that mean the same pull will fail again: nothing to retry soon.
const PERMANENT: [&str; 7] = [
    "not found",
    "manifest unknown",
    "unauthorized",
    "denied",
    "authentication required",
    "no basic auth credentials",
    "invalid reference",
];

/// What the pulls of one driver remember.
#[derive(Default)]
pub(super) struct PullState {
    failed: HashMap<String, (Instant, String, bool)>,
    pulled: HashMap<String, Instant>,
}

impl Images {
    /// The id of the image `reference`, pulled first if `policy` says so. Progress goes to
    /// `line` (the instance's log) and to valet's own log. `phase` hears
    /// [`StartPhase::Pulling`] before a pull (or the wait for another start's pull of the same
    /// image) and [`StartPhase::Launching`] after it, whatever its outcome.
    pub async fn reference_id(
        &self,
        class: &str,
        reference: &str,
        policy: PullPolicy,
        phase: PhaseSink<'_>,
        line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String, DriverError> {
        if policy != PullPolicy::Always {
            if let Some(id) = self.local_id(reference).await? {
                return Ok(id);
            }
        }
        if policy == PullPolicy::Never {
            return Err(DriverError::Image {
                message: format!(
                    "image `{reference}` is not on the Docker Engine and class `{class}` has \
                     pull = \"never\": load or pull it there first"
                ),
                retryable: false,
            });
        }
        phase(StartPhase::Pulling);
        let id = self.pull_for(class, reference, policy, line).await;
        phase(StartPhase::Launching);
        id
    }

    /// [`Self::reference_id`] once a pull may be needed: one pull per reference at a time.
    async fn pull_for(
        &self,
        class: &str,
        reference: &str,
        policy: PullPolicy,
        line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String, DriverError> {
        let lock = self.build_lock(reference);
        let _one_pull = lock.lock().await;
        if policy == PullPolicy::Missing {
            // Pulled by the start that held the lock before this one.
            if let Some(id) = self.local_id(reference).await? {
                return Ok(id);
            }
        } else if self.pulled_within(reference, FRESH_PULL) {
            if let Some(id) = self.local_id(reference).await? {
                return Ok(id);
            }
        }
        let pulled = self.pull(reference, line).await;
        match (pulled, policy) {
            (Ok(()), _) => {}
            (Err(e @ DriverError::Image { .. }), PullPolicy::Always) => {
                // A registry that is down must not take down a class whose image is here.
                match self.local_id(reference).await? {
                    Some(id) => {
                        tracing::warn!(class, image = reference, error = %e, "pull failed; starting the image already on the engine");
                        line(&format!("pull failed, using the local image: {e}"));
                        return Ok(id);
                    }
                    None => return Err(e),
                }
            }
            (Err(e), _) => return Err(e),
        }
        self.local_id(reference)
            .await?
            .ok_or_else(|| DriverError::Image {
                message: format!("image `{reference}` was pulled but the engine does not list it"),
                retryable: true,
            })
    }

    /// The image's id when the engine has it.
    async fn local_id(&self, reference: &str) -> Result<Option<String>, DriverError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(Some(image.id.unwrap_or_else(|| reference.to_string()))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(engine(format!("cannot inspect image `{reference}`"), e)),
        }
    }

    fn pulled_within(&self, reference: &str, age: Duration) -> bool {
        let state = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        state
            .pulled
            .get(reference)
            .is_some_and(|at| at.elapsed() < age)
    }

    /// Pulls `reference` with the credentials its registry has; a recent failure answers
    /// again without asking the registry.
    pub async fn pull(
        &self,
        reference: &str,
        line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DriverError> {
        // The credentials' look-up (a helper may be slow) counts too.
        let deadline = tokio::time::Instant::now() + self.pull_timeout;
        if let Some((message, retryable)) = self.recent_failure(reference) {
            return Err(DriverError::Image { message, retryable });
        }
        let parsed = Reference::parse(reference);
        let registry = parsed.registry.clone();
        let auth = match credentials(&self.registries, &registry).await {
            Ok(auth) => auth,
            Err(why) => {
                let message = format!("cannot pull image `{reference}`: {why}");
                return Err(self.remember(reference, message, false));
            }
        };
        let from = auth.as_ref().map_or("none", |(_, from)| *from);
        tracing::info!(
            image = reference,
            registry,
            credentials = from,
            "pulling image"
        );
        line(&format!("pulling image {reference} from {registry}"));
        let started = Instant::now();
        let options = CreateImageOptions {
            from_image: Some(parsed.name.clone()),
            tag: Some(parsed.tag.clone()),
            ..Default::default()
        };
        let mut stream = self
            .docker
            .create_image(Some(options), None, auth.map(|(c, _)| c));
        let mut progress = Progress::default();
        loop {
            let item = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    let message = format!(
                        "cannot pull image `{reference}` from {registry}: not pulled within {} \
                         (server.timeouts.pull)",
                        human_duration(self.pull_timeout)
                    );
                    tracing::warn!(image = reference, registry, error = %message, "pull failed");
                    line(&message);
                    return Err(self.remember(reference, message, true));
                }
            };
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    let error = pull_failure(reference, &registry, e);
                    if let DriverError::Image { message, retryable } = &error {
                        tracing::warn!(image = reference, registry, error = %message, "pull failed");
                        line(message);
                        return Err(self.remember(reference, message.clone(), *retryable));
                    }
                    return Err(error);
                }
            };
            if let Some(milestone) = progress.milestone(&info) {
                tracing::info!(image = reference, milestone, "image pull");
                line(&milestone);
            }
        }
        let (layers, bytes) = progress.totals();
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(image = reference, layers, bytes, seconds, "image pulled");
        line(&format!(
            "pulled {reference}: {layers} layers, {} in {seconds:.1} s",
            human_bytes(bytes)
        ));
        let mut state = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        state.failed.remove(reference);
        state.pulled.insert(reference.to_string(), Instant::now());
        Ok(())
    }

    fn recent_failure(&self, reference: &str) -> Option<(String, bool)> {
        let state = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        let (at, message, retryable) = state.failed.get(reference)?;
        (at.elapsed() < REMEMBER_FAILURE).then(|| (message.clone(), *retryable))
    }

    fn remember(&self, reference: &str, message: String, retryable: bool) -> DriverError {
        let mut state = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (Instant::now(), message.clone(), retryable);
        state.failed.insert(reference.to_string(), entry);
        DriverError::Image { message, retryable }
    }
}

/// The engine's answer to a pull as an error: the registry's message when the engine got
/// one, an engine error when the engine itself could not be reached.
fn pull_failure(reference: &str, registry: &str, e: bollard::errors::Error) -> DriverError {
    use bollard::errors::Error;
    let said = match e {
        Error::DockerStreamError { error } => error,
        Error::DockerResponseServerError { message, .. } => message,
        other => return engine(format!("cannot pull image `{reference}`"), other),
    };
    let lower = said.to_ascii_lowercase();
    let retryable = !PERMANENT.iter().any(|p| lower.contains(p));
    // The whole answer for the operator; clients get `public_answer` of it.
    tracing::warn!(image = reference, registry, answer = %said.trim(), "registry answer to a pull");
    let mut said = public_answer(&said);
    if said.len() > REASON_BYTES {
        let mut cut = REASON_BYTES;
        while !said.is_char_boundary(cut) {
            cut -= 1;
        }
        said.truncate(cut);
        said.push_str("...");
    }
    DriverError::Image {
        message: format!("cannot pull image `{reference}` from {registry}: {said}"),
        retryable,
    }
}

/// What clients may be told of an engine's pull error: the registry's own answer ("manifest
/// unknown", "unauthorized: authentication required"), without the URLs the engine quotes it
/// with; a failure to reach the registry is said in a few words, since the engine's text for
/// it names this machine's network (resolver address, proxy, local addresses).
fn public_answer(said: &str) -> String {
    let lower = said.to_ascii_lowercase();
    let unreachable = [
        ("no such host", "its name does not resolve"),
        ("server misbehaving", "its name does not resolve"),
        ("connection refused", "it refused the connection"),
        ("i/o timeout", "it did not answer in time"),
        ("deadline exceeded", "it did not answer in time"),
        ("timeout awaiting", "it did not answer in time"),
        ("no route to host", "no route leads to it"),
        ("network is unreachable", "no route leads to it"),
        ("x509", "its TLS certificate is not trusted"),
        ("tls:", "the TLS handshake failed"),
        ("http response to https client", "it speaks HTTP, not HTTPS"),
        ("proxyconnect", "the proxy to it failed"),
    ];
    if let Some((_, why)) = unreachable.iter().find(|(mark, _)| lower.contains(mark)) {
        return format!("the registry could not be reached: {why}");
    }
    // `Get "https://host/v2/...": unauthorized` -> `unauthorized`.
    let mut out = String::with_capacity(said.len());
    let mut rest = said.trim();
    while let Some(start) = rest.find("\"http") {
        // The request's method before the URL goes with it.
        let before = rest[..start].trim_end();
        let method = before.rsplit(' ').next().filter(|w| {
            ["get", "head", "post", "put", "patch", "delete"]
                .iter()
                .any(|m| w.eq_ignore_ascii_case(m))
        });
        out.push_str(method.map_or(before, |m| &before[..before.len() - m.len()]));
        out.push(' ');
        let after = &rest[start + 1..];
        rest = after.find('"').map_or("", |end| &after[end + 1..]);
        rest = rest.trim_start_matches(':').trim_start();
    }
    out.push_str(rest);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let out = out
        .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
        .to_string();
    if out.is_empty() {
        "the registry refused the pull".into()
    } else {
        out
    }
}

/// The milestones of one pull: each layer's steps once each (the engine repeats
/// `Downloading` and `Extracting` with every byte count), and the bytes of each layer.
#[derive(Default)]
struct Progress {
    seen: HashSet<(String, String)>,
    sizes: HashMap<String, i64>,
}

impl Progress {
    fn milestone(&mut self, info: &bollard::models::CreateImageInfo) -> Option<String> {
        let status = info.status.as_deref()?.trim();
        let Some(layer) = info.id.as_deref().filter(|id| is_layer(id)) else {
            // "Pulling from ...", "Digest: ...", "Status: Downloaded newer image for ...".
            return Some(status.to_string());
        };
        let total = info.progress_detail.as_ref().and_then(|p| p.total);
        if let Some(total) = total.filter(|t| *t > 0) {
            self.sizes.entry(layer.to_string()).or_insert(total);
        }
        if !self.seen.insert((layer.to_string(), status.to_string())) {
            return None;
        }
        Some(match (status, self.sizes.get(layer)) {
            ("Downloading" | "Pull complete", Some(size)) => {
                format!("layer {layer}: {status} ({})", human_bytes(*size))
            }
            _ => format!("layer {layer}: {status}"),
        })
    }

    fn totals(&self) -> (usize, i64) {
        let layers = self.seen.iter().map(|(l, _)| l).collect::<HashSet<_>>();
        (layers.len(), self.sizes.values().sum())
    }
}

/// Layer ids are 12 hex digits; the engine also puts the tag in `id` of the first line.
fn is_layer(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// `10m`, `90s`, `1.5s`: a timeout as valet.toml would write it.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Asks the registry (through the engine, with the same credentials a pull would use)
/// whether `reference` resolves, without pulling it. Its digest, or the registry's answer.
pub async fn resolve_remote(
    docker: &bollard::Docker,
    registries: &[valet_config::RegistryConfig],
    reference: &str,
) -> Result<String, String> {
    let registry = Reference::parse(reference).registry;
    let auth = credentials(registries, &registry)
        .await
        .map_err(|e| e.to_string())?;
    match docker
        .inspect_registry_image(reference, auth.map(|(c, _)| c))
        .await
    {
        Ok(found) => Ok(found.descriptor.digest.unwrap_or_default()),
        Err(e) => Err(match pull_failure(reference, &registry, e) {
            // Nothing was pulled: say what was asked.
            DriverError::Image { message, .. } => {
                message.replacen("cannot pull image", "cannot resolve image", 1)
            }
            other => other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{CreateImageInfo, ProgressDetail};

    fn info(id: &str, status: &str, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: total.map(|t| ProgressDetail {
                current: Some(1),
                total: Some(t),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_keeps_one_line_per_layer_step() {
        let mut p = Progress::default();
        let layer = "0123456789ab";
        let lines: Vec<String> = [
            info("v1", "Pulling from valet/app", None),
            info(layer, "Pulling fs layer", None),
            info(layer, "Downloading", Some(2_500_000)),
            info(layer, "Downloading", Some(2_500_000)),
            info(layer, "Extracting", Some(2_500_000)),
            info(layer, "Extracting", Some(2_500_000)),
            info(layer, "Pull complete", None),
        ]
        .iter()
        .filter_map(|i| p.milestone(i))
        .collect();
        assert_eq!(
            lines,
            [
                "Pulling from valet/app",
                "layer 0123456789ab: Pulling fs layer",
                "layer 0123456789ab: Downloading (2.5 MB)",
                "layer 0123456789ab: Extracting",
                "layer 0123456789ab: Pull complete (2.5 MB)",
            ]
        );
        assert_eq!(p.totals(), (1, 2_500_000));
    }

    #[test]
    fn timeouts_read_as_they_are_written() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn registry_answers_say_whether_a_retry_may_help() {
        use bollard::errors::Error;
        let fail = |error: &str| {
            let e = Error::DockerStreamError {
                error: error.into(),
            };
            match pull_failure("r:1/a:b", "r:1", e) {
                DriverError::Image { message, retryable } => (message, retryable),
                other => panic!("{other}"),
            }
        };
        let (message, retryable) = fail("manifest for r:1/a:b not found: manifest unknown");
        assert!(!retryable);
        assert!(message.starts_with("cannot pull image `r:1/a:b` from r:1: manifest"));
        assert!(!fail("unauthorized: authentication required").1);
        assert!(fail("dial tcp 127.0.0.1:1: connect: connection refused").1);
        let long = fail(&"x".repeat(1000)).0;
        assert!(long.len() < 400 && long.ends_with("..."), "{long}");
    }

    #[test]
    fn clients_hear_the_registry_not_this_machines_network() {
        let cases = [
            (
                "Get \"https://registry.internal:5000/v2/\": dial tcp: lookup registry.internal on 10.1.2.3:53: no such host",
                "the registry could not be reached: its name does not resolve",
            ),
            (
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                "the registry could not be reached: it refused the connection",
            ),
            (
                "Head \"http://127.0.0.1:5000/v2/app/manifests/1\": unauthorized: authentication required",
                "unauthorized: authentication required",
            ),
            (
                "manifest for r:1/a:b not found: manifest unknown: manifest unknown",
                "manifest for r:1/a:b not found: manifest unknown: manifest unknown",
            ),
            ("Get \"https://x/v2/\":", "the registry refused the pull"),
        ];
        for (said, want) in cases {
            assert_eq!(public_answer(said), want, "{said}");
            assert!(!public_answer(said).contains("10.1.2.3"));
        }
    }
}
