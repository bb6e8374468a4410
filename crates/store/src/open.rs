//! Opening the store: the SQLite file (made 0600 in a 0700 folder, WAL) or a PostgreSQL pool,
//! then migrations.

use crate::{migrate, Backend, Store, StoreError};
use sqlx::any::AnyPoolOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

impl Store {
    /// Opens the store named by `server.store`: `"sqlite"` (a file under `data_dir`) or a
    /// `postgres://` URL. Runs migrations before returning.
    pub async fn open(setting: &str, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend, max) = if setting == "sqlite" {
            (sqlite_file(data_dir)?, Backend::Sqlite, 4)
        } else if setting.starts_with("postgres://") || setting.starts_with("postgresql://") {
            (setting.to_string(), Backend::Postgres, 8)
        } else {
            return Err(StoreError::Unsupported(setting.to_string()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers (the admin API) go on while a deploy writes.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        migrate::run(&pool, backend == Backend::Postgres).await?;
        Ok(Self { pool, backend })
    }

    /// The SQLite journal mode in effect (`wal`), for checks.
    pub async fn journal_mode(&self) -> Result<String, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<String, _>(0)?)
    }
}

/// Makes `<data_dir>/store/valet.db` readable by valet alone and returns its URL. The file is
/// made here, not by SQLite, so that it never exists with wider permissions; SQLite gives its
/// `-wal` and `-shm` files the database file's mode.
fn sqlite_file(data_dir: &Path) -> Result<String, StoreError> {
    let dir = data_dir.join("store");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io(format!("cannot make {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(format!("cannot restrict {}", dir.display()), e))?;
    let file = dir.join("valet.db");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| io(format!("cannot open {}", file.display()), e))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(format!("cannot restrict {}", file.display()), e))?;
    Ok(format!("sqlite://{}?mode=rwc", file.display()))
}

fn io(context: String, source: std::io::Error) -> StoreError {
    StoreError::Io { context, source }
}
