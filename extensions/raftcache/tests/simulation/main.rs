//! Deterministic simulation of the multi-Raft core: N nodes over a simulated network that drops,
//! delays and partitions, nodes that crash (losing everything not persisted) and restart from
//! their durable log, and clients issuing get/put/create/CAS/delete. Each seed's history is
//! checked for linearizability; a failure prints the seed and the shortest failing history found.
//! `SIM_SEEDS=n` sets how many seeds run (default 200), `SIM_SEED=s` replays one.

mod linearizability;

use std::collections::BTreeMap;

use kausal_core::cache::CasOutcome;
use kausal_extension_raftcache::core::{CoreConfig, NodeCore, ReadConsistency, Request, RequestError, Response};
use kausal_extension_raftcache::storage::DurableGroup;
use kausal_proto::raft::v1 as pb;
use linearizability::{Event, Op, Outcome, find_violation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use raft::eraftpb::Message;

const SHARDS: u32 = 4;
const OBJECTS: [&str; 3] = ["pods/a", "pods/b", "deployments/c"];
const ENTRIES: [&str; 2] = ["diff/1", "snapshot"];

struct SimNode {
    id: u64,
    core: Option<NodeCore>,
    disk: BTreeMap<u32, DurableGroup>,
    incarnation: u64,
    /// request id → index into the history of the client op waiting on it
    waiting: BTreeMap<u64, usize>,
    down_until: u64,
}

struct InFlight {
    deliver_at: u64,
    seq: u64,
    from: u64,
    to: u64,
    shard: u32,
    msg: Message,
}

struct Client {
    busy: bool,
    seen_versions: BTreeMap<String, u64>,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    nodes: Vec<SimNode>,
    net: Vec<InFlight>,
    net_seq: u64,
    /// Nodes on the minority side of a partition; messages across it are lost.
    isolated: Vec<u64>,
    time: u64,
    clock: u64,
    history: Vec<Event>,
    /// history index → (client, request submitted to node, still open)
    clients: Vec<Client>,
    next_value: u64,
    drop_rate: f64,
    acknowledged_after_heal: usize,
}

fn config(id: u64, voters: &[u64]) -> CoreConfig {
    let mut c = CoreConfig::new(id, SHARDS, voters.to_vec());
    c.randomized_election = false;
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.request_timeout_ticks = 30;
    c.compact_after_entries = 16;
    c.balance_interval_ticks = 25;
    c
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = if rng.random_bool(0.3) { 5 } else { 3 };
        let voters: Vec<u64> = (1..=n).collect();
        let mut nodes = Vec::new();
        for &id in &voters {
            let mut node = SimNode {
                id,
                core: None,
                disk: BTreeMap::new(),
                incarnation: 0,
                waiting: BTreeMap::new(),
                down_until: 0,
            };
            start(&mut node, &voters);
            nodes.push(node);
        }
        let drop_rate = rng.random_range(0.0..0.15);
        Sim {
            seed,
            rng,
            nodes,
            net: Vec::new(),
            net_seq: 0,
            isolated: Vec::new(),
            time: 0,
            clock: 0,
            history: Vec::new(),
            clients: (0..4)
                .map(|_| Client {
                    busy: false,
                    seen_versions: BTreeMap::new(),
                })
                .collect(),
            next_value: 1,
            drop_rate,
            acknowledged_after_heal: 0,
        }
    }

    fn voters(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn tick_clock(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn cut(&self, a: u64, b: u64) -> bool {
        self.isolated.contains(&a) != self.isolated.contains(&b)
    }

    /// Runs Ready rounds on node `i` until it is quiet, moving messages to the network and
    /// answers to the history.
    fn drive(&mut self, i: usize) {
        loop {
            let node = &mut self.nodes[i];
            let Some(core) = node.core.as_mut() else { return };
            let writes = core.collect().expect("collect");
            for w in &writes {
                node.disk.entry(w.shard).or_default().apply(w);
            }
            core.persisted().expect("persisted");
            let messages = core.take_messages();
            let responses = core.take_responses();
            let more = core.has_ready();
            let from = node.id;
            for (to, batch) in messages {
                for (shard, msg) in batch {
                    if self.rng.random_bool(self.drop_rate) {
                        continue;
                    }
                    let delay = self.rng.random_range(0..3);
                    self.net_seq += 1;
                    self.net.push(InFlight {
                        deliver_at: self.time + delay,
                        seq: self.net_seq,
                        from,
                        to,
                        shard,
                        msg,
                    });
                }
            }
            for (request, result) in responses {
                let Some(h) = self.nodes[i].waiting.remove(&request) else { continue };
                self.finish(h, result);
            }
            if !more {
                return;
            }
        }
    }

    fn finish(&mut self, h: usize, result: Result<Response, RequestError>) {
        let ret = self.tick_clock();
        let ev = &mut self.history[h];
        self.clients[ev.client].busy = false;
        let outcome = match result {
            Ok(Response::Entry(e)) => Outcome::Got(e.map(|e| (decode_value(&e.value), e.version))),
            Ok(Response::Written(CasOutcome::Written(v))) => Outcome::Written(v),
            Ok(Response::Written(CasOutcome::Mismatch(e))) => Outcome::Mismatch(e.map(|e| (decode_value(&e.value), e.version))),
            Ok(Response::Removed(b)) => Outcome::Removed(b),
            Ok(Response::Entries(_)) => Outcome::Unknown,
            // Nothing happened: drop it from the history (reads and refused proposals).
            Err(RequestError::NoLeader(_)) | Err(RequestError::TooStale(_)) => {
                ev.ret = Some(u64::MAX);
                ev.outcome = Outcome::Unknown;
                return;
            }
            Err(RequestError::Timeout) => {
                if ev.op == Op::Get {
                    ev.ret = Some(u64::MAX);
                }
                return;
            }
        };
        match &outcome {
            Outcome::Got(Some((_, v))) | Outcome::Mismatch(Some((_, v))) | Outcome::Written(v) => {
                self.clients[ev.client].seen_versions.insert(ev.key.clone(), *v);
            }
            _ => {}
        }
        if self.isolated.is_empty() && self.nodes.iter().all(|n| n.core.is_some()) {
            self.acknowledged_after_heal += 1;
        }
        ev.ret = Some(ret);
        ev.outcome = outcome;
    }

    fn client_op(&mut self, c: usize) {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].core.is_some()).collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.rng.random_range(0..up.len())];
        let object = OBJECTS[self.rng.random_range(0..OBJECTS.len())];
        let entry = ENTRIES[self.rng.random_range(0..ENTRIES.len())];
        let key = format!("{object}#{entry}");
        let value = self.next_value;
        let write = |mode: pb::WriteMode, expected: u64| {
            Request::Write(pb::Write {
                object: object.into(),
                entry: entry.into(),
                value: value.to_be_bytes().to_vec(),
                ttl_nanos: None,
                mode: mode as i32,
                expected_version: expected,
            })
        };
        let (op, request) = match self.rng.random_range(0..10) {
            0..=3 => (Op::Get, Request::Get { object: object.into(), entry: entry.into() }),
            4..=5 => (Op::Put { value }, write(pb::WriteMode::Always, 0)),
            6 => (Op::CreateIfAbsent { value }, write(pb::WriteMode::IfAbsent, 0)),
            7..=8 => {
                let expected = self.clients[c].seen_versions.get(&key).copied().unwrap_or(0);
                (Op::Cas { expected, value }, write(pb::WriteMode::IfVersion, expected))
            }
            _ => (Op::Delete, Request::Remove { object: object.into(), entry: entry.into() }),
        };
        self.next_value += 1;
        let call = self.tick_clock();
        let node_id = self.nodes[i].id;
        self.history.push(Event {
            client: c,
            node: node_id,
            key,
            op,
            call,
            ret: None,
            outcome: Outcome::Unknown,
        });
        let h = self.history.len() - 1;
        self.clients[c].busy = true;
        let now = self.time as i64 * 1_000_000;
        let Some(core) = self.nodes[i].core.as_mut() else { return };
        let request_id = core.submit(request, ReadConsistency::Linearizable, now);
        self.nodes[i].waiting.insert(request_id, h);
        self.drive(i);
    }

    fn crash(&mut self, i: usize, until: u64) {
        let node = &mut self.nodes[i];
        node.core = None;
        node.down_until = until;
        // Writes in flight have unknown outcomes; reads simply never returned.
        let waiting = std::mem::take(&mut node.waiting);
        for (_, h) in waiting {
            let ev = &mut self.history[h];
            self.clients[ev.client].busy = false;
            if ev.op == Op::Get {
                ev.ret = Some(u64::MAX);
            }
        }
        self.net.retain(|m| m.to != node.id);
    }

    fn chaos(&mut self, healed: bool) {
        let n = self.nodes.len();
        let voters = self.voters();
        for i in 0..n {
            if self.nodes[i].core.is_none() && (healed || self.nodes[i].down_until <= self.time) {
                start(&mut self.nodes[i], &voters);
                self.drive(i);
            }
        }
        if healed {
            self.isolated.clear();
            return;
        }
        let down = self.nodes.iter().filter(|n| n.core.is_none()).count();
        if self.rng.random_bool(0.01) && down < n / 2 + 1 {
            let i = self.rng.random_range(0..n);
            if self.nodes[i].core.is_some() {
                let until = self.time + self.rng.random_range(5..60);
                self.crash(i, until);
            }
        }
        if self.rng.random_bool(0.01) {
            if self.isolated.is_empty() {
                let k = self.rng.random_range(1..=n / 2);
                let mut ids = voters.clone();
                for _ in 0..k {
                    let j = self.rng.random_range(0..ids.len());
                    self.isolated.push(ids.remove(j));
                }
            } else {
                self.isolated.clear();
            }
        }
    }

    fn step(&mut self, healed: bool) {
        self.time += 1;
        self.chaos(healed);
        let now = self.time as i64 * 1_000_000;
        for i in 0..self.nodes.len() {
            // Jittered ticks stand in for randomised election timeouts, from the seed.
            if self.rng.random_bool(0.85)
                && let Some(core) = self.nodes[i].core.as_mut()
            {
                core.tick(now);
                self.drive(i);
            }
        }
        let mut due: Vec<InFlight> = Vec::new();
        let mut rest = Vec::new();
        for m in self.net.drain(..) {
            if m.deliver_at <= self.time {
                due.push(m);
            } else {
                rest.push(m);
            }
        }
        self.net = rest;
        due.sort_by_key(|m| (m.deliver_at, m.seq));
        for m in due {
            if self.cut(m.from, m.to) {
                continue;
            }
            let Some(i) = self.nodes.iter().position(|n| n.id == m.to) else { continue };
            if let Some(core) = self.nodes[i].core.as_mut() {
                core.step(m.shard, m.msg);
                self.drive(i);
            }
        }
        for c in 0..self.clients.len() {
            if !self.clients[c].busy && self.rng.random_bool(0.3) {
                self.client_op(c);
            }
        }
    }
}

