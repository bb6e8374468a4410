//! What actually runs instances. The instance layer speaks only to [`Driver`] and [`Running`];
//! the process driver is the embedded default, Docker and Kubernetes implement the same traits.
#![deny(unsafe_code)]

pub mod docker;
pub mod driver;
#[cfg(feature = "test-util")]
pub mod fake;
pub mod kubernetes;
pub mod logfile;
pub mod logs;
pub mod probe;
pub mod process;
pub mod project;
pub mod swarm;

pub use docker::DockerDriver;
pub use driver::{
    Adopted, Driver, DriverError, Endpoints, ExitStatus, Handover, InstanceSpec, PhaseSink,
    Running, StartPhase,
};
pub use kubernetes::KubernetesDriver;
pub use logs::LogRing;
pub use probe::{NetProbe, Probe, ProbeError};
pub use process::listeners::{confirm as confirm_listener, PortConflict};
pub use process::ProcessDriver;
pub use project::ProjectEngine;
pub use swarm::SwarmDriver;
