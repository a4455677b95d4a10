//! The multi-Raft core of one node: one raft-rs group per shard, the shard state machines, and
//! the requests in flight. A pure state machine driven by its caller: ticks, peer messages and
//! requests go in; durable writes, peer messages (batched per peer) and responses come out. It
//! does no I/O and reads no clock, so the simulation can run many nodes deterministically.
//!
//! Round protocol: feed inputs, `collect()` the writes of every group that has a Ready, make them
//! durable together (one fsync), call `persisted()`, then send `take_messages()` and deliver
//! `take_responses()`. Repeat while `has_ready()`.

use std::collections::BTreeMap;

use kausal_core::cache::{CacheEntry, CasOutcome};
use kausal_proto::raft::v1 as pb;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, Ready, StateRole};

use crate::error::RaftCacheError;
use crate::shard::{Applied, ShardState};
use crate::storage::{DurableGroup, GroupStorage, GroupWrite};

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// ReadIndex: confirmed with a quorum by the leader, served once applied locally.
    Linearizable,
    /// Served from the local replica if it heard from the shard leader within this many ticks.
    Stale { max_staleness_ticks: u64 },
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub node_id: u64,
    pub shards: u32,
    /// Voters of every group when the node starts with no state (static peers, self included).
    /// Empty for a node that joins an existing cluster.
    pub initial_voters: Vec<u64>,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Randomise election timeouts (raft-rs uses its own RNG); off in the simulation, which
    /// jitters ticks from its seed instead.
    pub randomized_election: bool,
    /// Requests not answered within this many ticks fail (outcome unknown for writes).
    pub request_timeout_ticks: u64,
    /// Snapshot and compact a group's log once it holds this many applied entries.
    pub compact_after_entries: u64,
    /// Every this many ticks, a node leading more than its share of groups hands one over.
    pub balance_interval_ticks: u64,
    /// Caps the bytes of entries per append message.
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: usize,
}

impl CoreConfig {
    pub fn new(node_id: u64, shards: u32, initial_voters: Vec<u64>) -> Self {
        CoreConfig {
            node_id,
            shards,
            initial_voters,
            election_ticks: 10,
            heartbeat_ticks: 2,
            randomized_election: true,
            request_timeout_ticks: 50,
            compact_after_entries: 10_000,
            balance_interval_ticks: 20,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
        }
    }
}

/// An operation on the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get { object: String, entry: String },
    List { object: String },
    Write(pb::Write),
    Remove { object: String, entry: String },
}

impl Request {
    pub fn object(&self) -> &str {
        match self {
            Request::Get { object, .. } | Request::List { object } | Request::Remove { object, .. } => object,
            Request::Write(w) => &w.object,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Entry(Option<CacheEntry>),
    Entries(Vec<(String, CacheEntry)>),
    Written(CasOutcome),
    Removed(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not accepted (no known leader, proposal dropped); retrying can help; nothing was written.
    #[error("shard {0} has no leader reachable from this node")]
    NoLeader(u32),
    /// No answer in time; a write may or may not have happened.
    #[error("request timed out")]
    Timeout,
    /// A stale read found this replica too far behind its leader.
    #[error("shard {0} replica is staler than allowed")]
    TooStale(u32),
}

/// Picks the shard of an object: every entry of one object lives in one group.
pub fn shard_of(object: &str, shards: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(object.as_bytes()) % u64::from(shards.max(1))) as u32
}

enum PendingKind {
    Write,
    Read { request: Request, index: Option<u64> },
}

struct Pending {
    shard: u32,
    deadline: u64,
    kind: PendingKind,
}

struct Group {
    shard: u32,
    raw: RawNode<GroupStorage>,
    state: ShardState,
    applied: u64,
    leader: u64,
    last_leader_contact: u64,
    stashed: Option<Ready>,
    /// An `Expire` this node proposed as leader, until this tick.
    expire_in_flight_until: u64,
    /// Conf state changed this round: persisted with the round's write.
    conf_changed: bool,
    compaction: Option<Snapshot>,
}

/// Observable status of one group on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub shard: u32,
    pub leader: u64,
    pub is_leader: bool,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub entries: usize,
}

/// Counters the caller turns into metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreCounters {
    pub proposals: u64,
    pub proposals_dropped: u64,
    pub leader_changes: u64,
    pub snapshots_sent: u64,
    pub snapshots_applied: u64,
    pub compactions: u64,
    pub leader_transfers: u64,
}

