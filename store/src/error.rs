//! Errors of the span store. Each variant names the step that failed so that a log line is
//! enough to tell a full disk from a corrupt file from a misconfigured directory.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open store database {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("store database {path} has format version {found}, this build reads version {expected}")]
    FormatVersion { path: PathBuf, found: u64, expected: u64 },
    #[error("cannot begin store transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("cannot open store table: {0}")]
    Table(#[from] redb::TableError),
    #[error("store storage error: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("cannot commit store transaction: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("cannot set store commit durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
}
