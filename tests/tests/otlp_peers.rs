//! Issue 7 end to end with real third-party peers: the OpenTelemetry Python SDK sends to
//! kausal's OTLP receiver (gRPC and HTTP) and the spans are served by the query API; a Python
//! gRPC TraceService (from the `opentelemetry-proto` package) receives kausal's OTLP export; one
//! kausal exports into another and the spans arrive unchanged. The Python packages are
//! installed by scripts/test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join(name)
}

/// The Python OTLP/gRPC backend; killed when dropped.
struct PySink {
    child: Child,
    port: u16,
    file: PathBuf,
}

impl PySink {
    fn start(port: u16, file: &Path) -> Result<PySink> {
        let child = Command::new("python3")
            .arg(script("otlp_sink.py"))
            .arg(port.to_string())
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting python3 otlp_sink.py")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the Python sink did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(PySink { child, port, file: file.to_path_buf() })
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until at least `n` spans arrived.
    fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return Ok(spans);
            }
            if Instant::now() > deadline {
                bail!("the sink got {} spans, expected {n}", spans.len());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PySink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the Python SDK sender; returns the trace ids it created.
fn py_send(protocol: &str, endpoint: &str, prefix: &str, count: usize) -> Result<Vec<String>> {
    let out = Command::new("python3")
        .arg(script("otlp_send.py"))
        .args([protocol, endpoint, prefix, &count.to_string()])
        .output()
        .context("running python3 otlp_send.py")?;
    if !out.status.success() {
        bail!("otlp_send.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            Ok(v["trace_id"].as_str().context("trace_id")?.to_string())
        })
        .collect()
}

fn start(dir: &Path, config: &str, ports: &[u16]) -> Result<Kausal> {
    std::fs::create_dir_all(dir)?;
    let mut k = Kausal::start(dir, config)?;
    for p in ports {
        k.wait_for_port(*p, Duration::from_secs(60))?;
    }
    Ok(k)
}

/// Checks the SDK's trace shape: per trace a root and a child under it with the attributes.
fn check_sdk_spans(spans: &[Value], prefix: &str, count: usize) {
    let by_name: BTreeMap<&str, &Value> = spans.iter().filter_map(|s| Some((s["name"].as_str()?, s))).collect();
    for i in 0..count {
        let root = by_name.get(format!("{prefix}-root-{i}").as_str()).unwrap_or_else(|| panic!("root {i} missing: {spans:?}"));
        let child = by_name.get(format!("{prefix}-child-{i}").as_str()).unwrap_or_else(|| panic!("child {i} missing"));
        assert_eq!(root["parent_span_id"], "", "{root}");
        assert_eq!(child["parent_span_id"], root["span_id"], "{child}");
        assert_eq!(child["trace_id"], root["trace_id"]);
        assert_eq!(child["attributes"]["db.system"], "etcd");
        assert_eq!(child["attributes"]["test.flag"], true);
        assert_eq!(root["attributes"]["test.index"], i as i64);
        assert_eq!(child["events"], serde_json::json!(["retrying"]));
        assert_eq!(child["kind"], 3, "SPAN_KIND_CLIENT");
        assert_eq!(root["resource"]["service.name"], format!("{prefix}-service"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_spans_are_received_and_queryable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (grpc, http, query) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  spanstore: {{ directory: ./data }}
extensions:
  query: {{ endpoint: "127.0.0.1:{query}", directory: ./data }}
service:
  extensions: [query]
  pipelines:
    foreign: {{ receivers: [otlp], exporters: [spanstore] }}
"#
    );
    let _kausal = start(dir.path(), &config, &[grpc, http, query])?;
    let mut ids = py_send("grpc", &format!("127.0.0.1:{grpc}"), "g", 3)?;
    ids.extend(py_send("http", &format!("http://127.0.0.1:{http}/v1/traces"), "h", 3)?);
    assert_eq!(ids.len(), 6);

    let client = kausal_tests::http::client();
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        let trace = loop {
            let r = client.get(format!("http://127.0.0.1:{query}/api/traces/{id}")).send().await?;
            let body: Value = r.json().await?;
            if body["data"][0]["spans"].as_array().is_some_and(|s| s.len() == 2) {
                break body["data"][0].clone();
            }
            if Instant::now() > deadline {
                bail!("trace {id} not queryable: {body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let spans = trace["spans"].as_array().context("spans")?;
        let root = spans.iter().find(|s| s["references"].as_array().is_some_and(|r| r.is_empty())).context("root")?;
        let child = spans.iter().find(|s| s["spanID"] != root["spanID"]).context("child")?;
        assert!(root["operationName"].as_str().unwrap_or_default().contains("-root-"), "{trace}");
        assert_eq!(child["references"][0]["spanID"], root["spanID"], "{trace}");
        assert_eq!(child["references"][0]["refType"], "CHILD_OF");
        let tag = |k: &str| child["tags"].as_array().and_then(|t| t.iter().find(|x| x["key"] == k)).map(|x| x["value"].clone());
        assert_eq!(tag("db.system"), Some(Value::from("etcd")), "{child}");
        assert_eq!(child["logs"][0]["fields"][0]["value"], "retrying");
    }
    Ok(())
}

#[test]
fn kausal_exports_to_a_python_trace_service() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (http, sink_port) = (free_port(), free_port());
    let sink = PySink::start(sink_port, &dir.path().join("sink.jsonl"))?;
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  otlp:
    endpoint: "http://127.0.0.1:{sink}"
    compression: gzip
    headers: {{ x-scope-orgid: tenant-1 }}
service:
  pipelines:
    relay: {{ receivers: [otlp], exporters: [otlp] }}
"#,
        sink = sink.port
    );
    let _kausal = start(dir.path(), &config, &[http])?;
    py_send("http", &format!("http://127.0.0.1:{http}/v1/traces"), "relay", 5)?;
    let spans = sink.wait_for(10, Duration::from_secs(30))?;
    check_sdk_spans(&spans, "relay", 5);
    assert_eq!(spans.len(), 10, "no duplicates");
    Ok(())
}

/// A fixed OTLP/JSON request with every kind of field the round trip must keep.
fn fixed_request() -> Value {
    serde_json::json!({
      "resourceSpans": [{
        "resource": { "attributes": [
          { "key": "service.name", "value": { "stringValue": "kube-apiserver" } },
          { "key": "k8s.cluster.name", "value": { "stringValue": "prod" } } ] },
        "scopeSpans": [{
          "scope": { "name": "k8s.io/apiserver", "version": "1.31" },
          "spans": [
            { "traceId": "5b8aa5a2d2c872e8321cf37308d69df2", "spanId": "051581bf3cb55c13",
              "name": "HTTP PUT", "kind": 2,
              "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000250000000",
              "attributes": [
                { "key": "http.response.status_code", "value": { "intValue": "200" } },
                { "key": "audit-id", "value": { "stringValue": "6f1b4c1e-1111-2222-3333-444455556666" } },
                { "key": "ratio", "value": { "doubleValue": 0.5 } },
                { "key": "ok", "value": { "boolValue": true } } ],
              "status": { "code": 1 } },
            { "traceId": "5b8aa5a2d2c872e8321cf37308d69df2", "spanId": "9a8b7c6d5e4f3a2b",
              "parentSpanId": "051581bf3cb55c13", "name": "etcd Txn", "kind": 3,
              "startTimeUnixNano": "1700000000100000000", "endTimeUnixNano": "1700000000200000000",
              "events": [ { "timeUnixNano": "1700000000150000000", "name": "retry", "attributes": [] } ],
              "links": [ { "traceId": "00000000000000000000000000000001", "spanId": "0000000000000002" } ],
              "status": { "code": 2, "message": "conflict" } }
          ]
        }]
      }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn kausal_to_kausal_round_trips_spans_unchanged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a_http, b_grpc, sink_port) = (free_port(), free_port(), free_port());
    let sink = PySink::start(sink_port, &dir.path().join("sink.jsonl"))?;
    let a = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:{a_http}" }} }} }}
exporters:
  otlp: {{ endpoint: "http://127.0.0.1:{b_grpc}", compression: zstd }}
service:
  pipelines:
    out: {{ receivers: [otlp], exporters: [otlp] }}
"#
    );
    let b = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{b_grpc}" }} }} }}
exporters:
  otlp: {{ endpoint: "http://127.0.0.1:{sink_port}", compression: none }}
service:
  pipelines:
    out: {{ receivers: [otlp], exporters: [otlp] }}
"#
    );
    let _b = start(&dir.path().join("b"), &b, &[b_grpc])?;
    let _a = start(&dir.path().join("a"), &a, &[a_http])?;
    let client = kausal_tests::http::client();
    let r = client
        .post(format!("http://127.0.0.1:{a_http}/v1/traces"))
        .header("content-type", "application/json")
        .body(fixed_request().to_string())
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let spans = sink.wait_for(2, Duration::from_secs(30))?;
    assert_eq!(spans.len(), 2);
    let put = spans.iter().find(|s| s["name"] == "HTTP PUT").context("HTTP PUT")?;
    let txn = spans.iter().find(|s| s["name"] == "etcd Txn").context("etcd Txn")?;
    assert_eq!(
        *put,
        serde_json::json!({
            "trace_id": "5b8aa5a2d2c872e8321cf37308d69df2", "span_id": "051581bf3cb55c13", "parent_span_id": "",
            "name": "HTTP PUT", "kind": 2, "start": 1_700_000_000_000_000_000u64, "end": 1_700_000_000_250_000_000u64,
            "attributes": { "http.response.status_code": 200, "audit-id": "6f1b4c1e-1111-2222-3333-444455556666",
                            "ratio": 0.5, "ok": true },
            "events": [], "links": [], "status": 1,
            "resource": { "service.name": "kube-apiserver", "k8s.cluster.name": "prod" },
            "scope": "k8s.io/apiserver"
        })
    );
    assert_eq!(txn["parent_span_id"], "051581bf3cb55c13");
    assert_eq!(txn["events"], serde_json::json!(["retry"]));
    assert_eq!(txn["links"], serde_json::json!(["0000000000000002"]));
    assert_eq!(txn["status"], 2);
    Ok(())
}
