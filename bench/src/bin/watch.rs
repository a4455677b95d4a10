//! Watch benchmark (issue 4): the simulator holds 50,000 Pods and 10,000 ConfigMaps; the
//! `kausal` binary watches them with `kubeobjects` (changes to the cache and, as change spans,
//! to the embedded store). Measures kausal's RSS after the initial list and during a run of
//! ConfigMap updates at a fixed rate, and how long after each write its change was observed
//! (the activity's time is taken when the watcher has the diff, right before it is stored in
//! the cache, i.e. when it becomes joinable), from sampled changes read back over the Jaeger API.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kausal_bench::percentile;
use kausal_sim::apiserver::store::Writer;
use kausal_sim::cluster::SimCluster;
use kausal_tests::process::{Kausal, free_port};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    #[arg(long, default_value_t = 10_000)]
    others: usize,
    /// Changes per second during the run.
    #[arg(long, default_value_t = 2_000)]
    rate: usize,
    /// Length of the change run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// One change in this many is sampled for latency.
    #[arg(long, default_value_t = 100)]
    sample_every: usize,
}

fn rss(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let cluster = SimCluster::builder().nodes(1).kubeconfig_out(&kubeconfig).watch_history(1_000_000).start().await?;
    let store = cluster.apiserver().store();
    let pods = store.resource_type("", "v1", "pods").context("pods resource")?;
    let cms = store.resource_type("", "v1", "configmaps").context("configmaps resource")?;
    let writer = Writer { manager: "bench".into(), operation: "Update", dry_run: false };
    let namespaces = store.resource_type("", "v1", "namespaces").context("namespaces resource")?;
    store
        .create(&namespaces, "", json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}), &writer)
        .map_err(|e| anyhow::anyhow!("creating the namespace: {e:?}"))?;
    let t = Instant::now();
    for i in 0..args.pods {
        // Bound to a node no kubelet runs, so no controller touches them.
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":format!("p-{i}"),"namespace":"bench","labels":{"app":"bench","shard":format!("s{}", i % 50)}},
            "spec":{"nodeName":"nowhere","containers":[{"name":"c","image":"registry.example/app:1.0","resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}});
        store.create(&pods, "bench", pod, &writer).map_err(|e| anyhow::anyhow!("creating pod {i}: {e:?}"))?;
    }
    for i in 0..args.others {
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("cm-{i}"),"namespace":"bench"},"data":{"v":"0"}});
        store.create(&cms, "bench", cm, &writer).map_err(|e| anyhow::anyhow!("creating configmap {i}: {e:?}"))?;
    }
    println!("simulator: {} pods + {} configmaps created in {:.1}s", args.pods, args.others, t.elapsed().as_secs_f64());

    let query = free_port();
    let config = format!(
        "receivers:\n  kubeobjects:\n    cluster: bench\n    auth: {{kubeconfig: \"{}\"}}\nprocessors:\n  spanbuilder: {{}}\nexporters:\n  spanstore:\n    directory: ./data\nextensions:\n  query:\n    endpoint: 127.0.0.1:{query}\n    directory: ./data\nservice:\n  extensions: [query]\n  pipelines:\n    kube:\n      receivers: [kubeobjects]\n      processors: [spanbuilder]\n      exporters: [spanstore]\n  telemetry:\n    logs:\n      level: warn\n",
        kubeconfig.display()
    );
    let mut kausal = Kausal::start(dir.path(), &config)?;
    kausal.wait_for_port(query, Duration::from_secs(60))?;
    let client = kausal_tests::http::client();

    // The initial list is over once a new object's creation is observed.
    let t = Instant::now();
    let mut probe = 0;
    loop {
        let name = format!("probe-{probe}");
        store.create(&cms, "bench", json!({"metadata":{"name":name,"namespace":"bench"},"data":{}}), &writer).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !changes_of(&client, query, &name).await?.is_empty() {
            break;
        }
        probe += 1;
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the watcher never finished its initial list:\n{}", kausal.stderr());
        }
    }
    let listed_rss = rss(kausal.pid(), "VmRSS:");
    println!("initial list of {} objects: {:.1}s; kausal RSS {:.0} MB", args.pods + args.others, t.elapsed().as_secs_f64(), listed_rss as f64 / 1e6);

    // Changes at the target rate, paced in 10 ms slices.
    let total = args.rate * args.seconds as usize;
    let mut samples: Vec<(String, String, i64)> = Vec::new();
    let start = Instant::now();
    let per_slice = (args.rate / 100).max(1);
    let mut done = 0;
    let mut peak = 0;
    while done < total {
        for _ in 0..per_slice.min(total - done) {
            let name = format!("cm-{}", done % args.others);
            let body = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"bench"},"data":{"v":done.to_string()}});
            let written = store.update(&cms, "bench", &name, body, None, &writer).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            if done % args.sample_every == 0 {
                let rv = written["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
                samples.push((name, rv, kausal_core::activity::nanos_of(chrono::Utc::now())));
            }
            done += 1;
        }
        let due = start + Duration::from_millis(10 * (done / per_slice) as u64);
        tokio::time::sleep_until(due.into()).await;
        if done % (per_slice * 50) == 0 {
            peak = peak.max(rss(kausal.pid(), "VmRSS:"));
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    peak = peak.max(rss(kausal.pid(), "VmRSS:"));

    let mut latencies = Vec::new();
    let mut missing = 0;
    for (name, rv, written_at) in &samples {
        let changes = changes_of(&client, query, name).await?;
        match changes.iter().find(|(v, _)| v == rv) {
            Some((_, observed)) => latencies.push((*observed - written_at) as f64 / 1e6),
            None => missing += 1,
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{total} changes in {send_secs:.1}s ({:.0}/s): observed-and-joinable latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} samples ({missing} not found)",
        total as f64 / send_secs,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
        latencies.len()
    );
    let hwm = rss(kausal.pid(), "VmHWM:");
    println!("kausal RSS: after list {:.0} MB, during changes up to {:.0} MB, peak (VmHWM) {:.0} MB; target < 500 MB", listed_rss as f64 / 1e6, peak as f64 / 1e6, hwm as f64 / 1e6);
    let ok = hwm < 500_000_000 && percentile(&latencies, 99.0) <= 1000.0 && missing == 0;
    println!("{}", if ok { "targets met" } else { "targets NOT met" });
    cluster.shutdown().await;
    Ok(())
}

/// (resourceVersion, observed time) of the change activities of ConfigMap `name`.
async fn changes_of(client: &reqwest::Client, query: u16, name: &str) -> Result<Vec<(String, i64)>> {
    let tags = format!(r#"{{"resource":"configmaps","name":"{name}"}}"#);
    let body: Value = client
        .get(format!("http://127.0.0.1:{query}/api/traces"))
        .query(&[("service", "tracing"), ("tags", tags.as_str()), ("lookback", "1h")])
        .send()
        .await?
        .json()
        .await?;
    let mut out = Vec::new();
    for span in body["data"].as_array().into_iter().flatten().flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default()) {
        for log in span["logs"].as_array().into_iter().flatten() {
            let fields = log["fields"].as_array().cloned().unwrap_or_default();
            let get = |k: &str| fields.iter().find(|f| f["key"] == k).map(|f| f["value"].clone());
            if get("kausal.span.type").and_then(|v| v.as_str().map(str::to_string)).as_deref() != Some("change") {
                continue;
            }
            let rv = get("k8s.object.resource_version").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let micros = log["timestamp"].as_i64().unwrap_or(0);
            out.push((rv, micros * 1000));
        }
    }
    Ok(out)
}
