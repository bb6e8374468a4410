//! Schema migrations, run at every start. Each step runs once, in order, in its own
//! transaction together with the schema version it brings, so a crash mid-migration retries
//! the step on the next start.

use crate::StoreError;
use sqlx::{AnyPool, Row};

/// Every migration, in order. Only append; never edit a step that has shipped.
const STEPS: &[&[&str]] = &[
    &[
        "CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        runtime TEXT NOT NULL,
        current_version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (owner, name))",
        "CREATE TABLE deployments (
        project_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        build TEXT NOT NULL,
        runtime TEXT NOT NULL,
        command TEXT NOT NULL,
        requirements TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (project_id, version))",
        "CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        plan TEXT NOT NULL,
        admin BIGINT NOT NULL,
        created_at BIGINT NOT NULL)",
        "CREATE TABLE usage_events (
        owner TEXT NOT NULL,
        project_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount BIGINT NOT NULL,
        at BIGINT NOT NULL)",
        "CREATE INDEX usage_events_owner ON usage_events (owner, at)",
    ],
    &[
        // Secrets are stored sealed (ChaCha20-Poly1305); the key lives apart from the store.
        "CREATE TABLE secrets (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        nonce TEXT NOT NULL,
        sealed TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (scope, name))",
    ],
];

/// Brings the schema up to date.
pub(crate) async fn run(pool: &AnyPool) -> Result<(), StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS valet_schema (version BIGINT NOT NULL)")
        .execute(pool)
        .await?;
    for (i, step) in STEPS.iter().enumerate() {
        let version = i as i64 + 1;
        let mut tx = pool.begin().await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM valet_schema")
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        if current >= version {
            continue;
        }
        for statement in *step {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO valet_schema (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "store migrated");
    }
    Ok(())
}
