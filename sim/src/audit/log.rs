//! The audit log backend (`--audit-log-path`): one JSON `Event` per line, rotated by size into
//! timestamped backups like kube-apiserver's (lumberjack) writer, keeping at most N backups.
//! Writes are synchronous (the apiserver's default `blocking` log mode); age-based pruning and
//! compression of backups are left out.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kausal_core::audit::Event;

use super::AuditError;

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The file to write; `-` writes to standard output.
    pub path: PathBuf,
    /// Rotate before a write would make the file larger than this (kube: `--audit-log-maxsize`
    /// in megabytes; 0 there means lumberjack's 100 MB, which is also the default here).
    pub max_size_bytes: u64,
    /// Backups to keep (`--audit-log-maxbackup`); 0 keeps all.
    pub max_backups: usize,
}

impl LogConfig {
    pub fn new(path: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            path: path.into(),
            max_size_bytes: 100 * 1024 * 1024,
            max_backups: 0,
        }
    }

    /// Sizes in megabytes as the apiserver flag spells them.
    pub fn with_max_size_mb(mut self, megabytes: u64) -> LogConfig {
        self.max_size_bytes = if megabytes == 0 {
            100 * 1024 * 1024
        } else {
            megabytes * 1024 * 1024
        };
        self
    }
}

enum Sink {
    Stdout,
    File { file: File, size: u64 },
}

pub struct LogBackend {
    config: LogConfig,
    sink: Mutex<Sink>,
}

/// The name a rotated file gets: `audit-2024-01-02T03-04-05.678.log` next to `audit.log`.
pub fn backup_name(path: &Path, at: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let ext = path
        .extension()
        .and_then(|s| s.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let stamp = at.format("%Y-%m-%dT%H-%M-%S%.3f");
    path.with_file_name(format!("{stem}-{stamp}{ext}"))
}

impl LogBackend {
    pub fn open(config: LogConfig) -> Result<LogBackend, AuditError> {
        let sink = if config.path.as_os_str() == "-" {
            Sink::Stdout
        } else {
            if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| {
                    AuditError::Log(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let file = open_append(&config.path)?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Sink::File { file, size }
        };
        Ok(LogBackend {
            config,
            sink: Mutex::new(sink),
        })
    }

    /// Writes each event as one line, rotating first when a line would overflow the file.
    pub fn write(&self, events: &[Event]) -> Result<(), AuditError> {
        let mut buf = Vec::with_capacity(1024 * events.len());
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        for event in events {
            buf.clear();
            serde_json::to_writer(&mut buf, &with_type_meta(event))
                .map_err(|e| AuditError::Log(format!("cannot encode audit event: {e}")))?;
            buf.push(b'\n');
            match &mut *sink {
                Sink::Stdout => {
                    std::io::stdout().write_all(&buf).map_err(|e| {
                        AuditError::Log(format!("cannot write audit event to stdout: {e}"))
                    })?;
                }
                Sink::File { file, size } => {
                    if *size > 0 && *size + buf.len() as u64 > self.config.max_size_bytes {
                        *file = self.rotate()?;
                        *size = 0;
                    }
                    file.write_all(&buf).map_err(|e| {
                        AuditError::Log(format!("cannot write {}: {e}", self.config.path.display()))
                    })?;
                    *size += buf.len() as u64;
                }
            }
        }
        Ok(())
    }

    fn rotate(&self) -> Result<File, AuditError> {
        let path = &self.config.path;
        let backup = backup_name(path, chrono::Utc::now());
        fs::rename(path, &backup).map_err(|e| {
            AuditError::Log(format!(
                "cannot rotate {} to {}: {e}",
                path.display(),
                backup.display()
            ))
        })?;
        tracing::debug!(backup = %backup.display(), "audit log rotated");
        if self.config.max_backups > 0 {
            self.prune_backups();
        }
        open_append(path)
    }

    fn prune_backups(&self) {
        let path = &self.config.path;
        let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str()))
        else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{stem}-");
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut backups: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        // Timestamped names sort chronologically.
        backups.sort();
        let excess = backups.len().saturating_sub(self.config.max_backups);
        for old in backups.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(&old) {
                tracing::warn!(file = %old.display(), error = %e, "cannot remove old audit log backup");
            }
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AuditError::Log(format!("cannot open {}: {e}", path.display())))
}

/// Log lines carry `kind`/`apiVersion` on every event, unlike items inside a webhook batch.
pub fn with_type_meta(event: &Event) -> Event {
    let mut e = event.clone();
    e.kind = Some("Event".to_string());
    e.api_version = Some("audit.k8s.io/v1".to_string());
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use kausal_core::audit::{Level, Stage};

    fn event(n: usize) -> Event {
        Event {
            kind: None,
            api_version: None,
            metadata: None,
            timestamp: None,
            level: Level::Metadata,
            audit_id: format!("id-{n}"),
            stage: Stage::ResponseComplete,
            request_uri: "/api/v1/pods".into(),
            verb: "list".into(),
            user: Default::default(),
            impersonated_user: None,
            source_ips: vec![],
            user_agent: String::new(),
            object_ref: None,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: None,
            stage_timestamp: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let backend = LogBackend::open(LogConfig {
            path: path.clone(),
            max_size_bytes: 400,
            max_backups: 2,
        })
        .unwrap();
        for i in 0..20 {
            backend.write(&[event(i)]).unwrap();
            // distinct backup timestamps need distinct milliseconds
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let current = fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 400);
        for line in current.lines() {
            let e = kausal_core::audit::decode_event(line.as_bytes()).unwrap();
            assert_eq!(e.kind.as_deref(), Some("Event"));
        }
        let backups = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "audit.log")
            .count();
        assert_eq!(backups, 2);
    }

    #[test]
    fn backup_names_follow_lumberjack() {
        let at = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            backup_name(Path::new("/var/log/audit.log"), at),
            PathBuf::from("/var/log/audit-2024-01-02T03-04-05.678.log")
        );
    }
}
