//! The on-disk form of a persistent sending queue: an append-only log of batches and an
//! append-only log of acknowledged batch ids, in one directory. On open, every logged batch
//! whose id was not acknowledged is returned, in order. A torn record at the end (a crash
//! mid-write) is cut off. When the queue runs empty both files are truncated; when the log
//! grows large while mostly acknowledged, it is rewritten with only the live batches.
//!
//! Record layout (little endian): `len: u32 | id: u64 | checksum: u64 | payload[len]`, the
//! checksum being xxh3-64 of id and payload. Ack layout: `id: u64` per acknowledged batch.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const LOG: &str = "queue.log";
const ACKS: &str = "queue.acks";
const HEADER: usize = 4 + 8 + 8;
/// Above this size, a log whose batches are mostly acknowledged is rewritten.
const COMPACT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest payload accepted when reading back (guards against a corrupt length).
const MAX_RECORD: u32 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("persistent queue in {dir}: {what}: {source}")]
pub struct DiskError {
    pub dir: PathBuf,
    pub what: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// A batch read back from the log: its id and encoded payload.
pub type LoggedBatch = (u64, Vec<u8>);

pub struct DiskLog {
    dir: PathBuf,
    log: File,
    acks: File,
    fsync: bool,
    log_bytes: u64,
    acked_since_reset: u64,
    appended_since_reset: u64,
    /// The largest batch id in either file when opened; new ids must be larger.
    pub max_seen_id: u64,
}

fn checksum(id: u64, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&id.to_le_bytes());
    h.update(payload);
    h.digest()
}

