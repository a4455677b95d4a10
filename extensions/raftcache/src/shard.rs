//! The replicated state of one shard: the cache entries of the objects that hash to it, and the
//! shard clock. Pure and deterministic: time comes only from the commands (the proposer's clock,
//! never decreasing once applied), versions are the Raft log index of the write, so every replica
//! that applies the same log holds the same state. No I/O, no Raft here.

use std::collections::BTreeMap;

use kausal_core::cache::{CacheEntry, CasOutcome};
use kausal_proto::raft::v1 as pb;
use prost::Message as _;

use crate::error::RaftCacheError;

/// What applying one command produced, handed back to the request that proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Written(CasOutcome),
    Removed(bool),
    Expired,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardState {
    /// The latest `now` of any applied command; expiry is judged against it.
    pub clock: i64,
    objects: BTreeMap<String, BTreeMap<String, CacheEntry>>,
    /// Earliest expiry present (a hint for the leader to propose an `Expire`).
    next_expiry: Option<i64>,
    /// Node addresses learned from conf changes (id → address).
    pub members: BTreeMap<u64, String>,
}

impl ShardState {
    fn live(&self, object: &str, entry: &str) -> Option<&CacheEntry> {
        let clock = self.clock;
        self.objects
            .get(object)?
            .get(entry)
            .filter(|e| e.expires_at.is_none_or(|t| t > clock))
    }

    pub fn get(&self, object: &str, entry: &str) -> Option<CacheEntry> {
        self.live(object, entry).cloned()
    }

