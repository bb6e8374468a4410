//! What actually runs instances. The instance layer speaks only to [`Driver`] and [`Running`];
//! the process driver is the embedded default, Docker and Kubernetes implement the same traits.
#![deny(unsafe_code)]

pub mod docker;
pub mod driver;
pub mod logfile;
pub mod logs;
pub mod process;

pub use docker::DockerDriver;
pub use driver::{
    Adopted, Driver, DriverError, Endpoints, ExitStatus, Handover, InstanceSpec, Running,
};
pub use logs::LogRing;
pub use process::listeners::{confirm as confirm_listener, PortConflict};
pub use process::ProcessDriver;