pub struct NodeCore {
    config: CoreConfig,
    incarnation: u64,
    groups: BTreeMap<u32, Group>,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    ticks: u64,
    /// Wall clock of the latest input, carried in proposals (TTL base).
    now: i64,
    messages: BTreeMap<u64, Vec<(u32, Message)>>,
    responses: Vec<(u64, Result<Response, RequestError>)>,
    pub counters: CoreCounters,
    logger: slog::Logger,
}

fn raft_config(c: &CoreConfig, applied: u64) -> raft::Config {
    let mut rc = raft::Config {
        id: c.node_id,
        election_tick: c.election_ticks,
        heartbeat_tick: c.heartbeat_ticks,
        applied,
        max_size_per_msg: c.max_size_per_msg,
        max_inflight_msgs: c.max_inflight_msgs,
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::Safe,
        ..Default::default()
    };
    if !c.randomized_election {
        rc.min_election_tick = c.election_ticks;
        rc.max_election_tick = c.election_ticks + 1;
    }
    rc
}

impl NodeCore {
    /// Builds the node from what its log store holds (`durable`, possibly empty). `incarnation`
    /// must differ on every start so answers meant for a previous life are never mistaken.
    pub fn restore(
        config: CoreConfig,
        mut durable: BTreeMap<u32, DurableGroup>,
        incarnation: u64,
    ) -> Result<(NodeCore, Vec<GroupWrite>), RaftCacheError> {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut groups = BTreeMap::new();
        let mut initial = Vec::new();
        for shard in 0..config.shards {
            let d = match durable.remove(&shard) {
                Some(d) => d,
                None => {
                    let cs = ConfState {
                        voters: config.initial_voters.clone(),
                        ..Default::default()
                    };
                    initial.push(GroupWrite {
                        shard,
                        conf_state: Some(cs.clone()),
                        ..Default::default()
                    });
                    DurableGroup {
                        conf_state: cs,
                        ..Default::default()
                    }
                }
            };
            let snap_data = d.snapshot.get_data().to_vec();
            let applied = d.snapshot.get_metadata().index;
            let state = if snap_data.is_empty() {
                ShardState::default()
            } else {
                ShardState::from_snapshot(&snap_data)?
            };
            let raw = RawNode::new(&raft_config(&config, applied), GroupStorage::new(d), &logger)?;
            groups.insert(
                shard,
                Group {
                    shard,
                    raw,
                    state,
                    applied,
                    leader: 0,
                    last_leader_contact: 0,
                    stashed: None,
                    expire_in_flight_until: 0,
                    conf_changed: false,
                    compaction: None,
                },
            );
        }
        Ok((
            NodeCore {
                config,
                incarnation,
                groups,
                pending: BTreeMap::new(),
                next_request: 1,
                ticks: 0,
                now: 0,
                messages: BTreeMap::new(),
                responses: Vec::new(),
                counters: CoreCounters::default(),
                logger,
            },
            initial,
        ))
    }

    pub fn id(&self) -> u64 {
        self.config.node_id
    }

    pub fn shards(&self) -> u32 {
        self.config.shards
    }

