//! Simulator benchmark (issue 3), two figures on this machine:
//!
//! 1. **emulator writes/s**: concurrent writers create and merge-patch ConfigMaps over HTTPS
//!    while watchers follow every change and the audit webhook (default policy) posts batches
//!    to a local sink that accepts EventLists. Prints writes/s, p50/p99 write latency, what the
//!    watchers and the sink received. Target ≥ 5,000 writes/s.
//! 2. **audit events/s into kausal**: the churn generator patches Deployments of a simulated
//!    cluster whose audit webhook posts to the release `kausal` binary (kubeaudit →
//!    ownerlinker → spanbuilder → spanstore, as `ingest` runs it). Counts the events kausal
//!    accepted from the first churn write until the webhook buffer is flushed. Target ≥ 20,000/s.
//!
//! kube-apiserver's webhook throttle (10 batches/s × 400 events = 4,000 events/s) would cap
//! both figures, so the bench raises it (`--throttle-qps`) and says so in its output.
//! Build first: `cargo build --release -p kausal -p kausal-bench`, then `./target/release/sim`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use kausal_bench::percentile;
use kausal_sim::apiserver::{ApiServer, ApiServerConfig};
use kausal_sim::audit::{AuditConfig, WebhookConfig, WebhookTarget};
use kausal_sim::client::{ApiClient, Identity, PatchType, resources};
use kausal_sim::cluster::SimCluster;
use kausal_sim::scenario::churn::{ChurnConfig, run_churn};
use kausal_tests::process::{Kausal, free_port};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Seconds of writing in each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent writers against the emulator.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Watches on the written resource during phase 1.
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// Webhook batches per second the apiserver may send (kube-apiserver's default is 10).
    #[arg(long, default_value_t = 1000.0)]
    throttle_qps: f64,
    /// Churn target writes/s in phase 2 (two audit events each).
    #[arg(long, default_value_t = 15_000.0)]
    churn_rate: f64,
    /// Concurrent churn writers.
    #[arg(long, default_value_t = 64)]
    churn_writers: usize,
    /// Skip phase 1 or 2.
    #[arg(long)]
    only: Option<u8>,
}

fn webhook(url: String, args: &Args) -> WebhookConfig {
    let mut w = WebhookConfig::new(WebhookTarget { url, ..Default::default() });
    w.batch.throttle_qps = args.throttle_qps;
    w.batch.throttle_burst = (args.throttle_qps as u32).max(15);
    w
}

/// Counts the audit events in EventList bodies without decoding them (the sink shares the CPU).
async fn sink(State(received): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
    const NEEDLE: &[u8] = b"\"auditID\":";
    let n = body.windows(NEEDLE.len()).filter(|w| *w == NEEDLE).count();
    received.fetch_add(n as u64, Ordering::Relaxed);
    "{}"
}

