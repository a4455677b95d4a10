//! Prometheus metrics of a raftcache node, registered in the process registry.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::{CoreCounters, GroupStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub proposals: Counter,
    pub proposals_dropped: Counter,
    pub leader_changes: Counter,
    pub snapshots_sent: Counter,
    pub snapshots_applied: Counter,
    pub compactions: Counter,
    pub fsyncs: Counter,
    pub fsync_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub log_entries: Family<ShardLabels, Gauge>,
    pub shard_leader: Family<ShardLabels, Gauge>,
    last: Arc<std::sync::Mutex<CoreCounters>>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            proposals: Counter::default(),
            proposals_dropped: Counter::default(),
            leader_changes: Counter::default(),
            snapshots_sent: Counter::default(),
            snapshots_applied: Counter::default(),
            compactions: Counter::default(),
            fsyncs: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            log_entries: Family::default(),
            shard_leader: Family::default(),
            last: Arc::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("raftcache");
        r.register("proposals", "Writes proposed by this node", self.proposals.clone());
        r.register("proposals_dropped", "Proposals refused (no leader)", self.proposals_dropped.clone());
        r.register("leader_changes", "Shard leader changes seen by this node", self.leader_changes.clone());
        r.register("snapshots_sent", "Snapshots sent to lagging peers", self.snapshots_sent.clone());
        r.register("snapshots_applied", "Snapshots received and applied", self.snapshots_applied.clone());
        r.register("compactions", "Log compactions (snapshot + truncation)", self.compactions.clone());
        r.register("fsyncs", "Durable log store commits (one per round of ready groups)", self.fsyncs.clone());
        r.register("fsync_seconds", "Time of one log store commit", self.fsync_seconds.clone());
        r.register("commit_seconds", "Time from a write's submission to its application", self.commit_seconds.clone());
        r.register("log_entries", "Entries in the log of each shard", self.log_entries.clone());
        r.register("shard_leader", "Node id of each shard's leader as seen here (0 = none)", self.shard_leader.clone());
    }

    pub fn observe_status(&self, groups: &[GroupStatus], counters: &CoreCounters) {
        for g in groups {
            let l = ShardLabels { shard: g.shard.to_string() };
            self.log_entries.get_or_create(&l).set((g.last_index + 1).saturating_sub(g.first_index) as i64);
            self.shard_leader.get_or_create(&l).set(g.leader as i64);
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        self.proposals.inc_by(counters.proposals.saturating_sub(last.proposals));
        self.proposals_dropped.inc_by(counters.proposals_dropped.saturating_sub(last.proposals_dropped));
        self.leader_changes.inc_by(counters.leader_changes.saturating_sub(last.leader_changes));
        self.snapshots_sent.inc_by(counters.snapshots_sent.saturating_sub(last.snapshots_sent));
        self.snapshots_applied.inc_by(counters.snapshots_applied.saturating_sub(last.snapshots_applied));
        self.compactions.inc_by(counters.compactions.saturating_sub(last.compactions));
        *last = counters.clone();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
