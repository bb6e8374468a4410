//! Images: a class names either a Dockerfile, built through the Engine API and tagged by the
//! hash of its context and build args, or an image reference, pulled by the class's `pull`
//! policy (see [`super::pull`]).

use super::context::Context;
use super::logs::LogSink;
use super::pull::PullState;
use super::settings::ClassSettings;
use crate::driver::{DriverError, PhaseSink};
use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use valet_config::RegistryConfig;

/// Where a class's image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Dockerfile {
        dockerfile: PathBuf,
        /// Folders left out of the context (valet's data folder).
        exclude: Vec<PathBuf>,
    },
    Reference(String),
}

impl ImageSource {
    /// `image` from valet.toml: an existing file, or anything written as a path (`./x`,
    /// `/x`, `*Dockerfile*`), is a Dockerfile; the rest is an image reference.
    pub fn parse(image: &str, base_dir: &Path, data_dir: &Path) -> Self {
        let path = base_dir.join(image);
        let looks_like_path = image.starts_with('.')
            || image.starts_with('/')
            || image.to_ascii_lowercase().contains("dockerfile");
        if path.is_file() || looks_like_path {
            Self::Dockerfile {
                dockerfile: path,
                exclude: vec![data_dir.to_path_buf()],
            }
        } else {
            Self::Reference(image.to_string())
        }
    }
}

/// A class's image, resolved without building it.
pub struct Resolved {
    /// What containers are created from: the hash tag, or the reference.
    pub reference: String,
    /// The image id, once known (a reference's at once, a Dockerfile's after [`Images::ensure`]).
    id: Option<String>,
    /// The context archive of a Dockerfile.
    context: Option<Vec<u8>>,
    dockerfile: String,
}

/// Builds, pulls and looks up images. One build or pull per tag at a time: instances of one
/// class that start together wait for a single one.
#[derive(Clone)]
pub struct Images {
    pub(super) docker: Docker,
    building: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// `[[registries]]` of valet.toml: credentials by host.
    pub(crate) registries: Arc<[RegistryConfig]>,
    pub(super) pulls: Arc<Mutex<PullState>>,
    /// `server.timeouts.pull`: the longest one pull may take.
    pub(super) pull_timeout: std::time::Duration,
}

impl Images {
    pub fn new(
        docker: Docker,
        registries: Vec<RegistryConfig>,
        pull_timeout: std::time::Duration,
    ) -> Self {
        Self {
            docker,
            building: Arc::default(),
            registries: registries.into(),
            pulls: Arc::default(),
            pull_timeout,
        }
    }

    /// The image a class runs, without building or pulling: the tag of a Dockerfile's
    /// context, or the reference. A missing Dockerfile is an error naming the class.
    pub async fn resolve(
        &self,
        class: &str,
        settings: &ClassSettings,
    ) -> Result<Resolved, DriverError> {
        match &settings.image {
            ImageSource::Reference(reference) => Ok(Resolved {
                reference: reference.clone(),
                id: None,
                context: None,
                dockerfile: String::new(),
            }),
            ImageSource::Dockerfile {
                dockerfile,
                exclude,
            } => {
                let (context, name) = archive(class, dockerfile, exclude).await?;
                let tag = tag_for(class, &context, &name, &settings.build_args);
                Ok(Resolved {
                    reference: tag,
                    id: None,
                    context: Some(context),
                    dockerfile: name,
                })
            }
        }
    }

