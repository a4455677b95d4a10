//! `Cache` over a raftcache node: each call becomes a request to the node's driver; writes
//! refused before proposal (no leader yet) are retried until the request timeout, because
//! nothing was written; a write that timed out after proposal reports its outcome as unknown.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use kausal_core::cache::{Cache, CacheEntry, CacheError, CacheKey, CasOutcome};
use kausal_proto::raft::v1 as pb;

use crate::core::{Request, RequestError, Response};
use crate::node::NodeHandle;

pub struct RaftCache {
    node: NodeHandle,
}

impl RaftCache {
    pub fn new(node: NodeHandle) -> Self {
        RaftCache { node }
    }

    async fn call(&self, request: Request) -> Result<Response, CacheError> {
        let deadline = Instant::now() + self.node.request_timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.node.request(request.clone()).await {
                Ok(r) => return Ok(r),
                Err(RequestError::NoLeader(_)) if Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(RequestError::Timeout) if matches!(request, Request::Write(_) | Request::Remove { .. }) => {
                    return Err(CacheError::Unavailable("write timed out; it may or may not have been applied".into()));
                }
                Err(e) => return Err(CacheError::Unavailable(e.to_string())),
            }
        }
    }

    async fn write(&self, key: &CacheKey, value: Vec<u8>, ttl: Option<Duration>, mode: pb::WriteMode, expected: u64) -> Result<CasOutcome, CacheError> {
        let w = pb::Write {
            object: key.object.clone(),
            entry: key.entry.clone(),
            value,
            ttl_nanos: ttl.map(|t| i64::try_from(t.as_nanos()).unwrap_or(i64::MAX)),
            mode: mode as i32,
            expected_version: expected,
        };
        match self.call(Request::Write(w)).await? {
            Response::Written(o) => Ok(o),
            other => Err(CacheError::Failed(format!("unexpected answer to a write: {other:?}"))),
        }
    }
}

#[async_trait]
impl Cache for RaftCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        match self.call(Request::Get { object: key.object.clone(), entry: key.entry.clone() }).await? {
            Response::Entry(e) => Ok(e),
            other => Err(CacheError::Failed(format!("unexpected answer to a get: {other:?}"))),
        }
    }

    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, CacheError> {
        match self.write(key, value, ttl, pb::WriteMode::Always, 0).await? {
            CasOutcome::Written(v) => Ok(v),
            CasOutcome::Mismatch(_) => Err(CacheError::Failed("unconditional write refused".into())),
        }
    }

    async fn create_if_absent(&self, key: &CacheKey, value: Vec<u8>, ttl: Option<Duration>) -> Result<CasOutcome, CacheError> {
        self.write(key, value, ttl, pb::WriteMode::IfAbsent, 0).await
    }

    async fn compare_and_set(&self, key: &CacheKey, expected: u64, value: Vec<u8>, ttl: Option<Duration>) -> Result<CasOutcome, CacheError> {
        self.write(key, value, ttl, pb::WriteMode::IfVersion, expected).await
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        match self.call(Request::Remove { object: key.object.clone(), entry: key.entry.clone() }).await? {
            Response::Removed(b) => Ok(b),
            other => Err(CacheError::Failed(format!("unexpected answer to a delete: {other:?}"))),
        }
    }

    async fn list(&self, object: &str) -> Result<Vec<(String, CacheEntry)>, CacheError> {
        match self.call(Request::List { object: object.to_string() }).await? {
            Response::Entries(e) => Ok(e),
            other => Err(CacheError::Failed(format!("unexpected answer to a list: {other:?}"))),
        }
    }
}
