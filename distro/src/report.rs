//! `kausal report run`: the cluster-report jobs once, from the command line — the report printed
//! as JSON, a JSON object from stdin merged in when `-` is given, and the result shipped to a
//! report server when one is named (`splunk://` HEC or `tls://` raw TCP lines). The jobs, report
//! shapes and senders are the `clusterreport`, `splunk_hec` and `tcplines` components' own.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use kausal_core::Batch;
use kausal_core::component::Exporter;
use kausal_core::config::duration;
use kausal_core::telemetry::ComponentMetrics;
use kausal_exporterhelper::RetryConfig;
use kausal_receiver_clusterreport::jobs::{JobContext, workflows_from_job_names};
use kausal_receiver_clusterreport::report::{ReportMeta, Values, merge_json, to_logs};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// Run report jobs once, print the JSON report, and ship it when a server is named.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Jobs to run, comma-separated; each becomes a workflow of its own name
    /// (identify-platform, cluster-state, state, mesh-detect, fixed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "identify-platform,cluster-state,state,mesh-detect"
    )]
    jobs: Vec<String>,
    /// Kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where to ship the report: splunk://host:port (HEC over HTTPS), splunk+http://host:port
    /// (HEC over plain HTTP, for tests) or tls://host:port (one line over TLS).
    #[arg(long)]
    report_server: Option<String>,
    /// HEC token for splunk:// servers.
    #[arg(long, env = "KAUSAL_REPORT_TOKEN", hide_env_values = true)]
    report_token: Option<String>,
    /// CA bundle (PEM) to verify the report server with (default: system roots).
    #[arg(long)]
    report_ca: Option<PathBuf>,
    /// Do not verify the report server's certificate (testing only).
    #[arg(long)]
    report_insecure_skip_verify: bool,
    /// Give up shipping after this long (retries included), e.g. 10s.
    #[arg(long, default_value = "15s", value_parser = duration::parse)]
    report_timeout: Duration,
    /// Signal name of the report (first field of tls:// lines).
    #[arg(long, default_value = "kausal-report")]
    signal: String,
    /// Longest a single job may run.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    job_timeout: Duration,
    /// `-`: read a JSON object from stdin and merge it into the report (stdin wins).
    #[arg(value_name = "-")]
    stdin: Option<String>,
}

/// Where `--report-server` points.
#[derive(Debug, PartialEq, Eq)]
enum ReportServer {
    Splunk { url: String },
    Lines { endpoint: String },
}

fn parse_server(s: &str) -> Result<ReportServer, String> {
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        format!("--report-server {s:?}: expected splunk://host:port or tls://host:port")
    })?;
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        return Err(format!(
            "--report-server {s:?}: expected host:port after {scheme}://"
        ));
    }
    match scheme {
        "splunk" => Ok(ReportServer::Splunk {
            url: format!("https://{rest}"),
        }),
        "splunk+http" => Ok(ReportServer::Splunk {
            url: format!("http://{rest}"),
        }),
        "tls" => Ok(ReportServer::Lines {
            endpoint: rest.to_string(),
        }),
        other => Err(format!(
            "--report-server {s:?}: unknown scheme {other:?}; use splunk://, splunk+http:// or tls://"
        )),
    }
}

/// Reads stdin as one JSON object.
fn read_stdin_object(mut input: impl Read) -> Result<Value, String> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("stdin is not valid JSON: {e}"))?;
    match value {
        Value::Object(_) => Ok(value),
        other => Err(format!(
            "stdin must hold a JSON object to merge into the report, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
    }
}

fn retry(within: Duration) -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial_interval: Duration::from_millis(250),
        max_interval: Duration::from_secs(2),
        max_elapsed_time: within,
        multiplier: 2.0,
        randomization_factor: 0.2,
    }
}

fn exporter(server: &ReportServer, args: &RunArgs) -> Result<Box<dyn Exporter>, String> {
    match server {
        ReportServer::Splunk { url } => {
            let token = args
                .report_token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or("--report-token (or KAUSAL_REPORT_TOKEN) is required for splunk:// report servers")?;
            let mut config = kausal_exporter_splunkhec::Config::new(url.clone(), token);
            config.tls.ca_file = args.report_ca.clone();
            config.tls.insecure_skip_verify = args.report_insecure_skip_verify;
            config.timeout = args.report_timeout.max(Duration::from_secs(1));
            config.retry_on_failure = retry(args.report_timeout);
            kausal_exporter_splunkhec::HecExporter::new(
                "splunk_hec".into(),
                config,
                ComponentMetrics::default(),
            )
            .map(|e| Box::new(e) as Box<dyn Exporter>)
            .map_err(|e| e.to_string())
        }
        ReportServer::Lines { endpoint } => {
            let mut config = kausal_exporter_tcplines::Config::new(endpoint.clone());
            config.signal = args.signal.clone();
            config.tls.ca_file = args.report_ca.clone();
            config.tls.insecure_skip_verify = args.report_insecure_skip_verify;
            config.timeout = args.report_timeout.max(Duration::from_secs(1));
            config.retry_on_failure = retry(args.report_timeout);
            kausal_exporter_tcplines::LinesExporter::new(
                "tcplines".into(),
                config,
                ComponentMetrics::default(),
            )
            .map(|e| Box::new(e) as Box<dyn Exporter>)
            .map_err(|e| e.to_string())
        }
    }
}

