//! `kausal report run` as a user runs it: the JSON report on stdout, a JSON object from stdin
//! merged in, bad stdin refused with a clear error, shipping to a HEC collector, an unreachable
//! report server failing with the reason, and the jobs against a simulated cluster started with
//! `kausal sim`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_tests::process::{Kausal, free_port, kausal_bin, run_to_end};
use serde_json::{Value, json};

/// Runs `kausal args…` with `stdin` written to its standard input; (exit code, stdout, stderr).
fn run_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Result<(i32, String, String)> {
    let mut child = Command::new(kausal_bin()?)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning kausal")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn report_merges_a_json_object_from_stdin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, out, err) = run_with_stdin(
        dir.path(),
        &["report", "run", "--jobs", "state", "-"],
        r#"{"state": {"deployment": "blue"}, "custom": {"team": "platform", "replicas": 3}}"#,
    )?;
    assert_eq!(code, 0, "stderr: {err}");
    let report: Value =
        serde_json::from_str(&out).with_context(|| format!("stdout is not JSON: {out}"))?;
    assert!(report["state"]["hostname"].is_string(), "{report:#}");
    assert!(report["state"]["uptime_seconds"].is_u64(), "{report:#}");
    assert_eq!(
        report["state"]["deployment"], "blue",
        "merged into the job's workflow"
    );
    assert_eq!(report["custom"], json!({"team": "platform", "replicas": 3}));
    Ok(())
}

#[test]
fn report_refuses_bad_json_on_stdin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, out, err) = run_with_stdin(
        dir.path(),
        &["report", "run", "--jobs", "state", "-"],
        "{\"state\": ",
    )?;
    assert_ne!(code, 0);
    assert!(out.is_empty(), "no report printed: {out}");
    assert!(
        err.contains("stdin is not valid JSON") && err.contains("line 1"),
        "{err}"
    );
    let (code, _, err) = run_with_stdin(
        dir.path(),
        &["report", "run", "--jobs", "state", "-"],
        "[1, 2]",
    )?;
    assert_ne!(code, 0);
    assert!(
        err.contains("stdin must hold a JSON object") && err.contains("an array"),
        "{err}"
    );
    Ok(())
}

#[test]
fn report_to_an_unreachable_server_fails_with_the_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port().to_string();
    let tls = format!("tls://127.0.0.1:{port}");
    let (code, out, err) = run_to_end(
        dir.path(),
        &[
            "report",
            "run",
            "--jobs",
            "state",
            "--report-server",
            &tls,
            "--report-timeout",
            "1s",
        ],
    )?;
    assert_eq!(code, 1, "stderr: {err}");
    assert!(
        out.contains("\"hostname\""),
        "the report is still printed: {out}"
    );
    assert!(
        err.contains(&format!("shipping the report to {tls} failed")) && err.contains("refused"),
        "{err}"
    );
    let hec = format!("splunk+http://127.0.0.1:{port}");
    let (code, _, err) = run_to_end(
        dir.path(),
        &[
            "report",
            "run",
            "--jobs",
            "state",
            "--report-server",
            &hec,
            "--report-token",
            "t",
            "--report-timeout",
            "1s",
        ],
    )?;
    assert_eq!(code, 1, "stderr: {err}");
    assert!(err.contains("failed") && err.contains("refused"), "{err}");
    let (code, _, err) = run_to_end(
        dir.path(),
        &[
            "report",
            "run",
            "--jobs",
            "state",
            "--report-server",
            "gopher://x:1",
        ],
    )?;
    assert_eq!(code, 2);
    assert!(err.contains("unknown scheme"), "{err}");
    let (code, _, err) = run_to_end(dir.path(), &["report", "run", "--jobs", "nonsense"])?;
    assert_eq!(code, 2);
    assert!(err.contains("unknown job \"nonsense\""), "{err}");
    Ok(())
}

