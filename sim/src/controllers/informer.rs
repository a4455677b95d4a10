//! List+watch into a local cache, the way client-go's shared informers do: list once, watch from
//! the list's resourceVersion, reconnect from the last seen version, relist on 410 Gone, and
//! tell subscribers which objects changed. Controllers read the cache and never poll the
//! apiserver. Also the work queue controllers drain; it dedupes keys so a burst of changes to
//! one object means one reconcile.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::client::{ApiClient, ApiResource, ListParams, WatchEventType};

use super::meta;

type Handler = Arc<dyn Fn(&Value) + Send + Sync>;

/// A cache of one resource (optionally narrowed by selectors), kept current by a watch.
#[derive(Clone)]
pub struct Informer {
    inner: Arc<Inner>,
}

struct Inner {
    resource: ApiResource,
    params: ListParams,
    store: RwLock<Store>,
    handlers: Mutex<Vec<Handler>>,
    synced: watch::Sender<bool>,
}

#[derive(Default)]
struct Store {
    objects: HashMap<(String, String), Arc<Value>>,
    /// Uids this process deleted before the watch said so; stale ADDED/MODIFIED events for them
    /// are ignored until the DELETED event arrives.
    tombstones: HashMap<String, ()>,
}

/// Whether `candidate` is at least as new as `current` (resourceVersions are opaque to real
/// clients; the simulator's are integers, and anything else counts as newer).
fn is_newer_or_equal(candidate: &str, current: &str) -> bool {
    match (candidate.parse::<u64>(), current.parse::<u64>()) {
        (Ok(a), Ok(b)) => a >= b,
        _ => true,
    }
}

fn key_of(o: &Value) -> (String, String) {
    (meta::namespace(o).to_string(), meta::name(o).to_string())
}

impl Informer {
    pub fn new(resource: ApiResource, params: ListParams) -> Informer {
        let (synced, _) = watch::channel(false);
        Informer {
            inner: Arc::new(Inner {
                resource,
                params,
                store: RwLock::new(Store::default()),
                handlers: Mutex::new(Vec::new()),
                synced,
            }),
        }
    }

    pub fn resource(&self) -> ApiResource {
        self.inner.resource
    }

    /// Calls `handler` with every object that is added, changed or deleted (its last state).
    pub fn on_change(&self, handler: impl Fn(&Value) + Send + Sync + 'static) {
        if let Ok(mut handlers) = self.inner.handlers.lock() {
            handlers.push(Arc::new(handler));
        }
    }

    fn notify(&self, objects: &[Value]) {
        let handlers: Vec<Handler> = self.inner.handlers.lock().map(|h| h.clone()).unwrap_or_default();
        for o in objects {
            for h in &handlers {
                h(o);
            }
        }
    }

    /// Starts the list+watch loop on `tasks`.
    pub fn spawn(&self, client: ApiClient, tasks: &mut JoinSet<()>) {
        let informer = self.clone();
        tasks.spawn(async move { informer.run(client).await });
    }

