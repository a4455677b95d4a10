//! Reading recordings: kspan captures (YAML documents separated by `---`, each preceded by a
//! `# {"time":…,"style":…,"kind":…}` line), `kubectl get -o yaml|json` output (single objects
//! or Lists), and audit logs (JSON lines, plain or gzip). A bad document or line is reported
//! with where it is and skipped; the rest of the file is still read.

use std::io::Read;
use std::path::Path;

use kausal_core::activity::{Activity, Nanos, nanos_of};
use kausal_core::audit::{Stage, decode_event};
use serde_json::Value;

use crate::map::{audit_to_activity, to_activity};

/// `Recorded::at` of listed objects until [`settle`] gives them the recording's first time.
const STATE_FIRST: Nanos = Nanos::MIN;

/// Gives listed objects (fed first) the time of the earliest other activity, so that pacing
/// starts at the recording's own beginning.
pub fn settle(activities: &mut [Recorded]) {
    let first = activities.iter().map(|r| r.at).filter(|at| *at != STATE_FIRST).min();
    for r in activities.iter_mut().filter(|r| r.at == STATE_FIRST) {
        r.at = first.unwrap_or(r.activity.start);
    }
}

/// One activity from a recording, with when the recording says it happened (for pacing).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Nanos,
    pub activity: Activity,
}

/// What was wrong with one part of a recording, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}: {message}")]
pub struct RecordingError {
    pub file: String,
    /// `document 3 (line 57)`, `line 12`, or `item 4 of document 1 (line 2)`.
    pub location: String,
    pub message: String,
}

/// Everything read from one file: the activities, in file order, and the errors.
#[derive(Debug, Default)]
pub struct Recording {
    pub activities: Vec<Recorded>,
    pub errors: Vec<RecordingError>,
}

/// Reads a file of any supported format; a file that cannot be read at all is one error.
pub fn read_file(path: &Path, cluster: &str) -> Recording {
    let mut out = read_file_unsettled(path, cluster);
    settle(&mut out.activities);
    out
}

/// As [`read_file`], with listed objects still marked to go first (see [`settle`]).
pub(crate) fn read_file_unsettled(path: &Path, cluster: &str) -> Recording {
    let file = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Recording {
                activities: vec![],
                errors: vec![RecordingError { file, location: "file".into(), message: format!("cannot read: {e}") }],
            };
        }
    };
    read_bytes_unsettled(&file, &bytes, cluster)
}

/// Reads a recording held in memory; `file` names it in errors.
pub fn read_bytes(file: &str, bytes: &[u8], cluster: &str) -> Recording {
    let mut out = read_bytes_unsettled(file, bytes, cluster);
    settle(&mut out.activities);
    out
}

fn read_bytes_unsettled(file: &str, bytes: &[u8], cluster: &str) -> Recording {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        return match flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut text) {
            Ok(_) => read_text(file, &String::from_utf8_lossy(&text), cluster),
            Err(e) => {
                // Keep what decompressed before the damage.
                let mut r = read_text(file, &String::from_utf8_lossy(&text), cluster);
                r.errors.push(RecordingError {
                    file: file.into(),
                    location: "gzip stream".into(),
                    message: format!("truncated or corrupt after {} bytes: {e}", text.len()),
                });
                r
            }
        };
    }
    read_text(file, &String::from_utf8_lossy(bytes), cluster)
}

fn read_text(file: &str, text: &str, cluster: &str) -> Recording {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        // One JSON document (kubectl -o json) or JSON lines (audit log).
        if let Ok(doc) = serde_json::from_str::<Value>(trimmed) {
            let mut out = Recording::default();
            add_document(&mut out, file, "document 1 (line 1)", &doc, None, cluster);
            return out;
        }
        return read_json_lines(file, text, cluster);
    }
    read_yaml_documents(file, text, cluster)
}

fn read_json_lines(file: &str, text: &str, cluster: &str) -> Recording {
    let mut out = Recording::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let location = format!("line {}", i + 1);
        let err = |message: String| RecordingError { file: file.into(), location: location.clone(), message };
        match decode_event(line.as_bytes()) {
            // Earlier stages of the same request repeat it; the last stage has the outcome.
            Ok(event) if matches!(event.stage, Stage::RequestReceived | Stage::ResponseStarted) => {}
            Ok(event) => match audit_to_activity(event, cluster) {
                Ok(activity) => out.activities.push(Recorded { at: activity.start, activity }),
                Err(e) => out.errors.push(err(e.to_string())),
            },
            Err(e) => match serde_json::from_str::<Value>(line) {
                // Not an audit event but a Kubernetes object or Event on its own line.
                Ok(doc) if doc.get("kind").is_some() && !is_audit(&doc) => {
                    add_document(&mut out, file, &location, &doc, None, cluster)
                }
                _ => out.errors.push(err(format!("not an audit event: {e}"))),
            },
        }
    }
    out
}

fn is_audit(doc: &Value) -> bool {
    doc.get("apiVersion").and_then(Value::as_str).is_some_and(|v| v.starts_with("audit.k8s.io/"))
}

/// kspan's per-document header.
#[derive(serde::Deserialize)]
struct CaptureHeader {
    time: Option<String>,
}

fn read_yaml_documents(file: &str, text: &str, cluster: &str) -> Recording {
    let mut out = Recording::default();
    // Split on `---` lines ourselves so that one broken document does not hide the others.
    let mut docs: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((start_line, std::mem::take(&mut current)));
            start_line = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start_line, current));
    let mut number = 0;
    for (line, doc) in docs {
        let meaningful = doc.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if !meaningful {
            continue;
        }
        number += 1;
        let location = format!("document {number} (line {line})");
        let recorded_at = doc
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('#'))
            .filter_map(|c| serde_json::from_str::<CaptureHeader>(c.trim()).ok())
            .find_map(|h| h.time)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| nanos_of(t.with_timezone(&chrono::Utc)));
        match serde_saphyr::from_str::<Value>(&doc) {
            Ok(value) => add_document(&mut out, file, &location, &value, recorded_at, cluster),
            Err(e) => out.errors.push(RecordingError {
                file: file.into(),
                location,
                message: format!("not valid YAML (truncated?): {}", first_line(&e.to_string())),
            }),
        }
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// One parsed document: a List's items one by one, or a single object.
fn add_document(out: &mut Recording, file: &str, location: &str, doc: &Value, recorded_at: Option<Nanos>, cluster: &str) {
    if let Some(items) = doc.get("items").and_then(Value::as_array) {
        for (i, item) in items.iter().enumerate() {
            add_one(out, file, &format!("item {} of {location}", i + 1), item, recorded_at, cluster);
        }
        return;
    }
    add_one(out, file, location, doc, recorded_at, cluster);
}

fn add_one(out: &mut Recording, file: &str, location: &str, doc: &Value, recorded_at: Option<Nanos>, cluster: &str) {
    if is_audit(doc) && doc.get("stage").and_then(Value::as_str).is_some_and(|s| s == "RequestReceived" || s == "ResponseStarted") {
        return;
    }
    match to_activity(doc, cluster, recorded_at) {
        Ok(activity) => {
            // An object listed without a recorder's clock is the state the recording starts
            // from (what processors need to know owners and writers), so it is fed first.
            let listed_state = recorded_at.is_none() && matches!(activity.detail, kausal_core::activity::ActivityDetail::Change(_));
            let at = if listed_state { STATE_FIRST } else { recorded_at.unwrap_or(activity.start) };
            out.activities.push(Recorded { at, activity })
        }
        Err(e) => out.errors.push(RecordingError { file: file.into(), location: location.into(), message: e.to_string() }),
    }
}
