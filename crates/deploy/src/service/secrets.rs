//! Secrets: a project's (opened into its versions' env; a change starts the current version
//! again and moves traffic only once it is ready), a `[[containers]]` class's and a
//! `[[registries]]` entry's password (both read at valet's next start).

use super::Deployer;
use crate::DeployError;
use valet_config::Config;
use valet_store::{Project, Store};

impl Deployer {
    /// The project's secrets, opened.
    pub(super) async fn env_of(
        &self,
        project_id: &str,
    ) -> Result<Vec<(String, String)>, DeployError> {
        let scope = secret_scope(project_id);
        let mut env = Vec::new();
        for sealed in self.store.secrets(&scope).await? {
            env.push((sealed.name.clone(), self.secrets.open(&scope, &sealed)?));
        }
        Ok(env)
    }

    /// Names of a project's secrets (never their values).
    pub async fn secret_names(&self, project: &Project) -> Result<Vec<String>, DeployError> {
        let sealed = self.store.secrets(&secret_scope(&project.id)).await?;
        Ok(sealed.into_iter().map(|s| s.name).collect())
    }

    /// Sets (`Some`) or removes (`None`) a project secret. The current version is started
    /// again with the new env first; only once it is ready is the change stored and traffic
    /// moved, so a value that breaks the app changes nothing. False when removing a secret
    /// that does not exist.
    pub async fn set_secret(
        &self,
        project: &Project,
        name: &str,
        value: Option<&str>,
    ) -> Result<bool, DeployError> {
        crate::check_secret_name(name)?;
        if value.is_some_and(|v| v.len() > crate::MAX_SECRET_BYTES) {
            return Err(DeployError::TooLarge {
                what: "the secret".into(),
                limit: crate::MAX_SECRET_BYTES as u64,
            });
        }
        let lock = self.lock(&project.id);
        let _held = lock.lock().await;
        let scope = secret_scope(&project.id);
        let mut env = self.env_of(&project.id).await?;
        let existed = env.iter().any(|(n, _)| n == name);
        if value.is_none() && !existed {
            return Ok(false);
        }
        env.retain(|(n, _)| n != name);
        if let Some(value) = value {
            env.push((name.to_string(), value.to_string()));
        }
        let sealed = value
            .map(|v| self.secrets.seal(&scope, name, v))
            .transpose()?;
        let current = self
            .store
            .deployment(&project.id, project.current_version)
            .await?;
        let class = match current {
            Some(deployment) => {
                self.ensure_built(&deployment).await?;
                let class = self.start_version(&deployment, &project.name, env).await?;
                Some(class)
            }
            None => None,
        };
        let stored = match &sealed {
            Some(sealed) => self.store.put_secret(&scope, sealed).await.map(|()| true),
            None => self.store.delete_secret(&scope, name).await,
        };
        if let Err(e) = stored {
            if let Some(class) = &class {
                self.stop_for_good(&project.id, class).await;
            }
            return Err(e.into());
        }
        if let Some(class) = class {
            self.switch(&project.id, class);
        }
        Ok(true)
    }

    /// Names of a container class's stored secrets; `None` when the config has no such class.
    pub async fn class_secret_names(
        &self,
        class: &str,
    ) -> Result<Option<Vec<String>>, DeployError> {
        if !self.config.containers.iter().any(|c| c.class_name == class) {
            return Ok(None);
        }
        let sealed = self.store.secrets(&crate::class_scope(class)).await?;
        Ok(Some(sealed.into_iter().map(|s| s.name).collect()))
    }

