//! `splunk_hec` against a local HTTP server that checks the HEC envelope and the token the way
//! Splunk does (`Authorization: Splunk <token>`, 403 on a wrong one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kausal_core::component::ExporterFactory;
use kausal_core::component::{CreateContext, Host};
use kausal_core::config::ComponentConfig;
use kausal_core::otlp::kv_str;
use kausal_core::otlp_common::{AnyValue, KeyValue, KeyValueList, any_value};
use kausal_core::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};
use kausal_core::otlp_resource::Resource;
use kausal_core::telemetry::{ComponentMetrics, Telemetry};
use kausal_core::{Batch, ComponentId};
use serde_json::{Value, json};

#[derive(Default)]
struct Hec {
    token: String,
    /// Status codes to answer with before accepting, in order.
    failures: Mutex<Vec<u16>>,
    /// Accepted requests: each a list of events.
    requests: Mutex<Vec<Vec<Value>>>,
    attempts: Mutex<usize>,
}

async fn collector(
    State(hec): State<Arc<Hec>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    if let Ok(mut a) = hec.attempts.lock() {
        *a += 1;
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Splunk {}", hec.token))
    {
        return (
            StatusCode::FORBIDDEN,
            r#"{"text":"Invalid token","code":4}"#.into(),
        );
    }
    if let Some(code) = hec
        .failures
        .lock()
        .ok()
        .and_then(|mut f| (!f.is_empty()).then(|| f.remove(0)))
    {
        return (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            r#"{"text":"Server is busy","code":9}"#.into(),
        );
    }
    let mut events = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => events.push(v),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    r#"{"text":"Invalid data format","code":6}"#.into(),
                );
            }
        }
    }
    if let Ok(mut r) = hec.requests.lock() {
        r.push(events);
    }
    (StatusCode::OK, r#"{"text":"Success","code":0}"#.into())
}

async fn serve(hec: Arc<Hec>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/services/collector/event", post(collector))
        .with_state(hec);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn exporter(yaml: &str) -> Result<Arc<dyn kausal_core::component::Exporter>> {
    let section =
        ComponentConfig::from_yaml("splunk_hec", yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    kausal_exporter_splunkhec::Factory
        .validate(&section)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = CreateContext {
        id: ComponentId::parse("splunk_hec").map_err(anyhow::Error::msg)?,
        metrics: ComponentMetrics::default(),
        telemetry: Telemetry::default(),
    };
    kausal_exporter_splunkhec::Factory
        .create(ctx, &section)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn report(n: i64) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + n as u64 * 1_000_000_000,
        body: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "cluster-state".into(),
                    key_strindex: 0,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![KeyValue {
                                key: "k8s_pods_count".into(),
                                key_strindex: 0,
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(n)),
                                }),
                            }],
                        })),
                    }),
                }],
            })),
        }),
        attributes: vec![kv_str("kausal.report.signal", "kausal-report")],
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("host.name", "agent-7")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

const FAST_RETRY: &str =
    "retry_on_failure: {initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 2s}";

#[tokio::test]
async fn events_carry_the_hec_envelope_and_token() -> Result<()> {
    let hec = Arc::new(Hec {
        token: "s3cret".into(),
        ..Default::default()
    });
    let url = serve(hec.clone()).await?;
    let e = exporter(&format!(
        "endpoint: {url}\ntoken: s3cret\nindex: k8s\nsource: kausal-test\nsourcetype: kausal:report\nmax_batch_events: 2"
    ))?;
    e.start(&Host::default()).await?;
    e.consume(logs(vec![report(1), report(2), report(3)]))
        .await?;
    e.shutdown().await?;
    let requests = hec
        .requests
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(
        requests.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 1],
        "batched by max_batch_events"
    );
    let first = &requests[0][0];
    assert_eq!(
        first,
        &json!({"time": 1_700_000_001.0, "host": "agent-7", "source": "kausal-test", "sourcetype": "kausal:report", "index": "k8s",
            "event": {"cluster-state": {"k8s_pods_count": 1}}, "fields": {"kausal.report.signal": "kausal-report"}})
    );
    assert_eq!(
        requests[1][0]["event"]["cluster-state"]["k8s_pods_count"],
        3
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_token_fails_at_once() -> Result<()> {
    let hec = Arc::new(Hec {
        token: "right".into(),
        ..Default::default()
    });
    let url = serve(hec.clone()).await?;
    let e = exporter(&format!("endpoint: {url}\ntoken: wrong\n{FAST_RETRY}"))?;
    let err = e
        .consume(logs(vec![report(1)]))
        .await
        .err()
        .context("a wrong token was accepted")?;
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("403") && err.to_string().contains("Invalid token"),
        "{err}"
    );
    assert_eq!(
        *hec.attempts
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn busy_collectors_are_retried() -> Result<()> {
    let hec = Arc::new(Hec {
        token: "t".into(),
        failures: Mutex::new(vec![503, 429]),
        ..Default::default()
    });
    let url = serve(hec.clone()).await?;
    let e = exporter(&format!("endpoint: {url}\ntoken: t\n{FAST_RETRY}"))?;
    e.consume(logs(vec![report(1)])).await?;
    assert_eq!(
        *hec.attempts
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
        3
    );
    assert_eq!(
        hec.requests
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_collector_is_a_retryable_error_naming_the_cause() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let e = exporter(&format!(
        "endpoint: http://127.0.0.1:{port}\ntoken: t\nretry_on_failure: {{initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 200ms}}"
    ))?;
    let started = std::time::Instant::now();
    let err = e
        .consume(logs(vec![report(1)]))
        .await
        .err()
        .context("sent to nowhere")?;
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    Ok(())
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_config_error_naming_the_key() -> Result<()> {
    let err =
        exporter("endpoint: https://splunk:8088\ntoken: t\ntls: {ca_file: /nonexistent/ca.pem}")
            .err()
            .context("created with a missing CA file")?;
    let text = err.to_string();
    assert!(
        text.contains("splunk_hec.tls.ca_file") && text.contains("/nonexistent/ca.pem"),
        "{text}"
    );
    Ok(())
}