pub fn report(args: ReportArgs) -> ExitCode {
    match args.command {
        ReportCommand::Run(run) => run_once(run),
    }
}

fn run_once(args: RunArgs) -> ExitCode {
    let started = Instant::now();
    let fail = |code: u8, message: String| {
        eprintln!("kausal report: {message}");
        ExitCode::from(code)
    };
    let workflows = match workflows_from_job_names(&args.jobs, &Values::new()) {
        Ok(w) => w,
        Err(e) => return fail(2, e),
    };
    let server = match args.report_server.as_deref().map(parse_server).transpose() {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    let extra = match args.stdin.as_deref() {
        None => None,
        Some("-") => match read_stdin_object(std::io::stdin().lock()) {
            Ok(v) => Some(v),
            Err(e) => return fail(2, e),
        },
        Some(other) => {
            return fail(
                2,
                format!(
                    "unexpected argument {other:?}; pass `-` to merge a JSON object from stdin"
                ),
            );
        }
    };
    // Build the sender before running the jobs, so that a bad server setting fails fast.
    let exporter = match server.as_ref().map(|s| exporter(s, &args)).transpose() {
        Ok(e) => e,
        Err(e) => return fail(2, e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        let ctx = JobContext::for_workflows(
            &workflows,
            args.kubeconfig.as_deref(),
            500,
            args.job_timeout,
            started,
            std::env::var("POD_NAMESPACE")
                .ok()
                .zip(std::env::var("POD_NAME").ok()),
        )
        .await;
        let (report, failed) =
            kausal_receiver_clusterreport::jobs::run_workflows(&workflows, &ctx).await;
        for (workflow, values) in &report.workflows {
            for (key, value) in values.iter().filter(|(k, _)| k.starts_with("error.")) {
                eprintln!(
                    "kausal report: job {} of workflow {workflow} failed: {}",
                    &key["error.".len()..],
                    value.as_str().unwrap_or_default()
                );
            }
        }
        let mut body = report.to_json();
        if let Some(extra) = extra {
            merge_json(&mut body, extra);
        }
        match serde_json::to_string_pretty(&body) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(1, format!("encoding the report: {e}")),
        }
        let (Some(exporter), Some(server)) = (exporter, args.report_server.as_deref()) else {
            if failed > 0 {
                eprintln!("kausal report: {failed} job(s) failed; their errors are in the report");
            }
            return ExitCode::SUCCESS;
        };
        let meta = ReportMeta {
            signal: args.signal.clone(),
            resource_attributes: BTreeMap::from([
                ("service.name".to_string(), "kausal".to_string()),
                ("host.name".to_string(), ctx.hostname.clone()),
            ]),
            time_unix_nano: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        match exporter.consume(Batch::Logs(to_logs(&body, &meta))).await {
            Ok(()) => {
                eprintln!("kausal report: shipped to {server}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, format!("shipping the report to {server} failed: {e}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_servers() {
        assert_eq!(
            parse_server("splunk://hec:8088"),
            Ok(ReportServer::Splunk {
                url: "https://hec:8088".into()
            })
        );
        assert_eq!(
            parse_server("splunk+http://127.0.0.1:8088"),
            Ok(ReportServer::Splunk {
                url: "http://127.0.0.1:8088".into()
            })
        );
        assert_eq!(
            parse_server("tls://reports:61833"),
            Ok(ReportServer::Lines {
                endpoint: "reports:61833".into()
            })
        );
        for bad in [
            "hec:8088",
            "http://x:1",
            "tls://",
            "tls://host",
            "splunk://h:1/path",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stdin_must_be_an_object() {
        assert!(read_stdin_object(&b"{\"a\": 1}"[..]).is_ok());
        let bad = read_stdin_object(&b"{\"a\": "[..])
            .err()
            .unwrap_or_default();
        assert!(
            bad.starts_with("stdin is not valid JSON: ") && bad.contains("line 1"),
            "{bad}"
        );
        let array = read_stdin_object(&b"[1]"[..]).err().unwrap_or_default();
        assert!(array.contains("not an array"), "{array}");
    }
}
