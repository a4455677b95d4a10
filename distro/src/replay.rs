//! `kausal replay`: recordings (kspan captures, kubectl lists, audit logs) fed through kausal as
//! if live. With `--dump`, the causal trees are printed and nothing is served; without
//! `--config`, the embedded configuration (distro/src/replay.yaml) stores the spans and serves the
//! query API and UI like the demo; with `--config`, that configuration's `replay` receiver gets
//! the files and speed from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use kausal_core::config::Config;
use kausal_processor_causal::{CausalConfig, CausalPlacer, dump};
use kausal_receiver_replay::{Speed, read_all};

use crate::run::{init_logging, run_service};

const REPLAY_CONFIG: &str = include_str!("replay.yaml");

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Recordings: kspan captures, `kubectl get -o yaml|json` output, audit logs (.gz too).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Configuration whose receiver `replay` gets the files; without it, the embedded store and
    /// query UI are used.
    #[arg(long = "config", short = 'c')]
    config: Vec<PathBuf>,
    /// `recorded`, `max`, or N (N times faster than recorded).
    #[arg(long, default_value = "recorded")]
    speed: String,
    /// Print the causal trees (one line per span) and exit.
    #[arg(long)]
    dump: bool,
    /// Where the query API (and UI) listens, without --config.
    #[arg(long, default_value = "127.0.0.1:16686")]
    ui: SocketAddr,
    /// Store directory, without --config.
    #[arg(long, default_value = "./kausal-replay-data")]
    data: PathBuf,
    /// Cluster name given to replayed objects.
    #[arg(long, default_value = "replay")]
    cluster: String,
    /// kausal's log level, without --config.
    #[arg(long, default_value = "warn")]
    log_level: String,
}

pub fn replay(args: ReplayArgs) -> ExitCode {
    if let Err(e) = Speed::parse(&args.speed) {
        eprintln!("kausal replay: --speed: {e}");
        return ExitCode::from(2);
    }
    if args.dump {
        return dump_trees(&args);
    }
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kausal replay: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config.service.telemetry) {
        eprintln!("kausal replay: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kausal: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.config.is_empty() {
        println!("kausal replay: replaying {} recording(s) at speed {}.", args.files.len(), args.speed);
        println!();
        println!("  open           http://{}/", args.ui);
        println!(
            "  Jaeger API     http://{}/api/traces?service=causal&tags={{\"cluster\":\"{}\"}}",
            args.ui, args.cluster
        );
        println!();
        println!("Recordings keep their own timestamps: search the time range they cover. Press Ctrl-C to stop.");
    }
    runtime.block_on(run_service(config))
}

fn json_list(files: &[PathBuf]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()).display().to_string())
        .collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

/// The configuration to run: the embedded one with the files filled in, or the user's with an
/// overlay that sets `receivers.replay.files` and `speed`.
fn load(args: &ReplayArgs) -> anyhow::Result<Config> {
    let files = json_list(&args.files);
    if args.config.is_empty() {
        let text = REPLAY_CONFIG.replace("    files: []\n", &format!("    files: {files}\n"));
        let values = [
            ("KAUSAL_REPLAY_SPEED", args.speed.clone()),
            ("KAUSAL_REPLAY_CLUSTER", args.cluster.clone()),
            ("KAUSAL_REPLAY_UI", args.ui.to_string()),
            ("KAUSAL_REPLAY_DATA", args.data.display().to_string()),
            ("KAUSAL_REPLAY_LOG", args.log_level.clone()),
        ];
        let env = |name: &str| values.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        return Config::from_yaml(&text, &env).map_err(|e| anyhow::anyhow!("embedded replay configuration: {e}"));
    }
    let overlay = std::env::temp_dir().join(format!("kausal-replay-{}.yaml", std::process::id()));
    let speed = serde_json::to_string(&args.speed)?;
    std::fs::write(&overlay, format!("receivers:\n  replay:\n    files: {files}\n    speed: {speed}\n"))?;
    let mut paths = args.config.clone();
    paths.push(overlay.clone());
    let loaded = Config::load(&paths, &|name| std::env::var(name).ok());
    let _ = std::fs::remove_file(&overlay);
    let config = loaded.map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let uses_replay = config.service.pipelines.values().any(|p| p.receivers.iter().any(|r| r == "replay"));
    if !uses_replay {
        anyhow::bail!("the configuration must use a receiver named `replay` in a pipeline; it gets the files to replay");
    }
    Ok(config)
}

/// `--dump`: read, place, print. Bad parts of recordings go to stderr and make the exit code
/// 1; everything readable is still placed and printed.
fn dump_trees(args: &ReplayArgs) -> ExitCode {
    let recording = read_all(&args.files, &args.cluster);
    for e in &recording.errors {
        eprintln!("kausal replay: {e}");
    }
    let mut placer = match CausalPlacer::new(&CausalConfig::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kausal replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Offline, everything is known at once: each Event is placed with the whole recording in
    // view (objects listed after the Events still give owners and managedFields).
    for r in recording.activities {
        placer.push(r.activity, 0);
    }
    let placed = placer.flush();
    print!("{}", dump(&placed));
    if recording.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

