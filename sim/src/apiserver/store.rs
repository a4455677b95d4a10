//! The emulator's etcd and registry strategies in one: objects as JSON per resource, one global
//! resourceVersion counter, a bounded per-resource history of watch events (older
//! resourceVersions answer 410 Expired), and the write rules of kube-apiserver (defaults,
//! validation, optimistic concurrency, generation, status/spec split, managedFields,
//! finalizers and deletionTimestamp). No HTTP here; handlers call these methods.
//!
//! Concurrency: each resource has its own mutex, held only for in-memory work (never across an
//! await). A resourceVersion is taken from the global counter while that mutex is held, so
//! within a resource, versions and watch events are strictly ordered; watch events are
//! serialised once and fanned out to watchers through a broadcast channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use base64::Engine;
use bytes::Bytes;
use chrono::SecondsFormat;
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::defaults;
use super::events_view;
use super::managed_fields::{FieldWrite, update_managed_fields};
use super::patch::{self, PatchType};
use super::resources::{Registry, ResourceType, StoreKey, Subresource, View, types_from_crd};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, cause};
use crate::clock::Clock;

/// How many watch events a broadcast channel buffers before a slow watcher falls back to history.
const BROADCAST_CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
            WatchEventType::Bookmark => "BOOKMARK",
            WatchEventType::Error => "ERROR",
        }
    }
}

/// One change to one object, as watchers receive it.
#[derive(Debug)]
pub struct WatchEvent {
    pub event_type: WatchEventType,
    pub resource_version: u64,
    /// The object after the change (for DELETED: its last state, with the deletion's version).
    pub object: Arc<Value>,
    /// The object before a MODIFIED or DELETED change: selector watchers turn MODIFIED into
    /// ADDED/DELETED with it, and continued lists roll history back with it.
    pub previous: Option<Arc<Value>>,
    /// `{"type":…,"object":…}\n` in the stored form, serialised once for every watcher.
    pub line: Bytes,
}

/// Serialises one watch event line.
pub fn watch_line(event_type: WatchEventType, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    if serde_json::to_writer(&mut buf, object).is_err() {
        buf.extend_from_slice(b"null");
    }
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// One change as the store recorded it (see [`Store::recorded_changes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedChange {
    pub event_type: WatchEventType,
    pub resource_version: u64,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectName {
    namespace: String,
    name: String,
}

struct BucketState {
    objects: BTreeMap<ObjectName, Arc<Value>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Every event with a resourceVersion above this is still in `history`.
    compacted_through: u64,
}

struct Bucket {
    state: Mutex<BucketState>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

impl Bucket {
    fn new() -> Bucket {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Bucket {
            state: Mutex::new(BucketState {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted_through: 0,
            }),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BucketState> {
        // A panic while holding the lock leaves consistent data (every mutation is a single
        // insert/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who is writing, for managedFields and dry runs.
#[derive(Clone, Debug)]
pub struct Writer {
    pub manager: String,
    /// `Update` or `Apply`.
    pub operation: &'static str,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// `resourceVersion` with `resourceVersionMatch=Exact`: must not be compacted.
    pub exact_resource_version: Option<u64>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<u64>,
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// resourceVersion unset or "0": synthetic ADDED for every current object first.
    Current,
    /// Exactly after this resourceVersion, replaying history.
    After(u64),
}

/// A watch registered with a resource: the backlog to send first, then the live channel.
pub struct WatchSubscription {
    pub backlog: Vec<Arc<WatchEvent>>,
    pub receiver: broadcast::Receiver<Arc<WatchEvent>>,
    /// The resourceVersion the backlog brings the watcher up to.
    pub resource_version: u64,
}

pub enum DeleteOutcome {
    /// Gone from the store; carries the last state.
    Deleted(Value),
    /// Still present with deletionTimestamp set (finalizers or pod grace period).
    Pending(Value),
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (any apiVersion) merged with query parameters already set.
    pub fn merge_body(&mut self, body: &Value) {
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation_policy = Some(p.to_string());
        }
        if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            self.grace_period_seconds = Some(g);
        }
        if let Some(o) = body.get("orphanDependents").and_then(Value::as_bool) {
            self.orphan_dependents = Some(o);
        }
        if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str) {
            self.precondition_uid = Some(uid.to_string());
        }
        if let Some(rv) = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            self.precondition_resource_version = Some(rv.to_string());
        }
    }
}

/// A new random (version 4) UUID.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The random suffix of `generateName` (kube's alphabet has no vowels or look-alikes).
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn meta(obj: &Value, key: &str) -> Option<String> {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let m = &mut obj["metadata"];
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(map) => map,
        // invariant: `m` was made an object just above
        _ => unreachable!("metadata is an object"),
    }
}

/// The part of an object that counts as its spec for `metadata.generation`.
/// Whether two maps agree on every key outside `ignore`.
fn map_equal_except(a: &Map<String, Value>, b: &Map<String, Value>, ignore: &[&str]) -> bool {
    let relevant = |k: &&String| !ignore.contains(&k.as_str());
    a.keys().filter(relevant).all(|k| a.get(k) == b.get(k)) && b.keys().filter(relevant).all(|k| a.contains_key(k))
}

/// Whether two objects agree on their spec part (all but metadata, status, kind, apiVersion);
/// a difference bumps `metadata.generation`. Compares in place: this runs on every write.
fn same_spec(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(am), Some(bm)) => map_equal_except(am, bm, &["metadata", "status", "kind", "apiVersion"]),
        _ => a == b,
    }
}

/// Whether two objects differ only in what changes on every write (managedFields,
/// resourceVersion), for no-op detection.
fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(am), Some(bm)) => {
            map_equal_except(am, bm, &["metadata"])
                && match (am.get("metadata"), bm.get("metadata")) {
                    (Some(Value::Object(x)), Some(Value::Object(y))) => {
                        map_equal_except(x, y, &["managedFields", "resourceVersion"])
                    }
                    (x, y) => x == y,
                }
        }
        _ => a == b,
    }
}

fn label_selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
                Some("Exists") => parts.push(key.to_string()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

fn json_path_get<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn json_path_set(obj: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i == parts.len() - 1 {
            m.insert((*part).to_string(), value);
            return;
        }
        cur = m.entry((*part).to_string()).or_insert(json!({}));
    }
}

/// Encodes a list continuation like kube-apiserver does (base64 JSON naming the next key).
fn encode_continue(resource_version: u64, start: &ObjectName) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": format!("{}/{}\u{0}", start.namespace, start.name)});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

