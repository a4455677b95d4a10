//! The thin edges around `NodeCore`: a driver thread that owns the core and the log store (ticks,
//! inputs, one durable write per round, then messages and answers out), a gRPC transport that
//! batches every group's messages per peer, and the handle the cache and admin API talk to.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kausal_proto::raft::v1 as pb;
use kausal_proto::raft::v1::raft_transport_client::RaftTransportClient;
use kausal_proto::raft::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use raft::eraftpb::MessageType;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::config::{RaftCacheConfig, TlsConfig};
use crate::core::{CoreConfig, GroupStatus, NodeCore, ReadConsistency, Request, RequestError, Response, decode_message, encode_message};
use crate::error::RaftCacheError;
use crate::logstore::LogStore;
use crate::metrics::Metrics;

pub type Reply = oneshot::Sender<Result<Response, RequestError>>;

pub enum Input {
    Batch(pb::MessageBatch),
    Submit(Request, ReadConsistency, Reply),
    Membership { node: u64, address: Option<String>, reply: oneshot::Sender<usize> },
    Transfer { shard: u32, to: u64, reply: oneshot::Sender<bool> },
    Status(oneshot::Sender<NodeStatus>),
    Unreachable { peer: u64, snapshots: Vec<u32> },
    Shutdown,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub members: BTreeMap<u64, String>,
    pub shards: Vec<ShardStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStatus {
    pub shard: u32,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub entries: usize,
}

impl From<GroupStatus> for ShardStatus {
    fn from(g: GroupStatus) -> Self {
        ShardStatus {
            shard: g.shard,
            leader: g.leader,
            term: g.term,
            commit: g.commit,
            applied: g.applied,
            first_index: g.first_index,
            last_index: g.last_index,
            voters: g.voters,
            entries: g.entries,
        }
    }
}

/// What the cache and the admin API hold: a way into the driver.
#[derive(Clone)]
pub struct NodeHandle {
    pub inputs: SyncSender<Input>,
    pub node_id: u64,
    pub consistency: ReadConsistency,
    pub request_timeout: Duration,
}

impl NodeHandle {
    pub async fn request(&self, request: Request) -> Result<Response, RequestError> {
        let (tx, rx) = oneshot::channel();
        match self.inputs.try_send(Input::Submit(request, self.consistency, tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return Err(RequestError::NoLeader(u32::MAX)),
        }
        match tokio::time::timeout(self.request_timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            _ => Err(RequestError::Timeout),
        }
    }

    pub async fn status(&self) -> Option<NodeStatus> {
        let (tx, rx) = oneshot::channel();
        self.inputs.try_send(Input::Status(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn membership(&self, node: u64, address: Option<String>) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.inputs.try_send(Input::Membership { node, address, reply }).is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    pub async fn transfer(&self, shard: u32, to: u64) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.inputs.try_send(Input::Transfer { shard, to, reply }).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// A running node: driver thread, transport server and peer senders.
pub struct RunningNode {
    pub handle: NodeHandle,
    driver: Option<std::thread::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
    stop_server: Option<oneshot::Sender<()>>,
}

impl RunningNode {
    pub async fn stop(mut self) {
        let _ = self.handle.inputs.try_send(Input::Shutdown);
        if let Some(s) = self.stop_server.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.server).await;
        if let Some(d) = self.driver.take() {
            let _ = tokio::task::spawn_blocking(move || d.join()).await;
        }
    }
}

fn tls_files(t: &TlsConfig) -> Result<(Identity, Certificate), RaftCacheError> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| RaftCacheError::Transport(format!("reading {}: {e}", p.display())));
    let identity = Identity::from_pem(read(&t.cert_file)?, read(&t.key_file)?);
    let ca = Certificate::from_pem(read(&t.ca_file)?);
    Ok((identity, ca))
}

/// The node's input queue and the handle onto it; the handle works before `start` (requests
/// wait in the bounded queue).
pub fn handle(config: &RaftCacheConfig) -> (NodeHandle, Receiver<Input>) {
    let (inputs, rx) = sync_channel::<Input>(16_384);
    let consistency = match config.read_consistency {
        crate::config::ReadMode::Linearizable => ReadConsistency::Linearizable,
        crate::config::ReadMode::Stale => ReadConsistency::Stale {
            max_staleness_ticks: config.ticks(config.max_staleness),
        },
    };
    let handle = NodeHandle {
        inputs,
        node_id: config.node_id,
        consistency,
        request_timeout: config.request_timeout,
    };
    (handle, rx)
}

/// Opens the log store, restores the core and starts everything. Must run inside a Tokio runtime.
pub async fn start(config: &RaftCacheConfig, metrics: Metrics, handle: NodeHandle, rx: Receiver<Input>) -> Result<RunningNode, RaftCacheError> {
    let dir = config.data_dir.clone();
    let fsync = config.fsync;
    let (store, durable) = tokio::task::spawn_blocking(move || {
        let mut store = LogStore::open(&dir, fsync)?;
        let durable = store.load()?;
        Ok::<_, RaftCacheError>((store, durable))
    })
    .await
    .map_err(|e| RaftCacheError::Store(e.to_string()))??;

    let voters = if config.join { Vec::new() } else { config.peers.iter().map(|p| p.id).collect() };
    let mut cc = CoreConfig::new(config.node_id, config.shards, voters);
    cc.election_ticks = config.election_ticks;
    cc.heartbeat_ticks = config.heartbeat_ticks;
    cc.request_timeout_ticks = config.ticks(config.request_timeout);
    cc.compact_after_entries = config.snapshot_entries;
    cc.balance_interval_ticks = (cc.election_ticks as u64) * 5;
    let incarnation: u64 = rand::random();
    let (core, initial) = NodeCore::restore(cc, durable, incarnation)?;

    let inputs = handle.inputs.clone();

    let tls = match &config.tls {
        Some(t) => Some((tls_files(t)?, t.server_name.clone())),
        None => None,
    };
    let static_peers: BTreeMap<u64, String> = config.peers.iter().map(|p| (p.id, p.address.clone())).collect();
    let peers = Peers {
        me: config.node_id,
        static_peers,
        senders: Mutex::new(BTreeMap::new()),
        tls: tls.clone(),
        inputs: inputs.clone(),
        runtime: tokio::runtime::Handle::current(),
    };

    let addr: std::net::SocketAddr = config
        .listen
        .parse()
        .map_err(|_| RaftCacheError::Transport(format!("bad listen address {}", config.listen)))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RaftCacheError::Transport(format!("cannot listen on {addr}: {e}")))?;
    let mut builder = Server::builder();
    if let Some(((identity, ca), _)) = &tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity.clone()).client_ca_root(ca.clone()))
            .map_err(|e| RaftCacheError::Transport(e.to_string()))?;
    }
    let service = RaftTransportServer::new(TransportService { inputs: inputs.clone() }).max_decoding_message_size(256 << 20);
    let (stop_server, stopped) = oneshot::channel::<()>();
    let incoming = tokio_stream_listener(listener);
    let server = tokio::spawn(async move {
        let r = builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "raftcache transport stopped");
        }
    });

    let tick = config.tick_interval;
    let driver = std::thread::Builder::new()
        .name(format!("raftcache-{}", config.node_id))
        .spawn(move || {
            let mut d = Driver {
                core,
                store,
                rx,
                peers,
                waiting: BTreeMap::new(),
                metrics,
                tick,
            };
            if let Err(e) = d.run(initial) {
                tracing::error!(error = %e, "raftcache node stopped");
            }
        })
        .map_err(|e| RaftCacheError::Store(format!("spawning driver: {e}")))?;

    Ok(RunningNode {
        handle,
        driver: Some(driver),
        server,
        stop_server: Some(stop_server),
    })
}

