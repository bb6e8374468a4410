//! valet's records: projects (apps uploaded through the deploy API), their deployments
//! (versions), API tokens (hashed) and usage events.
//!
//! One code path for both backends: sqlx's `Any` driver runs the same SQL on the embedded
//! SQLite file (`<data_dir>/store/valet.db`, WAL) and on PostgreSQL (`store = "postgres://..."`).
//! The SQL sticks to what both understand: `TEXT` and `BIGINT` columns, `$n` placeholders in
//! order, ids made by valet rather than by the database.
//!
//! The proxy hot path never reads the store: the deploy layer loads what it needs at start and
//! keeps routes in memory.
#![forbid(unsafe_code)]

mod error;
mod migrate;
mod open;
mod records;

pub use error::StoreError;
pub use records::{
    random_hex, Deployment, NewDeployment, Project, SealedSecret, StoredUpload, TokenInfo,
    TokenRecord, UsageEvent, TOKEN_ID_LEN,
};

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one SQLite file under `data_dir`.
    Sqlite,
    /// A PostgreSQL server named by `store = "postgres://..."`.
    Postgres,
}

/// Cheap-to-clone handle on the store (a connection pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Seconds since the Unix epoch, the one time format both backends store the same way.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The channel cluster replicas already listen on for lease changes (`valet-cluster`); a
/// project change goes out on it as `!project\n<id>` (a lease class is never `!project`).
pub const CHANGES_CHANNEL: &str = "valet_leases";
/// The class part of a project change's payload on [`CHANGES_CHANNEL`].
pub const PROJECT_CHANGE: &str = "!project";

const PROJECT_COLUMNS: &str = "id, name, owner, runtime, current_version, created_at";
const DEPLOYMENT_COLUMNS: &str =
    "project_id, version, build, runtime, command, requirements, created_at";

impl Store {
    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Records a deployment that became ready, in one transaction: the project (made on its
    /// first version), the deployment with the next version number, the project's current
    /// version, and a usage event. A crash before the commit leaves none of it.
    pub async fn record_deployment(
        &self,
        new: &NewDeployment,
    ) -> Result<(Project, Deployment), StoreError> {
        self.record_deployment_with(new, None).await
    }

    /// [`Store::record_deployment`], keeping the version's upload in the same transaction
    /// (cluster mode: the other replicas build it from there).
    pub async fn record_deployment_with(
        &self,
        new: &NewDeployment,
        upload: Option<&StoredUpload>,
    ) -> Result<(Project, Deployment), StoreError> {
        let mut tx = self.pool.begin().await?;
        let recorded = records::record_deployment(&mut tx, new, now()).await?;
        if let Some(upload) = upload {
            sqlx::query(
                "INSERT INTO uploads (project_id, build, file_name, runtime, requirements, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&new.project_id)
            .bind(&new.build)
            .bind(&upload.file_name)
            .bind(upload.runtime.as_deref())
            .bind(upload.requirements.as_deref())
            .bind(upload.body.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        self.announce(&mut tx, &new.project_id).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The upload a version was built from, when it was kept (cluster mode).
    pub async fn upload(
        &self,
        project_id: &str,
        build: &str,
    ) -> Result<Option<StoredUpload>, StoreError> {
        let row = sqlx::query(
            "SELECT file_name, runtime, requirements, body FROM uploads \
             WHERE project_id = $1 AND build = $2",
        )
        .bind(project_id)
        .bind(build)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredUpload {
                file_name: col(&r, "file_name")?,
                runtime: col(&r, "runtime")?,
                requirements: col(&r, "requirements")?,
                body: col(&r, "body")?,
            })
        })
        .transpose()
    }

    /// Tells every cluster replica, when the transaction commits, that a project changed
    /// (a version, a rollback, a secret, a delete): PostgreSQL's `NOTIFY` is sent at commit
    /// and not at all on a rollback, so a replica never hears of a change that did not
    /// happen, and never misses one that did while it listened. Nothing on SQLite (one valet).
    async fn announce(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project_id: &str,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2) AS sent")
                .bind(CHANGES_CHANNEL)
                .bind(format!("{PROJECT_CHANGE}\n{project_id}"))
                .fetch_one(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Writes a deployment's records and abandons the transaction instead of committing it:
    /// what a crash just before the commit leaves. For tests of that promise.
    #[doc(hidden)]
    pub async fn record_deployment_uncommitted(
        &self,
        new: &NewDeployment,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        records::record_deployment(&mut tx, new, now()).await?;
        drop(tx);
        Ok(())
    }

    /// Every stored token hash, for tests that check no token is kept in clear.
    #[doc(hidden)]
    pub async fn token_hashes(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT hash FROM tokens")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| col(r, "hash")).collect()
    }

    /// Closes every connection (waits for them to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Projects of one owner, or every project when `owner` is `None` (admin).
    pub async fn projects(&self, owner: Option<&str>) -> Result<Vec<Project>, StoreError> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query(&format!(
                "SELECT {PROJECT_COLUMNS} FROM projects WHERE owner = $1 ORDER BY created_at, id"
            ))
                .bind(owner)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(Project::from_row).collect()
    }

    /// One project by id.
    pub async fn project(&self, id: &str) -> Result<Option<Project>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Project::from_row).transpose()
    }

