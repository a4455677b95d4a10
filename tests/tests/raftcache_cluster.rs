//! Issue 5 end to end: three `kausal` processes on loopback form a raftcache cluster. Every
//! write acknowledged while a shard leader is SIGKILLed is readable afterwards; the killed node
//! restarts from its data_dir and catches up; a node that missed more than a compacted log
//! catches up by snapshot; a minority cut off from the others refuses linearizable reads.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

struct Node {
    id: u64,
    raft: u16,
    admin: u16,
    webhook: u16,
    metrics: u16,
    dir: tempfile::TempDir,
    process: Option<Kausal>,
}

fn config(node: &Node, peers: &str) -> String {
    format!(
        r#"
receivers:
  kubeaudit:
    endpoint: 127.0.0.1:{webhook}
processors:
  spanbuilder: {{}}
exporters:
  spanstore:
    directory: ./spans
extensions:
  raftcache:
    node_id: {id}
    listen: 127.0.0.1:{raft}
    admin_endpoint: 127.0.0.1:{admin}
    data_dir: ./raft
    peers: [{peers}]
    shards: 4
    tick_interval: 20ms
    election_ticks: 15
    heartbeat_ticks: 3
    request_timeout: 2s
    snapshot_entries: 40
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  extensions: [raftcache]
  pipelines:
    kube:
      receivers: [kubeaudit]
      processors: [spanbuilder]
      exporters: [spanstore]
"#,
        id = node.id,
        raft = node.raft,
        admin = node.admin,
        webhook = node.webhook,
        metrics = node.metrics,
    )
}

struct Cluster {
    nodes: Vec<Node>,
    peers: String,
    http: reqwest::Client,
}

