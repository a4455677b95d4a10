//! Issue 4 end to end: `kubeevents` turns the simulator's Events into activities exactly once —
//! while the rollout runs, across a `kill -9` of kausal in the middle of it and a restart on
//! the same store, and after the API server compacted its watch history (the restarted watcher
//! has to list again). Checked over the Jaeger HTTP API against the Events the API server holds.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kausal_sim::cluster::SimCluster;
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

fn config(query: u16, kubeconfig: &std::path::Path) -> String {
    format!(
        r#"
receivers:
  kubeevents:
    cluster: dev
    auth: {{kubeconfig: "{kubeconfig}"}}
processors:
  spanbuilder: {{}}
exporters:
  spanstore:
    directory: ./data
extensions:
  query:
    endpoint: 127.0.0.1:{query}
    directory: ./data
service:
  extensions: [query]
  pipelines:
    kube:
      receivers: [kubeevents]
      processors: [spanbuilder]
      exporters: [spanstore]
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// (event name, count) → how many activities the store holds for that occurrence.
async fn stored_occurrences(query: u16, objects: &[(String, String)]) -> Result<BTreeMap<(String, i64), usize>> {
    let client = kausal_tests::http::client();
    let mut out = BTreeMap::new();
    for (resource, name) in objects {
        let tags = format!(r#"{{"resource":"{resource}","name":"{name}"}}"#);
        let body: Value = client
            .get(format!("http://127.0.0.1:{query}/api/traces"))
            .query(&[("service", "tracing"), ("tags", tags.as_str()), ("lookback", "2h")])
            .send()
            .await?
            .json()
            .await?;
        for trace in body["data"].as_array().into_iter().flatten() {
            for span in trace["spans"].as_array().into_iter().flatten() {
                // Only the object's own activities: a trace also shows its relatives.
                let own = span["tags"].as_array().into_iter().flatten().any(|t| t["key"] == "k8s.object.name" && t["value"] == name.as_str());
                if !own {
                    continue;
                }
                for log in span["logs"].as_array().into_iter().flatten() {
                    let f: BTreeMap<String, Value> = log["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| Some((f["key"].as_str()?.to_string(), f["value"].clone())))
                        .collect();
                    if f.get("kausal.span.type").and_then(Value::as_str) != Some("event") {
                        continue;
                    }
                    let event = f.get("k8s.event.name").and_then(Value::as_str).unwrap_or_default().to_string();
                    let count = f.get("k8s.event.count").and_then(Value::as_i64).unwrap_or(0);
                    *out.entry((event, count)).or_default() += 1;
                }
            }
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_exactly_once_across_kill_restart_and_relist() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let kubeconfig = dir.join("kubeconfig");
    let cluster = SimCluster::builder().nodes(2).kubeconfig_out(&kubeconfig).start().await?;
    let query = free_port();
    let mut kausal = Kausal::start(dir, &config(query, &kubeconfig))?;
    kausal.wait_for_port(query, Duration::from_secs(60))?;

    let scenario = kausal_sim::scenario::load_scenario("rollout")?;
    // kill -9 in the middle of the rollout, compact the watch history, start again on the same
    // store.
    let restart = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(kausal);
        cluster.apiserver().force_compact();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (dir, cfg) = (dir.to_path_buf(), config(query, &kubeconfig));
        tokio::task::spawn_blocking(move || -> Result<Kausal> {
            let mut k = Kausal::start(&dir, &cfg)?;
            k.wait_for_port(query, Duration::from_secs(60))?;
            Ok(k)
        })
        .await?
    };
    let (played, restarted) = tokio::join!(cluster.run_scenario(&scenario), restart);
    played?;
    let kausal = restarted?;

    // The Events the API server holds, by occurrence.
    let out = Command::new("/usr/bin/kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["get", "events", "-A", "-o", "json"]).output()?;
    if !out.status.success() {
        bail!("kubectl get events: {}", String::from_utf8_lossy(&out.stderr));
    }
    let events: Value = serde_json::from_slice(&out.stdout)?;
    let mut expected: BTreeMap<(String, i64), ()> = BTreeMap::new();
    let mut objects: Vec<(String, String)> = Vec::new();
    for e in events["items"].as_array().into_iter().flatten() {
        let name = format!("{}/{}", e["metadata"]["namespace"].as_str().unwrap_or(""), e["metadata"]["name"].as_str().unwrap_or(""));
        expected.insert((name, e["count"].as_i64().unwrap_or(1)), ());
        let kind = e["involvedObject"]["kind"].as_str().unwrap_or_default();
        let resource = format!("{}s", kind.to_ascii_lowercase());
        let object = (resource.to_string(), e["involvedObject"]["name"].as_str().unwrap_or_default().to_string());
        if !objects.contains(&object) {
            objects.push(object);
        }
    }
    assert!(expected.len() >= 10, "the rollout produced Events: {}", expected.len());

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stored_occurrences(query, &objects).await?;
        let missing: Vec<_> = expected.keys().filter(|k| !stored.contains_key(*k)).collect();
        let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "occurrences stored more than once: {doubled:?}");
        if missing.is_empty() {
            // Only the latest count of each Event object is still in the API server; earlier
            // counts of the same Event are stored once each as well.
            break;
        }
        if Instant::now() > deadline {
            bail!("Events never stored: {missing:?}\nkausal stderr:\n{}", kausal.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.shutdown().await;
    Ok(())
}