    /// One owner's project by name (names are unique per owner).
    pub async fn project_named(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<Project>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE owner = $1 AND name = $2"
        ))
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Project::from_row).transpose()
    }

    /// Number of projects an owner has (plan limit `max_projects`).
    pub async fn count_projects(&self, owner: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM projects WHERE owner = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Every version of a project, oldest first.
    pub async fn deployments(&self, project_id: &str) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE project_id = $1 ORDER BY version"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Deployment::from_row).collect()
    }

    /// One version of a project.
    pub async fn deployment(
        &self,
        project_id: &str,
        version: i64,
    ) -> Result<Option<Deployment>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE project_id = $1 AND version = $2"
        ))
        .bind(project_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Deployment::from_row).transpose()
    }

    /// Points a project at one of its versions (rollback). False when the project or the
    /// version does not exist; nothing changes then.
    pub async fn set_current(&self, project_id: &str, version: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let exists =
            sqlx::query("SELECT version FROM deployments WHERE project_id = $1 AND version = $2")
                .bind(project_id)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if !exists {
            return Ok(false);
        }
        sqlx::query("UPDATE projects SET current_version = $1 WHERE id = $2")
            .bind(version)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        self.announce(&mut tx, project_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a project and all its versions in one transaction. False when it did not exist.
    pub async fn delete_project(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM deployments WHERE project_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM secrets WHERE scope = $1")
            .bind(format!("project:{id}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM uploads WHERE project_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.announce(&mut tx, id).await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// Makes an API token and returns it; only its SHA-256 is kept.
    pub async fn create_token(
        &self,
        user: &str,
        plan: &str,
        admin: bool,
    ) -> Result<String, StoreError> {
        let token = format!("vt_{}", records::random_hex(24));
        sqlx::query(
            "INSERT INTO tokens (hash, username, plan, admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(records::token_hash(&token))
        .bind(user)
        .bind(plan)
        .bind(i64::from(admin))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The record of a presented token, if valet made it.
    pub async fn token(&self, presented: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT username, plan, admin FROM tokens WHERE hash = $1")
            .bind(records::token_hash(presented))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(TokenRecord::from_row).transpose()
    }

    /// Stored tokens, oldest first: every one, or one user's.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let columns = "SELECT hash, username, plan, admin, created_at FROM tokens";
        let rows = match user {
            Some(user) => {
                sqlx::query(&format!(
                    "{columns} WHERE username = $1 ORDER BY created_at, hash"
                ))
                .bind(user)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{columns} ORDER BY created_at, hash"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(TokenInfo::from_row).collect()
    }

    /// Deletes the token whose id ([`TokenInfo::id`]) or whole text is `which`; with `user`,
    /// only one of that user's own (non-admin) tokens. Returns the deleted token, or `None`
    /// when no token (of that user) matches. Takes effect at once: every request looks its
    /// token up in the store.
    pub async fn revoke_token(
        &self,
        which: &str,
        user: Option<&str>,
    ) -> Result<Option<TokenInfo>, StoreError> {
        let id = if which.starts_with("vt_") {
            records::token_hash(which)[..TOKEN_ID_LEN].to_string()
        } else {
            which.to_ascii_lowercase()
        };
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT hash, username, plan, admin, created_at FROM tokens")
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let info = TokenInfo::from_row(row)?;
            let yours = user.is_none_or(|u| u == info.user && !info.admin);
            if info.id == id && yours {
                let hash: String = row.try_get("hash")?;
                sqlx::query("DELETE FROM tokens WHERE hash = $1")
                    .bind(hash)
                    .execute(&self.pool)
                    .await?;
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    /// Stores (or replaces) a sealed secret of a scope (`project:<id>`).
    pub async fn put_secret(&self, scope: &str, secret: &SealedSecret) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(&secret.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO secrets (scope, name, nonce, sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(&secret.name)
        .bind(&secret.nonce)
        .bind(&secret.sealed)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if let Some(project) = scope.strip_prefix("project:") {
            self.announce(&mut tx, project).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a sealed secret unless the scope already has one of that name; false when it
    /// had (two writers at once: exactly one row goes in, and neither replaces the other's).
    pub async fn put_secret_if_absent(
        &self,
        scope: &str,
        secret: &SealedSecret,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO secrets (scope, name, nonce, sealed, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (scope, name) DO NOTHING",
        )
        .bind(scope)
        .bind(&secret.name)
        .bind(&secret.nonce)
        .bind(&secret.sealed)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The sealed secrets of a scope, by name.
    pub async fn secrets(&self, scope: &str) -> Result<Vec<SealedSecret>, StoreError> {
        let rows =
            sqlx::query("SELECT name, nonce, sealed FROM secrets WHERE scope = $1 ORDER BY name")
                .bind(scope)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(SealedSecret::from_row).collect()
    }

    /// Deletes a secret; false when there was none.
    pub async fn delete_secret(&self, scope: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if let Some(project) = scope.strip_prefix("project:") {
            self.announce(&mut tx, project).await?;
        }
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// When an owner's deploys since `since` (Unix seconds, exclusive) happened, oldest
    /// first: the plan limit `deploys_per_hour`. Read from the usage events, which
    /// `record_deployment` writes with every new project and version, and which outlive a
    /// deleted project, so deleting and uploading again does not reset the count.
    pub async fn deploy_times_since(
        &self,
        owner: &str,
        since: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT at FROM usage_events WHERE owner = $1 AND kind = 'deploy' AND at > $2 ORDER BY at",
        )
        .bind(owner)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| col(r, "at")).collect()
    }

    /// Usage events of one owner, newest first.
    pub async fn usage(&self, owner: &str) -> Result<Vec<UsageEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, project_id, kind, amount, at FROM usage_events WHERE owner = $1 ORDER BY at DESC",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(UsageEvent::from_row).collect()
    }
}

/// Reads one column, naming it in the error.
fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(StoreError::from)
}