    /// Makes sure the resolved image exists, building it when its tag is missing or pulling a
    /// reference by the class's policy, and returns its id: what the config hash names, since
    /// a rebuild that only hit the layer cache gives the same id under a new tag, and a pull
    /// of a moved tag a new one. Build and pull output goes to `sink` and to valet's own log;
    /// `phase` hears when a pull begins and ends.
    pub async fn ensure(
        &self,
        class: &str,
        settings: &ClassSettings,
        resolved: Resolved,
        sink: &mut LogSink,
        phase: PhaseSink<'_>,
    ) -> Result<String, DriverError> {
        if let Some(id) = resolved.id {
            return Ok(id);
        }
        if resolved.context.is_none() {
            // Each milestone reaches the log file as it happens, not when the pull ends: a
            // large pull is what `valet start` and `valet logs` show meanwhile.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let pull = async move {
                let mut send = |line: &str| drop(tx.send(line.to_string()));
                let reference = &resolved.reference;
                self.reference_id(class, reference, settings.pull, phase, &mut send)
                    .await
                // `send`, and with it the sender, is dropped here: the writer below ends.
            };
            let write = async {
                while let Some(line) = rx.recv().await {
                    sink.keep(line);
                    sink.flush().await;
                }
            };
            let (id, ()) = tokio::join!(pull, write);
            return id;
        }
        let tag = resolved.reference;
        let lock = self.build_lock(&tag);
        let _building = lock.lock().await;
        if let Some(id) = self.id_of(&tag).await {
            return Ok(id);
        }
        tracing::info!(class, %tag, "building image");
        let options = BuildImageOptions {
            dockerfile: resolved.dockerfile,
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(settings.build_args.clone().into_iter().collect()),
            labels: Some(HashMap::from([
                ("valet.managed".to_string(), "true".to_string()),
                ("valet.class".to_string(), class.to_string()),
            ])),
            ..Default::default()
        };
        let context = resolved.context.unwrap_or_default();
        let registries = &self.registries;
        let result = run_build(&self.docker, options, context, registries, &mut |line| {
            tracing::info!(class, line, "image build");
            sink.keep(line.to_string());
        })
        .await;
        sink.flush().await;
        // The engine's own reason, short: it reaches the clients waiting on this start (their
        // 503) and `valet instances`, not only valet's log. It names the build's steps and
        // files inside its context, nothing of this machine; the whole output is in the log.
        let failed = |message: &str| DriverError::Image {
            message: format!(
                "class `{class}`: image build failed: {}",
                short_reason(message)
            ),
            retryable: false,
        };
        match result {
            Err(message) => Err(failed(&message)),
            Ok(()) => match self.id_of(&tag).await {
                Some(id) => Ok(id),
                None => Err(failed("the engine reported no image")),
            },
        }
    }

    async fn id_of(&self, tag: &str) -> Option<String> {
        let image = self.docker.inspect_image(tag).await.ok()?;
        Some(image.id.unwrap_or_else(|| tag.to_string()))
    }

    pub(super) fn build_lock(&self, tag: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        building.entry(tag.to_string()).or_default().clone()
    }
}

/// The first line of an engine's build error, at most 300 characters.
fn short_reason(message: &str) -> String {
    let line = message.trim().lines().next().unwrap_or("").trim();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// Sends a build context to the engine and reads its output to the end, each non-empty line
/// to `line`. `Err` holds the engine's reason when the build failed.
pub(super) async fn run_build(
    docker: &Docker,
    options: BuildImageOptions,
    context: Vec<u8>,
    registries: &[RegistryConfig],
    line: &mut (dyn FnMut(&str) + Send),
) -> Result<(), String> {
    let body = bollard::body_full(context.into());
    // The engine pulls a missing `FROM` image itself, with these credentials.
    let credentials = super::registry::all_credentials(registries).await;
    let credentials = (!credentials.is_empty()).then_some(credentials);
    let mut output = docker.build_image(options, credentials, Some(body));
    let mut failure = None;
    while let Some(item) = output.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.or(info.status) {
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .for_each(&mut *line);
                }
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    line(&message);
                    failure = Some(message);
                }
            }
            Err(e) => failure = Some(e.to_string()),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// The images a Dockerfile's `FROM` lines name, without `scratch`, earlier stages and
