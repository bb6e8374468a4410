//! An engine that cannot run deployed projects yet (Swarm): every deploy is refused with the
//! reason, while valet.toml's classes run as usual.

use super::{App, Packager, Prepared, Runnable, Version};
use crate::progress::Progress;
use crate::DeployError;
use async_trait::async_trait;

/// Refuses to package: deployed projects need an engine that has them.
pub struct UnavailablePackager {
    engine: &'static str,
}

impl UnavailablePackager {
    /// `engine`: the driver's name, as valet.toml writes it.
    pub fn new(engine: &'static str) -> Self {
        Self { engine }
    }

    fn refusal(&self) -> DeployError {
        DeployError::Unavailable(format!(
            "deployed projects are not available with driver = \"{}\" yet: run them on a \
             valet with driver = \"docker\" or \"process\"",
            self.engine
        ))
    }
}

#[async_trait]
impl Packager for UnavailablePackager {
    fn name(&self) -> &'static str {
        self.engine
    }

    async fn prepare(&self, _app: &App<'_>, _progress: &Progress) -> Result<Prepared, DeployError> {
        Err(self.refusal())
    }

    async fn package(
        &self,
        _version: &Version<'_>,
        _prepared: &Prepared,
        _progress: &Progress,
    ) -> Result<(), DeployError> {
        Err(self.refusal())
    }

    async fn runnable(&self, _version: &Version<'_>) -> Result<Runnable, DeployError> {
        Err(self.refusal())
    }
}
