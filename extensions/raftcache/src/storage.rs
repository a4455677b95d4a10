//! The Raft log of one group as raft-rs sees it (`Storage`), kept in memory, and the durable
//! image of it (`DurableGroup`) that a log store writes: the core describes each round's changes
//! as `GroupWrite`s, the caller makes them durable (one fsync for all groups) and only then tells
//! the core they are persisted. No I/O here.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// What one group needs written durably after one round, in this order: snapshot (replaces the
/// log), entries (truncating any suffix from the first new index), hard and conf state, then a
/// compaction snapshot (drops entries up to its index).
#[derive(Debug, Clone, Default)]
pub struct GroupWrite {
    pub shard: u32,
    pub received_snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub conf_state: Option<ConfState>,
    pub compaction: Option<Snapshot>,
}

impl GroupWrite {
    pub fn is_empty(&self) -> bool {
        self.received_snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.conf_state.is_none()
            && self.compaction.is_none()
    }
}

/// Everything a group keeps on disk.
#[derive(Debug, Clone, Default)]
pub struct DurableGroup {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Latest snapshot; its index is the last compacted entry (0 when none).
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl DurableGroup {
    /// Applies one round's write; the in-memory model of what a log store does on disk.
    pub fn apply(&mut self, w: &GroupWrite) {
        if let Some(s) = &w.received_snapshot {
            self.snapshot = s.clone();
            self.conf_state = s.get_metadata().get_conf_state().clone();
            self.entries.clear();
        }
        append(&mut self.entries, self.snapshot.get_metadata().index, &w.entries);
        if let Some(hs) = &w.hard_state {
            self.hard_state = hs.clone();
        }
        if let Some(cs) = &w.conf_state {
            self.conf_state = cs.clone();
        }
        if let Some(s) = &w.compaction {
            compact(&mut self.entries, s.get_metadata().index);
            self.snapshot = s.clone();
        }
    }
}

/// Appends `new` to `log` (whose first entry follows `snap_index`), replacing any conflicting suffix.
pub(crate) fn append(log: &mut Vec<Entry>, snap_index: u64, new: &[Entry]) {
    let new: Vec<&Entry> = new.iter().filter(|e| e.index > snap_index).collect();
    let Some(first) = new.first() else { return };
    let keep = (first.index - snap_index - 1) as usize;
    log.truncate(keep.min(log.len()));
    log.extend(new.into_iter().cloned());
}

/// Drops entries up to and including `index`.
pub(crate) fn compact(log: &mut Vec<Entry>, index: u64) {
    let n = log.iter().take_while(|e| e.index <= index).count();
    log.drain(..n);
}

/// raft-rs `Storage` over one group's in-memory log.
#[derive(Debug, Clone, Default)]
pub struct GroupStorage {
    pub(crate) durable: DurableGroup,
}

impl GroupStorage {
    pub fn new(durable: DurableGroup) -> Self {
        GroupStorage { durable }
    }

    fn snap_index(&self) -> u64 {
        self.durable.snapshot.get_metadata().index
    }

    pub fn first(&self) -> u64 {
        self.snap_index() + 1
    }

    pub fn last(&self) -> u64 {
        self.snap_index() + self.durable.entries.len() as u64
    }

    pub fn log_len(&self) -> usize {
        self.durable.entries.len()
    }

    pub fn term_of(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snap_index();
        if idx == snap {
            return Ok(self.durable.snapshot.get_metadata().term);
        }
        if idx < snap {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.durable.entries.get((idx - snap - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.durable.hard_state.clone(), self.durable.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let base = self.first();
        let mut out = self.durable.entries[(low - base) as usize..(high - base) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snap_index() < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.durable.snapshot.clone())
    }
}