/// The resourceVersion a continuation was issued at, and the key to start from.
fn decode_continue(token: &str) -> Result<(u64, ObjectName), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.trim_end_matches('\u{0}');
    let (namespace, name) = start.split_once('/').ok_or_else(bad)?;
    let resource_version = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    Ok((
        resource_version,
        ObjectName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
    ))
}

/// The objects of a resource as they were at `resource_version`: the current ones with every
/// later change in `history` undone, newest first. The caller makes sure history still holds
/// every change after `resource_version`.
fn objects_at(
    objects: &BTreeMap<ObjectName, Arc<Value>>,
    history: &VecDeque<Arc<WatchEvent>>,
    resource_version: u64,
) -> BTreeMap<ObjectName, Arc<Value>> {
    let mut snapshot = objects.clone();
    for event in history.iter().rev().take_while(|e| e.resource_version > resource_version) {
        let key = ObjectName {
            namespace: meta(&event.object, "namespace").unwrap_or_default(),
            name: meta(&event.object, "name").unwrap_or_default(),
        };
        match (&event.event_type, &event.previous) {
            (WatchEventType::Added, _) => {
                snapshot.remove(&key);
            }
            (WatchEventType::Modified | WatchEventType::Deleted, Some(previous)) => {
                snapshot.insert(key, previous.clone());
            }
            _ => {}
        }
    }
    snapshot
}

/// The in-memory object store of one API server.
pub struct Store {
    resource_version: AtomicU64,
    registry: RwLock<Registry>,
    buckets: RwLock<HashMap<StoreKey, Arc<Bucket>>>,
    history_limit: usize,
    graceful_pod_deletion: bool,
    clock: Clock,
}

impl Store {
    /// A store with the built-in resources and the namespaces every cluster has.
    pub fn new(clock: Clock, history_limit: usize, graceful_pod_deletion: bool) -> Store {
        let registry = Registry::builtin();
        let mut buckets = HashMap::new();
        for t in registry.types() {
            buckets
                .entry(t.store.clone())
                .or_insert_with(|| Arc::new(Bucket::new()));
        }
        let store = Store {
            resource_version: AtomicU64::new(0),
            registry: RwLock::new(registry),
            buckets: RwLock::new(buckets),
            history_limit: history_limit.max(1),
            graceful_pod_deletion,
            clock,
        };
        let system = Writer {
            manager: "kube-apiserver".to_string(),
            operation: "Update",
            dry_run: false,
        };
        if let Some(ns_type) = store.resource_type("", "v1", "namespaces") {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
                if let Err(e) = store.create(&ns_type, "", body, &system) {
                    tracing::error!(namespace = ns, error = %e, "cannot create a system namespace");
                }
            }
        }
        store
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The newest resourceVersion handed out.
    pub fn current_resource_version(&self) -> u64 {
        self.resource_version.load(Ordering::SeqCst)
    }