    /// Waits until the first list has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _closed = rx.wait_for(|synced| *synced).await;
    }

    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        let store = self.inner.store.read().ok()?;
        store.objects.get(&(namespace.to_string(), name.to_string())).map(|o| (**o).clone())
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Value> {
        self.inner.store.read().map(|s| s.objects.values().map(|o| (**o).clone()).collect()).unwrap_or_default()
    }

    /// Every cached object, shared rather than copied (for whole-cache passes like the
    /// garbage collector's, which would otherwise copy every object on every pass).
    pub fn list_shared(&self) -> Vec<Arc<Value>> {
        self.inner.store.read().map(|s| s.objects.values().cloned().collect()).unwrap_or_default()
    }

    /// Cached objects satisfying `keep`, without cloning the rest.
    pub fn filter(&self, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.inner
            .store
            .read()
            .map(|s| s.objects.values().filter(|o| keep(o)).map(|o| (**o).clone()).collect())
            .unwrap_or_default()
    }

    /// Records the result of this process's own successful write before the watch delivers it,
    /// so the next reconcile does not repeat the write (client-go's "expectations").
    pub fn apply_write(&self, object: &Value) {
        if object["kind"] == "Status" || meta::name(object).is_empty() {
            return;
        }
        let changed = {
            let Ok(mut store) = self.inner.store.write() else { return };
            Self::upsert(&mut store, object.clone())
        };
        if changed {
            self.notify(std::slice::from_ref(object));
        }
    }

    /// Records this process's own completed delete.
    pub fn apply_delete(&self, object: &Value) {
        let removed = {
            let Ok(mut store) = self.inner.store.write() else { return };
            let uid = meta::uid(object).to_string();
            if !uid.is_empty() {
                if store.tombstones.len() > 50_000 {
                    store.tombstones.clear();
                }
                store.tombstones.insert(uid, ());
            }
            store.objects.remove(&key_of(object))
        };
        if let Some(o) = removed {
            self.notify(&[(*o).clone()]);
        }
    }

    fn upsert(store: &mut Store, object: Value) -> bool {
        if store.tombstones.contains_key(meta::uid(&object)) {
            return false;
        }
        let key = key_of(&object);
        if let Some(current) = store.objects.get(&key)
            && meta::uid(current) == meta::uid(&object)
            && !is_newer_or_equal(meta::resource_version(&object), meta::resource_version(current))
        {
            return false;
        }
        store.objects.insert(key, Arc::new(object));
        true
    }

    async fn run(self, client: ApiClient) {
        let resource = self.inner.resource;
        loop {
            let list = match client.list(&resource, None, &self.inner.params).await {
                Ok(list) => list,
                Err(e) => {
                    tracing::debug!(resource = resource.plural, error = %e, "list failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            self.replace(list.items);
            self.inner.synced.send_replace(true);
            let mut resource_version = list.resource_version;
            // Watch until the server says our version is too old, then relist.
            'watch: loop {
                let mut params = self.inner.params.clone();
                params.resource_version = Some(resource_version.clone());
                let mut stream = match client.watch(&resource, None, &params, 290).await {
                    Ok(stream) => stream,
                    Err(e) if e.is_gone() => break 'watch,
                    Err(e) => {
                        tracing::debug!(resource = resource.plural, error = %e, "watch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue 'watch;
                    }
                };
                loop {
                    match stream.next_event().await {
                        Ok(Some(event)) => {
                            let version = meta::resource_version(&event.object).to_string();
                            match event.event_type {
                                WatchEventType::Added | WatchEventType::Modified => {
                                    let changed = self
                                        .inner
                                        .store
                                        .write()
                                        .map(|mut s| Self::upsert(&mut s, event.object.clone()))
                                        .unwrap_or(false);
                                    if changed {
                                        self.notify(std::slice::from_ref(&event.object));
                                    }
                                }
                                WatchEventType::Deleted => {
                                    if let Ok(mut store) = self.inner.store.write() {
                                        store.tombstones.remove(meta::uid(&event.object));
                                        store.objects.remove(&key_of(&event.object));
                                    }
                                    self.notify(std::slice::from_ref(&event.object));
                                }
                                WatchEventType::Bookmark => {}
                                WatchEventType::Error => {
                                    let code = event.object["code"].as_i64().unwrap_or(0);
                                    tracing::debug!(resource = resource.plural, code, "watch error event");
                                    if code == 410 {
                                        break 'watch;
                                    }
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    continue 'watch;
                                }
                            }
                            if !version.is_empty() && event.event_type != WatchEventType::Error {
                                resource_version = version;
                            }
                        }
                        Ok(None) => continue 'watch,
                        Err(e) => {
                            tracing::debug!(resource = resource.plural, error = %e, "watch stream broke; reconnecting");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue 'watch;
                        }
                    }
                }
            }
            tracing::debug!(resource = resource.plural, "resourceVersion expired; relisting");
        }
    }

    fn replace(&self, items: Vec<Value>) {
        let mut changed = Vec::new();
        if let Ok(mut store) = self.inner.store.write() {
            let mut fresh: HashMap<(String, String), Arc<Value>> = HashMap::with_capacity(items.len());
            for item in items {
                fresh.insert(key_of(&item), Arc::new(item));
            }
            for (key, old) in store.objects.iter() {
                if !fresh.contains_key(key) {
                    changed.push((**old).clone());
                }
            }
            for (key, new) in &fresh {
                if store.objects.get(key).is_none_or(|old| meta::resource_version(old) != meta::resource_version(new)) {
                    changed.push((**new).clone());
                }
            }
            store.objects = fresh;
            store.tombstones.clear();
        }
        self.notify(&changed);
    }
}

/// A deduplicating set of keys to reconcile, drained in batches.
pub struct WorkQueue<K> {
    inner: Arc<(Mutex<BTreeSet<K>>, Notify)>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { inner: self.inner.clone() }
    }
}

impl<K: Ord + Clone> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue { inner: Arc::new((Mutex::new(BTreeSet::new()), Notify::new())) }
    }
}