impl Cluster {
    fn new() -> Result<Cluster> {
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(Node {
                id,
                raft: free_port(),
                admin: free_port(),
                webhook: free_port(),
                metrics: free_port(),
                dir: tempfile::tempdir()?,
                process: None,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{{id: {}, address: \"127.0.0.1:{}\"}}", n.id, n.raft))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Cluster {
            nodes,
            peers,
            http: {
                let _ = kausal_tests::http::client();
                reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?
            },
        })
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let cfg = config(&self.nodes[i], &self.peers);
        let node = &mut self.nodes[i];
        let mut k = Kausal::start(node.dir.path(), &cfg)?;
        k.wait_for_port(node.admin, Duration::from_secs(60))?;
        node.process = Some(k);
        Ok(())
    }

    fn signal(&self, i: usize, sig: &str) -> Result<()> {
        let pid = self.nodes[i].process.as_ref().context("node not running")?.pid();
        let status = std::process::Command::new("kill").args([sig, &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    fn sigkill(&mut self, i: usize) -> Result<()> {
        self.signal(i, "-KILL")?;
        // Reaps the process.
        self.nodes[i].process = None;
        Ok(())
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.nodes[i].admin)
    }

    async fn shards(&self, i: usize) -> Result<Vec<Value>> {
        let v: Value = self.http.get(self.url(i, "/shards")).send().await?.json().await?;
        Ok(v["shards"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until node `i` sees a leader on every shard and returns the leaders.
    async fn leaders(&self, i: usize) -> Result<Vec<u64>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(shards) = self.shards(i).await {
                let leaders: Vec<u64> = shards.iter().map(|s| s["leader"].as_u64().unwrap_or(0)).collect();
                if !leaders.is_empty() && leaders.iter().all(|l| *l != 0) {
                    return Ok(leaders);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader on every shard seen by node {}", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn put(&self, i: usize, object: &str, value: &str) -> Result<bool> {
        let r = self
            .http
            .put(self.url(i, "/cache"))
            .query(&[("object", object), ("entry", "diff")])
            .body(value.to_string())
            .send()
            .await;
        Ok(matches!(r, Ok(r) if r.status().is_success()))
    }

    async fn get(&self, i: usize, object: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .get(self.url(i, "/cache"))
            .query(&[("object", object), ("entry", "diff")])
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Waits until every shard on node `i` has applied what the leaders (seen from `j`) committed.
    async fn caught_up(&self, i: usize, j: usize) -> Result<Vec<Value>> {
        let target: Vec<u64> = self.shards(j).await?.iter().map(|s| s["commit"].as_u64().unwrap_or(0)).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(shards) = self.shards(i).await {
                let applied: Vec<u64> = shards.iter().map(|s| s["applied"].as_u64().unwrap_or(0)).collect();
                if applied.len() == target.len() && applied.iter().zip(&target).all(|(a, t)| a >= t) {
                    return Ok(shards);
                }
            }
            if Instant::now() > deadline {
                bail!("node {} did not catch up to {target:?}", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftcache_survives_leader_kill_restart_compaction_and_partition() -> Result<()> {
    let mut c = Cluster::new()?;
    for i in 0..3 {
        c.start(i)?;
    }
    let leaders = c.leaders(0).await?;

    // Writes spread over the nodes while the node leading the most shards is SIGKILLed.
    let victim = (1..=3u64).max_by_key(|id| leaders.iter().filter(|l| *l == id).count()).unwrap_or(1) as usize - 1;
    let mut acknowledged = Vec::new();
    for n in 0..300 {
        if n == 100 {
            c.sigkill(victim)?;
        }
        let target = n % 3;
        if c.nodes[target].process.is_none() {
            continue;
        }
        let object = format!("pods/p{n}");
        let value = format!("v{n}");
        if c.put(target, &object, &value).await? {
            acknowledged.push((object, value));
        }
    }
    assert!(acknowledged.len() >= 150, "too few writes acknowledged: {}", acknowledged.len());
    let survivor = (victim + 1) % 3;
    for (object, value) in &acknowledged {
        let (status, body) = c.get(survivor, object).await?;
        assert_eq!(status, 200, "acknowledged write {object} lost: {body}");
        assert_eq!(body["value"], value.as_str(), "{object}");
    }

    // Restart from data_dir: the node catches up and serves the writes it missed.
    c.start(victim)?;
    c.leaders(victim).await?;
    c.caught_up(victim, survivor).await?;
    let (status, body) = c.get(victim, &acknowledged[acknowledged.len() - 1].0).await?;
    assert_eq!(status, 200, "{body}");

    // A node down while the others compact their logs catches up by snapshot.
    let lagging = (victim + 2) % 3;
    c.sigkill(lagging)?;
    let alive = (0..3).find(|i| *i != lagging).unwrap_or(0);
    // Writes right after the kill may find a shard without a leader; only acknowledged ones
    // count, and those are what the lagging node must serve after catching up.
    let mut written = Vec::new();
    for n in 0..400 {
        if c.put(alive, &format!("deployments/d{n}"), &format!("w{n}")).await? {
            written.push(n);
        }
    }
    assert!(written.len() >= 390, "{}", written.len());
    let compacted = c.shards(alive).await?;
    assert!(
        compacted.iter().all(|s| s["first_index"].as_u64().unwrap_or(0) > 40),
        "logs were not compacted: {compacted:?}"
    );
    c.start(lagging)?;
    c.leaders(lagging).await?;
    let shards = c.caught_up(lagging, alive).await?;
    assert!(
        shards.iter().all(|s| s["first_index"].as_u64().unwrap_or(0) > 40),
        "the lagging node should hold a snapshot, not the whole log: {shards:?}"
    );
    // Its snapshot counter proves the catch-up went through a snapshot transfer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = c
            .http
            .get(format!("http://127.0.0.1:{}/metrics", c.nodes[lagging].metrics))
            .send()
            .await?
            .text()
            .await?;
        let applied: u64 = text
            .lines()
            .find(|l| l.starts_with("kausal_raftcache_snapshots_applied_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if applied > 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the lagging node applied no snapshot:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in [written[0], written[written.len() / 2], written[written.len() - 1]] {
        let (status, body) = c.get(lagging, &format!("deployments/d{n}")).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["value"], format!("w{n}"));
    }

    // A minority (one node whose two peers are frozen) refuses linearizable reads.
    let minority = 0;
    c.signal(1, "-STOP")?;
    c.signal(2, "-STOP")?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = c.get(minority, "pods/p0").await?;
    c.signal(1, "-CONT")?;
    c.signal(2, "-CONT")?;
    assert_eq!(status, 503, "a cut-off minority must not answer a linearizable read: {body}");
    // Healed, it answers again.
    c.leaders(minority).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = c.get(minority, &acknowledged[0].0).await?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the healed node does not serve reads (last status {status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
