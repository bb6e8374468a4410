//! The Durable Object part of valet: one instance per (class, key), started on first request,
//! put to sleep when idle, restarted with backoff when it crashes.
//!
//! [`Instances`] is the table and the per-request entry point ([`Instances::acquire`]); each live
//! instance has one task ([`task`]) that drives it through its states.
#![forbid(unsafe_code)]

mod admission;
pub mod class;
pub mod collect;
pub mod error;
pub mod instance;
pub mod owner;
mod table;
mod task;

pub use class::{ClassRuntime, ProjectRef};
pub use error::AcquireError;
pub use instance::{Instance, InstanceInfo, Lease, ProjectName, Status};
pub use owner::{
    Claim, ClaimError, ClusterCounters, ClusterView, Coordinator, FenceAt, LeaseView, NodeView,
    PeerRoute,
};
pub use table::{ArrivingProject, Instances};
pub use task::backoff as restart_backoff;
/// Every connection to an instance is confirmed to have reached it (see the process driver's
/// listeners module); the gateway's connects use this.
pub use valet_runtime::{confirm_listener, PortConflict};
