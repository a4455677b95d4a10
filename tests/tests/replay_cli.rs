//! `kausal replay` as a user runs it: `--dump` prints the causal trees of real recordings (the
//! reviewed golden tree of kspan's capture, the OpenShift rollout with its three ReplicaSet
//! revisions and scheduling waits), and a broken recording is named precisely while the rest
//! is still replayed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kausal_tests::process::run_to_end;

fn real(path: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real").join(path);
    assert!(p.exists(), "recording missing: {} (these tests need ../shared/fixtures/real)", p.display());
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn replay_dump_prints_the_reviewed_tree_of_kspans_capture() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let capture = real("kspan/deployment-2-pods.yaml");
    let (code, stdout, stderr) = run_to_end(dir.path(), &["replay", "--dump", s(&capture)])?;
    assert_eq!(code, 0, "stderr: {stderr}");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../processors/causal/tests/golden/deployment-2-pods.txt");
    assert_eq!(stdout, std::fs::read_to_string(golden)?);
    Ok(())
}

/// (number, depth, text) of each dump line.
fn lines(dump: &str) -> Vec<(usize, usize, String)> {
    dump.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let depth = (l.len() - l.trim_start().len()) / 2;
            let (n, rest) = l.trim_start().split_once(": ")?;
            Some((n.parse().ok()?, depth, rest.to_string()))
        })
        .collect()
}

#[test]
fn replay_dump_shows_openshift_revisions_and_scheduling_waits() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = real("openshift-must-gather-aws/openshift-apiserver");
    let files: Vec<PathBuf> = ["events.yaml", "deployments.yaml", "replicasets.yaml", "pods.yaml"].iter().map(|f| ns.join(f)).collect();
    let mut args = vec!["replay", "--dump"];
    args.extend(files.iter().map(|f| s(f)));
    let (code, stdout, stderr) = run_to_end(dir.path(), &args)?;
    assert_eq!(code, 0, "stderr: {stderr}");
    let dump = lines(&stdout);
    // The three revisions of Deployment apiserver, each scaled up by the deployment controller.
    for rs in ["apiserver-65fdcd8694", "apiserver-69d9f9688f", "apiserver-5647477f76"] {
        assert!(
            dump.iter().any(|(_, _, t)| t.starts_with("deployment-controller Deployment.ScalingReplicaSet") && t.contains(&format!("Scaled up replica set {rs} "))),
            "no scale-up of {rs}:\n{stdout}"
        );
    }
    // Each revision-3 pod waited: FailedScheduling, then Scheduled, both under the report that
    // created it.
    let creations: Vec<&(usize, usize, String)> =
        dump.iter().filter(|(_, _, t)| t.contains("Created pod: apiserver-5647477f76-")).collect();
    assert_eq!(creations.len(), 3, "{stdout}");
    for (n, _, text) in creations {
        let under: Vec<&String> = dump.iter().filter(|(_, _, t)| t.contains(&format!(" ({n}) "))).map(|(_, _, t)| t).collect();
        let failed = under.iter().position(|t| t.starts_with("default-scheduler Pod.FailedScheduling"));
        let scheduled = under.iter().position(|t| t.starts_with("default-scheduler Pod.Scheduled"));
        match (failed, scheduled) {
            (Some(f), Some(s)) => assert!(f < s, "{text}: Scheduled before FailedScheduling:\n{under:#?}"),
            _ => panic!("{text}: no FailedScheduling -> Scheduled beneath it:\n{under:#?}"),
        }
    }
    Ok(())
}

#[test]
fn replay_names_a_broken_document_and_replays_the_rest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let capture = std::fs::read_to_string(real("kspan/deployment-2-pods.yaml"))?;
    // The capture cut off in the middle of a document, plus a document of no known kind.
    let cut = &capture[..capture.len() * 2 / 3];
    let cut = &cut[..cut.rfind('\n').unwrap_or(cut.len())];
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, format!("---\nspec: {{}}\n{cut}\n  unbalanced: [\n"))?;
    let (code, stdout, stderr) = run_to_end(dir.path(), &["replay", "--dump", s(&broken)])?;
    assert_eq!(code, 1, "a broken recording is an error\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("broken.yaml: document 1 (line 2): no `kind`"), "{stderr}");
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    let last_doc_line = stderr.lines().find(|l| l.contains("not valid YAML")).unwrap_or_default();
    assert!(last_doc_line.contains("(line "), "the error names the line: {last_doc_line}");
    // What came before the damage is still replayed.
    assert!(stdout.contains("Created pod: px-5d567cc74c-ss4lb"), "{stdout}");
    Ok(())
}

#[test]
fn replay_with_a_config_gives_its_replay_receiver_the_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let capture = real("kspan/deployment-2-pods.yaml");
    let config = dir.path().join("replay.yaml");
    std::fs::write(
        &config,
        "receivers:\n  replay: {}\nprocessors:\n  causal: { buffer: 500ms }\n  spanbuilder: {}\nexporters:\n  debug: { verbosity: normal }\n\
         service:\n  pipelines:\n    p:\n      receivers: [replay]\n      processors: [causal, spanbuilder]\n      exporters: [debug]\n",
    )?;
    let mut kausal = kausal_tests::process::Kausal::start_args(
        dir.path(),
        &["replay", "--config", s(&config), "--speed", "max", s(&capture)],
    )?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(kausal.stdout().contains("Killing") && kausal.stdout().contains("kubectl-client-side-apply Update")) {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the replayed spans never reached the debug exporter\nstdout:\n{}\nstderr:\n{}", kausal.stdout(), kausal.stderr());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    kausal.stop()?;

    // A configuration without a `replay` receiver cannot take the files.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "receivers:\n  kubeaudit: { endpoint: 127.0.0.1:0 }\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    p:\n      receivers: [kubeaudit]\n      exporters: [debug]\n",
    )?;
    let (code, _, stderr) = run_to_end(dir.path(), &["replay", "--config", s(&other), s(&capture)])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("replay"), "{stderr}");
    let (code, _, stderr) = run_to_end(dir.path(), &["replay", "--speed", "sideways", s(&capture)])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("--speed"), "{stderr}");
    Ok(())
}
