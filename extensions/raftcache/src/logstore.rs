//! One log store per node (redb in `data_dir`): the log, hard state, conf state and latest
//! snapshot of every group. `write` makes one round's writes of all groups durable in a single
//! transaction — one fsync per round (group commit). It knows nothing of Raft beyond the shape of
//! `GroupWrite`.

use std::collections::BTreeMap;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::RaftCacheError;
use crate::storage::{DurableGroup, GroupWrite};

const ENTRIES: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<(u32, u8), &[u8]> = TableDefinition::new("meta");
const HARD_STATE: u8 = 0;
const CONF_STATE: u8 = 1;
const SNAPSHOT: u8 = 2;

fn store_err(e: impl Into<redb::Error>) -> RaftCacheError {
    RaftCacheError::Store(e.into().to_string())
}

fn pb_err(e: protobuf::ProtobufError) -> RaftCacheError {
    RaftCacheError::Corrupt(e.to_string())
}

pub struct LogStore {
    db: Database,
    /// Last stored log index per shard, so appends only truncate when they overwrite.
    last: BTreeMap<u32, u64>,
    fsync: bool,
}

impl LogStore {
    pub fn open(dir: &Path, fsync: bool) -> Result<LogStore, RaftCacheError> {
        std::fs::create_dir_all(dir).map_err(|e| RaftCacheError::Store(format!("creating {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("raftlog.redb")).map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(ENTRIES).map_err(store_err)?;
        txn.open_table(META).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(LogStore {
            db,
            last: BTreeMap::new(),
            fsync,
        })
    }

    /// Everything stored, per shard.
    pub fn load(&mut self) -> Result<BTreeMap<u32, DurableGroup>, RaftCacheError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        let entries = txn.open_table(ENTRIES).map_err(store_err)?;
        let mut out: BTreeMap<u32, DurableGroup> = BTreeMap::new();
        for row in meta.iter().map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            let (shard, kind) = k.value();
            let g = out.entry(shard).or_default();
            let bytes = v.value();
            match kind {
                HARD_STATE => g.hard_state.merge_from_bytes(bytes).map_err(pb_err)?,
                CONF_STATE => g.conf_state.merge_from_bytes(bytes).map_err(pb_err)?,
                SNAPSHOT => g.snapshot.merge_from_bytes(bytes).map_err(pb_err)?,
                other => return Err(RaftCacheError::Corrupt(format!("unknown meta kind {other}"))),
            }
        }
        for row in entries.iter().map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            let (shard, _) = k.value();
            let mut e = Entry::default();
            e.merge_from_bytes(v.value()).map_err(pb_err)?;
            out.entry(shard).or_default().entries.push(e);
        }
        for (shard, g) in &mut out {
            let snap = g.snapshot.get_metadata().index;
            g.entries.retain(|e| e.index > snap);
            self.last.insert(*shard, g.entries.last().map_or(snap, |e| e.index));
        }
        Ok(out)
    }

    /// Makes one round durable: every group's write in one transaction, one fsync.
    pub fn write(&mut self, writes: &[GroupWrite]) -> Result<(), RaftCacheError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(store_err)?;
        if !self.fsync {
            txn.set_durability(Durability::None)
                .map_err(|e| RaftCacheError::Store(e.to_string()))?;
        }
        {
            let mut entries = txn.open_table(ENTRIES).map_err(store_err)?;
            let mut meta = txn.open_table(META).map_err(store_err)?;
            for w in writes {
                let shard = w.shard;
                if let Some(s) = &w.received_snapshot {
                    entries.retain_in((shard, 0)..=(shard, u64::MAX), |_, _| false).map_err(store_err)?;
                    put_meta(&mut meta, shard, SNAPSHOT, s)?;
                    put_meta(&mut meta, shard, CONF_STATE, s.get_metadata().get_conf_state())?;
                    self.last.insert(shard, s.get_metadata().index);
                }
                if let Some(first) = w.entries.first() {
                    let last = self.last.get(&shard).copied().unwrap_or(0);
                    if first.index <= last {
                        entries
                            .retain_in((shard, first.index)..=(shard, u64::MAX), |_, _| false)
                            .map_err(store_err)?;
                    }
                    for e in &w.entries {
                        let bytes = e.write_to_bytes().map_err(pb_err)?;
                        entries.insert((shard, e.index), bytes.as_slice()).map_err(store_err)?;
                    }
                    if let Some(e) = w.entries.last() {
                        self.last.insert(shard, e.index);
                    }
                }
                if let Some(hs) = &w.hard_state {
                    put_meta::<HardState>(&mut meta, shard, HARD_STATE, hs)?;
                }
                if let Some(cs) = &w.conf_state {
                    put_meta::<ConfState>(&mut meta, shard, CONF_STATE, cs)?;
                }
                if let Some(s) = &w.compaction {
                    let idx = s.get_metadata().index;
                    entries.retain_in((shard, 0)..=(shard, idx), |_, _| false).map_err(store_err)?;
                    put_meta::<Snapshot>(&mut meta, shard, SNAPSHOT, s)?;
                }
            }
        }
        txn.commit().map_err(store_err)?;
        Ok(())
    }
}

fn put_meta<M: protobuf::Message>(
    meta: &mut redb::Table<(u32, u8), &[u8]>,
    shard: u32,
    kind: u8,
    m: &M,
) -> Result<(), RaftCacheError> {
    let bytes = m.write_to_bytes().map_err(pb_err)?;
    meta.insert((shard, kind), bytes.as_slice()).map_err(store_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = vec![index as u8].into();
        e
    }

    #[test]
    fn rounds_survive_reopen_with_truncation_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = DurableGroup::default();
        {
            let mut store = LogStore::open(dir.path(), true).unwrap();
            let mut hs = HardState::default();
            hs.term = 2;
            hs.commit = 3;
            let rounds = vec![
                GroupWrite { shard: 1, entries: (1..=5).map(|i| entry(i, 1)).collect(), hard_state: Some(hs), ..Default::default() },
                // A new leader overwrites the suffix from index 4.
                GroupWrite { shard: 1, entries: vec![entry(4, 2)], ..Default::default() },
                GroupWrite {
                    shard: 1,
                    compaction: Some({
                        let mut s = Snapshot::default();
                        s.mut_metadata().index = 2;
                        s.mut_metadata().term = 1;
                        s.set_data(b"state".to_vec().into());
                        s
                    }),
                    ..Default::default()
                },
            ];
            for w in &rounds {
                store.write(std::slice::from_ref(w)).unwrap();
                model.apply(w);
            }
        }
        let mut store = LogStore::open(dir.path(), true).unwrap();
        let loaded = store.load().unwrap();
        let g = &loaded[&1];
        let idx: Vec<(u64, u64)> = g.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(idx, vec![(3, 1), (4, 2)]);
        assert_eq!(idx, model.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>());
        assert_eq!(g.hard_state.term, 2);
        assert_eq!(g.snapshot.get_metadata().index, 2);
        assert_eq!(g.snapshot.get_data(), b"state");
    }
}