fn tokio_stream_listener(listener: tokio::net::TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}

struct TransportService {
    inputs: SyncSender<Input>,
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn send(&self, request: tonic::Request<pb::MessageBatch>) -> Result<tonic::Response<pb::BatchAck>, tonic::Status> {
        match self.inputs.try_send(Input::Batch(request.into_inner())) {
            Ok(()) => Ok(tonic::Response::new(pb::BatchAck {})),
            Err(TrySendError::Full(_)) => Err(tonic::Status::resource_exhausted("raftcache node is overloaded")),
            Err(TrySendError::Disconnected(_)) => Err(tonic::Status::unavailable("raftcache node is stopping")),
        }
    }
}

/// One sender task per peer; each drains whatever queued into one batch per RPC.
struct Peers {
    me: u64,
    static_peers: BTreeMap<u64, String>,
    senders: Mutex<BTreeMap<u64, (String, mpsc::Sender<pb::GroupMessage>)>>,
    tls: Option<((Identity, Certificate), String)>,
    inputs: SyncSender<Input>,
    runtime: tokio::runtime::Handle,
}

impl Peers {
    fn send(&self, peer: u64, address: Option<&String>, messages: Vec<pb::GroupMessage>) -> bool {
        let Some(address) = address.or_else(|| self.static_peers.get(&peer)) else { return false };
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let stale = senders.get(&peer).is_some_and(|(a, _)| a != address);
        if stale || !senders.contains_key(&peer) {
            let (tx, rx) = mpsc::channel(65_536);
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"));
            let Ok(mut endpoint) = endpoint else { return false };
            endpoint = endpoint.tcp_nodelay(true).connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(10));
            if let Some(((identity, ca), name)) = &self.tls {
                match endpoint.tls_config(ClientTlsConfig::new().ca_certificate(ca.clone()).identity(identity.clone()).domain_name(name.clone())) {
                    Ok(e) => endpoint = e,
                    Err(e) => {
                        tracing::error!(error = %e, "raftcache TLS client config");
                        return false;
                    }
                }
            }
            // The driver thread is outside the runtime; the lazy channel needs its context.
            let _runtime = self.runtime.enter();
            let channel = endpoint.connect_lazy();
            let inputs = self.inputs.clone();
            let (me, to) = (self.me, peer);
            self.runtime.spawn(peer_sender(me, to, channel, rx, inputs));
            senders.insert(peer, (address.clone(), tx));
        }
        let Some((_, tx)) = senders.get(&peer) else { return false };
        for m in messages {
            if tx.try_send(m).is_err() {
                return false;
            }
        }
        true
    }
}

