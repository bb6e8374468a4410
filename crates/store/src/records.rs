//! The records and the one multi-statement write, `record_deployment`.

use crate::{col, StoreError};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// An app uploaded through the deploy API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Project {
    /// Stable id, part of its URL: `/containers/<id>/`.
    pub id: String,
    /// Name chosen by its owner, unique per owner.
    pub name: String,
    /// The user who may see, change or delete it.
    pub owner: String,
    /// Runtime of its current version (`python` or `node`).
    pub runtime: String,
    /// The version that takes traffic.
    pub current_version: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// One version of a project, recorded once it passed readiness.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployment {
    /// The project it belongs to.
    pub project_id: String,
    /// 1, 2, ... per project.
    pub version: i64,
    /// Build id: the folder under `<data_dir>/deploy/builds/` holding the prepared app.
    pub build: String,
    /// `python` or `node`.
    pub runtime: String,
    /// argv that starts it, run in its build folder.
    pub command: Vec<String>,
    /// Requirements as uploaded (for the record and for rebuilding the cache).
    pub requirements: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// What a new deployment records.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// Existing project id, or the id a new project gets.
    pub project_id: String,
    /// Project name (used when the project is new).
    pub name: String,
    /// Owner (used when the project is new).
    pub owner: String,
    /// Build id of the prepared app.
    pub build: String,
    /// `python` or `node`.
    pub runtime: String,
    /// argv that starts it.
    pub command: Vec<String>,
    /// Requirements as uploaded.
    pub requirements: String,
}

/// Who an API token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The user whose projects it opens.
    pub user: String,
    /// The user's plan (a `[plans.*]` name).
    pub plan: String,
    /// Whether it opens every admin endpoint.
    pub admin: bool,
}

/// A stored token as listings show it: never the token, only an id made from its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The first [`TOKEN_ID_LEN`] hex digits of the token's SHA-256: enough to name it for
    /// `revoke`, useless for using it.
    pub id: String,
    pub user: String,
    pub plan: String,
    pub admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// Length of a [`TokenInfo::id`].
pub const TOKEN_ID_LEN: usize = 12;

impl TokenInfo {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let hash: String = col(row, "hash")?;
        Ok(Self {
            id: hash.chars().take(TOKEN_ID_LEN).collect(),
            user: col(row, "username")?,
            plan: col(row, "plan")?,
            admin: col::<i64>(row, "admin")? != 0,
            created_at: col(row, "created_at")?,
        })
    }
}

/// Something that counts against a user (a deploy, for now).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageEvent {
    /// The user.
    pub owner: String,
    /// The project concerned.
    pub project_id: String,
    /// What happened: `deploy`.
    pub kind: String,
    /// How much (bytes uploaded for a deploy).
    pub amount: i64,
    /// Unix seconds.
    pub at: i64,
}

/// A secret as the store keeps it: sealed by the deploy layer, whose key is kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The environment variable it becomes.
    pub name: String,
    /// The AEAD nonce, hex.
    pub nonce: String,
    /// Ciphertext and tag, hex.
    pub sealed: String,
}

/// A version's upload as received (cluster mode keeps it, see `Store::upload`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredUpload {
    pub file_name: String,
    /// The upload's `runtime` field, if it had one.
    pub runtime: Option<String>,
    /// The upload's `requirements` field, if it had one.
    pub requirements: Option<String>,
    pub body: Vec<u8>,
}

impl SealedSecret {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            name: col(row, "name")?,
            nonce: col(row, "nonce")?,
            sealed: col(row, "sealed")?,
        })
    }
}

impl Project {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: col(row, "id")?,
            name: col(row, "name")?,
            owner: col(row, "owner")?,
            runtime: col(row, "runtime")?,
            current_version: col(row, "current_version")?,
            created_at: col(row, "created_at")?,
        })
    }
}

impl Deployment {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let command: String = col(row, "command")?;
        Ok(Self {
            project_id: col(row, "project_id")?,
            version: col(row, "version")?,
            build: col(row, "build")?,
            runtime: col(row, "runtime")?,
            command: serde_json::from_str(&command)
                .map_err(|e| StoreError::Corrupt(format!("deployment command: {e}")))?,
            requirements: col(row, "requirements")?,
            created_at: col(row, "created_at")?,
        })
    }
}

impl TokenRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            user: col(row, "username")?,
            plan: col(row, "plan")?,
            admin: col::<i64>(row, "admin")? != 0,
        })
    }
}

impl UsageEvent {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            owner: col(row, "owner")?,
            project_id: col(row, "project_id")?,
            kind: col(row, "kind")?,
            amount: col(row, "amount")?,
            at: col(row, "at")?,
        })
    }
}

/// The statements of one deployment, inside the caller's transaction.
pub(crate) async fn record_deployment(
    tx: &mut Transaction<'static, Any>,
    new: &NewDeployment,
    now: i64,
) -> Result<(Project, Deployment), StoreError> {
    let last: i64 = sqlx::query(
        "SELECT COALESCE(MAX(version), 0) AS last FROM deployments WHERE project_id = $1",
    )
    .bind(&new.project_id)
    .fetch_one(&mut **tx)
    .await?
    .try_get("last")?;
    let version = last + 1;
    let command = serde_json::to_string(&new.command)
        .map_err(|e| StoreError::Corrupt(format!("deployment command: {e}")))?;
    if version == 1 {
        sqlx::query(
            "INSERT INTO projects (id, name, owner, runtime, current_version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&new.project_id)
        .bind(&new.name)
        .bind(&new.owner)
        .bind(&new.runtime)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO deployments (project_id, version, build, runtime, command, requirements, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&new.project_id)
    .bind(version)
    .bind(&new.build)
    .bind(&new.runtime)
    .bind(&command)
    .bind(&new.requirements)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE projects SET current_version = $1, runtime = $2 WHERE id = $3")
        .bind(version)
        .bind(&new.runtime)
        .bind(&new.project_id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(&format!(
        "SELECT {} FROM projects WHERE id = $1",
        crate::PROJECT_COLUMNS
    ))
    .bind(&new.project_id)
    .fetch_one(&mut **tx)
    .await?;
    let project = Project::from_row(&row)?;
    sqlx::query(
        "INSERT INTO usage_events (owner, project_id, kind, amount, at) VALUES ($1, $2, 'deploy', 1, $3)",
    )
    .bind(&project.owner)
    .bind(&new.project_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let deployment = Deployment {
        project_id: new.project_id.clone(),
        version,
        build: new.build.clone(),
        runtime: new.runtime.clone(),
        command: new.command.clone(),
        requirements: new.requirements.clone(),
        created_at: now,
    };
    Ok((project, deployment))
}

/// `n` random bytes as hex, for ids and tokens.
pub fn random_hex(n: usize) -> String {
    let mut rng = fastrand::Rng::new();
    (0..n).map(|_| format!("{:02x}", rng.u8(..))).collect()
}

/// How a token is kept: its SHA-256, hex.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
