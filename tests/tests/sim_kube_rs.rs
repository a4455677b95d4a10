//! kube-rs against the simulated cluster, the way a controller uses it: `kube::runtime::watcher`
//! on Deployments, Pods and Events through the `rollout` scenario must see every change the
//! apiserver recorded, in resourceVersion order and without gaps; a raw watch with
//! `allowWatchBookmarks` must get bookmarks; and after a forced compaction the watchers must
//! get 410 Gone, relist and carry on.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kausal_sim::apiserver::store::{RecordedChange, WatchEventType};
use kausal_sim::cluster::{SimCluster, SimClusterHandle};
use kausal_sim::controllers::KubeletTiming;
use kausal_sim::scenario;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// Generous: CI runs the whole suite on two loaded cores.
const PATIENCE: Duration = Duration::from_secs(120);

fn fast_kubelets() -> KubeletTiming {
    KubeletTiming {
        admit: Duration::from_millis(20),
        image_pull: Duration::from_millis(150),
        container_start: Duration::from_millis(20),
        run_to_completion: Duration::from_millis(300),
        crash_after: Duration::from_millis(100),
        termination: Duration::from_millis(50),
        lease_renew: Duration::from_secs(2),
    }
}

async fn kube_client(cluster: &SimClusterHandle) -> Result<Client> {
    // kube's rustls connector needs a process-wide provider; another test may have set it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// What one watcher reported, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Init,
    InitDone,
    Change(Change),
    Gone,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Change {
    deleted: bool,
    resource_version: u64,
    namespace: String,
    name: String,
}

impl Change {
    fn of(deleted: bool, object: &impl Resource) -> Change {
        Change {
            deleted,
            resource_version: object.resource_version().and_then(|rv| rv.parse().ok()).unwrap_or(0),
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }

    fn from_store(c: &RecordedChange) -> Change {
        Change {
            deleted: c.event_type == WatchEventType::Deleted,
            resource_version: c.resource_version,
            namespace: c.namespace.clone(),
            name: c.name.clone(),
        }
    }
}

struct Follower {
    resource: &'static str,
    group: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Follower {
    fn start<K>(api: Api<K>, group: &'static str, resource: &'static str) -> Follower
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        // Short server-side timeouts make the watcher reconnect often, so that a compaction
        // reaches it as 410 on its next watch request.
        let config = watcher::Config::default().timeout(3);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(item) = stream.next().await {
                let entry = match item {
                    Ok(watcher::Event::Init) => Seen::Init,
                    Ok(watcher::Event::InitApply(_)) => continue,
                    Ok(watcher::Event::InitDone) => Seen::InitDone,
                    Ok(watcher::Event::Apply(o)) => Seen::Change(Change::of(false, &o)),
                    Ok(watcher::Event::Delete(o)) => Seen::Change(Change::of(true, &o)),
                    Err(watcher::Error::WatchError(status)) if status.code == 410 => Seen::Gone,
                    Err(e) => Seen::Failed(e.to_string()),
                };
                if let Ok(mut s) = into.lock() {
                    s.push(entry);
                }
            }
        });
        Follower { resource, group, seen, task }
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn failures(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Failed(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Result<()> {
        let started = Instant::now();
        loop {
            let seen = self.snapshot();
            if done(&seen) {
                return Ok(());
            }
            if started.elapsed() > PATIENCE {
                bail!("{} watcher: no {what} within {PATIENCE:?}; saw {:#?}", self.resource, seen);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Changes reported after the last relist.
    fn changes_after_init(&self) -> Vec<Change> {
        let seen = self.snapshot();
        let from = seen.iter().rposition(|s| *s == Seen::InitDone).map(|i| i + 1).unwrap_or(0);
        seen[from..]
            .iter()
            .filter_map(|s| match s {
                Seen::Change(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
}

fn inits_done(seen: &[Seen]) -> usize {
    seen.iter().filter(|s| **s == Seen::InitDone).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_kube_rs_watchers_follow_a_rollout_and_relist_after_410() -> Result<()> {
    let cluster = SimCluster::builder()
        .nodes(2)
        .kubelet_timing(fast_kubelets())
        .bookmark_interval(Duration::from_millis(300))
        .start()
        .await?;
    let outcome = run(&cluster).await;
    cluster.shutdown().await;
    outcome
}

async fn run(cluster: &SimClusterHandle) -> Result<()> {
    let client = kube_client(cluster).await?;
    let store = cluster.apiserver().store();

    // A client-go style list, to check the discovery of the plain API first.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    assert_eq!(nodes.list(&ListParams::default()).await?.items.len(), 2);

    let followers = [
        Follower::start(Api::<Deployment>::all(client.clone()), "apps", "deployments"),
        Follower::start(Api::<Pod>::all(client.clone()), "", "pods"),
        Follower::start(Api::<Event>::all(client.clone()), "", "events"),
    ];
    for f in &followers {
        f.wait_for("initial list", |s| inits_done(s) >= 1).await?;
    }

    // A raw watch on pods with bookmarks, from the resourceVersion of a list.
    let pods: Api<Pod> = Api::all(client.clone());
    let listed = pods.list(&ListParams::default()).await?;
    let list_version = listed.metadata.resource_version.clone().context("list resourceVersion")?;
    let raw = pods.watch(&WatchParams::default().timeout(290), &list_version).await?;
    let raw_seen: Arc<Mutex<Vec<(bool, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let raw_into = raw_seen.clone();
    let raw_task = tokio::spawn(async move {
        let mut raw = std::pin::pin!(raw);
        while let Some(Ok(event)) = raw.next().await {
            let entry = match &event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => {
                    (false, p.resource_version().and_then(|r| r.parse().ok()).unwrap_or(0))
                }
                WatchEvent::Bookmark(b) => (true, b.metadata.resource_version.parse().unwrap_or(0)),
                WatchEvent::Error(_) => break,
            };
            if let Ok(mut s) = raw_into.lock() {
                s.push(entry);
            }
        }
    });

    // Everything after this version must reach the watchers as recorded.
    let before_rollout = store.current_resource_version();
    let rollout = scenario::builtin("rollout").context("the rollout built-in")?;
    tokio::time::timeout(PATIENCE, cluster.run_scenario(&rollout)).await.context("rollout timed out")??;

    for f in &followers {
        let recorded: Vec<Change> = store
            .recorded_changes(f.group, f.resource, before_rollout)
            .context("history is still complete")?
            .iter()
            .map(Change::from_store)
            .collect();
        assert!(!recorded.is_empty(), "the rollout changed {}", f.resource);
        let last = recorded.last().map(|c| c.resource_version).unwrap_or(0);
        f.wait_for("last recorded change", |s| {
            s.iter().any(|e| matches!(e, Seen::Change(c) if c.resource_version >= last))
        })
        .await?;
        let seen: Vec<Change> = f.changes_after_init().into_iter().filter(|c| c.resource_version > before_rollout).collect();
        assert!(seen.windows(2).all(|p| p[0].resource_version < p[1].resource_version), "{} in order", f.resource);
        assert_eq!(&seen[..recorded.len().min(seen.len())], &recorded[..], "{}: every recorded change, once, in order", f.resource);
        assert!(f.failures().is_empty(), "{} watcher failed: {:?}", f.resource, f.failures());
    }
    let deleted_pods = followers[1].changes_after_init().iter().filter(|c| c.deleted).count();
    assert!(deleted_pods >= 6, "the rollout's pods were deleted: {deleted_pods}");

    // Bookmarks arrived, and never went back behind an event already sent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    raw_task.abort();
    let raw = raw_seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(raw.iter().any(|(bookmark, _)| *bookmark), "no bookmark on the raw watch");
    assert!(raw.iter().filter(|(b, _)| !*b).count() >= 10, "the raw watch saw the rollout's pods: {raw:?}");
    let mut newest = 0;
    for (bookmark, rv) in &raw {
        assert!(*rv >= newest, "resourceVersion went back to {rv} after {newest}: {raw:?}");
        if !bookmark {
            assert!(*rv > newest, "event versions strictly increase");
        }
        newest = *rv;
    }

    // A compaction expires the watchers' versions: 410, relist, and they keep following.
    let relists_before: Vec<usize> = followers.iter().map(|f| inits_done(&f.snapshot())).collect();
    cluster.apiserver().force_compact();
    for (f, before) in followers.iter().zip(relists_before) {
        f.wait_for("410 and relist", |s| {
            let gone = s.iter().rposition(|e| *e == Seen::Gone);
            let done = s.iter().rposition(|e| *e == Seen::InitDone);
            inits_done(s) > before && matches!((gone, done), (Some(g), Some(d)) if d > g)
        })
        .await?;
    }
    let after_compaction = store.current_resource_version();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "after-compaction", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "alpine:3.17"}]},
    }))?;
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &pod).await?;
    followers[1]
        .wait_for("the pod created after the compaction", |_| {
            followers[1].changes_after_init().iter().any(|c| c.name == "after-compaction" && c.resource_version > after_compaction)
        })
        .await?;
    for f in &followers {
        assert!(f.failures().is_empty(), "{} watcher failed: {:?}", f.resource, f.failures());
        f.task.abort();
    }
    Ok(())
}
