//! Query benchmark: a Deployment with 1,000 Pods over 4 windows (about 50,000 activities) is
//! written to a fresh store, then the `full tree` trace is fetched and the Deployment searched
//! repeatedly; prints p50/p99 of each. Targets (issue 6): trace fetch p99 ≤ 100 ms, search
//! p99 ≤ 50 ms. Run with `cargo run --release -p kausal-bench --bin query`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use kausal_core::conventions::{Window, DEFAULT_WINDOW_NANOS};
use kausal_core::otlp_trace::Span;
use kausal_core::{LinkRole, Nanos, ObjectKey};
use kausal_extension_query::api::{parse_search, QueryOptions};
use kausal_extension_query::jaeger;
use kausal_extension_query::reader::Reader;
use kausal_store::testing::{audit_span, link, object_span, resource_spans};
use kausal_store::{Store, StoreOptions};

#[derive(Parser)]
struct Args {
    /// Pods under the Deployment.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Windows (30 minutes each) the rollout spans.
    #[arg(long, default_value_t = 4)]
    windows: usize,
    /// Activities per Pod per window.
    #[arg(long, default_value_t = 12)]
    per_pod: usize,
    /// Measured repetitions of each query.
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

const SECOND: Nanos = 1_000_000_000;

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let now = chrono::Utc::now().timestamp_nanos_opt().context("clock")?;
    let first = Window::containing(now, DEFAULT_WINDOW_NANOS).start - args.windows as Nanos * DEFAULT_WINDOW_NANOS;
    let deployment = ObjectKey::new("bench", "apps", "deployments", "default", "demo");
    let sets: Vec<ObjectKey> =
        (0..args.windows).map(|i| ObjectKey::new("bench", "apps", "replicasets", "default", &format!("demo-{i}"))).collect();
    let pods: Vec<(usize, ObjectKey)> = (0..args.pods)
        .map(|i| (i % sets.len(), ObjectKey::new("bench", "", "pods", "default", &format!("demo-{}-{i}", i % sets.len()))))
        .collect();

    let started = Instant::now();
    let mut activities = 0usize;
    for w in 0..args.windows {
        let window = Window { start: first + w as Nanos * DEFAULT_WINDOW_NANOS, length: DEFAULT_WINDOW_NANOS };
        let mut objects: Vec<Span> = vec![object_span(
            &deployment,
            "Deployment",
            window,
            sets.iter().map(|s| link(s, "ReplicaSet", window, LinkRole::Child)).collect(),
        )];
        for (i, set) in sets.iter().enumerate() {
            let mut links = vec![link(&deployment, "Deployment", window, LinkRole::Parent)];
            links.extend(pods.iter().filter(|(s, _)| *s == i).map(|(_, p)| link(p, "Pod", window, LinkRole::Child)));
            objects.push(object_span(set, "ReplicaSet", window, links));
        }
        store.write(&[resource_spans("bench", "kausal", objects)])?;
        let mut batch: Vec<Span> = Vec::new();
        for a in 0..10 {
            let at = window.start + a * 60 * SECOND;
            batch.push(audit_span(&deployment, window, &format!("d{w}-{a}"), "dc", "update", "status", 200, at, at + 5_000_000));
        }
        for (n, (set, pod)) in pods.iter().enumerate() {
            batch.push(object_span(pod, "Pod", window, vec![link(&sets[*set], "ReplicaSet", window, LinkRole::Parent)]));
            for a in 0..args.per_pod {
                let at = window.start + (n as Nanos * 1_000_000) + a as Nanos * 60 * SECOND;
                let id = format!("p{w}-{n}-{a}");
                batch.push(audit_span(pod, window, &id, "system:node:node-1", "patch", "status", 200, at, at + 3_000_000));
            }
            activities += args.per_pod;
            if batch.len() > 5_000 {
                store.write(&[resource_spans("bench", "kausal", std::mem::take(&mut batch))])?;
            }
        }
        store.write(&[resource_spans("bench", "kausal", batch)])?;
        activities += 10;
    }
    store.flush()?;
    println!(
        "store: {} pods, {} windows, {activities} activities written in {:.1} s",
        args.pods,
        args.windows,
        started.elapsed().as_secs_f64()
    );

    let reader = Reader::new(store.clone(), QueryOptions { default_lookback: Duration::from_secs(4 * 3600), ..Default::default() });
    let params: Vec<(String, String)> = [
        ("service", "tracing"),
        ("tags", r#"{"resource":"deployments","name":"demo"}"#),
        ("lookback", "3h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let request = parse_search(&params, now, reader.options()).map_err(|e| anyhow::anyhow!(e.message))?;

    let mut search_times = Vec::new();
    let mut id = None;
    for _ in 0..args.runs + 3 {
        let t = Instant::now();
        let found = reader.search(&request).map_err(|e| anyhow::anyhow!(e.message))?;
        let body = serde_json::to_vec(&found.iter().map(|(id, t)| jaeger::render(t, *id)).collect::<Vec<_>>())?;
        search_times.push(t.elapsed());
        std::hint::black_box(body);
        id = found.first().map(|(id, _)| *id);
    }
    let id = id.context("the search found nothing")?;

    let mut fetch_times = Vec::new();
    let mut spans = 0;
    let mut logs = 0;
    for _ in 0..args.runs + 3 {
        let t = Instant::now();
        let trace = reader.trace(id).map_err(|e| anyhow::anyhow!(e.message))?;
        let body = serde_json::to_vec(&jaeger::render(&trace, id))?;
        fetch_times.push(t.elapsed());
        spans = trace.spans.len();
        logs = trace.spans.iter().map(|s| s.logs.len()).sum();
        std::hint::black_box(body);
    }
    report(&format!("full tree trace fetch ({spans} spans, {logs} logs, rendered to Jaeger JSON)"), &mut fetch_times[3..].to_vec(), 100);
    report("search for the Deployment (link budget 10, rendered)", &mut search_times[3..].to_vec(), 50);
    Ok(())
}

fn report(what: &str, times: &mut [Duration], target_ms: u128) {
    times.sort();
    let at = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let p99 = at(0.99);
    println!(
        "{what}: p50 {:.1} ms, p99 {:.1} ms (target p99 ≤ {target_ms} ms: {})",
        at(0.5).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if p99.as_millis() <= target_ms { "met" } else { "MISSED" }
    );
}