async fn emulator(args: &Args) -> Result<()> {
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let app = Router::new().route("/audit", post(sink)).with_state(received.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let config = ApiServerConfig {
        audit: AuditConfig { webhook: Some(webhook(format!("http://{sink_addr}/audit"), args)), ..Default::default() },
        ..Default::default()
    };
    let server = ApiServer::start(config).await?;
    let identity = Identity::kubectl_admin(server.admin_token());
    let client = ApiClient::new(&server.https_url(), Some(server.ca_pem()), &identity)?;

    // Watchers: raw watch streams on configmaps in every namespace, counting change lines.
    let watch_client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server.ca_pem().as_bytes())?])
        .build()?;
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let url = format!("{}/api/v1/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=600", server.https_url());
        let mut resp = watch_client.get(url).bearer_auth(server.admin_token()).send().await?;
        if !resp.status().is_success() {
            bail!("watch answered {}", resp.status());
        }
        let (seen, stop) = (seen.clone(), stop.clone());
        watchers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await {
                    Ok(Ok(Some(chunk))) => {
                        let lines = chunk.iter().filter(|b| **b == b'\n').count();
                        seen.fetch_add(lines as u64, Ordering::Relaxed);
                    }
                    Ok(_) => return,
                    Err(_) => {}
                }
            }
        }));
    }

    let duration = Duration::from_secs(args.seconds);
    let audited_before = server.auditor().webhook_stats().map(|s| s.events_sent.load(Ordering::Relaxed)).unwrap_or(0);
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let client = client.clone();
        writers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while started.elapsed() < duration {
                let name = format!("bench-{w}-{i}");
                let t = Instant::now();
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": "0"}});
                client.create(&resources::CONFIGMAPS, Some("default"), &cm).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                let t = Instant::now();
                client.patch(&resources::CONFIGMAPS, Some("default"), &name, PatchType::Merge, &json!({"data": {"n": "1"}})).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in writers {
        latencies.extend(w.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let writes = latencies.len() as u64;
    // Watchers drain what is in flight; then the webhook buffer is flushed.
    let drain = Instant::now();
    while seen.load(Ordering::Relaxed) < writes * args.watchers as u64 && drain.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    server.auditor().flush().await;
    let audited_elapsed = started.elapsed().as_secs_f64();
    let auditor = server.auditor();
    let stats = auditor.webhook_stats().context("webhook stats")?;
    let audited = stats.events_sent.load(Ordering::Relaxed) - audited_before;
    let dropped = stats.events_dropped.load(Ordering::Relaxed);
    latencies.sort_by(|a, b| a.total_cmp(b));
    let rate = writes as f64 / elapsed;
    println!("emulator: {} writers over HTTPS, {} watchers, audit webhook on (default policy, throttle raised to {} QPS × 400)", args.writers, args.watchers, args.throttle_qps);
    println!(
        "  {writes} writes in {elapsed:.1}s = {rate:.0} writes/s (target ≥ 5,000: {}), latency p50 {:.2} ms p99 {:.2} ms",
        if rate >= 5000.0 { "met" } else { "NOT met" },
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    println!(
        "  watchers saw {} of {} change lines; webhook delivered {audited} audit events ({:.0}/s until flushed), sink counted {}, dropped {dropped}",
        seen.load(Ordering::Relaxed),
        writes * args.watchers as u64,
        audited as f64 / audited_elapsed,
        received.load(Ordering::Relaxed)
    );
    for w in watchers {
        w.abort();
    }
    server.shutdown().await;
    Ok(())
}

async fn churn_into_kausal(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let config = format!(
        "receivers:\n  kubeaudit:\n    endpoint: 127.0.0.1:{port}\n    cluster: bench\nprocessors:\n  ownerlinker: {{}}\n  spanbuilder: {{}}\nexporters:\n  spanstore:\n    directory: ./data\nservice:\n  pipelines:\n    kube:\n      receivers: [kubeaudit]\n      processors: [ownerlinker, spanbuilder]\n      exporters: [spanstore]\n  telemetry:\n    logs:\n      level: warn\n"
    );
    let mut kausal = Kausal::start(dir.path(), &config)?;
    kausal.wait_for_port(port, Duration::from_secs(30))?;
    let cluster = SimCluster::builder()
        .nodes(1)
        .audit_webhook_settings(webhook(format!("http://127.0.0.1:{port}/audit"), args))
        .start()
        .await?;
    let auditor = cluster.apiserver().auditor();
    let stats = || {
        auditor.webhook_stats().map(|s| {
            let failed = s.events_failed.load(Ordering::Relaxed) + s.events_dropped.load(Ordering::Relaxed);
            (s.events_sent.load(Ordering::Relaxed), failed, s.retries.load(Ordering::Relaxed))
        })
    };
    let churn = ChurnConfig {
        namespaces: 10,
        deployments_per_namespace: 20,
        writes_per_second: args.churn_rate,
        duration: Duration::from_secs(args.seconds),
        concurrency: args.churn_writers,
        replicas: 0,
        cleanup: false,
    };
    // Set-up writes (namespaces, Deployments) are audited too; flush them out before counting.
    let setup = ChurnConfig { writes_per_second: 1.0, duration: Duration::ZERO, ..churn.clone() };
    run_churn(&cluster.admin_client(), &setup).await?;
    auditor.flush().await;
    let (before, _, _) = stats().context("webhook stats")?;
    let started = Instant::now();
    let report = run_churn(&cluster.admin_client(), &churn).await?;
    auditor.flush().await;
    let elapsed = started.elapsed().as_secs_f64();
    let (after, failed, retries) = stats().context("webhook stats")?;
    let delivered = after - before;
    let rate = delivered as f64 / elapsed;
    println!(
        "churn → kausal: {} namespaces × {} Deployments, {} writers, throttle raised to {} QPS × 400",
        churn.namespaces, churn.deployments_per_namespace, churn.concurrency, args.throttle_qps
    );
    println!("  churn: {report}");
    println!(
        "  {delivered} audit events accepted by kausal's webhook in {elapsed:.1}s = {rate:.0} events/s (target ≥ 20,000: {}), {failed} failed or dropped (buffer full), {retries} retries, kausal peak RSS {:.0} MB",
        if rate >= 20_000.0 { "met" } else { "NOT met" },
        kausal.peak_rss().unwrap_or(0) as f64 / 1e6
    );
    cluster.shutdown().await;
    kausal.stop()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.only != Some(2) {
        emulator(&args).await?;
    }
    if args.only != Some(1) {
        churn_into_kausal(&args).await?;
    }
    Ok(())
}
