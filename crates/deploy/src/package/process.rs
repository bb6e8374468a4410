//! Versions run as processes on this host: a build folder and a command, with requirements in
//! the host's cache (a virtualenv, `node_modules`), owned by the project's own system user
//! when valet is root.

use super::{App, Packager, Prepared, Runnable, Runtime, Version};
use crate::cache::Cache;
use crate::progress::Progress;
use crate::{node, python, tenant, DeployError};
use async_trait::async_trait;
use valet_config::Config;

/// Packages versions for the process driver.
pub struct ProcessPackager {
    cache: Cache,
}

impl ProcessPackager {
    /// Requirement sets are installed in `config`'s deploy cache.
    pub fn new(config: &Config) -> Self {
        Self {
            cache: Cache::new(super::cache_root(config)),
        }
    }
}

#[async_trait]
impl Packager for ProcessPackager {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn prepare(&self, app: &App<'_>, progress: &Progress) -> Result<Prepared, DeployError> {
        let (command, reused) = match app.runtime {
            Runtime::Python => {
                let ready = python::prepare(app.dir, app.requirements, &self.cache, progress);
                let ready = ready.await?;
                (ready.command, ready.reused)
            }
            Runtime::Node => {
                let ready = node::prepare(app.dir, app.requirements, &self.cache, progress);
                let ready = ready.await?;
                (ready.command, ready.reused)
            }
        };
        Ok(Prepared::run(app.runtime, command, reused))
    }

    /// Gives the build and the project's data folder to the project's user (when valet is
    /// root), so one project cannot read another's files.
    async fn package(
        &self,
        version: &Version<'_>,
        _prepared: &Prepared,
        _progress: &Progress,
    ) -> Result<(), DeployError> {
        let user = tenant::ensure_user(version.project).await?;
        tokio::fs::create_dir_all(version.data)
            .await
            .map_err(|e| DeployError::io("cannot make a project's data folder", e))?;
        if let Some(user) = user {
            // Checked at `valet up` too; a folder closed since then is named here rather
            // than left to fail the start as "cannot run program".
            let builds = version.app.parent().unwrap_or(version.app);
            tenant::check_reachable(builds).map_err(DeployError::Unavailable)?;
            tenant::hand_over(version.app, &user).await?;
            tenant::hand_over_folder(version.data, &user).await?;
        }
        Ok(())
    }

    async fn runnable(&self, version: &Version<'_>) -> Result<Runnable, DeployError> {
        // The folder is what runs: without it there is nothing to start.
        if !version.app.is_dir() {
            return Err(DeployError::NotFound(format!(
                "the files of version {} are gone",
                version.number
            )));
        }
        Ok(Runnable {
            user: tenant::ensure_user(version.project).await?,
            ..Runnable::default()
        })
    }

    // The build folder itself is removed by the deployer on every engine; nothing else was
    // made per version or per project.
}
