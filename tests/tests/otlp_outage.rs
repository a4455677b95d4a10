//! Issue 7, reliable delivery: the Python OTLP backend is down for a while during a scenario;
//! afterwards every span has arrived exactly once. With the persistent sending queue, kausal
//! is also restarted during the outage and still loses nothing.
//!
//! The outage lasts `KAUSAL_OTLP_OUTAGE_SECS` seconds (default 60, as the issue asks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

fn outage() -> Duration {
    let secs = std::env::var("KAUSAL_OTLP_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join(name)
}

struct PySink(Child);

impl PySink {
    fn start(port: u16, file: &Path) -> Result<PySink> {
        let child = Command::new("python3")
            .arg(script("otlp_sink.py"))
            .arg(port.to_string())
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting otlp_sink.py")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the sink did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(PySink(child))
    }
}

impl Drop for PySink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn send(http: u16, prefix: &str, count: usize) -> Result<()> {
    let out = Command::new("python3")
        .arg(script("otlp_send.py"))
        .args(["http", &format!("http://127.0.0.1:{http}/v1/traces"), prefix, &count.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("otlp_send.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Span id → how often it arrived, and names.
fn arrivals(file: &Path) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut names = Vec::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            *counts.entry(v["span_id"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
            names.push(v["name"].as_str().unwrap_or_default().to_string());
        }
    }
    (counts, names)
}

fn wait_for(file: &Path, n: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while arrivals(file).0.len() < n {
        if Instant::now() > deadline {
            bail!("{} of {n} spans arrived", arrivals(file).0.len());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn config(http: u16, sink: u16, storage: bool) -> String {
    let storage = if storage { "\n      storage: ./queue" } else { "" };
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:{http}" }} }} }}
processors:
  batch: {{ send_batch_size: 50, timeout: 100ms }}
exporters:
  otlp:
    endpoint: "http://127.0.0.1:{sink}"
    timeout: 2s
    retry_on_failure: {{ initial_interval: 1s, max_interval: 5s, max_elapsed_time: 0s }}
    sending_queue:
      num_consumers: 4{storage}
service:
  pipelines:
    relay: {{ receivers: [otlp], processors: [batch], exporters: [otlp] }}
"#
    )
}

fn scenario(restart_during_outage: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("sink.jsonl");
    let (http, sink_port) = (free_port(), free_port());
    let cfg = config(http, sink_port, restart_during_outage);
    let sink = PySink::start(sink_port, &file)?;
    let mut kausal = Kausal::start(dir.path(), &cfg)?;
    kausal.wait_for_port(http, Duration::from_secs(60))?;

    send(http, "before", 10)?;
    wait_for(&file, 20, Duration::from_secs(30))?;

    drop(sink);
    let down_since = Instant::now();
    send(http, "during", 20)?;
    if restart_during_outage {
        std::thread::sleep(Duration::from_secs(2));
        let status = kausal.stop()?;
        assert!(status.success(), "graceful stop: {status}\n{}", kausal.stderr());
        kausal = Kausal::start(dir.path(), &cfg)?;
        kausal.wait_for_port(http, Duration::from_secs(60))?;
        send(http, "restarted", 5)?;
    }
    if let Some(left) = outage().checked_sub(down_since.elapsed()) {
        std::thread::sleep(left);
    }
    let _sink = PySink::start(sink_port, &file)?;
    let expected = 20 + 40 + if restart_during_outage { 10 } else { 0 };
    wait_for(&file, expected, Duration::from_secs(60)).with_context(|| kausal.stderr())?;
    // Give duplicates, if any, a chance to show up.
    std::thread::sleep(Duration::from_secs(3));
    let (counts, names) = arrivals(&file);
    assert_eq!(counts.len(), expected, "every span arrived");
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "spans arrived more than once: {dupes:?}");
    assert!(names.iter().any(|n| n == "during-child-19"), "spans sent during the outage arrived");
    Ok(())
}

#[test]
fn a_backend_outage_loses_and_duplicates_nothing() -> Result<()> {
    scenario(false)
}

#[test]
fn a_restart_during_the_outage_loses_nothing_with_the_persistent_queue() -> Result<()> {
    scenario(true)
}
