//! What can go wrong with the store.

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The `store` setting names no backend valet knows.
    #[error("store {0:?} is not supported: use \"sqlite\" or a postgres:// URL")]
    Unsupported(String),
    /// The store's folder or file could not be prepared.
    #[error("{context}: {source}")]
    Io {
        /// What valet was doing.
        context: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value has a shape valet did not write (a hand-edited row).
    #[error("stored record is damaged: {0}")]
    Corrupt(String),
}
