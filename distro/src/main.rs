//! The `kausal` binary: command line, the compiled-in component list, and the service run loop.

mod components;
mod demo;
mod replay;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The pipeline allocates many small objects per event across threads; mimalloc keeps that off
// the profile (glibc malloc/free took about a third of ingest CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "kausal", version, about = "Turns the Kubernetes control plane into traces")]
struct Cli {
    /// Configuration file(s), deep-merged in order; with no subcommand, `run` is implied.
    #[arg(long = "config", short = 'c', global = false)]
    config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipelines of a configuration until SIGINT/SIGTERM.
    Run {
        #[arg(long = "config", short = 'c', required = true)]
        config: Vec<PathBuf>,
    },
    /// Check a configuration and exit.
    Validate {
        #[arg(long = "config", short = 'c', required = true)]
        config: Vec<PathBuf>,
    },
    /// List the compiled-in components.
    Components,
    /// Print the resolved configuration (merged, environment expanded).
    PrintConfig {
        #[arg(long = "config", short = 'c', required = true)]
        config: Vec<PathBuf>,
    },
    /// A simulated cluster wired to kausal: traces of a looping rollout, no cluster needed.
    Demo(demo::DemoArgs),
    /// Run the simulated Kubernetes cluster alone (API server, control plane, audit backends).
    Sim(kausal_sim::cli::Args),
    /// Replay recordings (kspan captures, kubectl lists, audit logs) through kausal.
    Replay(replay::ReplayArgs),
    /// Cluster reports (jobs after Kong's telemetry library), run once from the command line.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match (cli.command, cli.config.is_empty()) {
        (Some(c), true) => c,
        (None, false) => Command::Run { config: cli.config },
        (None, true) => {
            eprintln!("kausal: nothing to do; pass --config FILE to run a configuration, or see `kausal --help`");
            return ExitCode::from(2);
        }
        (Some(_), false) => {
            eprintln!("kausal: --config goes after the subcommand, e.g. `kausal validate --config FILE`");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Components => {
            for c in components::registry().list() {
                println!("{:<10} {:<16} {}", c.kind, c.type_name, c.description);
            }
            ExitCode::SUCCESS
        }
        Command::Validate { config } => run::validate(&config),
        Command::PrintConfig { config } => run::print_config(&config),
        Command::Run { config } => run::run(&config),
        Command::Demo(args) => demo::demo(args),
        Command::Sim(args) => run::sim(args),
        Command::Replay(args) => replay::replay(args),
        Command::Report(args) => report::report(args),
    }
}
