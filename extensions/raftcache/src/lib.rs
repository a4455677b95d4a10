//! The `raftcache` extension: a replicated cache on multi-Raft (one tikv `raft` group per shard,
//! one transport and one log store per node), and the `etcd` cache backend.

pub mod core;
pub mod error;
pub mod shard;
pub mod storage;

pub use error::RaftCacheError;