    /// One logical tick at wall time `now` (Unix nanos, used only as the TTL base of proposals).
    pub fn tick(&mut self, now: i64) {
        self.ticks += 1;
        self.now = self.now.max(now);
        let ticks = self.ticks;
        for g in self.groups.values_mut() {
            g.raw.tick();
            if g.raw.raft.state == StateRole::Leader {
                g.last_leader_contact = ticks;
                if g.state.expiry_due(self.now) && g.expire_in_flight_until < ticks {
                    let cmd = pb::Command {
                        now: self.now,
                        op: Some(pb::command::Op::Expire(pb::Expire {})),
                        ..Default::default()
                    };
                    if g.raw.propose(Vec::new(), cmd.encode_to_vec()).is_ok() {
                        g.expire_in_flight_until = ticks + self.config.request_timeout_ticks;
                    }
                }
            }
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= ticks)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.responses.push((id, Err(RequestError::Timeout)));
        }
        if self.config.balance_interval_ticks > 0 && ticks.is_multiple_of(self.config.balance_interval_ticks) {
            self.balance_leaders();
        }
    }

    /// A Raft message from a peer for `shard`. Messages for unknown shards are ignored.
    pub fn step(&mut self, shard: u32, msg: Message) {
        let ticks = self.ticks;
        let Some(g) = self.groups.get_mut(&shard) else { return };
        let from_leader = matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        if from_leader && msg.term >= g.raw.raft.term {
            g.last_leader_contact = ticks;
        }
        // Errors are stale or foreign messages (e.g. from a removed peer); raft-rs ignores them.
        let _ = g.raw.step(msg);
    }

    /// Tells the core a peer could not be reached, so its groups slow down sending to it.
    pub fn report_unreachable(&mut self, peer: u64) {
        for g in self.groups.values_mut() {
            g.raw.report_unreachable(peer);
        }
    }

    /// Starts a request at wall time `now`; the answer comes from `take_responses` under the
    /// returned id.
    pub fn submit(&mut self, request: Request, consistency: ReadConsistency, now: i64) -> u64 {
        self.now = self.now.max(now);
        let id = self.next_request;
        self.next_request += 1;
        let shard = shard_of(request.object(), self.config.shards);
        let deadline = self.ticks + self.config.request_timeout_ticks;
        let Some(g) = self.groups.get_mut(&shard) else {
            self.responses.push((id, Err(RequestError::NoLeader(shard))));
            return id;
        };
        if g.raw.raft.leader_id == 0 {
            self.responses.push((id, Err(RequestError::NoLeader(shard))));
            return id;
        }
        match request {
            Request::Write(_) | Request::Remove { .. } => {
                let op = match request {
                    Request::Write(w) => pb::command::Op::Write(w),
                    Request::Remove { object, entry } => pb::command::Op::Remove(pb::Remove { object, entry }),
                    _ => return id,
                };
                let cmd = pb::Command {
                    origin: self.config.node_id,
                    incarnation: self.incarnation,
                    request: id,
                    now: self.now,
                    op: Some(op),
                };
                self.counters.proposals += 1;
                if g.raw.propose(Vec::new(), cmd.encode_to_vec()).is_err() {
                    self.counters.proposals_dropped += 1;
                    self.responses.push((id, Err(RequestError::NoLeader(shard))));
                    return id;
                }
                self.pending.insert(id, Pending { shard, deadline, kind: PendingKind::Write });
            }
            Request::Get { .. } | Request::List { .. } => match consistency {
                ReadConsistency::Linearizable => {
                    g.raw.read_index(read_context(self.incarnation, id));
                    self.pending.insert(
                        id,
                        Pending {
                            shard,
                            deadline,
                            kind: PendingKind::Read { request, index: None },
                        },
                    );
                }
                ReadConsistency::Stale { max_staleness_ticks } => {
                    if self.ticks.saturating_sub(g.last_leader_contact) <= max_staleness_ticks {
                        let r = read(&g.state, &request);
                        self.responses.push((id, Ok(r)));
                    } else {
                        self.responses.push((id, Err(RequestError::TooStale(shard))));
                    }
                }
            },
        }
        id
    }

    /// Proposes adding (`address` Some) or removing a member on every group this node leads or
    /// can forward to. Returns how many groups accepted the proposal.
    pub fn propose_membership(&mut self, node: u64, address: Option<String>) -> usize {
        let mut accepted = 0;
        for g in self.groups.values_mut() {
            let mut cc = ConfChange::default();
            cc.node_id = node;
            let context = match &address {
                Some(a) => {
                    cc.set_change_type(ConfChangeType::AddNode);
                    a.clone().into_bytes()
                }
                None => {
                    cc.set_change_type(ConfChangeType::RemoveNode);
                    Vec::new()
                }
            };
            cc.context = context.clone().into();
            if g.raw.propose_conf_change(context, cc).is_ok() {
                accepted += 1;
            }
        }
        accepted
    }

    /// Asks the leader of `shard` (if this node) to hand leadership to `to`.
    pub fn transfer_leader(&mut self, shard: u32, to: u64) -> bool {
        match self.groups.get_mut(&shard) {
            Some(g) if g.raw.raft.state == StateRole::Leader && to != self.config.node_id => {
                g.raw.transfer_leader(to);
                self.counters.leader_transfers += 1;
                true
            }
            _ => false,
        }
    }

    /// Spreads leadership: a node leading more than ceil(groups / voters) hands one group to
    /// the up-to-date voter leading the fewest.
    fn balance_leaders(&mut self) {
        let me = self.config.node_id;
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for g in self.groups.values() {
            for v in g.raw.raft.prs().conf().voters().ids().iter() {
                counts.entry(v).or_insert(0);
            }
            if g.raw.raft.leader_id != 0 {
                *counts.entry(g.raw.raft.leader_id).or_insert(0) += 1;
            }
        }
        let voters = counts.len().max(1);
        let fair = (self.groups.len() + voters - 1) / voters;
        let mine = counts.get(&me).copied().unwrap_or(0);
        if mine <= fair {
            return;
        }
        for g in self.groups.values_mut() {
            if g.raw.raft.state != StateRole::Leader {
                continue;
            }
            let last = g.raw.raft.raft_log.last_index();
            let target = counts
                .iter()
                .filter(|(id, c)| **id != me && **c + 1 < mine)
                .filter(|(id, _)| g.raw.raft.prs().get(**id).is_some_and(|p| p.matched == last))
                .min_by_key(|(id, c)| (**c, **id))
                .map(|(id, _)| *id);
            if let Some(to) = target {
                g.raw.transfer_leader(to);
                self.counters.leader_transfers += 1;
                return;
            }
        }
    }

    pub fn has_ready(&self) -> bool {
        self.groups.values().any(|g| g.raw.has_ready())
    }

    /// Takes the Ready of every group that has one: applies received snapshots and committed
    /// entries to the state machines and returns what must be made durable before `persisted()`.
    pub fn collect(&mut self) -> Result<Vec<GroupWrite>, RaftCacheError> {
        let mut writes = Vec::new();
        let shards: Vec<u32> = self.groups.keys().copied().collect();
        for shard in shards {
            let Some(g) = self.groups.get_mut(&shard) else { continue };
            if !g.raw.has_ready() || g.stashed.is_some() {
                continue;
            }
            let mut rd = g.raw.ready();
            let mut w = GroupWrite {
                shard,
                ..Default::default()
            };
            if let Some(ss) = rd.ss() {
                if ss.leader_id != g.leader {
                    self.counters.leader_changes += 1;
                    g.leader = ss.leader_id;
                }
            }
            // Leader messages may go before its own append is durable (Raft allows it).
            for m in rd.take_messages() {
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    self.counters.snapshots_sent += 1;
                }
                self.messages.entry(m.to).or_default().push((shard, m));
            }
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                let state = ShardState::from_snapshot(snap.get_data())?;
                let store = &mut g.raw.mut_store().durable;
                store.snapshot = snap.clone();
                store.conf_state = snap.get_metadata().get_conf_state().clone();
                store.entries.clear();
                g.state = state;
                g.applied = snap.get_metadata().index;
                self.counters.snapshots_applied += 1;
                w.received_snapshot = Some(snap);
            }
            for rs in rd.take_read_states() {
                if let Some(id) = parse_read_context(self.incarnation, &rs.request_ctx)
                    && let Some(Pending {
                        kind: PendingKind::Read { index, .. },
                        ..
                    }) = self.pending.get_mut(&id)
                {
                    *index = Some(rs.index);
                }
            }
            let committed = rd.take_committed_entries();
            Self::apply_entries(g, committed, &self.config, self.incarnation, &mut self.pending, &mut self.responses)?;
            let entries = rd.take_entries();
            if !entries.is_empty() {
                let snap_index = g.raw.store().durable.snapshot.get_metadata().index;
                crate::storage::append(&mut g.raw.mut_store().durable.entries, snap_index, &entries);
                w.entries = entries;
            }
            if let Some(hs) = rd.hs() {
                g.raw.mut_store().durable.hard_state = hs.clone();
                w.hard_state = Some(hs.clone());
            }
            if g.conf_changed {
                g.conf_changed = false;
                w.conf_state = Some(g.raw.store().durable.conf_state.clone());
            }
            if let Some(c) = g.compaction.take() {
                w.compaction = Some(c);
                self.counters.compactions += 1;
            }
            g.stashed = Some(rd);
            if !w.is_empty() {
                writes.push(w);
            }
        }
        Ok(writes)
    }

    /// The writes returned by the last `collect()` are durable: release what waited on them.
    pub fn persisted(&mut self) -> Result<(), RaftCacheError> {
        for g in self.groups.values_mut() {
            let Some(mut rd) = g.stashed.take() else { continue };
            for m in rd.take_persisted_messages() {
                self.messages.entry(m.to).or_default().push((g.shard, m));
            }
            let mut light = g.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                g.raw.mut_store().durable.hard_state.commit = commit;
            }
            for m in light.take_messages() {
                self.messages.entry(m.to).or_default().push((g.shard, m));
            }
            let committed = light.take_committed_entries();
            Self::apply_entries(g, committed, &self.config, self.incarnation, &mut self.pending, &mut self.responses)?;
            g.raw.advance_apply();
        }
        Ok(())
    }

    fn apply_entries(
        g: &mut Group,
        entries: Vec<Entry>,
        config: &CoreConfig,
        incarnation: u64,
        pending: &mut BTreeMap<u64, Pending>,
        responses: &mut Vec<(u64, Result<Response, RequestError>)>,
    ) -> Result<(), RaftCacheError> {
        for e in entries {
            if e.index <= g.applied {
                continue;
            }
            g.applied = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        continue;
                    }
                    let cmd = pb::Command::decode(&e.data[..]).map_err(|err| RaftCacheError::Corrupt(format!("entry {}: {err}", e.index)))?;
                    let applied = g.state.apply(e.index, &cmd);
                    if cmd.origin == config.node_id
                        && cmd.incarnation == incarnation
                        && pending.get(&cmd.request).is_some_and(|p| matches!(p.kind, PendingKind::Write))
                    {
                        pending.remove(&cmd.request);
                        let r = match applied {
                            Applied::Written(o) => Response::Written(o),
                            Applied::Removed(b) => Response::Removed(b),
                            Applied::Expired => Response::Removed(false),
                        };
                        responses.push((cmd.request, Ok(r)));
                    }
                }
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    cc.merge_from_bytes(&e.data).map_err(|err| RaftCacheError::Corrupt(format!("conf change {}: {err}", e.index)))?;
                    let cs: ConfState = g.raw.apply_conf_change(&cc)?;
                    match cc.get_change_type() {
                        ConfChangeType::RemoveNode => {
                            g.state.members.remove(&cc.node_id);
                        }
                        _ => {
                            if let Ok(a) = String::from_utf8(cc.context.to_vec())
                                && !a.is_empty()
                            {
                                g.state.members.insert(cc.node_id, a);
                            }
                        }
                    }
                    g.raw.mut_store().durable.conf_state = cs;
                    g.conf_changed = true;
                }
                EntryType::EntryConfChangeV2 => {
                    return Err(RaftCacheError::Corrupt(format!("entry {}: joint conf changes are not used", e.index)));
                }
            }
        }
        // Reads whose ReadIndex is now applied.
        let ready_reads: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| p.shard == g.shard && matches!(p.kind, PendingKind::Read { index: Some(i), .. } if i <= g.applied))
            .map(|(id, _)| *id)
            .collect();
        for id in ready_reads {
            if let Some(Pending {
                kind: PendingKind::Read { request, .. },
                ..
            }) = pending.remove(&id)
            {
                responses.push((id, Ok(read(&g.state, &request))));
            }
        }
        // Snapshot and compact a long applied log.
        let store = g.raw.store();
        let first = store.first();
        if g.applied >= first && g.applied - first + 1 >= config.compact_after_entries && g.compaction.is_none() {
            let term = store.term_of(g.applied)?;
            let mut snap = Snapshot::default();
            snap.set_data(g.state.to_snapshot().into());
            let meta = snap.mut_metadata();
            meta.index = g.applied;
            meta.term = term;
            meta.set_conf_state(store.durable.conf_state.clone());
            let durable = &mut g.raw.mut_store().durable;
            crate::storage::compact(&mut durable.entries, snap.get_metadata().index);
            durable.snapshot = snap.clone();
            g.compaction = Some(snap);
        }
        Ok(())
    }

    /// Peer messages produced so far, grouped by destination.
    pub fn take_messages(&mut self) -> BTreeMap<u64, Vec<(u32, Message)>> {
        std::mem::take(&mut self.messages)
    }

    pub fn take_responses(&mut self) -> Vec<(u64, Result<Response, RequestError>)> {
        std::mem::take(&mut self.responses)
    }

    pub fn status(&self) -> Vec<GroupStatus> {
        self.groups
            .values()
            .map(|g| GroupStatus {
                shard: g.shard,
                leader: g.raw.raft.leader_id,
                is_leader: g.raw.raft.state == StateRole::Leader,
                term: g.raw.raft.term,
                commit: g.raw.raft.raft_log.committed,
                applied: g.applied,
                first_index: g.raw.store().first(),
                last_index: g.raw.store().last(),
                voters: g.raw.raft.prs().conf().voters().ids().iter().collect(),
                entries: g.state.entry_count(),
            })
            .collect()
    }

    /// Member addresses learned from conf changes, over all groups.
    pub fn learned_addresses(&self) -> BTreeMap<u64, String> {
        let mut out = BTreeMap::new();
        for g in self.groups.values() {
            for (id, a) in &g.state.members {
                out.insert(*id, a.clone());
            }
        }
        out
    }

    /// Hands a snapshot report back (after a MsgSnapshot was or was not delivered).
    pub fn report_snapshot(&mut self, shard: u32, peer: u64, delivered: bool) {
        if let Some(g) = self.groups.get_mut(&shard) {
            let status = if delivered { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
            g.raw.report_snapshot(peer, status);
        }
    }

    pub fn logger(&self) -> &slog::Logger {
        &self.logger
    }
}

fn read(state: &ShardState, request: &Request) -> Response {
    match request {
        Request::Get { object, entry } => Response::Entry(state.get(object, entry)),
        Request::List { object } => Response::Entries(state.list(object)),
        // Writes never wait as reads.
        Request::Write(_) | Request::Remove { .. } => Response::Entry(None),
    }
}

fn read_context(incarnation: u64, id: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&incarnation.to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v
}

fn parse_read_context(incarnation: u64, ctx: &[u8]) -> Option<u64> {
    let (inc, id) = ctx.split_at_checked(8)?;
    if u64::from_be_bytes(inc.try_into().ok()?) != incarnation {
        return None;
    }
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Encodes a Raft message for the wire.
pub fn encode_message(m: &Message) -> Result<Vec<u8>, RaftCacheError> {
    m.write_to_bytes().map_err(|e| RaftCacheError::Transport(format!("encoding raft message: {e}")))
}

pub fn decode_message(b: &[u8]) -> Result<Message, RaftCacheError> {
    let mut m = Message::default();
    m.merge_from_bytes(b).map_err(|e| RaftCacheError::Transport(format!("decoding raft message: {e}")))?;
    Ok(m)
}