async fn peer_sender(me: u64, to: u64, channel: Channel, mut rx: mpsc::Receiver<pb::GroupMessage>, inputs: SyncSender<Input>) {
    let mut client = RaftTransportClient::new(channel).max_encoding_message_size(256 << 20);
    while let Some(first) = rx.recv().await {
        let mut messages = vec![first];
        while messages.len() < 4096 {
            match rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let snapshots: Vec<u32> = messages
            .iter()
            .filter(|m| decode_message(&m.message).is_ok_and(|d| d.get_msg_type() == MessageType::MsgSnapshot))
            .map(|m| m.shard)
            .collect();
        let batch = pb::MessageBatch { from: me, to, messages };
        if let Err(e) = client.send(batch).await {
            tracing::debug!(peer = to, error = %e, "raftcache peer unreachable");
            let _ = inputs.try_send(Input::Unreachable { peer: to, snapshots });
            // Do not spin on a dead peer; Raft resends what matters.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Driver {
    core: NodeCore,
    store: LogStore,
    rx: Receiver<Input>,
    peers: Peers,
    waiting: BTreeMap<u64, (Reply, Instant, bool)>,
    metrics: Metrics,
    tick: Duration,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Driver {
    fn run(&mut self, initial: Vec<crate::storage::GroupWrite>) -> Result<(), RaftCacheError> {
        self.store.write(&initial)?;
        let mut next_tick = Instant::now() + self.tick;
        let mut ticks: u64 = 0;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(timeout) {
                Ok(Input::Shutdown) => return Ok(()),
                Ok(input) => {
                    self.handle(input);
                    // Take whatever else is queued: one round for all of it.
                    for _ in 0..8192 {
                        match self.rx.try_recv() {
                            Ok(Input::Shutdown) => return Ok(()),
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_tick {
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
                self.core.tick(now_nanos());
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    self.metrics.observe_status(&self.core.status(), &self.core.counters);
                }
            }
            self.rounds()?;
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Batch(batch) => {
                for m in batch.messages {
                    match decode_message(&m.message) {
                        Ok(msg) => self.core.step(m.shard, msg),
                        Err(e) => tracing::warn!(peer = batch.from, error = %e, "dropping undecodable raft message"),
                    }
                }
            }
            Input::Submit(request, consistency, reply) => {
                let is_write = matches!(request, Request::Write(_) | Request::Remove { .. });
                let id = self.core.submit(request, consistency, now_nanos());
                self.waiting.insert(id, (reply, Instant::now(), is_write));
            }
            Input::Membership { node, address, reply } => {
                let _ = reply.send(self.core.propose_membership(node, address));
            }
            Input::Transfer { shard, to, reply } => {
                let _ = reply.send(self.core.transfer_leader(shard, to));
            }
            Input::Status(reply) => {
                let mut members = self.peers.static_peers.clone();
                members.extend(self.core.learned_addresses());
                let status = self.core.status();
                let voters: std::collections::BTreeSet<u64> = status.iter().flat_map(|g| g.voters.iter().copied()).collect();
                members.retain(|id, _| voters.contains(id));
                let _ = reply.send(NodeStatus {
                    node_id: self.core.id(),
                    members,
                    shards: status.into_iter().map(ShardStatus::from).collect(),
                });
            }
            Input::Unreachable { peer, snapshots } => {
                self.core.report_unreachable(peer);
                for shard in snapshots {
                    self.core.report_snapshot(shard, peer, false);
                }
            }
            Input::Shutdown => {}
        }
    }

    fn rounds(&mut self) -> Result<(), RaftCacheError> {
        loop {
            let writes = self.core.collect()?;
            if !writes.is_empty() {
                let started = Instant::now();
                self.store.write(&writes)?;
                self.metrics.fsyncs.inc();
                self.metrics.fsync_seconds.observe(started.elapsed().as_secs_f64());
            }
            self.core.persisted()?;
            let messages = self.core.take_messages();
            if !messages.is_empty() {
                let learned = self.core.learned_addresses();
                for (to, batch) in messages {
                    let encoded: Vec<pb::GroupMessage> = batch
                        .into_iter()
                        .filter_map(|(shard, m)| encode_message(&m).ok().map(|message| pb::GroupMessage { shard, message }))
                        .collect();
                    if !self.peers.send(to, learned.get(&to), encoded) {
                        self.core.report_unreachable(to);
                    }
                }
            }
            for (id, result) in self.core.take_responses() {
                if let Some((reply, started, is_write)) = self.waiting.remove(&id) {
                    if is_write && result.is_ok() {
                        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    }
                    let _ = reply.send(result);
                }
            }
            if !self.core.has_ready() {
                return Ok(());
            }
        }
    }
}
