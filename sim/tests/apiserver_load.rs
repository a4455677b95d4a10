//! Many concurrent writers with watchers and the audit webhook attached: every watcher must see
//! every change exactly once and in resourceVersion order, and the webhook must receive every
//! audit event. Prints the write rate it reached (the target figure lives in `bench/`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use kausal_sim::apiserver::{ApiServer, ApiServerConfig};
use kausal_sim::audit::{AuditConfig, WebhookConfig, WebhookTarget};
use serde_json::{Value, json};

const WRITERS: usize = 8;
const WRITES_PER_WRITER: usize = 150;
const WATCHERS: usize = 3;

async fn count_events(State(n): State<Arc<AtomicUsize>>, body: Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        n.fetch_add(
            v["items"].as_array().map(Vec::len).unwrap_or(0),
            Ordering::SeqCst,
        );
    }
    "{}"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_reach_every_watcher_in_order() -> Result<()> {
    let received = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/audit", post(count_events))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut webhook = WebhookConfig::new(WebhookTarget {
        url: format!("http://{addr}/audit"),
        ..Default::default()
    });
    webhook.batch.max_batch_wait = Duration::from_millis(50);
    webhook.batch.throttle_enabled = false;
    let config = ApiServerConfig {
        http_listen: Some("127.0.0.1:0".parse()?),
        audit: AuditConfig {
            webhook: Some(webhook),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = ApiServer::start(config).await?;
    let base = server.http_url().context("http listener")?;
    let token = server.admin_token().to_string();
    let client = reqwest::Client::builder()
        .user_agent("load-test/v0")
        .build()?;

    let start_rv = server.store().current_resource_version();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let resp = client
            .get(format!(
                "{base}/api/v1/configmaps?watch=1&resourceVersion={start_rv}&timeoutSeconds=60"
            ))
            .bearer_auth(&token)
            .send()
            .await?;
        watchers.push(tokio::spawn(async move {
            let mut resp = resp;
            let mut buffer = Vec::new();
            let mut versions = Vec::new();
            let expected = WRITERS * WRITES_PER_WRITER * 2;
            while versions.len() < expected {
                let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), resp.chunk())
                    .await
                    .ok()
                    .and_then(|c| c.ok())
                    .flatten()
                else {
                    break;
                };
                buffer.extend_from_slice(&chunk);
                while let Some(i) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=i).collect();
                    let event: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
                    if let Some(rv) = event["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|r| r.parse::<u64>().ok())
                    {
                        versions.push(rv);
                    }
                }
            }
            versions
        }));
    }

    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = client.clone();
        let base = base.clone();
        let token = token.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES_PER_WRITER {
                let name = format!("cm-{w}-{i}");
                let created = client
                    .post(format!("{base}/api/v1/namespaces/default/configmaps"))
                    .bearer_auth(&token)
                    .json(&json!({"metadata": {"name": name}, "data": {"n": "0"}}))
                    .send()
                    .await?;
                if created.status() != 201 {
                    bail!("create answered {}", created.status());
                }
                let patched = client
                    .patch(format!(
                        "{base}/api/v1/namespaces/default/configmaps/{name}"
                    ))
                    .bearer_auth(&token)
                    .header("Content-Type", "application/merge-patch+json")
                    .body(r#"{"data":{"n":"1"}}"#)
                    .send()
                    .await?;
                if patched.status() != 200 {
                    bail!("patch answered {}", patched.status());
                }
            }
            Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let elapsed = started.elapsed();
    let writes = WRITERS * WRITES_PER_WRITER * 2;
    println!(
        "{writes} writes in {elapsed:?}: {:.0} writes/s with {WATCHERS} watchers and the audit webhook",
        writes as f64 / elapsed.as_secs_f64()
    );

    for w in watchers {
        let versions = w.await?;
        assert_eq!(versions.len(), writes, "every watcher sees every change");
        assert!(
            versions.windows(2).all(|p| p[0] < p[1]),
            "in resourceVersion order"
        );
    }
    server.auditor().flush().await;
    // Two events (RequestReceived, ResponseComplete) per write; reads are not made here.
    let audited = received.load(Ordering::SeqCst);
    assert!(
        audited >= writes * 2,
        "webhook received {audited} events for {writes} writes"
    );
    assert_eq!(
        server
            .auditor()
            .webhook_stats()
            .context("stats")?
            .events_dropped
            .load(Ordering::Relaxed),
        0
    );
    server.shutdown().await;
    Ok(())
}