    /// Sets (`Some`) or removes (`None`) a secret of a `[[containers]]` class. It must be one
    /// of the class's `secrets`; it reaches the class's instances from valet's next start
    /// (valet's own environment still wins). False when removing one that is not stored.
    pub async fn set_class_secret(
        &self,
        class: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<bool, DeployError> {
        let Some(config) = self
            .config
            .containers
            .iter()
            .find(|c| c.class_name == class)
        else {
            return Err(DeployError::NotFound(format!(
                "no container class named {class:?}"
            )));
        };
        if !config.secrets.iter().any(|s| s == name) {
            return Err(DeployError::BadUpload(format!(
                "class {class:?} does not list {name:?} in its secrets = [...]"
            )));
        }
        if value.is_some_and(|v| v.len() > crate::MAX_SECRET_BYTES) {
            return Err(DeployError::TooLarge {
                what: "the secret".into(),
                limit: crate::MAX_SECRET_BYTES as u64,
            });
        }
        let scope = crate::class_scope(class);
        match value {
            Some(value) => {
                let sealed = self.secrets.seal(&scope, name, value)?;
                self.store.put_secret(&scope, &sealed).await?;
                Ok(true)
            }
            None => Ok(self.store.delete_secret(&scope, name).await?),
        }
    }
}

impl Deployer {
    /// Names of the `[[registries]]` passwords in the store (never their values).
    pub async fn registry_secret_names(&self) -> Result<Vec<String>, DeployError> {
        let sealed = self.store.secrets(crate::REGISTRY_SCOPE).await?;
        Ok(sealed.into_iter().map(|s| s.name).collect())
    }

    /// Whether a `[[registries]]` entry of the running config names `name` as its
    /// `password_secret`.
    pub fn names_registry_password(&self, name: &str) -> bool {
        self.config
            .registries
            .iter()
            .any(|r| r.password_secret == name)
    }

    /// Sets (`Some`) or removes (`None`) a registry password, used from valet's next start by
    /// the `[[registries]]` entries whose `password_secret` is `name` (valet's own environment
    /// still wins). The running config need not name it yet: valet.toml may be edited before
    /// that start. False when removing one not stored.
    pub async fn set_registry_secret(
        &self,
        name: &str,
        value: Option<&str>,
    ) -> Result<bool, DeployError> {
        if !self.names_registry_password(name) {
            crate::check_secret_name(name)?;
        }
        if value.is_some_and(|v| v.len() > crate::MAX_SECRET_BYTES) {
            return Err(DeployError::TooLarge {
                what: "the secret".into(),
                limit: crate::MAX_SECRET_BYTES as u64,
            });
        }
        let scope = crate::REGISTRY_SCOPE;
        match value {
            Some(value) => {
                let sealed = self.secrets.seal(scope, name, value)?;
                self.store.put_secret(scope, &sealed).await?;
                Ok(true)
            }
            None => Ok(self.store.delete_secret(scope, name).await?),
        }
    }
}

/// The store scope of a project's secrets.
pub(super) fn secret_scope(project_id: &str) -> String {
    format!("project:{project_id}")
}

/// Whether this valet's secret key opens the store's secrets (see
/// [`crate::SecretBox::is_the_stores_key`]): `Err` names the key file and the fix. Run at start,
/// before valet listens: a replica with another key must not serve a moment.
pub async fn check_secret_key(config: &Config, store: &Store) -> Result<(), String> {
    let failed =
        |e: &dyn std::fmt::Display| format!("checking the secret key against the store: {e}");
    let path = crate::SecretBox::key_path(&config.data_dir());
    let secrets = crate::SecretBox::load_or_create(&path).map_err(|e| failed(&e))?;
    // Where secrets sealed before the check would be: registry passwords, class and project
    // secrets. Only a store without a check is asked there: every later start reads the check
    // alone, not the list of projects.
    let mut scopes = Vec::new();
    if !crate::secrets::store_has_key_check(store)
        .await
        .map_err(|e| failed(&e))?
    {
        scopes.push(crate::REGISTRY_SCOPE.to_string());
        scopes.extend(
            config
                .containers
                .iter()
                .map(|c| crate::class_scope(&c.class_name)),
        );
        let projects = store.projects(None).await.map_err(|e| failed(&e))?;
        scopes.extend(projects.iter().map(|p| secret_scope(&p.id)));
    }
    let same = secrets
        .is_the_stores_key(store, &scopes)
        .await
        .map_err(|e| failed(&e))?;
    if same {
        return Ok(());
    }
    Err(format!(
        "the secret key {} is not the one this store's secrets were sealed with: every \
         valet on one store needs the same key (copy the file from the valet that made it, \
         or point VALET_SECRET_KEY_FILE at it); with another key no project or class \
         secret opens",
        path.display()
    ))
}
