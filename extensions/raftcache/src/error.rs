//! Errors of the raftcache crate.

#[derive(Debug, thiserror::Error)]
pub enum RaftCacheError {
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("log store: {0}")]
    Store(String),
    #[error("transport: {0}")]
    Transport(String),
}
