//! The one cache interface components share state through (diffs and snapshots by object and
//! resourceVersion, span reservations, Event watermarks, query-side trace ids), and its
//! single-process `memory` backend. Replicated backends live in extensions and implement the
//! same trait; entries of one object share the object part of their key so a backend can keep
//! them together and list them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::activity::Nanos;

/// `object` groups entries (an encoded ObjectKey, or any other grouping); `entry` names one
/// entry within it (e.g. `diff/1234`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey {
    pub object: String,
    pub entry: String,
}

impl CacheKey {
    pub fn new(object: impl Into<String>, entry: impl Into<String>) -> Self {
        CacheKey {
            object: object.into(),
            entry: entry.into(),
        }
    }
}

/// A stored value with its version (increases on every write of the key) and write time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub value: Vec<u8>,
    pub version: u64,
    pub written_at: Nanos,
    pub expires_at: Option<Nanos>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written; the new version.
    Written(u64),
    /// Not written: the current entry (None when absent) did not match.
    Mismatch(Option<CacheEntry>),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    #[error("cache request failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError>;
    /// Writes unconditionally; returns the new version.
    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, CacheError>;
    /// Writes only when the key is absent (or expired).
    async fn create_if_absent(
        &self,
        key: &CacheKey,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, CacheError>;
    /// Writes only when the current version is `expected` (0 = absent).
    async fn compare_and_set(
        &self,
        key: &CacheKey,
        expected: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, CacheError>;
    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError>;
    /// Every live entry of one object, newest write first.
    async fn list(&self, object: &str) -> Result<Vec<(String, CacheEntry)>, CacheError>;
}

fn now_nanos() -> Nanos {
    crate::activity::nanos_of(chrono::Utc::now())
}

fn expiry(now: Nanos, ttl: Option<Duration>) -> Option<Nanos> {
    ttl.map(|t| now.saturating_add(i64::try_from(t.as_nanos()).unwrap_or(i64::MAX)))
}

/// In-process cache: a map per object, TTL checked on read and swept on write.
#[derive(Default)]
pub struct MemoryCache {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    objects: BTreeMap<String, BTreeMap<String, CacheEntry>>,
    next_version: u64,
    writes_since_sweep: u64,
}

impl MemoryInner {
    fn live(&self, key: &CacheKey, now: Nanos) -> Option<&CacheEntry> {
        self.objects
            .get(&key.object)?
            .get(&key.entry)
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
    }

    fn write(&mut self, key: &CacheKey, value: Vec<u8>, ttl: Option<Duration>, now: Nanos) -> u64 {
        self.next_version += 1;
        let version = self.next_version;
        self.objects.entry(key.object.clone()).or_default().insert(
            key.entry.clone(),
            CacheEntry {
                value,
                version,
                written_at: now,
                expires_at: expiry(now, ttl),
            },
        );
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 4096 {
            self.writes_since_sweep = 0;
            self.objects.retain(|_, entries| {
                entries.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
                !entries.is_empty()
            });
        }
        version
    }
}

/// The process-wide memory cache: what components use when no cache extension is configured,
/// so that a receiver writing diffs and a processor reading them in the same process meet.
pub fn process_memory_cache() -> std::sync::Arc<dyn Cache> {
    static SHARED: std::sync::OnceLock<std::sync::Arc<MemoryCache>> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| std::sync::Arc::new(MemoryCache::default())).clone()
}

impl MemoryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.lock().live(key, now_nanos()).cloned())
    }

    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, CacheError> {
        Ok(self.lock().write(key, value, ttl, now_nanos()))
    }

    async fn create_if_absent(
        &self,
        key: &CacheKey,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, CacheError> {
        let now = now_nanos();
        let mut inner = self.lock();
        if let Some(existing) = inner.live(key, now) {
            return Ok(CasOutcome::Mismatch(Some(existing.clone())));
        }
        Ok(CasOutcome::Written(inner.write(key, value, ttl, now)))
    }

    async fn compare_and_set(
        &self,
        key: &CacheKey,
        expected: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, CacheError> {
        let now = now_nanos();
        let mut inner = self.lock();
        let current = inner.live(key, now).cloned();
        if current.as_ref().map_or(0, |e| e.version) != expected {
            return Ok(CasOutcome::Mismatch(current));
        }
        Ok(CasOutcome::Written(inner.write(key, value, ttl, now)))
    }

    async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let now = now_nanos();
        let mut inner = self.lock();
        let existed = inner.live(key, now).is_some();
        if let Some(entries) = inner.objects.get_mut(&key.object) {
            entries.remove(&key.entry);
            if entries.is_empty() {
                inner.objects.remove(&key.object);
            }
        }
        Ok(existed)
    }

    async fn list(&self, object: &str) -> Result<Vec<(String, CacheEntry)>, CacheError> {
        let now = now_nanos();
        let inner = self.lock();
        let mut out: Vec<(String, CacheEntry)> = inner
            .objects
            .get(object)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(_, e)| e.expires_at.is_none_or(|t| t > now))
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.1.version.cmp(&a.1.version));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_honours_cas_absence_ttl_and_order() {
        let c = MemoryCache::default();
        let k = CacheKey::new("obj", "diff/2");
        assert_eq!(c.get(&k).await.unwrap(), None);
        let v1 = match c.create_if_absent(&k, b"a".to_vec(), None).await.unwrap() {
            CasOutcome::Written(v) => v,
            other => panic!("{other:?}"),
        };
        assert!(matches!(c.create_if_absent(&k, b"b".to_vec(), None).await.unwrap(), CasOutcome::Mismatch(Some(_))));
        assert!(matches!(c.compare_and_set(&k, v1 + 100, b"c".to_vec(), None).await.unwrap(), CasOutcome::Mismatch(_)));
        assert!(matches!(c.compare_and_set(&k, v1, b"c".to_vec(), None).await.unwrap(), CasOutcome::Written(_)));
        assert_eq!(c.get(&k).await.unwrap().unwrap().value, b"c");
        c.put(&CacheKey::new("obj", "diff/3"), b"d".to_vec(), None).await.unwrap();
        let listed: Vec<String> = c.list("obj").await.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(listed, vec!["diff/3", "diff/2"]);
        let short = CacheKey::new("obj", "gone");
        c.put(&short, b"x".to_vec(), Some(Duration::from_nanos(1))).await.unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.get(&short).await.unwrap(), None);
        assert!(c.delete(&k).await.unwrap());
        assert!(!c.delete(&k).await.unwrap());
    }
}
