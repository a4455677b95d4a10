//! Rough write throughput of the store: Metadata-level audit activity spans in batches, with
//! the object span of every object in the batch re-emitted alongside (as the span builder
//! does), into a fresh store in a temporary directory. Prints activities per second.
//!
//! `cargo run -p kausal-store --example write_throughput --release -- [activities] [objects] [batch]`

use std::collections::BTreeSet;
use std::time::Instant;

use kausal_core::conventions::{Window, DEFAULT_WINDOW_NANOS};
use kausal_core::{LinkRole, ObjectKey};
use kausal_store::testing::{audit_span, link, object_span, resource_spans};
use kausal_store::{Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let activities = args.next().transpose()?.unwrap_or(200_000);
    let objects = args.next().transpose()?.unwrap_or(10_000).max(1);
    let batch = args.next().transpose()?.unwrap_or(2_000).max(1);
    let dir = std::env::temp_dir().join(format!("kausal-store-bench-{}", std::process::id()));
    let store = Store::open(&dir, StoreOptions::default())?;
    let t0: i64 = 1_700_000_000_000_000_000;
    let owner = ObjectKey::new("prod", "apps", "replicasets", "default", "load");
    let keys: Vec<ObjectKey> =
        (0..objects).map(|i| ObjectKey::new("prod", "", "pods", "default", format!("load-{i}"))).collect();
    // Build every batch first so that only the store is timed.
    let mut batches = Vec::new();
    let mut i = 0;
    while i < activities {
        let n = batch.min(activities - i);
        let mut spans = Vec::with_capacity(n + n.min(objects));
        let mut touched = BTreeSet::new();
        for j in i..i + n {
            let key = &keys[j % objects];
            let at = t0 + j as i64 * 10_000;
            let w = Window::containing(at, DEFAULT_WINDOW_NANOS);
            if touched.insert((j % objects, w)) {
                spans.push(object_span(key, "Pod", w, vec![link(&owner, "ReplicaSet", w, LinkRole::Parent)]));
            }
            let user = "system:serviceaccount:kube-system:replicaset-controller";
            spans.push(audit_span(key, w, &format!("audit-{j}"), user, "update", "status", 200, at, at + 2_000_000));
        }
        batches.push(vec![resource_spans("prod", "pods", spans)]);
        i += n;
    }
    let started = Instant::now();
    let mut written = 0;
    for b in &batches {
        written += store.write(b)?.activities;
    }
    store.flush()?;
    let elapsed = started.elapsed();
    println!(
        "{written} activities over {objects} objects in batches of {batch}: {:.2}s, {:.0} activities/s",
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64()
    );
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