impl<K: Ord + Clone> WorkQueue<K> {
    pub fn add(&self, key: K) {
        if let Ok(mut set) = self.inner.0.lock() {
            set.insert(key);
        }
        self.inner.1.notify_one();
    }

    /// Waits for at least one key and takes all queued keys.
    pub async fn next_batch(&self) -> Vec<K> {
        loop {
            let batch: Vec<K> = match self.inner.0.lock() {
                Ok(mut set) => std::mem::take(&mut *set).into_iter().collect(),
                Err(_) => Vec::new(),
            };
            if !batch.is_empty() {
                return batch;
            }
            self.inner.1.notified().await;
        }
    }
}

/// A namespaced object's key.
pub type ObjectName = (String, String);

pub fn object_name(o: &Value) -> ObjectName {
    key_of(o)
}

/// Drains `queue` forever: each batch is reconciled up to `concurrency` keys at a time, and
/// every `resync` all keys from `resync_keys` are queued again (time-based conditions such as
/// minReadySeconds and failed writes are retried this way).
pub async fn run_queue<K, F, Fut>(queue: WorkQueue<K>, resync: Duration, resync_keys: impl Fn() -> Vec<K>, concurrency: usize, reconcile: F)
where
    K: Ord + Clone + Send + 'static,
    F: Fn(K) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::StreamExt;
    let mut ticker = tokio::time::interval(resync);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            batch = queue.next_batch() => batch,
            _ = ticker.tick() => {
                for key in resync_keys() {
                    queue.add(key);
                }
                continue;
            }
        };
        futures::stream::iter(batch).for_each_concurrent(concurrency, &reconcile).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, uid: &str, rv: &str) -> Value {
        json!({"kind": "Pod", "metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": rv}})
    }

    #[test]
    fn stale_versions_do_not_replace_newer_writes() {
        let informer = Informer::new(crate::client::resources::PODS, ListParams::default());
        informer.apply_write(&obj("a", "u1", "10"));
        informer.apply_write(&obj("a", "u1", "7"));
        assert_eq!(informer.get("ns", "a").map(|o| meta::resource_version(&o).to_string()), Some("10".into()));
        informer.apply_write(&obj("a", "u1", "11"));
        assert_eq!(informer.get("ns", "a").map(|o| meta::resource_version(&o).to_string()), Some("11".into()));
    }

    #[test]
    fn own_deletes_are_not_resurrected_by_stale_events() {
        let informer = Informer::new(crate::client::resources::PODS, ListParams::default());
        informer.apply_write(&obj("a", "u1", "10"));
        informer.apply_delete(&obj("a", "u1", "10"));
        informer.apply_write(&obj("a", "u1", "12"));
        assert!(informer.get("ns", "a").is_none());
        // A new object under the same name is a different uid and is accepted.
        informer.apply_write(&obj("a", "u2", "13"));
        assert!(informer.get("ns", "a").is_some());
    }

    #[test]
    fn handlers_see_changes() {
        let informer = Informer::new(crate::client::resources::PODS, ListParams::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        informer.on_change(move |o| {
            if let Ok(mut s) = sink.lock() {
                s.push(meta::name(o).to_string());
            }
        });
        informer.apply_write(&obj("a", "u1", "1"));
        informer.apply_write(&obj("a", "u1", "1"));
        informer.apply_write(&obj("b", "u2", "2"));
        assert_eq!(*seen.lock().map(|s| s.clone()).unwrap_or_default(), vec!["a".to_string(), "a".into(), "b".into()]);
    }

    #[tokio::test]
    async fn work_queue_dedupes() {
        let q: WorkQueue<String> = WorkQueue::default();
        q.add("x".into());
        q.add("x".into());
        q.add("y".into());
        assert_eq!(q.next_batch().await, vec!["x".to_string(), "y".to_string()]);
    }
}