    pub fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn resource_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .lookup(group, version, plural)
            .cloned()
    }

    /// Reads a registry-derived value without cloning the registry.
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.registry.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn bucket(&self, key: &StoreKey) -> Result<Arc<Bucket>, ApiError> {
        self.buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .ok_or_else(ApiError::unknown_resource)
    }

    fn now_seconds(&self) -> String {
        self.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn next_resource_version(&self) -> u64 {
        self.resource_version.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn to_view(rt: &ResourceType, stored: &Value) -> Value {
        match rt.view {
            View::Native => stored.clone(),
            View::EventsV1 => events_view::core_to_events_v1(stored),
        }
    }

    fn from_view(rt: &ResourceType, view: Value) -> Value {
        match rt.view {
            View::Native => view,
            View::EventsV1 => events_view::events_v1_to_core(&view),
        }
    }

    /// Appends an event to history, trims it and tells live watchers. Caller holds the lock.
    fn publish(&self, bucket: &Bucket, state: &mut BucketState, event: WatchEvent) {
        let event = Arc::new(event);
        state.history.push_back(event.clone());
        while state.history.len() > self.history_limit {
            if let Some(old) = state.history.pop_front() {
                state.compacted_through = old.resource_version;
            }
        }
        // No receivers is normal; the event stays in history for later watchers.
        let _ = bucket.events.send(event);
    }

    /// Stores `object` (stored form) under a fresh resourceVersion and publishes the change.
    fn commit(
        &self,
        bucket: &Bucket,
        state: &mut BucketState,
        key: ObjectName,
        mut object: Value,
        previous: Option<Arc<Value>>,
    ) -> Arc<Value> {
        let rv = self.next_resource_version();
        meta_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        let object = Arc::new(object);
        state.objects.insert(key, object.clone());
        let event_type = if previous.is_some() {
            WatchEventType::Modified
        } else {
            WatchEventType::Added
        };
        let line = watch_line(event_type, &object);
        self.publish(
            bucket,
            state,
            WatchEvent {
                event_type,
                resource_version: rv,
                object: object.clone(),
                previous,
                line,
            },
        );
        object
    }

    fn remove(&self, bucket: &Bucket, state: &mut BucketState, key: &ObjectName) -> Option<Value> {
        let old = state.objects.remove(key)?;
        let rv = self.next_resource_version();
        let mut last = (*old).clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        let last = Arc::new(last);
        let line = watch_line(WatchEventType::Deleted, &last);
        self.publish(
            bucket,
            state,
            WatchEvent {
                event_type: WatchEventType::Deleted,
                resource_version: rv,
                object: last.clone(),
                previous: Some(old),
                line,
            },
        );
        Some((*last).clone())
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        let key = StoreKey {
            group: String::new(),
            resource: "namespaces".into(),
        };
        match self.bucket(&key) {
            Ok(b) => b.lock().objects.contains_key(&ObjectName {
                namespace: String::new(),
                name: namespace.to_string(),
            }),
            Err(_) => false,
        }
    }

    fn object_key(rt: &ResourceType, namespace: &str, name: &str) -> ObjectName {
        ObjectName {
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// GET of one object, in the resource's view.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let state = bucket.lock();
        let obj = state
            .objects
            .get(&Self::object_key(rt, namespace, name))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        Ok(Self::to_view(rt, obj))
    }

    /// In-process read of the stored form, without conversion (cheap: shares the object).
    pub fn get_stored(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        let bucket = self
            .bucket(&StoreKey {
                group: group.into(),
                resource: resource.into(),
            })
            .ok()?;
        let state = bucket.lock();
        state
            .objects
            .get(&ObjectName {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .or_else(|| {
                state.objects.get(&ObjectName {
                    namespace: String::new(),
                    name: name.to_string(),
                })
            })
            .cloned()
    }

    /// In-process list of the stored form; `namespace` None lists all namespaces.
    pub fn list_stored(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Vec<Arc<Value>> {
        let Ok(bucket) = self.bucket(&StoreKey {
            group: group.into(),
            resource: resource.into(),
        }) else {
            return Vec::new();
        };
        let state = bucket.lock();
        state
            .objects
            .iter()
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let state = bucket.lock();
        let mut resource_version = self.current_resource_version();
        if let Some(rv) = opts.exact_resource_version
            && rv < state.compacted_through
        {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                state.compacted_through
            )));
        }
        // Later pages show the objects as they were when the first page was served, like
        // etcd's MVCC reads; once that version is compacted the continuation expires.
        let (start, snapshot) = match &opts.continue_token {
            Some(t) => {
                let (token_version, start) = decode_continue(t)?;
                if token_version < state.compacted_through || token_version > resource_version {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                resource_version = token_version;
                let snapshot = objects_at(&state.objects, &state.history, token_version);
                (Some(start), Some(snapshot))
            }
            None => (None, None),
        };
        let objects = snapshot.as_ref().unwrap_or(&state.objects);
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0u64;
        let range: Box<dyn Iterator<Item = (&ObjectName, &Arc<Value>)>> = match &start {
            Some(s) => Box::new(objects.range(s.clone()..)),
            None => Box::new(objects.iter()),
        };
        for (key, obj) in range {
            if let Some(ns) = namespace
                && rt.namespaced
                && key.namespace != ns
            {
                continue;
            }
            let view = Self::to_view(rt, obj);
            if !opts.label_selector.matches(&view) || !opts.field_selector.matches(&view) {
                continue;
            }
            if let Some(limit) = opts.limit
                && items.len() >= limit
            {
                if next.is_none() {
                    next = Some(key.clone());
                }
                remaining += 1;
                continue;
            }
            items.push(view);
        }
        let continue_token = next.map(|k| encode_continue(resource_version, &k));
        // kube-apiserver only reports the count when no selector had to be evaluated.
        let exact_count = opts.label_selector.is_empty() && opts.field_selector.is_empty();
        let remaining_item_count = if continue_token.is_some() && exact_count {
            Some(remaining)
        } else {
            None
        };
        Ok(ListResult {
            items,
            resource_version,
            continue_token,
            remaining_item_count,
        })
    }

    /// Registers a watch. `After(rv)` older than the retained history fails with 410 Expired.
    pub fn watch(
        &self,
        rt: &ResourceType,
        start: WatchStart,
    ) -> Result<WatchSubscription, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let state = bucket.lock();
        let receiver = bucket.events.subscribe();
        let current = self.current_resource_version();
        match start {
            WatchStart::Current => {
                let backlog = state
                    .objects
                    .values()
                    .map(|o| {
                        let rv = meta(o, "resourceVersion")
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(0);
                        Arc::new(WatchEvent {
                            event_type: WatchEventType::Added,
                            resource_version: rv,
                            object: o.clone(),
                            previous: None,
                            line: watch_line(WatchEventType::Added, o),
                        })
                    })
                    .collect();
                Ok(WatchSubscription {
                    backlog,
                    receiver,
                    resource_version: current,
                })
            }
            WatchStart::After(rv) => {
                if rv < state.compacted_through {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        state.compacted_through
                    )));
                }
                let backlog: Vec<_> = state
                    .history
                    .iter()
                    .filter(|e| e.resource_version > rv)
                    .cloned()
                    .collect();
                let resource_version = backlog
                    .last()
                    .map(|e| e.resource_version)
                    .unwrap_or(rv.max(state.compacted_through));
                Ok(WatchSubscription {
                    backlog,
                    receiver,
                    resource_version,
                })
            }
        }
    }

    /// Drops all watch history so every resourceVersion handed out so far is expired (410 on
    /// watch). Like an etcd compaction it takes a revision of its own, so a list made afterwards
    /// returns a resourceVersion that can still be watched from.
    pub fn force_compact(&self) {
        let buckets: Vec<Arc<Bucket>> = self
            .buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let through = self.next_resource_version();
        for b in buckets {
            let mut state = b.lock();
            state.history.clear();
            state.compacted_through = through;
        }
        tracing::info!(
            resource_version = self.current_resource_version(),
            "watch history compacted"
        );
    }

    /// The changes to a resource still in its watch history with a resourceVersion above
    /// `after`, oldest first — what a watcher from `after` must be sent. None when part of that
    /// history has been compacted away or the resource is unknown.
    pub fn recorded_changes(&self, group: &str, resource: &str, after: u64) -> Option<Vec<RecordedChange>> {
        let bucket = self
            .bucket(&StoreKey {
                group: group.into(),
                resource: resource.into(),
            })
            .ok()?;
        let state = bucket.lock();
        if after < state.compacted_through {
            return None;
        }
        Some(
            state
                .history
                .iter()
                .filter(|e| e.resource_version > after)
                .map(|e| RecordedChange {
                    event_type: e.event_type,
                    resource_version: e.resource_version,
                    namespace: meta(&e.object, "namespace").unwrap_or_default(),
                    name: meta(&e.object, "name").unwrap_or_default(),
                })
                .collect(),
        )
    }

    /// POST: create an object from `body` (in the resource's view).
    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut body: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "Object '{}' is not a map",
                rt.kind
            )));
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && av != rt.api_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        if let Some(m) = body.as_object_mut() {
            m.insert("kind".into(), json!(rt.kind));
            m.insert("apiVersion".into(), json!(rt.api_version()));
        }
        if rt.namespaced {
            if let Some(ns) = meta(&body, "namespace").filter(|n| !n.is_empty())
                && ns != namespace
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if !self.namespace_exists(namespace) {
                return Err(ApiError::not_found("", "namespaces", namespace));
            }
        }
        let now = self.now_seconds();
        {
            let m = meta_mut(&mut body);
            if rt.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if name.is_empty()
                && let Some(prefix) = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
            {
                let generated = format!("{prefix}{}", name_suffix());
                m.insert("name".into(), json!(generated));
            }
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                m.remove(k);
            }
            m.insert("uid".into(), json!(new_uuid()));
            m.insert("creationTimestamp".into(), json!(now));
            if rt.has_generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        defaults::apply_defaults(&rt.group, &rt.plural, &mut body);
        if rt.has_subresource(Subresource::Status)
            && rt.group != "apiextensions.k8s.io"
            && let Some(m) = body.as_object_mut()
        {
            if rt.scale_spec_path.is_some() || !matches!(rt.group.as_str(), "" | "apps" | "batch") {
                m.remove("status");
            } else {
                m.insert("status".into(), json!({}));
            }
        }
        defaults::initial_status(&rt.group, &rt.plural, &mut body);
        if rt.group.is_empty() && rt.plural == "pods" {
            admit_pod(&mut body);
        }
        let name = meta(&body, "name").unwrap_or_default();
        let causes = defaults::validate(&rt.group, &rt.plural, &body);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
        }
        let custom_types =
            if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
                let types = types_from_crd(&body).map_err(|m| {
                    let (field, msg) = m.split_once(": ").unwrap_or(("spec", m.as_str()));
                    ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        &name,
                        vec![cause("FieldValueInvalid", field, msg)],
                    )
                })?;
                mark_crd_established(&mut body, &now);
                Some(types)
            } else {
                None
            };
        let managed = update_managed_fields(
            None,
            &body,
            &FieldWrite {
                manager: &writer.manager,
                operation: writer.operation,
                api_version: &rt.api_version(),
                time: &now,
                subresource: "",
            },
        );
        meta_mut(&mut body).insert("managedFields".into(), json!(managed));
        let stored = Self::from_view(rt, body);
        let key = Self::object_key(rt, namespace, &name);
        let bucket = self.bucket(&rt.store)?;
        let result = {
            let mut state = bucket.lock();
            if state.objects.contains_key(&key) {
                return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
            }
            if writer.dry_run {
                let mut preview = stored;
                meta_mut(&mut preview).remove("resourceVersion");
                return Ok(Self::to_view(rt, &preview));
            }
            self.commit(&bucket, &mut state, key, stored, None)
        };
        if let Some(types) = custom_types {
            self.install_custom_types(types);
        }
        Ok(Self::to_view(rt, &result))
    }

    fn install_custom_types(&self, types: Vec<ResourceType>) {
        let Some(first) = types.first() else { return };
        let (group, plural, key) = (
            first.group.clone(),
            first.plural.clone(),
            first.store.clone(),
        );
        self.buckets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(Bucket::new()));
        self.registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_custom(&group, &plural, types);
        tracing::info!(%group, %plural, "custom resource served");
    }

    fn uninstall_custom_types(&self, crd: &Value) {
        let Ok(types) = types_from_crd(crd) else {
            return;
        };
        let Some(first) = types.first() else { return };
        self.registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_custom(&first.group, &first.plural, Vec::new());
        self.buckets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&first.store);
    }

    /// The rules of an update (PUT, or the result of a patch) applied to `old` (stored form),
    /// returning the new stored form, or None when nothing changed.
    #[allow(clippy::too_many_arguments)]
    fn prepare_update(
        &self,
        rt: &ResourceType,
        old: &Value,
        mut new_view: Value,
        name: &str,
        subresource: Option<Subresource>,
        writer: &Writer,
        check_resource_version: bool,
    ) -> Result<Option<Value>, ApiError> {
        if !new_view.is_object() {
            return Err(ApiError::bad_request(format!(
                "Object '{}' is not a map",
                rt.kind
            )));
        }
        // The native view is the stored object itself; only converted views need a copy.
        let old_view: std::borrow::Cow<'_, Value> = match rt.view {
            View::Native => std::borrow::Cow::Borrowed(old),
            View::EventsV1 => std::borrow::Cow::Owned(Self::to_view(rt, old)),
        };
        if let Some(body_name) = meta(&new_view, "name").filter(|n| !n.is_empty())
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if check_resource_version
            && let Some(rv) = meta(&new_view, "resourceVersion").filter(|r| !r.is_empty())
            && Some(&rv) != meta(&old_view, "resourceVersion").as_ref()
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        let mut next = match subresource {
            Some(Subresource::Status) => {
                let mut n = old_view.clone().into_owned();
                if let Some(m) = n.as_object_mut() {
                    match new_view.get("status") {
                        Some(s) => {
                            m.insert("status".into(), s.clone());
                        }
                        None => {
                            m.remove("status");
                        }
                    }
                }
                n
            }
            _ => {
                if let Some(m) = new_view.as_object_mut() {
                    m.insert("kind".into(), json!(rt.kind));
                    m.insert("apiVersion".into(), json!(rt.api_version()));
                    if rt.has_subresource(Subresource::Status) {
                        match old_view.get("status") {
                            Some(s) => {
                                m.insert("status".into(), s.clone());
                            }
                            None => {
                                m.remove("status");
                            }
                        }
                    }
                }
                defaults::apply_defaults(&rt.group, &rt.plural, &mut new_view);
                new_view
            }
        };
        // System metadata is the server's, whatever the client sent.
        if let Some(Value::Object(old_meta)) = old_view.get("metadata") {
            let m = meta_mut(&mut next);
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
                "resourceVersion",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        m.insert(k.to_string(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
        }
        if subresource.is_none() {
            let causes = defaults::validate(&rt.group, &rt.plural, &next);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, name, causes));
            }
        }
        if same_but_bookkeeping(&next, &old_view) {
            return Ok(None);
        }
        if rt.has_generation && !same_spec(&next, &old_view) {
            let generation = old_view
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta_mut(&mut next).insert("generation".into(), json!(generation));
        }
        let now = self.now_seconds();
        let sub_name = match subresource {
            Some(s) => s.as_str(),
            None => "",
        };
        let managed = update_managed_fields(
            Some(&old_view),
            &next,
            &FieldWrite {
                manager: &writer.manager,
                operation: writer.operation,
                api_version: &rt.api_version(),
                time: &now,
                subresource: sub_name,
            },
        );
        meta_mut(&mut next).insert("managedFields".into(), json!(managed));
        Ok(Some(Self::from_view(rt, next)))
    }

    /// Stores the result of an update, or deletes the object when it is terminating and its
    /// last finalizer just went away.
    fn store_update(
        &self,
        bucket: &Bucket,
        state: &mut BucketState,
        rt: &ResourceType,
        key: ObjectName,
        old: Arc<Value>,
        next: Value,
    ) -> Value {
        let terminating = next
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let finalizers_left = next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if terminating && !finalizers_left {
            state.objects.insert(key.clone(), Arc::new(next));
            let removed = self
                .remove(bucket, state, &key)
                .unwrap_or_else(|| (*old).clone());
            return Self::to_view(rt, &removed);
        }
        let stored = self.commit(bucket, state, key, next, Some(old));
        Self::to_view(rt, &stored)
    }

    /// PUT of an object or its status.
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
        subresource: Option<Subresource>,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let key = Self::object_key(rt, namespace, name);
        let mut state = bucket.lock();
        let old = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let Some(next) = self.prepare_update(rt, &old, body, name, subresource, writer, true)?
        else {
            return Ok(Self::to_view(rt, &old));
        };
        if writer.dry_run {
            return Ok(Self::to_view(rt, &next));
        }
        Ok(self.store_update(&bucket, &mut state, rt, key, old, next))
    }

    /// PATCH of an object or its status. Apply patches create the object when it is missing.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        patch_body: &Value,
        subresource: Option<Subresource>,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let key = Self::object_key(rt, namespace, name);
        let mut state = bucket.lock();
        let Some(old) = state.objects.get(&key).cloned() else {
            drop(state);
            if patch_type == PatchType::Apply {
                let mut body = patch_body.clone();
                meta_mut(&mut body).insert("name".into(), json!(name));
                return self.create(rt, namespace, body, writer);
            }
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        let mut target = Self::to_view(rt, &old);
        apply_patch(&mut target, patch_type, patch_body).map_err(ApiError::bad_request)?;
        // A resourceVersion in the patch is a precondition; otherwise patches never conflict.
        let patch_rv = patch_body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if patch_rv.is_some_and(|rv| Some(rv.to_string()) != meta(&old, "resourceVersion")) {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        let Some(next) = self.prepare_update(rt, &old, target, name, subresource, writer, false)?
        else {
            return Ok(Self::to_view(rt, &old));
        };
        if writer.dry_run {
            return Ok(Self::to_view(rt, &next));
        }
        Ok(self.store_update(&bucket, &mut state, rt, key, old, next))
    }

    /// GET of the autoscaling/v1 Scale of a workload.
    pub fn get_scale(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let obj = self.get(rt, namespace, name)?;
        Ok(scale_of(rt, &obj))
    }

    /// PUT or PATCH of a Scale: `change` turns the current Scale into the requested one.
    pub fn update_scale(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        change: impl FnOnce(Value) -> Result<Value, ApiError>,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let key = Self::object_key(rt, namespace, name);
        let mut state = bucket.lock();
        let old = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let current = scale_of(rt, &old);
        let requested = change(current)?;
        if let Some(rv) = meta(&requested, "resourceVersion").filter(|r| !r.is_empty())
            && Some(rv) != meta(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        let replicas = requested
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![cause(
                    "FieldValueInvalid",
                    "spec.replicas",
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let mut target = (*old).clone();
        json_path_set(
            &mut target,
            rt.scale_spec_path.as_deref().unwrap_or(".spec.replicas"),
            json!(replicas),
        );
        let Some(mut next) = self.prepare_update(rt, &old, target, name, None, writer, false)?
        else {
            return Ok(scale_of(rt, &old));
        };
        // The scale write is recorded against the scale subresource, like the apiserver does.
        if let Some(Value::Array(entries)) = next.pointer_mut("/metadata/managedFields")
            && let Some(last) = entries
                .iter_mut()
                .rev()
                .find(|e| e.get("manager").and_then(Value::as_str) == Some(writer.manager.as_str()))
        {
            last["subresource"] = json!("scale");
        }
        if writer.dry_run {
            return Ok(scale_of(rt, &next));
        }
        let stored = self.store_update(&bucket, &mut state, rt, key, old, next);
        Ok(scale_of(rt, &stored))
    }

    /// POST pods/{name}/binding: assigns the pod to a node and marks it scheduled.
    pub fn bind_pod(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        binding: &Value,
        writer: &Writer,
    ) -> Result<(), ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "",
                    "Binding",
                    name,
                    vec![cause("FieldValueRequired", "target.name", "Required value")],
                )
            })?;
        let bucket = self.bucket(&rt.store)?;
        let key = Self::object_key(rt, namespace, name);
        let mut state = bucket.lock();
        let old = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found("", "pods", name))?;
        if old
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::conflict("", "pods", name));
        }
        if let Some(existing) = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError {
                code: 409,
                reason: "Conflict",
                message: format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{existing}\""
                ),
                details: Some(Box::new(kausal_core::audit::StatusDetails {
                    name: name.into(),
                    kind: "pods/binding".into(),
                    ..Default::default()
                })),
            });
        }
        let mut next = (*old).clone();
        json_path_set(&mut next, ".spec.nodeName", json!(node));
        let now = self.now_seconds();
        let status = next
            .as_object_mut()
            .map(|m| m.entry("status").or_insert(json!({})));
        if let Some(status) = status {
            if !status.is_object() {
                *status = json!({});
            }
            let conditions = status
                .as_object_mut()
                .map(|s| s.entry("conditions").or_insert(json!([])));
            if let Some(Value::Array(conditions)) = conditions {
                conditions
                    .retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            }
        }
        if writer.dry_run {
            return Ok(());
        }
        self.commit(&bucket, &mut state, key, next, Some(old));
        Ok(())
    }

    /// DELETE with propagation policy, finalizers and (for pods on a node) a grace period.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
        writer: &Writer,
    ) -> Result<DeleteOutcome, ApiError> {
        let bucket = self.bucket(&rt.store)?;
        let key = Self::object_key(rt, namespace, name);
        let outcome = {
            let mut state = bucket.lock();
            let old = state
                .objects
                .get(&key)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = meta(&old, "uid").unwrap_or_default();
                if *uid != actual {
                    return Err(ApiError {
                        code: 409,
                        reason: "Conflict",
                        message: format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}",
                            super::status::qualified_resource(&rt.group, &rt.plural)
                        ),
                        details: super::status::ApiError::conflict(&rt.group, &rt.plural, name)
                            .details,
                    });
                }
            }
            if let Some(rv) = &opts.precondition_resource_version
                && Some(rv.clone()) != meta(&old, "resourceVersion")
            {
                return Err(ApiError::conflict(&rt.group, &rt.plural, name));
            }
            let mut next = (*old).clone();
            let already_terminating = old
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null());
            let policy = match (&opts.propagation_policy, opts.orphan_dependents) {
                (Some(p), _) => p.clone(),
                (None, Some(true)) => "Orphan".to_string(),
                _ => "Background".to_string(),
            };
            if !matches!(policy.as_str(), "Background" | "Foreground" | "Orphan") {
                return Err(ApiError::invalid(
                    "meta.k8s.io",
                    "DeleteOptions",
                    "",
                    vec![cause(
                        "FieldValueNotSupported",
                        "propagationPolicy",
                        format!(
                            "Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                        ),
                    )],
                ));
            }
            let propagation_finalizer = match policy.as_str() {
                "Foreground" => Some("foregroundDeletion"),
                "Orphan" => Some("orphan"),
                _ => None,
            };
            if let (Some(f), false) = (propagation_finalizer, already_terminating) {
                let m = meta_mut(&mut next);
                let list = m.entry("finalizers").or_insert(json!([]));
                if let Value::Array(list) = list
                    && !list.iter().any(|x| x == f)
                {
                    list.push(json!(f));
                }
            }
            let finalizers_left = next
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let grace = self.pod_grace_period(rt, &old, opts);
            if finalizers_left || grace.is_some() {
                if already_terminating && grace.is_none() && next == *old {
                    return Ok(DeleteOutcome::Pending(Self::to_view(rt, &old)));
                }
                let grace_seconds = grace.unwrap_or(0);
                let deletion_time = (self.clock.now() + chrono::Duration::seconds(grace_seconds))
                    .to_rfc3339_opts(SecondsFormat::Secs, true);
                let m = meta_mut(&mut next);
                if !already_terminating || grace.is_some() {
                    m.insert("deletionTimestamp".into(), json!(deletion_time));
                }
                m.insert("deletionGracePeriodSeconds".into(), json!(grace_seconds));
                if writer.dry_run {
                    return Ok(DeleteOutcome::Pending(Self::to_view(rt, &next)));
                }
                let stored = self.commit(&bucket, &mut state, key, next, Some(old));
                DeleteOutcome::Pending(Self::to_view(rt, &stored))
            } else {
                if writer.dry_run {
                    return Ok(DeleteOutcome::Deleted(Self::to_view(rt, &old)));
                }
                let removed = self
                    .remove(&bucket, &mut state, &key)
                    .unwrap_or_else(|| (*old).clone());
                DeleteOutcome::Deleted(Self::to_view(rt, &removed))
            }
        };
        if let DeleteOutcome::Deleted(obj) = &outcome {
            if rt.group.is_empty() && rt.plural == "namespaces" {
                self.delete_namespace_contents(name);
            }
            if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
                self.uninstall_custom_types(obj);
            }
        }
        Ok(outcome)
    }

    /// The grace period a pod deletion waits for the kubelet, or None to delete at once.
    /// Only pods bound to a node and still running get one (kube-apiserver's pod strategy).
    fn pod_grace_period(
        &self,
        rt: &ResourceType,
        pod: &Value,
        opts: &DeleteOptions,
    ) -> Option<i64> {
        if !(self.graceful_pod_deletion && rt.group.is_empty() && rt.plural == "pods") {
            return None;
        }
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !bound || finished {
            return None;
        }
        let grace = opts
            .grace_period_seconds
            .or_else(|| {
                pod.pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        if grace <= 0 { None } else { Some(grace) }
    }

    /// What the namespace controller does, at once: removes every object in the namespace.
    fn delete_namespace_contents(&self, namespace: &str) {
        let buckets: Vec<Arc<Bucket>> = self
            .buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for bucket in buckets {
            let mut state = bucket.lock();
            let keys: Vec<ObjectName> = state
                .objects
                .keys()
                .filter(|k| k.namespace == namespace)
                .cloned()
                .collect();
            for k in keys {
                self.remove(&bucket, &mut state, &k);
            }
        }
    }
}

/// Applies a patch of `patch_type` to `target` (the object in the request's view).
pub fn apply_patch(
    target: &mut Value,
    patch_type: PatchType,
    patch_body: &Value,
) -> Result<(), String> {
    match patch_type {
        PatchType::Merge => {
            patch::merge_patch(target, patch_body);
            Ok(())
        }
        PatchType::Json => patch::json_patch(target, patch_body),
        PatchType::Strategic | PatchType::Apply => patch::strategic_merge_patch(target, patch_body),
    }
}

/// The admission plugins' touches on a new pod: service account, default tolerations, priority.
fn admit_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    spec.entry("enableServiceLinks").or_insert(json!(true));
    spec.entry("priority").or_insert(json!(0));
    spec.entry("preemptionPolicy")
        .or_insert(json!("PreemptLowerPriority"));
    let tolerations = spec.entry("tolerations").or_insert(json!([]));
    if let Value::Array(list) = tolerations {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !list
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(key))
            {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

fn mark_crd_established(crd: &mut Value, now: &str) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let stored_versions: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter(|x| x.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|x| x.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = crd.as_object_mut() {
        m.insert(
            "status".into(),
            json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
                    {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
                ],
                "storedVersions": stored_versions
            }),
        );
    }
}