/// A one-request-at-a-time HTTP server standing in for Splunk's HEC: answers 403 to a wrong
/// token, otherwise 200, and hands over (authorization header, body) of each request.
fn fake_hec(token: &'static str) -> Result<(u16, mpsc::Receiver<(String, String)>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let (mut auth, mut length, mut path) = (String::new(), 0usize, String::new());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let l = line.trim_end().to_string();
                line.clear();
                if l.is_empty() {
                    break;
                }
                if path.is_empty() {
                    path = l.split_whitespace().nth(1).unwrap_or_default().to_string();
                } else if let Some((k, v)) = l.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_string(),
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let ok = auth == format!("Splunk {token}") && path == "/services/collector/event";
            let (status, text) = if ok {
                ("200 OK", r#"{"text":"Success","code":0}"#)
            } else {
                ("403 Forbidden", r#"{"text":"Invalid token","code":4}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = tx.send((auth, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    Ok((port, rx))
}

#[test]
fn report_ships_to_splunk_hec() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (port, requests) = fake_hec("hec-token")?;
    let server = format!("splunk+http://127.0.0.1:{port}");
    let (code, _, err) = run_with_stdin(
        dir.path(),
        &[
            "report",
            "run",
            "--jobs",
            "state",
            "--report-server",
            &server,
            "--report-token",
            "hec-token",
            "-",
        ],
        r#"{"extra": {"cluster": "prod"}}"#,
    )?;
    assert_eq!(code, 0, "stderr: {err}");
    assert!(err.contains(&format!("shipped to {server}")), "{err}");
    let (auth, body) = requests.recv_timeout(Duration::from_secs(10))?;
    assert_eq!(auth, "Splunk hec-token");
    let event: Value =
        serde_json::from_str(body.trim()).with_context(|| format!("not one JSON event: {body}"))?;
    assert!(event["time"].is_f64(), "{event:#}");
    assert_eq!(
        (event["source"].as_str(), event["sourcetype"].as_str()),
        (Some("kausal"), Some("kausal:report"))
    );
    assert!(event["host"].is_string(), "{event:#}");
    assert_eq!(event["event"]["extra"]["cluster"], "prod");
    assert!(event["event"]["state"]["hostname"].is_string(), "{event:#}");

    // A token the collector rejects fails the command with the collector's answer.
    let (code, _, err) = run_to_end(
        dir.path(),
        &[
            "report",
            "run",
            "--jobs",
            "state",
            "--report-server",
            &server,
            "--report-token",
            "wrong",
            "--report-timeout",
            "1s",
        ],
    )?;
    assert_eq!(code, 1, "stderr: {err}");
    assert!(
        err.contains("403") && err.contains("Invalid token"),
        "{err}"
    );
    Ok(())
}

#[test]
fn report_runs_jobs_against_a_simulated_cluster() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let listen = format!("127.0.0.1:{port}");
    let kc = kubeconfig.to_str().unwrap_or_default();
    let mut sim = Kausal::start_args(
        dir.path(),
        &[
            "sim",
            "--listen",
            &listen,
            "--nodes",
            "2",
            "--kubeconfig-out",
            kc,
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim.stdout().contains("kubeconfig written to") {
        if Instant::now() > deadline {
            bail!(
                "the simulator did not start:\n{}\n{}",
                sim.stdout(),
                sim.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, err) = run_to_end(
        dir.path(),
        &[
            "report",
            "run",
            "--jobs",
            "identify-platform,cluster-state,mesh-detect",
            "--kubeconfig",
            kc,
        ],
    )?;
    let _ = sim.stop();
    assert_eq!(code, 0, "stderr: {err}");
    let report: Value =
        serde_json::from_str(&out).with_context(|| format!("stdout is not JSON: {out}\n{err}"))?;
    assert_eq!(report["cluster-state"]["k8s_nodes_count"], 2, "{report:#}");
    assert!(
        report["cluster-state"]["k8s_pods_count"].is_u64(),
        "{report:#}"
    );
    assert_eq!(report["identify-platform"]["k8s_version"], "v1.31.0");
    assert_eq!(report["identify-platform"]["k8s_provider"], "unknown");
    assert_eq!(report["mesh-detect"]["istio"]["control_plane"], false);
    assert!(!err.contains("failed"), "{err}");
    Ok(())
}

#[test]
fn report_pipeline_ships_from_the_elected_receiver_to_hec() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let listen = format!("127.0.0.1:{port}");
    let kc = kubeconfig.to_str().unwrap_or_default().to_string();
    let mut sim = Kausal::start_args(
        dir.path(),
        &[
            "sim",
            "--listen",
            &listen,
            "--nodes",
            "3",
            "--kubeconfig-out",
            &kc,
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim.stdout().contains("kubeconfig written to") {
        if Instant::now() > deadline {
            bail!(
                "the simulator did not start:\n{}\n{}",
                sim.stdout(),
                sim.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (hec_port, requests) = fake_hec("pipeline-token")?;
    let config = format!(
        r#"
receivers:
  clusterreport:
    kubeconfig: {kc}
    fixed: {{product: kausal}}
    workflows: {{inventory: [cluster-state, fixed]}}
    leader_election: {{lease_namespace: default, retry_period: 200ms, lease_duration: 2s}}
exporters:
  splunk_hec:
    endpoint: http://127.0.0.1:{hec_port}
    token: pipeline-token
    sourcetype: "kausal:test"
service:
  pipelines:
    reports:
      receivers: [clusterreport]
      exporters: [splunk_hec]
"#
    );
    let agent = Kausal::start(dir.path(), &config)?;
    let received = requests.recv_timeout(Duration::from_secs(60));
    drop(agent);
    let _ = sim.stop();
    let (auth, body) = received.context("no report reached the collector within 60s")?;
    assert_eq!(auth, "Splunk pipeline-token");
    let event: Value =
        serde_json::from_str(body.trim()).with_context(|| format!("not one JSON event: {body}"))?;
    assert_eq!(event["sourcetype"], "kausal:test");
    assert_eq!(
        event["event"]["inventory"]["k8s_nodes_count"], 3,
        "{event:#}"
    );
    assert_eq!(event["event"]["inventory"]["product"], "kausal");
    assert_eq!(event["fields"]["kausal.report.signal"], "kausal-report");
    Ok(())
}