impl DiskLog {
    /// Opens (creating if needed) the queue in `dir`; returns the unacknowledged batches.
    pub fn open(dir: &Path, fsync: bool) -> Result<(DiskLog, Vec<LoggedBatch>), DiskError> {
        let err = |what: &'static str| move |source| DiskError { dir: dir.to_path_buf(), what, source };
        std::fs::create_dir_all(dir).map_err(err("creating the directory"))?;
        let open = |name: &str| {
            OpenOptions::new().read(true).append(true).create(true).open(dir.join(name))
        };
        let mut log = open(LOG).map_err(err("opening the log"))?;
        let mut acks = open(ACKS).map_err(err("opening the ack log"))?;

        let mut acked = BTreeSet::new();
        let mut buf = Vec::new();
        acks.seek(SeekFrom::Start(0)).map_err(err("reading the ack log"))?;
        acks.read_to_end(&mut buf).map_err(err("reading the ack log"))?;
        for chunk in buf.chunks_exact(8) {
            let mut id = [0u8; 8];
            id.copy_from_slice(chunk);
            acked.insert(u64::from_le_bytes(id));
        }
        let whole_acks = (buf.len() / 8 * 8) as u64;
        if whole_acks != buf.len() as u64 {
            acks.set_len(whole_acks).map_err(err("repairing the ack log"))?;
        }

        let mut live = Vec::new();
        let mut good_len = 0u64;
        let mut appended = 0u64;
        let mut max_logged = 0u64;
        log.seek(SeekFrom::Start(0)).map_err(err("reading the log"))?;
        let mut reader = BufReader::new(&log);
        loop {
            let mut header = [0u8; HEADER];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(err("reading the log")(e)),
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let mut id = [0u8; 8];
            id.copy_from_slice(&header[4..12]);
            let id = u64::from_le_bytes(id);
            let mut sum = [0u8; 8];
            sum.copy_from_slice(&header[12..20]);
            let sum = u64::from_le_bytes(sum);
            if len > MAX_RECORD {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            if reader.read_exact(&mut payload).is_err() || checksum(id, &payload) != sum {
                break;
            }
            good_len += (HEADER + payload.len()) as u64;
            max_logged = max_logged.max(id);
            appended += 1;
            if !acked.contains(&id) {
                live.push((id, payload));
            }
        }
        drop(reader);
        let actual = log.metadata().map_err(err("reading the log"))?.len();
        if actual != good_len {
            tracing::warn!(dir = %dir.display(), cut = actual - good_len, "persistent queue log ends in a torn record; cutting it off");
            log.set_len(good_len).map_err(err("repairing the log"))?;
        }
        let max_seen_id = acked.iter().next_back().copied().unwrap_or(0).max(max_logged);
        let disk = DiskLog {
            dir: dir.to_path_buf(),
            log,
            acks,
            fsync,
            log_bytes: good_len,
            acked_since_reset: acked.len() as u64,
            appended_since_reset: appended,
            max_seen_id,
        };
        Ok((disk, live))
    }

    fn err(&self, what: &'static str) -> impl Fn(std::io::Error) -> DiskError + '_ {
        move |source| DiskError { dir: self.dir.clone(), what, source }
    }

    pub fn append(&mut self, id: u64, payload: &[u8]) -> Result<(), DiskError> {
        let len = u32::try_from(payload.len()).map_err(|_| DiskError {
            dir: self.dir.clone(),
            what: "appending",
            source: std::io::Error::other("batch larger than 4 GiB"),
        })?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&id.to_le_bytes());
        record.extend_from_slice(&checksum(id, payload).to_le_bytes());
        record.extend_from_slice(payload);
        self.log.write_all(&record).map_err(self.err("appending"))?;
        if self.fsync {
            self.log.sync_data().map_err(self.err("syncing the log"))?;
        }
        self.log_bytes += record.len() as u64;
        self.appended_since_reset += 1;
        Ok(())
    }

    pub fn ack(&mut self, ids: &[u64]) -> Result<(), DiskError> {
        let mut buf = Vec::with_capacity(ids.len() * 8);
        for id in ids {
            buf.extend_from_slice(&id.to_le_bytes());
        }
        self.acks.write_all(&buf).map_err(self.err("acknowledging"))?;
        if self.fsync {
            self.acks.sync_data().map_err(self.err("syncing the ack log"))?;
        }
        self.acked_since_reset += ids.len() as u64;
        Ok(())
    }

    /// Everything logged has been acknowledged: start both files afresh.
    pub fn reset(&mut self) -> Result<(), DiskError> {
        // A crash between the two truncations leaves stale acks; they stay harmless because
        // ids continue after the largest id ever seen (`max_seen_id`), also across restarts.
        self.log.set_len(0).map_err(self.err("truncating the log"))?;
        self.acks.set_len(0).map_err(self.err("truncating the ack log"))?;
        self.log_bytes = 0;
        self.acked_since_reset = 0;
        self.appended_since_reset = 0;
        Ok(())
    }

    /// Whether a rewrite would pay off: large, and at least half acknowledged.
    pub fn wants_compaction(&self) -> bool {
        self.log_bytes > COMPACT_BYTES && self.acked_since_reset * 2 >= self.appended_since_reset
    }

    /// Rewrites the log keeping only batches in `live`, then clears the ack log.
    pub fn compact(&mut self, live: &BTreeSet<u64>) -> Result<(), DiskError> {
        let tmp = self.dir.join("queue.log.tmp");
        let mut kept = 0u64;
        let mut bytes = 0u64;
        {
            let mut out = BufWriter::new(File::create(&tmp).map_err(self.err("compacting"))?);
            let mut src = File::open(self.dir.join(LOG)).map_err(self.err("compacting"))?;
            let mut reader = BufReader::new(&mut src);
            loop {
                let mut header = [0u8; HEADER];
                if reader.read_exact(&mut header).is_err() {
                    break;
                }
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                let mut id = [0u8; 8];
                id.copy_from_slice(&header[4..12]);
                let mut payload = vec![0u8; len];
                if reader.read_exact(&mut payload).is_err() {
                    break;
                }
                if live.contains(&u64::from_le_bytes(id)) {
                    out.write_all(&header).map_err(self.err("compacting"))?;
                    out.write_all(&payload).map_err(self.err("compacting"))?;
                    kept += 1;
                    bytes += (HEADER + len) as u64;
                }
            }
            let file = out.into_inner().map_err(|e| DiskError {
                dir: self.dir.clone(),
                what: "compacting",
                source: e.into_error(),
            })?;
            file.sync_all().map_err(self.err("compacting"))?;
        }
        std::fs::rename(&tmp, self.dir.join(LOG)).map_err(self.err("compacting"))?;
        self.log = OpenOptions::new().read(true).append(true).open(self.dir.join(LOG)).map_err(self.err("compacting"))?;
        self.acks.set_len(0).map_err(self.err("compacting"))?;
        self.log_bytes = bytes;
        self.appended_since_reset = kept;
        self.acked_since_reset = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacknowledged_batches_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, live) = DiskLog::open(dir.path(), false).unwrap();
            assert!(live.is_empty());
            for id in 1..=4u64 {
                log.append(id, format!("batch {id}").as_bytes()).unwrap();
            }
            log.ack(&[2, 1]).unwrap();
        }
        let (_, live) = DiskLog::open(dir.path(), false).unwrap();
        assert_eq!(live, vec![(3, b"batch 3".to_vec()), (4, b"batch 4".to_vec())]);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = DiskLog::open(dir.path(), true).unwrap();
            log.append(1, b"whole").unwrap();
            log.append(2, b"will be torn").unwrap();
        }
        let path = dir.path().join(LOG);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (mut log, live) = DiskLog::open(dir.path(), false).unwrap();
        assert_eq!(live, vec![(1, b"whole".to_vec())]);
        log.append(3, b"after repair").unwrap();
        drop(log);
        let (_, live) = DiskLog::open(dir.path(), false).unwrap();
        assert_eq!(live.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn reset_and_compaction_keep_only_live_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = DiskLog::open(dir.path(), false).unwrap();
        log.append(1, b"a").unwrap();
        log.ack(&[1]).unwrap();
        log.reset().unwrap();
        log.append(2, b"b").unwrap();
        log.append(3, b"c").unwrap();
        log.append(4, b"d").unwrap();
        log.ack(&[2, 4]).unwrap();
        log.compact(&BTreeSet::from([3])).unwrap();
        log.append(5, b"e").unwrap();
        drop(log);
        let (_, live) = DiskLog::open(dir.path(), false).unwrap();
        assert_eq!(live, vec![(3, b"c".to_vec()), (5, b"e".to_vec())]);
    }
}
