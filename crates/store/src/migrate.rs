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
    &[
        // Cluster mode: each version's upload as received, so that a replica that did not
        // build it can build it (see the deploy crate's `sync`). Kept per build, not per
        // version: a rollback on another replica needs the old version's files too.
        "CREATE TABLE uploads (
        project_id TEXT NOT NULL,
        build TEXT NOT NULL,
        file_name TEXT NOT NULL,
        runtime TEXT,
        requirements TEXT,
        body BYTEA NOT NULL,
        PRIMARY KEY (project_id, build))",
    ],
];

/// Brings the schema up to date. On PostgreSQL several valets (cluster replicas) may start at
/// once on one store: they migrate one after another under an advisory lock, since two
/// concurrent `CREATE TABLE IF NOT EXISTS` can both decide to create and one then fails.
pub(crate) async fn run(pool: &AnyPool, postgres: bool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if postgres {
        sqlx::query("SELECT pg_advisory_lock(7453210986)")
            .execute(&mut *conn)
            .await?;
    }
    let result = steps(&mut conn).await;
    if postgres {
        sqlx::query("SELECT pg_advisory_unlock(7453210986)")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn steps(conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    use sqlx::Connection;
    sqlx::query("CREATE TABLE IF NOT EXISTS valet_schema (version BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    for (i, step) in STEPS.iter().enumerate() {
        let version = i as i64 + 1;
        let mut tx = conn.begin().await?;
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