    /// Live entries of one object, newest write first.
    pub fn list(&self, object: &str) -> Vec<(String, CacheEntry)> {
        let clock = self.clock;
        let mut out: Vec<(String, CacheEntry)> = self
            .objects
            .get(object)
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| e.expires_at.is_none_or(|t| t > clock))
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.1.version.cmp(&a.1.version));
        out
    }

    /// True when some entry's expiry has passed by `now` (leader's clock) but is still stored.
    pub fn expiry_due(&self, now: i64) -> bool {
        self.next_expiry.is_some_and(|t| t <= now)
    }

    pub fn entry_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Applies a decoded command at log `index`.
    pub fn apply(&mut self, index: u64, cmd: &pb::Command) -> Applied {
        self.clock = self.clock.max(cmd.now);
        if self.expiry_due(self.clock) {
            self.sweep();
        }
        match &cmd.op {
            Some(pb::command::Op::Write(w)) => Applied::Written(self.write(index, w)),
            Some(pb::command::Op::Remove(r)) => {
                let existed = self.live(&r.object, &r.entry).is_some();
                if let Some(m) = self.objects.get_mut(&r.object) {
                    m.remove(&r.entry);
                    if m.is_empty() {
                        self.objects.remove(&r.object);
                    }
                }
                Applied::Removed(existed)
            }
            Some(pb::command::Op::Expire(_)) | None => Applied::Expired,
        }
    }

    fn write(&mut self, index: u64, w: &pb::Write) -> CasOutcome {
        let current = self.live(&w.object, &w.entry).cloned();
        let allowed = match pb::WriteMode::try_from(w.mode).unwrap_or(pb::WriteMode::Always) {
            pb::WriteMode::Always => true,
            pb::WriteMode::IfAbsent => current.is_none(),
            pb::WriteMode::IfVersion => current.as_ref().map_or(0, |e| e.version) == w.expected_version,
        };
        if !allowed {
            return CasOutcome::Mismatch(current);
        }
        let expires_at = w.ttl_nanos.map(|t| self.clock.saturating_add(t.max(0)));
        if let Some(t) = expires_at {
            self.next_expiry = Some(self.next_expiry.map_or(t, |n| n.min(t)));
        }
        self.objects.entry(w.object.clone()).or_default().insert(
            w.entry.clone(),
            CacheEntry {
                value: w.value.clone(),
                version: index,
                written_at: self.clock,
                expires_at,
            },
        );
        CasOutcome::Written(index)
    }

    fn sweep(&mut self) {
        let clock = self.clock;
        let mut next: Option<i64> = None;
        self.objects.retain(|_, entries| {
            entries.retain(|_, e| match e.expires_at {
                Some(t) if t <= clock => false,
                Some(t) => {
                    next = Some(next.map_or(t, |n| n.min(t)));
                    true
                }
                None => true,
            });
            !entries.is_empty()
        });
        self.next_expiry = next;
    }

    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut snap = pb::ShardSnapshot {
            clock: self.clock,
            entries: Vec::with_capacity(self.entry_count()),
            members: self.members.iter().map(|(id, a)| pb::Member { id: *id, address: a.clone() }).collect(),
        };
        for (object, entries) in &self.objects {
            for (entry, e) in entries {
                snap.entries.push(pb::StoredEntry {
                    object: object.clone(),
                    entry: entry.clone(),
                    value: e.value.clone(),
                    version: e.version,
                    written_at: e.written_at,
                    expires_at: e.expires_at,
                });
            }
        }
        snap.encode_to_vec()
    }

    pub fn from_snapshot(data: &[u8]) -> Result<ShardState, RaftCacheError> {
        let snap = pb::ShardSnapshot::decode(data).map_err(|e| RaftCacheError::Corrupt(format!("shard snapshot: {e}")))?;
        let mut state = ShardState {
            clock: snap.clock,
            ..ShardState::default()
        };
        for e in snap.entries {
            if let Some(t) = e.expires_at {
                state.next_expiry = Some(state.next_expiry.map_or(t, |n| n.min(t)));
            }
            state.objects.entry(e.object).or_default().insert(
                e.entry,
                CacheEntry {
                    value: e.value,
                    version: e.version,
                    written_at: e.written_at,
                    expires_at: e.expires_at,
                },
            );
        }
        state.members = snap.members.into_iter().map(|m| (m.id, m.address)).collect();
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(now: i64, entry: &str, ttl: Option<i64>, mode: pb::WriteMode, expected: u64) -> pb::Command {
        pb::Command {
            now,
            op: Some(pb::command::Op::Write(pb::Write {
                object: "o".into(),
                entry: entry.into(),
                value: b"v".to_vec(),
                ttl_nanos: ttl,
                mode: mode as i32,
                expected_version: expected,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn expiry_follows_the_command_clock_not_the_replica() {
        let mut s = ShardState::default();
        s.apply(1, &write(100, "a", Some(50), pb::WriteMode::Always, 0));
        assert!(s.get("o", "a").is_some());
        // A command with an older clock (a new leader whose clock lags) does not move time back.
        s.apply(2, &write(90, "b", None, pb::WriteMode::Always, 0));
        assert_eq!(s.clock, 100);
        assert!(s.get("o", "a").is_some());
        assert!(s.expiry_due(150));
        s.apply(3, &pb::Command { now: 150, op: Some(pb::command::Op::Expire(pb::Expire {})), ..Default::default() });
        assert!(s.get("o", "a").is_none());
        assert_eq!(s.entry_count(), 1);
    }

    #[test]
    fn conditional_writes_and_snapshot_round_trip() {
        let mut s = ShardState::default();
        assert_eq!(s.apply(5, &write(1, "a", None, pb::WriteMode::IfAbsent, 0)), Applied::Written(CasOutcome::Written(5)));
        assert!(matches!(s.apply(6, &write(2, "a", None, pb::WriteMode::IfAbsent, 0)), Applied::Written(CasOutcome::Mismatch(Some(_)))));
        assert!(matches!(s.apply(7, &write(3, "a", None, pb::WriteMode::IfVersion, 4)), Applied::Written(CasOutcome::Mismatch(Some(_)))));
        assert_eq!(s.apply(8, &write(4, "a", Some(1000), pb::WriteMode::IfVersion, 5)), Applied::Written(CasOutcome::Written(8)));
        s.apply(9, &write(5, "b", None, pb::WriteMode::Always, 0));
        let names: Vec<String> = s.list("o").into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["b", "a"]);
        s.members.insert(2, "127.0.0.1:1".into());
        let back = ShardState::from_snapshot(&s.to_snapshot()).unwrap();
        assert_eq!(back, s);
    }
}