fn start(node: &mut SimNode, voters: &[u64]) {
    node.incarnation += 1;
    let (core, initial) = NodeCore::restore(config(node.id, voters), node.disk.clone(), node.incarnation).expect("restore");
    for w in &initial {
        node.disk.entry(w.shard).or_default().apply(w);
    }
    node.core = Some(core);
}

fn decode_value(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

/// Runs one seed; returns the number of operations acknowledged after the final heal.
fn run(seed: u64) -> Result<usize, String> {
    let mut sim = Sim::new(seed);
    for _ in 0..400 {
        sim.step(false);
    }
    for _ in 0..150 {
        sim.step(true);
    }
    // Operations never answered are unknown: outcome open, return at infinity.
    let history: Vec<Event> = sim
        .history
        .iter()
        .filter(|e| e.ret != Some(u64::MAX))
        .map(|e| {
            let mut e = e.clone();
            if e.ret.is_none() {
                e.outcome = Outcome::Unknown;
            }
            e
        })
        .collect();
    if let Some((key, minimal)) = find_violation(&history) {
        let mut text = format!(
            "seed {} ({} nodes): history of {key:?} is not linearizable; shortest failing history:\n",
            sim.seed,
            sim.nodes.len()
        );
        for e in minimal {
            text.push_str(&format!(
                "  client {} node {} [{} .. {}] {:?} -> {:?}\n",
                e.client,
                e.node,
                e.call,
                e.ret.map_or("?".to_string(), |r| r.to_string()),
                e.op,
                e.outcome
            ));
        }
        return Err(text);
    }
    if std::env::var("SIM_VERBOSE").is_ok() {
        let ok = history.iter().filter(|e| e.ret.is_some()).count();
        let writes = history.iter().filter(|e| matches!(e.outcome, Outcome::Written(_))).count();
        let snaps: u64 = sim.nodes.iter().filter_map(|n| n.core.as_ref()).map(|c| c.counters.snapshots_applied + c.counters.compactions).sum();
        eprintln!("seed {seed}: {} ops, {ok} answered, {writes} written, {} after heal, snapshots+compactions {snaps}", history.len(), sim.acknowledged_after_heal);
    }
    Ok(sim.acknowledged_after_heal)
}

#[test]
fn seeded_histories_are_linearizable_under_faults() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => {
            let n: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
            (0..n).collect()
        }
    };
    let mut failures = Vec::new();
    let mut starved = Vec::new();
    for &seed in &seeds {
        match run(seed) {
            Ok(0) => starved.push(seed),
            Ok(_) => {}
            Err(text) => failures.push(text),
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds violated linearizability:\n{}", failures.len(), seeds.len(), failures.join("\n"));
    // Once the network heals and every node is back, the cluster must serve requests again.
    assert!(starved.is_empty(), "no request succeeded after healing with seeds {starved:?}");
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let run_once = |seed| {
        let mut sim = Sim::new(seed);
        for _ in 0..200 {
            sim.step(false);
        }
        sim.history.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>()
    };
    assert_eq!(run_once(11), run_once(11));
}
