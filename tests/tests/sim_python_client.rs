//! The official Python `kubernetes` client against the simulated cluster, unchanged: it loads the
//! sim's kubeconfig (HTTPS with the embedded CA, bearer token), lists pods into its typed models
//! and watches a pod this test creates and deletes, seeing ADDED, MODIFIED and DELETED.
//! `scripts/test` installs the client (`pip install kubernetes`); without it this test fails.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_sim::client::{DeleteParams, resources};
use kausal_sim::cluster::SimCluster;
use kausal_sim::controllers::KubeletTiming;
use serde_json::json;

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
pods = v1.list_pod_for_all_namespaces()
print("LISTED", len(pods.items), pods.metadata.resource_version, flush=True)
nodes = v1.list_node()
print("NODES", " ".join(sorted(n.metadata.name for n in nodes.items)), flush=True)
w = watch.Watch()
for event in w.stream(v1.list_namespaced_pod, "default", resource_version=pods.metadata.resource_version, timeout_seconds=120):
    pod = event["object"]
    print("EVENT", event["type"], pod.metadata.name, pod.metadata.resource_version, pod.status.phase, flush=True)
    if event["type"] == "DELETED" and pod.metadata.name == "py-watched":
        w.stop()
print("DONE", flush=True)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_python_client_lists_and_watches_pods() -> Result<()> {
    let timing = KubeletTiming {
        image_pull: Duration::from_millis(200),
        termination: Duration::from_millis(100),
        ..KubeletTiming::default()
    };
    let cluster = SimCluster::builder().nodes(2).kubelet_timing(timing).start().await?;
    let outcome = run(&cluster).await;
    cluster.shutdown().await;
    outcome
}

async fn run(cluster: &kausal_sim::cluster::SimClusterHandle) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3 (the test needs python3 with the `kubernetes` package; scripts/test installs it)")?;
    let stdout = child.stdout.take().context("python stdout")?;
    let stderr = child.stderr.take().context("python stderr")?;
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let admin = cluster.admin_client();
    let mut created = false;
    let mut deleted = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = match tokio::time::timeout(remaining, lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("python did not finish within 180 s; printed {output:#?}");
            }
        };
        // The watch is open once the nodes line is out and python has sent its request; a pod
        // created a moment later is ADDED in the watch either way, as it starts from the list.
        if line.starts_with("NODES") && !created {
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "py-watched", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "alpine:3.17"}]},
            });
            admin.create(&resources::PODS, Some("default"), &pod).await?;
            created = true;
        }
        if line.starts_with("EVENT MODIFIED py-watched") && line.ends_with("Running") && !deleted {
            admin.delete(&resources::PODS, Some("default"), "py-watched", &DeleteParams::background()).await?;
            deleted = true;
        }
        output.push(line);
    }
    let status = child.wait()?;
    let stderr = stderr_thread.join().unwrap_or_default();
    if !status.success() {
        bail!("python exited with {status}:\n{stderr}\nstdout: {output:#?}");
    }

    let listed = output.iter().find(|l| l.starts_with("LISTED ")).context("no LISTED line")?;
    let parts: Vec<&str> = listed.split(' ').collect();
    assert_eq!(parts.len(), 3, "{listed}");
    assert!(parts[2].parse::<u64>().is_ok(), "the list carries a resourceVersion: {listed}");
    assert!(output.iter().any(|l| l == "NODES node-1 node-2"), "{output:#?}");

    let events: Vec<(&str, u64, &str)> = output
        .iter()
        .filter_map(|l| l.strip_prefix("EVENT "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[1] == "py-watched").then(|| (f[0], f[2].parse().unwrap_or(0), f[3]))
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.0).collect();
    assert_eq!(types.first(), Some(&"ADDED"), "{output:#?}");
    assert_eq!(types.last(), Some(&"DELETED"), "{output:#?}");
    assert!(types.contains(&"MODIFIED"), "{output:#?}");
    assert!(events.iter().any(|e| e.2 == "Running"), "the kubelet's status reached python: {output:#?}");
    assert!(events.windows(2).all(|p| p[0].1 < p[1].1), "resourceVersions increase: {events:?}");
    assert_eq!(output.last().map(String::as_str), Some("DONE"), "{output:#?}");
    Ok(())
}
