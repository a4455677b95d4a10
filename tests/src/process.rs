//! Starting and stopping the built `kausal` binary for tests. The binary is looked up next to the
//! test executable's target directory; build it first (`cargo build --bins`, which the README's
//! test command does). A missing binary fails loudly.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Path of the built `kausal` binary.
pub fn kausal_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("KAUSAL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    // Tests run from target/<profile>/deps/, benchmarks from target/<profile>/: the binary of the
    // same profile sits in target/<profile>/.
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        candidates.push(dir.join("kausal"));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .with_context(|| "the kausal binary is not built; run `cargo build --bins` (the README's test command does)".to_string())
}

/// A free loopback port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running kausal process; killed when dropped.
pub struct Kausal {
    child: Child,
    pub stderr: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

impl Kausal {
    /// Writes `config` to `dir/kausal.yaml` and starts `kausal run --config` on it.
    pub fn start(dir: &Path, config: &str) -> Result<Kausal> {
        let path = dir.join("kausal.yaml");
        std::fs::write(&path, config)?;
        Self::start_args(dir, &["run", "--config", path.to_str().unwrap_or_default()])
    }

    pub fn start_args(dir: &Path, args: &[&str]) -> Result<Kausal> {
        let mut child = Command::new(kausal_bin()?)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning kausal")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        if let Some(e) = child.stderr.take() {
            pump(e, stderr.clone());
        }
        if let Some(o) = child.stdout.take() {
            pump(o, stdout.clone());
        }
        Ok(Kausal { child, stderr, stdout })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `addr` accepts TCP connections, or the process exits.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("kausal exited with {status} before listening on {port}:\n{}", self.stderr());
            }
            if Instant::now() > deadline {
                bail!("kausal did not listen on {port} within {timeout:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        let rc = unsafe { libc_kill(self.child.id() as i32, 15) };
        if rc != 0 {
            bail!("cannot signal kausal");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("kausal did not stop within 60s after SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Peak resident set size of the process (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn pump(r: impl std::io::Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if let Ok(mut s) = into.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
}

impl Drop for Kausal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args`, returning (exit code, stdout, stderr).
pub fn run_to_end(dir: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(kausal_bin()?).args(args).current_dir(dir).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