/// references built from `ARG`s (known only to the build).
pub fn from_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let mut words = words.skip_while(|w| w.starts_with("--"));
        let Some(image) = words.next() else { continue };
        let stage = match (words.next(), words.next()) {
            (Some(as_), Some(name)) if as_.eq_ignore_ascii_case("AS") => Some(name),
            _ => None,
        };
        let earlier = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
        if !earlier
            && image != "scratch"
            && !image.contains('$')
            && !images.iter().any(|i| i == image)
        {
            images.push(image.to_string());
        }
        stages.extend(stage.map(str::to_string));
    }
    images
}

/// The context archive and the Dockerfile's name inside it.
async fn archive(
    class: &str,
    dockerfile: &Path,
    exclude: &[PathBuf],
) -> Result<(Vec<u8>, String), DriverError> {
    if !dockerfile.is_file() {
        return Err(DriverError::Spec(format!(
            "class `{class}`: Dockerfile {} not found",
            dockerfile.display()
        )));
    }
    let root = dockerfile.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let context = Context {
        root: root.clone(),
        exclude: exclude.to_vec(),
    };
    let archived = tokio::task::spawn_blocking(move || context.archive())
        .await
        .map_err(|e| DriverError::io("context archiving panicked", std::io::Error::other(e)))?;
    let bytes = archived.map_err(|e| {
        DriverError::io(
            format!(
                "class `{class}`: cannot read build context {}",
                root.display()
            ),
            e,
        )
    })?;
    Ok((bytes, name))
}

/// `valet-<class>:<hash>`; repository names must be lower case.
fn tag_for(
    class: &str,
    context: &[u8],
    dockerfile: &str,
    args: &BTreeMap<String, String>,
) -> String {
    let mut hash = Sha256::new();
    hash.update(context);
    hash.update(dockerfile.as_bytes());
    for (k, v) in args {
        hash.update([0]);
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
    }
    let digest = hex::encode(&hash.finalize()[..12]);
    format!(
        "valet-{}:{digest}",
        super::names::sanitize(class).to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_path_like_names_are_dockerfiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.Dockerfile"), "FROM scratch").unwrap();
        let data = dir.path().join(".valet");
        let parse = |s| ImageSource::parse(s, dir.path(), &data);
        assert!(matches!(
            parse("app.Dockerfile"),
            ImageSource::Dockerfile { .. }
        ));
        assert!(matches!(
            parse("./missing/Dockerfile"),
            ImageSource::Dockerfile { .. }
        ));
        assert_eq!(
            parse("busybox:1.36"),
            ImageSource::Reference("busybox:1.36".into())
        );
        assert_eq!(
            parse("ghcr.io/x/y"),
            ImageSource::Reference("ghcr.io/x/y".into())
        );
    }

    #[test]
    fn from_lines_name_the_images_a_build_pulls() {
        let dockerfile = "FROM --platform=linux/amd64 r:1/base:v1 AS build\n\
                          RUN make\n\
                          from scratch\n\
                          FROM build\n\
                          ARG V\n\
                          FROM node:${V}\n\
                          FROM r:1/base:v1\n\
                          FROM nginx:1.27 as web\n";
        assert_eq!(from_images(dockerfile), ["r:1/base:v1", "nginx:1.27"]);
    }

    #[test]
    fn tags_change_with_context_and_build_args() {
        let args = BTreeMap::from([("V".to_string(), "1".to_string())]);
        let a = tag_for("My Class", b"ctx", "Dockerfile", &BTreeMap::new());
        assert!(a.starts_with("valet-my-class:"), "{a}");
        assert_eq!(
            a,
            tag_for("My Class", b"ctx", "Dockerfile", &BTreeMap::new())
        );
        assert_ne!(
            a,
            tag_for("My Class", b"ctx2", "Dockerfile", &BTreeMap::new())
        );
        assert_ne!(a, tag_for("My Class", b"ctx", "Dockerfile", &args));
    }
}
