//! The deploy pipeline behind `POST /api/containers/upload`: unpack the upload safely, detect
//! its runtime, install its requirements into a shared cache, start it as a project class,
//! and move the project's traffic only once the new version is ready.
#![forbid(unsafe_code)]

mod cache;
mod error;
mod node;
mod package;
mod plans;
mod progress;
mod python;
mod secrets;
mod service;
mod tenant;
mod unpack;
mod upload;

pub use error::DeployError;
pub use package::{
    App, DockerPackager, Packager, Prepared, ProcessPackager, Runnable, Runtime, Version,
};
pub use plans::{Plan, PlanRefusal, Plans, DEFAULT_MAX_UPLOAD};
pub use progress::{Event, Progress};
pub use secrets::{
    check_secret_name, class_scope, open_scope, SecretBox, MAX_SECRET_BYTES, REGISTRY_SCOPE,
};
pub use service::{check_secret_key, Deployed, Deployer};
pub use tenant::{blocked_folder, check_reachable};
pub use unpack::{MAX_ENTRIES, MAX_UNPACKED};
pub use upload::{check_name, default_name, FileKind, Upload, MAX_NAME_CHARS};