/// The autoscaling/v1 Scale view of a workload (or a custom resource with a scale subresource).
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let spec_path = rt.scale_spec_path.as_deref().unwrap_or(".spec.replicas");
    let status_path = rt
        .scale_status_path
        .as_deref()
        .unwrap_or(".status.replicas");
    let spec_replicas = json_path_get(obj, spec_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = json_path_get(obj, status_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = obj
        .pointer("/spec/selector")
        .map(label_selector_string)
        .unwrap_or_default();
    let mut metadata = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.get("metadata").and_then(|m| m.get(k)) {
            metadata[k] = v.clone();
        }
    }
    let mut status = json!({"replicas": status_replicas});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": metadata, "spec": {"replicas": spec_replicas}, "status": status})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Clock::wall(), 100, true)
    }

    fn writer(m: &str) -> Writer {
        Writer {
            manager: m.into(),
            operation: "Update",
            dry_run: false,
        }
    }

    fn deployments(s: &Store) -> ResourceType {
        s.resource_type("apps", "v1", "deployments").unwrap()
    }

    fn demo() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo", "labels": {"app": "demo"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}}, "spec": {"containers": [{"name": "alpine", "image": "alpine:3.16"}]}}}})
    }

    #[test]
    fn create_sets_server_fields_and_rejects_duplicates() {
        let s = store();
        let rt = deployments(&s);
        let d = s
            .create(&rt, "default", demo(), &writer("kubectl-create"))
            .unwrap();
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["metadata"]["namespace"], "default");
        assert_eq!(d["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(
            d["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert_eq!(
            d["metadata"]["managedFields"][0]["manager"],
            "kubectl-create"
        );
        assert_eq!(d["status"], json!({}));
        let e = s.create(&rt, "default", demo(), &writer("x")).unwrap_err();
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        let e = s.create(&rt, "nope", demo(), &writer("x")).unwrap_err();
        assert_eq!(e.message, "namespaces \"nope\" not found");
    }

    #[test]
    fn stale_update_conflicts_and_spec_changes_bump_generation() {
        let s = store();
        let rt = deployments(&s);
        let created = s
            .create(&rt, "default", demo(), &writer("kubectl-create"))
            .unwrap();
        let mut changed = created.clone();
        changed["spec"]["replicas"] = json!(4);
        changed["status"] = json!({"replicas": 99});
        let updated = s
            .update(
                &rt,
                "default",
                "demo",
                changed.clone(),
                None,
                &writer("kubectl"),
            )
            .unwrap();
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_eq!(
            updated["status"],
            json!({}),
            "main-resource writes ignore status"
        );
        let e = s
            .update(&rt, "default", "demo", changed, None, &writer("kubectl"))
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        let mut status = updated.clone();
        status["status"] = json!({"replicas": 4});
        status["spec"]["replicas"] = json!(10);
        let after = s
            .update(
                &rt,
                "default",
                "demo",
                status,
                Some(Subresource::Status),
                &writer("kube-controller-manager"),
            )
            .unwrap();
        assert_eq!(after["metadata"]["generation"], 2);
        assert_eq!(after["spec"]["replicas"], 4);
        assert_eq!(after["status"]["replicas"], 4);
    }

    #[test]
    fn no_op_update_keeps_the_resource_version() {
        let s = store();
        let rt = deployments(&s);
        let created = s.create(&rt, "default", demo(), &writer("a")).unwrap();
        let same = s
            .update(&rt, "default", "demo", created.clone(), None, &writer("a"))
            .unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn watch_replays_history_and_expires_after_compaction() {
        let s = store();
        let rt = deployments(&s);
        let created = s.create(&rt, "default", demo(), &writer("a")).unwrap();
        let rv: u64 = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let patched = s.patch(
            &rt,
            "default",
            "demo",
            PatchType::Merge,
            &json!({"spec": {"replicas": 3}}),
            None,
            &writer("a"),
        )
        .unwrap();
        let patched_rv: u64 = patched["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let recorded = s.recorded_changes("apps", "deployments", rv - 1).unwrap();
        let seen: Vec<(WatchEventType, u64, &str)> = recorded
            .iter()
            .map(|c| (c.event_type, c.resource_version, c.name.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (WatchEventType::Added, rv, "demo"),
                (WatchEventType::Modified, patched_rv, "demo")
            ]
        );
        let sub = s.watch(&rt, WatchStart::After(rv)).unwrap();
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].event_type, WatchEventType::Modified);
        assert!(
            sub.backlog[0]
                .line
                .starts_with(b"{\"type\":\"MODIFIED\",\"object\":{")
        );
        s.force_compact();
        let e = s.watch(&rt, WatchStart::After(rv)).err().unwrap();
        assert_eq!((e.code, e.reason), (410, "Expired"));
        // Even the newest version handed out before the compaction is expired.
        let e = s.watch(&rt, WatchStart::After(patched_rv)).err().unwrap();
        assert_eq!((e.code, e.reason), (410, "Expired"));
        assert!(s.recorded_changes("apps", "deployments", patched_rv).is_none());
        assert!(
            s.watch(&rt, WatchStart::After(s.current_resource_version()))
                .is_ok()
        );
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let s = store();
        let rt = deployments(&s);
        let mut d = demo();
        d["metadata"]["finalizers"] = json!(["example.com/hold"]);
        s.create(&rt, "default", d, &writer("a")).unwrap();
        let pending = s
            .delete(
                &rt,
                "default",
                "demo",
                &DeleteOptions::default(),
                &writer("a"),
            )
            .unwrap();
        let DeleteOutcome::Pending(obj) = pending else {
            panic!("expected pending")
        };
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        let gone = s
            .patch(
                &rt,
                "default",
                "demo",
                PatchType::Merge,
                &json!({"metadata": {"finalizers": null}}),
                None,
                &writer("a"),
            )
            .unwrap();
        assert!(gone["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(s.get(&rt, "default", "demo").unwrap_err().code, 404);
    }

    #[test]
    fn foreground_deletion_adds_its_finalizer() {
        let s = store();
        let rt = deployments(&s);
        s.create(&rt, "default", demo(), &writer("a")).unwrap();
        let opts = DeleteOptions {
            propagation_policy: Some("Foreground".into()),
            ..Default::default()
        };
        s.delete(&rt, "default", "demo", &opts, &writer("a"))
            .unwrap();
        let obj = s.get(&rt, "default", "demo").unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    }

    #[test]
    fn bound_pods_get_a_grace_period_and_unbound_pods_go_at_once() {
        let s = store();
        let pods = s.resource_type("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        s.create(&pods, "default", pod.clone(), &writer("a"))
            .unwrap();
        s.bind_pod(
            &pods,
            "default",
            "p",
            &json!({"target": {"kind": "Node", "name": "node-1"}}),
            &writer("kube-scheduler"),
        )
        .unwrap();
        let bound = s.get(&pods, "default", "p").unwrap();
        assert_eq!(bound["spec"]["nodeName"], "node-1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        assert!(matches!(
            s.delete(
                &pods,
                "default",
                "p",
                &DeleteOptions::default(),
                &writer("a")
            )
            .unwrap(),
            DeleteOutcome::Pending(_)
        ));
        let now = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            s.delete(&pods, "default", "p", &now, &writer("kubelet"))
                .unwrap(),
            DeleteOutcome::Deleted(_)
        ));
        s.create(&pods, "default", pod, &writer("a")).unwrap();
        assert!(matches!(
            s.delete(
                &pods,
                "default",
                "p",
                &DeleteOptions::default(),
                &writer("a")
            )
            .unwrap(),
            DeleteOutcome::Deleted(_)
        ));
    }

    #[test]
    fn scale_subresource_reads_and_writes_replicas() {
        let s = store();
        let rt = deployments(&s);
        s.create(&rt, "default", demo(), &writer("a")).unwrap();
        let scale = s.get_scale(&rt, "default", "demo").unwrap();
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=demo");
        let out = s
            .update_scale(
                &rt,
                "default",
                "demo",
                |mut sc| {
                    sc["spec"]["replicas"] = json!(4);
                    Ok(sc)
                },
                &writer("kubectl"),
            )
            .unwrap();
        assert_eq!(out["spec"]["replicas"], 4);
        let d = s.get(&rt, "default", "demo").unwrap();
        assert_eq!(d["metadata"]["generation"], 2);
        let mf = d["metadata"]["managedFields"].as_array().unwrap();
        assert!(
            mf.iter()
                .any(|e| e["manager"] == "kubectl" && e["subresource"] == "scale")
        );
    }

    #[test]
    fn list_paginates_with_continue_tokens() {
        let s = store();
        let cms = s.resource_type("", "v1", "configmaps").unwrap();
        for i in 0..5 {
            s.create(
                &cms,
                "default",
                json!({"metadata": {"name": format!("cm-{i}"), "labels": {"i": i.to_string()}}}),
                &writer("a"),
            )
            .unwrap();
        }
        let opts = ListOptions {
            limit: Some(2),
            ..Default::default()
        };
        let page1 = s.list(&cms, Some("default"), &opts).unwrap();
        assert_eq!(page1.items.len(), 2);
        assert_eq!(page1.remaining_item_count, Some(3));
        let opts2 = ListOptions {
            limit: Some(10),
            continue_token: page1.continue_token.clone(),
            ..Default::default()
        };
        let page2 = s.list(&cms, Some("default"), &opts2).unwrap();
        assert_eq!(page2.items.len(), 3);
        assert_eq!(page2.items[0]["metadata"]["name"], "cm-2");
        assert!(page2.continue_token.is_none());
    }

    #[test]
    fn continued_lists_show_the_first_page_s_version() {
        let s = store();
        let cms = s.resource_type("", "v1", "configmaps").unwrap();
        for i in 0..5 {
            s.create(
                &cms,
                "default",
                json!({"metadata": {"name": format!("cm-{i}")}, "data": {"v": "old"}}),
                &writer("a"),
            )
            .unwrap();
        }
        let page1 = s
            .list(&cms, Some("default"), &ListOptions { limit: Some(2), ..Default::default() })
            .unwrap();
        // Changes after the first page: a new object, an update and a deletion on later pages.
        s.create(&cms, "default", json!({"metadata": {"name": "cm-9"}}), &writer("a"))
            .unwrap();
        s.patch(&cms, "default", "cm-3", PatchType::Merge, &json!({"data": {"v": "new"}}), None, &writer("a"))
            .unwrap();
        s.delete(&cms, "default", "cm-4", &DeleteOptions::default(), &writer("a"))
            .unwrap();
        let continued = ListOptions {
            continue_token: page1.continue_token.clone(),
            ..Default::default()
        };
        let page2 = s.list(&cms, Some("default"), &continued).unwrap();
        let names: Vec<&str> = page2.items.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
        assert_eq!(names, ["cm-2", "cm-3", "cm-4"]);
        assert_eq!(page2.items[1]["data"]["v"], "old");
        assert_eq!(page2.resource_version, page1.resource_version);
        // A fresh list sees the present.
        let now = s.list(&cms, Some("default"), &ListOptions::default()).unwrap();
        assert_eq!(now.items.len(), 5);
        s.force_compact();
        let e = s.list(&cms, Some("default"), &continued).err().unwrap();
        assert_eq!((e.code, e.reason), (410, "Expired"));
    }

    #[test]
    fn events_k8s_io_view_writes_into_the_core_store() {
        let s = store();
        let v1 = s.resource_type("events.k8s.io", "v1", "events").unwrap();
        let core = s.resource_type("", "v1", "events").unwrap();
        let ev = json!({"metadata": {"name": "p.1"}, "eventTime": "2024-01-01T00:00:00.000001Z", "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "p"}, "note": "assigned", "type": "Normal",
            "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-node-0", "action": "Binding"});
        s.create(&v1, "default", ev, &writer("kube-scheduler"))
            .unwrap();
        let c = s.get(&core, "default", "p.1").unwrap();
        assert_eq!(c["involvedObject"]["name"], "p");
        assert_eq!(c["message"], "assigned");
        assert_eq!(
            c["metadata"]["managedFields"][0]["apiVersion"],
            "events.k8s.io/v1"
        );
        assert!(c["metadata"]["managedFields"][0]["fieldsV1"]["f:note"].is_object());
    }

    #[test]
    fn crd_creation_serves_its_resource() {
        let s = store();
        let crds = s
            .resource_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"}, "versions": [{"name": "v1", "served": true, "storage": true}]}});
        s.create(&crds, "", crd, &writer("kubectl")).unwrap();
        let widgets = s.resource_type("example.com", "v1", "widgets").unwrap();
        let w = s
            .create(
                &widgets,
                "default",
                json!({"metadata": {"name": "w1"}, "spec": {"size": 1}}),
                &writer("kubectl"),
            )
            .unwrap();
        assert_eq!(w["kind"], "Widget");
        assert_eq!(w["apiVersion"], "example.com/v1");
        s.delete(
            &crds,
            "",
            "widgets.example.com",
            &DeleteOptions::default(),
            &writer("kubectl"),
        )
        .unwrap();
        assert!(s.resource_type("example.com", "v1", "widgets").is_none());
    }

    #[tokio::test]
    async fn generate_name_gets_a_random_suffix_and_timestamps_follow_the_clock() {
        let clock = Clock::virtual_clock();
        clock.sleep(std::time::Duration::from_secs(7200)).await;
        let s = Store::new(clock.clone(), 100, true);
        let pods = s.resource_type("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"generateName": "demo-7d9f-"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let a = s.create(&pods, "default", pod.clone(), &writer("kube-controller-manager")).unwrap();
        let b = s.create(&pods, "default", pod, &writer("kube-controller-manager")).unwrap();
        let name = a["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("demo-7d9f-") && name.len() == "demo-7d9f-".len() + 5, "{name}");
        assert_ne!(a["metadata"]["name"], b["metadata"]["name"]);
        assert_eq!(a["status"]["phase"], "Pending");
        assert_eq!(a["spec"]["serviceAccountName"], "default");
        let created = chrono::DateTime::parse_from_rfc3339(a["metadata"]["creationTimestamp"].as_str().unwrap()).unwrap();
        let ahead = created.with_timezone(&chrono::Utc) - chrono::Utc::now();
        assert!((ahead.num_seconds() - 7200).abs() <= 2, "virtual time is used: {ahead}");
    }

    #[test]
    fn namespace_deletion_removes_its_objects() {
        let s = store();
        let ns = s.resource_type("", "v1", "namespaces").unwrap();
        let cms = s.resource_type("", "v1", "configmaps").unwrap();
        s.create(&ns, "", json!({"metadata": {"name": "team"}}), &writer("a"))
            .unwrap();
        s.create(
            &cms,
            "team",
            json!({"metadata": {"name": "c"}}),
            &writer("a"),
        )
        .unwrap();
        s.delete(&ns, "", "team", &DeleteOptions::default(), &writer("a"))
            .unwrap();
        assert!(s.list_stored("", "configmaps", Some("team")).is_empty());
    }
}
