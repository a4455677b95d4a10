//! Webhook ingest benchmark (issue 2): the release `kausal` binary with the default pipeline
//! (kubeaudit → ownerlinker → spanbuilder → spanstore, query extension), fed audit EventLists of
//! 400 events (kube-apiserver's max batch) by concurrent senders on the same machine. Measures
//! events/s from first send until the last event is queryable over the Jaeger API, request
//! latency p50/p99, and kausal's peak RSS — for Metadata-level events and for RequestResponse
//! events with Pod-sized bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kausal_bench::percentile;
use kausal_tests::audit_gen::{event_list, metadata_event, request_response_event};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

#[derive(Parser, Debug)]
struct Args {
    /// Metadata-level events to send.
    #[arg(long, default_value_t = 1_000_000)]
    metadata_events: usize,
    /// RequestResponse-level events (Pod bodies) to send.
    #[arg(long, default_value_t = 300_000)]
    request_response_events: usize,
    /// Events per webhook request.
    #[arg(long, default_value_t = 400)]
    batch: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Distinct objects the events are about.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
}

struct Figures {
    events: usize,
    send_secs: f64,
    e2e_secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    retries: usize,
    peak_rss: u64,
}

async fn run(args: &Args, level: &str, total: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let webhook = free_port();
    let query = free_port();
    let config = format!(
        "receivers:\n  kubeaudit:\n    endpoint: 127.0.0.1:{webhook}\n    cluster: bench\nprocessors:\n  ownerlinker: {{}}\n  spanbuilder: {{}}\nexporters:\n  spanstore:\n    directory: ./data\nextensions:\n  query:\n    endpoint: 127.0.0.1:{query}\n    directory: ./data\nservice:\n  extensions: [query]\n  pipelines:\n    kube:\n      receivers: [kubeaudit]\n      processors: [ownerlinker, spanbuilder]\n      exporters: [spanstore]\n  telemetry:\n    logs:\n      level: warn\n"
    );
    let mut kausal = Kausal::start(dir.path(), &config)?;
    kausal.wait_for_port(webhook, Duration::from_secs(30))?;
    kausal.wait_for_port(query, Duration::from_secs(30))?;

    // Pre-serialise every request body so the generator costs little during the run.
    let now = chrono::Utc::now() - chrono::Duration::minutes(2);
    let mut bodies = Vec::new();
    let mut i = 0;
    while i < total {
        let n = args.batch.min(total - i);
        let items: Vec<Value> = (i..i + n)
            .map(|k| {
                let at = now + chrono::Duration::microseconds(k as i64);
                let object = k % args.objects;
                let mut e = if level == "Metadata" {
                    metadata_event("bench", object, at)
                } else {
                    request_response_event("bench", object, at)
                };
                e["auditID"] = Value::String(format!("{level}-{k}"));
                e
            })
            .collect();
        bodies.push(serde_json::to_vec(&event_list(items))?);
        i += n;
    }
    // The last request names a marker object: once it is queryable, everything before it is
    // (one pipeline worker and one store writer keep order).
    let marker = format!("marker-{}", level.to_lowercase());
    let mut last = metadata_event("bench", 0, now + chrono::Duration::microseconds(total as i64 + 1));
    last["objectRef"]["name"] = Value::String(marker.clone());
    last["auditID"] = Value::String(marker.clone());
    let marker_body = serde_json::to_vec(&event_list(vec![last]))?;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!("{level}: {} requests, {:.1} MiB of JSON", bodies.len(), bytes as f64 / (1 << 20) as f64);

    let client = kausal_tests::http::client();
    let url = format!("http://127.0.0.1:{webhook}/audit");
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.senders {
        let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut retries = 0usize;
            loop {
                let idx = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(idx) else { break };
                loop {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = r.status();
                    let _ = r.bytes().await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    if status.as_u16() == 429 {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    if !status.is_success() {
                        bail!("webhook answered {status}");
                    }
                    break;
                }
            }
            Ok::<_, anyhow::Error>((latencies, retries))
        }));
    }
    let mut latencies = Vec::new();
    let mut retries = 0;
    for t in tasks {
        let (l, r) = t.await??;
        latencies.extend(l);
        retries += r;
    }
    let r = client.post(&url).header("content-type", "application/json").body(marker_body).send().await?;
    if !r.status().is_success() {
        bail!("marker refused: {}", r.status());
    }
    let send_secs = started.elapsed().as_secs_f64();

    let search = format!("http://127.0.0.1:{query}/api/traces");
    let tags = format!(r#"{{"name":"{marker}"}}"#);
    loop {
        let found: Value = client
            .get(&search)
            .query(&[("service", "tracing"), ("tags", tags.as_str()), ("lookback", "1h")])
            .send()
            .await?
            .json()
            .await?;
        if found["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("marker never became queryable");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e_secs = started.elapsed().as_secs_f64();
    let peak_rss = kausal.peak_rss().context("reading kausal's peak RSS")?;
    kausal.stop()?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Figures {
        events: total,
        send_secs,
        e2e_secs,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        retries,
        peak_rss,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("kausal webhook ingest — {} senders, {} events per request, {} objects", args.senders, args.batch, args.objects);
    println!(
        "{:<16} {:>10} {:>12} {:>14} {:>10} {:>10} {:>8} {:>10}",
        "level", "events", "accepted/s", "queryable/s", "p50 ms", "p99 ms", "429s", "peak RSS"
    );
    for (level, total, target) in [
        ("Metadata", args.metadata_events, 50_000.0),
        ("RequestResponse", args.request_response_events, 15_000.0),
    ] {
        if total == 0 {
            continue;
        }
        let f = run(&args, level, total).await?;
        let e2e = f.events as f64 / f.e2e_secs;
        println!(
            "{:<16} {:>10} {:>12.0} {:>14.0} {:>10.1} {:>10.1} {:>8} {:>7.0} MB   (target ≥ {target:.0}/s end to end: {})",
            level,
            f.events,
            f.events as f64 / f.send_secs,
            e2e,
            f.p50_ms,
            f.p99_ms,
            f.retries,
            f.peak_rss as f64 / 1e6,
            if e2e >= target { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
