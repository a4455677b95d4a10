//! The `raftcache` extension: a replicated cache on multi-Raft (one tikv `raft` group per shard,
//! one transport and one log store per node).

pub mod admin;
pub mod cache;
pub mod config;
pub mod core;
pub mod error;
pub mod logstore;
pub mod metrics;
pub mod node;
pub mod shard;
pub mod storage;

mod extension;

pub use config::RaftCacheConfig;
pub use error::RaftCacheError;
pub use extension::{Factory, RaftCacheExtension};
