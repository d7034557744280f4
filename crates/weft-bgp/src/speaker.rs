//! The speaker: one listener, a session per peer, and a core task that owns the routing
//! state. Sessions report what they hear; the core keeps each peer's received routes,
//! chooses the best path per prefix ([`crate::rib`]), publishes the result, and tells
//! each established peer exactly the difference between what it has and what it should
//! have. Peers and this node's own prefixes can change at any time without a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::Md5Key;
use crate::message::{Message, MAX_LEN};
use crate::notification::{cease, code, Notification};
use crate::policy::{ExportPolicy, ImportFilter, Own};
use crate::rib::{self, AdjIn, ExportTo, Local, Path, PeerKind};
use crate::session::{self, FromSession, SessionParams, ToSession, BGP_PORT};
use crate::update::{PathAttributes, Update};

/// How many changed prefixes are decided and published at a time during a burst.
const PUBLISH_EVERY: usize = 1000;

/// This speaker.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Where to accept sessions (port 179 on the node's address); `None`: active only.
    pub listen: Option<SocketAddr>,
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// The reflection cluster's identifier (RFC 4456); `None`: the router id.
    pub cluster_id: Option<Ipv4Addr>,
    /// The port peers listen on (179; tests may use another).
    pub peer_port: u16,
}

impl SpeakerConfig {
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        SpeakerConfig {
            asn,
            router_id,
            listen: Some(SocketAddr::V4(SocketAddrV4::new(router_id, BGP_PORT))),
            hold_time: 90,
            connect_retry: Duration::from_secs(2),
            cluster_id: None,
            peer_port: BGP_PORT,
        }
    }
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: Ipv4Addr,
    pub asn: u32,
    pub kind: PeerKind,
    /// Only accept the session, never connect.
    pub passive: bool,
    /// TCP MD5 signatures (RFC 2385) with this key, on the connections both ways.
    pub md5: Option<Md5Key>,
    /// At most this many prefixes from the peer.
    pub max_prefixes: Option<MaxPrefixes>,
    /// TTL security (RFC 5082) for a peer this many hops away (1: on the segment).
    pub ttl_security: Option<u8>,
    /// eBGP multihop without TTL security: packets leave with this TTL (the kernel's
    /// default, 64, when unset).
    pub multihop: Option<u8>,
    /// Which of the peer's prefixes are taken.
    pub import: ImportFilter,
    /// Which of this node's prefixes it is sent, with which communities.
    pub export: ExportPolicy,
}

impl PeerConfig {
    /// A peer outside the node mesh at `address` in `asn`, nothing else set: no
    /// password, no limits, both hops checks off, the default import and export.
    pub fn global(address: Ipv4Addr, asn: u32) -> PeerConfig {
        PeerConfig {
            address,
            asn,
            kind: PeerKind::Global,
            passive: false,
            md5: None,
            max_prefixes: None,
            ttl_security: None,
            multihop: None,
            import: Default::default(),
            export: ExportPolicy::default(),
        }
    }

    /// Whether `other` can be had on the same session: everything but the export
    /// policy, which changes in place. (Every field is named, so a new one must be
    /// placed on one side or the other.)
    fn same_session(&self, other: &PeerConfig) -> bool {
        let PeerConfig {
            address,
            asn,
            kind,
            passive,
            md5,
            max_prefixes,
            ttl_security,
            multihop,
            import,
            export: _,
        } = self;
        (address, asn, kind, passive, md5, max_prefixes)
            == (
                &other.address,
                &other.asn,
                &other.kind,
                &other.passive,
                &other.md5,
                &other.max_prefixes,
            )
            && (ttl_security, multihop, import)
                == (&other.ttl_security, &other.multihop, &other.import)
    }
}

/// A bound on what a peer may send (a router that leaks a full table must not fill the
/// node's kernel): past `limit` prefixes the session is closed with NOTIFICATION Cease,
/// subcode 1 (RFC 4486), its routes dropped, and not opened again for `restart`; at
/// `warning_percent` of the limit, one warning per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPrefixes {
    pub limit: u32,
    pub warning_percent: u8,
    pub restart: Duration,
}

impl MaxPrefixes {
    /// RFC 4486's data for Cease/1: AFI, SAFI and the bound.
    fn notification(&self) -> Notification {
        let mut data = vec![0, 1, 1];
        data.extend_from_slice(&self.limit.to_be_bytes());
        Notification::new(code::CEASE, cease::MAX_PREFIXES, data)
    }
}

/// A peer's state, for `weftctl node status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: Ipv4Addr,
    pub kind: PeerKind,
    pub state: &'static str,
    pub since: SystemTime,
    pub info: String,
    pub received: usize,
    pub advertised: usize,
    /// Whether the session is signed with TCP MD5.
    pub md5: bool,
    /// Announcements the import filter refused in this session.
    pub filtered: usize,
    /// Why the last session ended, as RFC 4271 and RFC 4486 name it (kept while the
    /// next one is tried, as BIRD's "Last error"); empty if none has.
    pub last_error: String,
    /// Graceful restart (RFC 4724) with this peer.
    pub graceful_restart: GracefulRestart,
}

/// Graceful restart with a peer, for `node status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GracefulRestart {
    /// No session yet, so not known.
    Unknown,
    /// The peer did not offer it: its routes go when its session does.
    Off,
    /// Both offered it: a restart of either keeps the other's routes to it.
    On,
    /// The peer is restarting: its routes are kept, marked stale, until its End-of-RIB
    /// or its restart time.
    PeerRestarting,
}

impl GracefulRestart {
    pub fn label(self) -> &'static str {
        match self {
            GracefulRestart::Unknown => "-",
            GracefulRestart::Off => "off",
            GracefulRestart::On => "on",
            GracefulRestart::PeerRestarting => "peer restarting",
        }
    }
}

/// A route learned from a peer and chosen as best.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub next_hop: Ipv4Addr,
    pub from: Ipv4Addr,
}

enum Cmd {
    Peers(Vec<PeerConfig>),
    Own(Vec<Own>),
    ClusterId(Option<Ipv4Addr>),
}

/// A running speaker. Dropping it ends every session.
pub struct Speaker {
    cmd: mpsc::Sender<Cmd>,
    initial: watch::Receiver<bool>,
    routes: watch::Receiver<BTreeMap<Ipv4Net, Learned>>,
    status: Arc<Mutex<BTreeMap<Ipv4Addr, PeerStatus>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Speaker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Speaker {
    /// Starts the listener (if any) and the core; no peers yet.
    pub async fn start(cfg: SpeakerConfig) -> std::io::Result<Speaker> {
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (routes_tx, routes_rx) = watch::channel(BTreeMap::new());
        let (initial_tx, initial_rx) = watch::channel(false);
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let accept: Arc<Mutex<HashMap<Ipv4Addr, mpsc::Sender<TcpStream>>>> = Arc::default();
        let mut tasks = Vec::new();
        let mut shared = None;
        if let Some(addr) = cfg.listen {
            let listener = Arc::new(TcpListener::bind(addr).await?);
            shared = Some(listener.clone());
            let accept = accept.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, from)) = listener.accept().await else { continue };
                    let SocketAddr::V4(from) = from else { continue };
                    let tx = accept.lock().expect("lock").get(from.ip()).cloned();
                    match tx {
                        Some(tx) => {
                            let _ = tx.send(stream).await;
                        }
                        None => warn!(peer = %from.ip(), "BGP connection from an address that is not a peer; closed"),
                    }
                }
            }));
        }
        let core = Core {
            cfg,
            peers: BTreeMap::new(),
            adj_in: BTreeMap::new(),
            best: BTreeMap::new(),
            dirty: BTreeSet::new(),
            stale: BTreeMap::new(),
            own: Vec::new(),
            routes: routes_tx,
            status: status.clone(),
            accept,
            listener: shared,
            warned: BTreeSet::new(),
            started: tokio::time::Instant::now(),
            eor: BTreeSet::new(),
            initial: initial_tx,
            peers_known: false,
        };
        tasks.push(tokio::spawn(core.run(cmd_rx)));
        Ok(Speaker {
            cmd: cmd_tx,
            initial: initial_rx,
            routes: routes_rx,
            status,
            tasks,
        })
    }

    /// Makes the set of peers this; sessions of removed peers end, new ones start.
    pub async fn set_peers(&self, peers: Vec<PeerConfig>) {
        let _ = self.cmd.send(Cmd::Peers(peers)).await;
    }

    /// The prefixes this node originates, each with what it is (for export policies).
    pub async fn set_own(&self, prefixes: Vec<Own>) {
        let _ = self.cmd.send(Cmd::Own(prefixes)).await;
    }

    /// The reflection cluster's identifier, when this node reflects (`None`: its router
    /// id). Takes effect for what is exported from now on.
    pub async fn set_cluster_id(&self, id: Option<Ipv4Addr>) {
        let _ = self.cmd.send(Cmd::ClusterId(id)).await;
    }

    /// The best learned routes, updated as they change.
    pub fn routes(&self) -> watch::Receiver<BTreeMap<Ipv4Net, Learned>> {
        self.routes.clone()
    }

    /// Whether the initial exchange is over (every peer up and its End-of-RIB received,
    /// or the restart time since start passed); the routes watch wakes when it ends.
    pub fn initial_exchange_over(&self) -> bool {
        *self.initial.borrow()
    }

    pub fn status(&self) -> Vec<PeerStatus> {
        self.status
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect()
    }
}

struct PeerState {
    config: PeerConfig,
    task: JoinHandle<()>,
    up: Option<Up>,
}

struct Up {
    local: Ipv4Addr,
    peer_id: Ipv4Addr,
    restart_time: Option<u16>,
    tx: mpsc::Sender<ToSession>,
    advertised: BTreeMap<Ipv4Net, PathAttributes>,
    /// The initial table and its End-of-RIB have been sent.
    synced: bool,
}

struct Core {
    cfg: SpeakerConfig,
    peers: BTreeMap<Ipv4Addr, PeerState>,
    adj_in: AdjIn,
    /// The best path per prefix, kept up to date for the prefixes in `dirty`.
    best: BTreeMap<Ipv4Net, Path>,
    /// Prefixes whose received paths changed since the last [`Core::converge`]: only
    /// these are decided again, so a burst costs what it changed, not the table size.
    dirty: BTreeSet<Ipv4Net>,
    /// Graceful restart: a restarting peer's routes kept until this time, and which.
    stale: BTreeMap<Ipv4Addr, (BTreeSet<Ipv4Net>, tokio::time::Instant)>,
    own: Vec<Own>,
    routes: watch::Sender<BTreeMap<Ipv4Net, Learned>>,
    status: Arc<Mutex<BTreeMap<Ipv4Addr, PeerStatus>>>,
    accept: Arc<Mutex<HashMap<Ipv4Addr, mpsc::Sender<TcpStream>>>>,
    /// The listening socket, where the MD5 keys of peers that connect to us are set.
    listener: Option<Arc<TcpListener>>,
    /// Peers warned of nearing their max-prefix limit in their current session.
    warned: BTreeSet<Ipv4Addr>,
    /// When the speaker started.
    started: tokio::time::Instant,
    /// Peers that have sent End-of-RIB in their current session.
    eor: BTreeSet<Ipv4Addr>,
    /// Whether the initial exchange is over: every peer up and done sending its table
    /// (End-of-RIB), or the restart time passed. Until then the agent keeps the routes
    /// the kernel already holds (a restart must not withdraw what the peers are still
    /// about to send again).
    initial: watch::Sender<bool>,
    /// Whether the agent has said which peers there are (before that, none is no news).
    peers_known: bool,
}

impl Core {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let (ev_tx, mut ev_rx) = mpsc::channel(256);
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            // The agent restates peers and prefixes on every plan; only a change (or a
            // session event) is worth deciding and exporting again.
            let changed = tokio::select! {
                c = cmds.recv() => match c {
                    None => return,
                    Some(Cmd::Peers(p)) => self.set_peers(p, &ev_tx),
                    Some(Cmd::Own(o)) if o == self.own => false,
                    Some(Cmd::Own(o)) => {
                        // Own prefixes are not learned routes: decide them again.
                        self.dirty.extend(self.own.iter().chain(&o).map(|o| o.prefix));
                        self.own = o;
                        true
                    }
                    Some(Cmd::ClusterId(id)) if id == self.cfg.cluster_id => false,
                    Some(Cmd::ClusterId(id)) => {
                        self.cfg.cluster_id = id;
                        true
                    }
                },
                Some(ev) = ev_rx.recv() => {
                    self.on_event(ev);
                    // Take what is already queued (a table arrives as a burst of
                    // UPDATEs) and decide once for it, but no more than about
                    // PUBLISH_EVERY prefixes at a time: the agent installs the first
                    // part while the rest is still being taken in.
                    while self.dirty.len() < PUBLISH_EVERY {
                        match ev_rx.try_recv() {
                            Ok(ev) => self.on_event(ev),
                            Err(_) => break,
                        }
                    }
                    true
                }
                _ = sweep.tick() => self.sweep_stale(),
            };
            if changed {
                self.converge().await;
            }
            self.check_initial_exchange();
        }
    }

    /// Ends the initial exchange once every peer has sent its table, or the restart
    /// time since start has passed; wakes the routes' watchers when it does.
    fn check_initial_exchange(&mut self) {
        if *self.initial.borrow() {
            return;
        }
        let all_sent = self.peers_known
            && self
                .peers
                .iter()
                .all(|(a, p)| p.up.is_some() && self.eor.contains(a));
        let over = self.started.elapsed() >= Duration::from_secs(session::RESTART_TIME as u64);
        if all_sent || over {
            info!(
                peers = self.peers.len(),
                timed_out = !all_sent,
                "BGP initial exchange over: routes not learned again may now be removed"
            );
            self.initial.send_replace(true);
            self.routes.send_modify(|_| {});
        }
    }

    fn set_status(&self, peer: Ipv4Addr, f: impl FnOnce(&mut PeerStatus)) {
        if let Some(s) = self.status.lock().expect("lock").get_mut(&peer) {
            f(s);
        }
    }

    /// Makes the set of peers this; whether anything changed.
    fn set_peers(&mut self, peers: Vec<PeerConfig>, events: &mpsc::Sender<FromSession>) -> bool {
        self.peers_known = true;
        let wanted: BTreeMap<Ipv4Addr, PeerConfig> =
            peers.into_iter().map(|p| (p.address, p)).collect();
        // A new export policy needs no new session: what the peer is sent is diffed
        // against what it has at the next converge.
        let mut changed = false;
        for (a, state) in self.peers.iter_mut() {
            if let Some(w) = wanted.get(a) {
                if state.config.same_session(w) && state.config.export != w.export {
                    state.config.export = w.export.clone();
                    changed = true;
                }
            }
        }
        let gone: Vec<Ipv4Addr> = self
            .peers
            .iter()
            .filter(|(a, s)| wanted.get(a) != Some(&s.config))
            .map(|(a, _)| *a)
            .collect();
        changed |= !gone.is_empty();
        for a in gone {
            if let Some(s) = self.peers.remove(&a) {
                if s.config.md5.is_some() {
                    self.listener_key(a, None);
                }
                retire(s);
                info!(peer = %a, "BGP peer removed");
            }
            self.drop_routes(a);
            self.stale.remove(&a);
            self.accept.lock().expect("lock").remove(&a);
            self.status.lock().expect("lock").remove(&a);
        }
        for (a, config) in wanted {
            if self.peers.contains_key(&a) {
                continue;
            }
            changed = true;
            if let Some(key) = &config.md5 {
                self.listener_key(a, Some(key));
            }
            let (in_tx, in_rx) = mpsc::channel(4);
            self.accept.lock().expect("lock").insert(a, in_tx);
            let params = SessionParams {
                peer: a,
                peer_as: config.asn,
                local_as: self.cfg.asn,
                router_id: self.cfg.router_id,
                hold_time: self.cfg.hold_time,
                passive: config.passive,
                connect_retry: self.cfg.connect_retry,
                port: self.cfg.peer_port,
                md5: config.md5.clone(),
                ttl_security: config.ttl_security,
                multihop: config.multihop,
                started: self.started,
            };
            self.status.lock().expect("lock").insert(
                a,
                PeerStatus {
                    address: a,
                    kind: config.kind,
                    state: "Idle",
                    since: SystemTime::now(),
                    info: String::new(),
                    received: 0,
                    advertised: 0,
                    md5: config.md5.is_some(),
                    filtered: 0,
                    last_error: String::new(),
                    graceful_restart: GracefulRestart::Unknown,
                },
            );
            let task = tokio::spawn(session::run(params, in_rx, events.clone()));
            info!(peer = %a, asn = config.asn, kind = config.kind.label(), "BGP peer added");
            self.peers.insert(
                a,
                PeerState {
                    config,
                    task,
                    up: None,
                },
            );
        }
        changed
    }

    /// Sets (or removes) `peer`'s MD5 key on the listening socket, so that a connection
    /// from it must be signed; a failure is logged and the session's own connects still
    /// sign.
    fn listener_key(&self, peer: Ipv4Addr, key: Option<&Md5Key>) {
        let Some(l) = &self.listener else { return };
        let bytes = key.map(Md5Key::bytes).unwrap_or_default();
        if let Err(e) = crate::sys::set_md5(l.as_ref(), peer, bytes) {
            // Removing a key that was never set is no failure.
            if key.is_some() {
                warn!(peer = %peer, error = %e, "cannot set the peer's MD5 key on the BGP listener");
            }
        }
    }

    /// A node reflects when it has clients: whether it is a reflector (listed, or
    /// chosen by label) is told by the kinds of the peers it is given.
    fn reflecting(&self) -> bool {
        self.peers
            .values()
            .any(|p| p.config.kind == PeerKind::RrClient)
    }

    /// The cluster id routes are checked against and tagged with: the shared one only
    /// while reflecting (a client that took it as its own would drop every route its
    /// reflectors pass on as a loop), else the router id.
    fn cluster_id(&self) -> Ipv4Addr {
        match self.cfg.cluster_id {
            Some(id) if self.reflecting() => id,
            _ => self.cfg.router_id,
        }
    }

    fn ebgp(&self, peer: &PeerConfig) -> bool {
        peer.asn != self.cfg.asn
    }

    fn on_event(&mut self, ev: FromSession) {
        match ev {
            FromSession::State { peer, state, info } => self.set_status(peer, |s| {
                if s.state != state {
                    s.since = SystemTime::now();
                }
                s.state = state;
                // A new connect attempt keeps the last failure on show (what a peer with
                // a wrong password or a dead router keeps failing with), as BIRD's
                // "last error" does.
                let retrying = matches!(state, "Connect" | "Active");
                if !info.is_empty() || !(state == "Idle" || retrying) {
                    s.info = info;
                }
            }),
            FromSession::Up {
                peer,
                local,
                peer_id,
                restart_time,
                to_session,
            } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                info!(%peer, %peer_id, "BGP session established");
                p.up = Some(Up {
                    local,
                    peer_id,
                    restart_time,
                    tx: to_session,
                    advertised: BTreeMap::new(),
                    synced: false,
                });
                let restarting = self.stale.contains_key(&peer);
                self.set_status(peer, |s| {
                    s.state = "Established";
                    s.since = SystemTime::now();
                    s.info = "Established".into();
                    s.filtered = 0;
                    s.graceful_restart = match restart_time {
                        _ if restarting => GracefulRestart::PeerRestarting,
                        Some(_) => GracefulRestart::On,
                        None => GracefulRestart::Off,
                    };
                });
            }
            FromSession::Down {
                peer,
                reason,
                notified,
            } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let was_up = p.up.take();
                self.warned.remove(&peer);
                self.eor.remove(&peer);
                warn!(%peer, %reason, "BGP session down");
                let keep = was_up
                    .as_ref()
                    .and_then(|u| u.restart_time)
                    .filter(|_| !notified);
                match keep {
                    Some(secs) if secs > 0 => {
                        // RFC 4724 receiving speaker: keep its routes, marked stale.
                        let prefixes = self
                            .adj_in
                            .get(&peer)
                            .map(|r| r.keys().copied().collect())
                            .unwrap_or_default();
                        let until = tokio::time::Instant::now() + Duration::from_secs(secs as u64);
                        self.stale.insert(peer, (prefixes, until));
                    }
                    _ => self.drop_routes(peer),
                }
                let restarting = self.stale.contains_key(&peer);
                self.set_status(peer, |s| {
                    s.last_error = reason.clone();
                    s.info = reason;
                    if restarting {
                        s.graceful_restart = GracefulRestart::PeerRestarting;
                    }
                });
            }
            FromSession::Received { peer, message } => self.on_message(peer, message),
        }
    }

    fn on_message(&mut self, peer: Ipv4Addr, message: Message) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(up) = &p.up else { return };
        match message {
            Message::Update(u) => {
                if u.is_end_of_rib() {
                    self.eor.insert(peer);
                    // The restarted peer has sent everything: what it did not resend is gone.
                    if let Some((stale, _)) = self.stale.remove(&peer) {
                        self.drop_stale(peer, &stale);
                        self.set_status(peer, |s| s.graceful_restart = GracefulRestart::On);
                    }
                    return;
                }
                if let Some(why) = &u.treat_as_withdraw {
                    warn!(%peer, reason = %why, "malformed UPDATE: its routes are treated as withdrawn (RFC 7606)");
                }
                for (t, why) in &u.discarded {
                    warn!(%peer, attribute = t, reason = %why, "malformed attribute discarded (RFC 7606)");
                }
                let ebgp = self.ebgp(&p.config);
                let (kind, peer_id) = (p.config.kind, up.peer_id);
                let import = p.config.import.clone();
                let mut filtered = 0;
                let looped = rib::is_loop(
                    &u.attrs,
                    self.cfg.asn,
                    self.cfg.router_id,
                    self.cluster_id(),
                );
                let routes = self.adj_in.entry(peer).or_default();
                for w in u.withdrawn_all() {
                    if routes.remove(w).is_some() {
                        self.dirty.insert(*w);
                    }
                }
                let mut shared = u.attrs.clone();
                shared.mp_reach = None;
                shared.mp_unreach = None;
                let shared = Arc::new(shared);
                let stale = self.stale.get_mut(&peer);
                let mut refreshed = Vec::new();
                for (prefix, nh) in u.nlri.iter().map(|n| (*n, u.attrs.next_hop)).chain(
                    u.attrs
                        .mp_reach
                        .iter()
                        .flat_map(|m| m.nlri.iter().map(|n| (*n, Some(m.next_hop)))),
                ) {
                    let Some(next_hop) = nh else { continue };
                    refreshed.push(prefix);
                    self.dirty.insert(prefix);
                    if !import.allows(&prefix) {
                        routes.remove(&prefix);
                        filtered += 1;
                        continue;
                    }
                    if looped {
                        routes.remove(&prefix);
                        continue;
                    }
                    routes.insert(
                        prefix,
                        Path {
                            attrs: shared.clone(),
                            next_hop,
                            from: peer,
                            from_id: peer_id,
                            ebgp,
                            kind,
                        },
                    );
                }
                if let Some((set, _)) = stale {
                    for r in refreshed {
                        set.remove(&r);
                    }
                }
                let n = routes.len();
                self.set_status(peer, |s| {
                    s.received = n;
                    s.filtered += filtered;
                });
                self.check_max_prefixes(peer, n);
            }
            Message::RouteRefresh { .. } => {
                // Re-send everything: forget what we told it.
                if let Some(up) = self.peers.get_mut(&peer).and_then(|p| p.up.as_mut()) {
                    up.advertised.clear();
                }
            }
            _ => {}
        }
    }

    /// Holds `peer` to its max-prefix bound now that it has sent `n` prefixes.
    fn check_max_prefixes(&mut self, peer: Ipv4Addr, n: usize) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let (Some(m), Some(up)) = (&p.config.max_prefixes, &p.up) else {
            return;
        };
        let limit = m.limit as usize;
        if n > limit {
            warn!(%peer, received = n, limit, restart_s = m.restart.as_secs(), "BGP peer sent more prefixes than its limit; closing the session (Cease, maximum number of prefixes reached) and dropping its routes");
            let _ = up.tx.try_send(ToSession::Stop(m.notification(), m.restart));
            self.drop_routes(peer);
            self.set_status(peer, |s| s.received = 0);
        } else if n * 100 >= limit * m.warning_percent as usize && self.warned.insert(peer) {
            warn!(%peer, received = n, limit, "BGP peer is near its max-prefix limit");
        }
    }

    /// Drops the stale routes whose graceful-restart time is over; whether any were.
    fn sweep_stale(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let expired: Vec<Ipv4Addr> = self
            .stale
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(a, _)| *a)
            .collect();
        for &peer in &expired {
            if let Some((set, _)) = self.stale.remove(&peer) {
                self.drop_stale(peer, &set);
                self.set_status(peer, |s| s.graceful_restart = GracefulRestart::Off);
                warn!(%peer, "graceful restart time over: the peer's stale routes are removed");
            }
        }
        !expired.is_empty()
    }

    /// Forgets everything a peer sent.
    fn drop_routes(&mut self, peer: Ipv4Addr) {
        if let Some(routes) = self.adj_in.remove(&peer) {
            self.dirty.extend(routes.into_keys());
        }
    }

    /// Forgets a peer's routes that are still marked stale (graceful restart).
    fn drop_stale(&mut self, peer: Ipv4Addr, stale: &BTreeSet<Ipv4Net>) {
        if let Some(routes) = self.adj_in.get_mut(&peer) {
            routes.retain(|p, _| !stale.contains(p));
        }
        self.dirty.extend(stale.iter().copied());
    }

    /// Decides the changed prefixes again and publishes the learned routes that changed.
    fn decide(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for p in &dirty {
            match rib::best_for(&self.adj_in, p) {
                Some(path) => self.best.insert(*p, path.clone()),
                None => self.best.remove(p),
            };
        }
        let (best, own) = (&self.best, &self.own);
        self.routes.send_if_modified(|cur| {
            let mut modified = false;
            for p in &dirty {
                let want = best
                    .get(p)
                    .filter(|_| !own.iter().any(|o| o.prefix == *p))
                    .map(|path| Learned {
                        next_hop: path.next_hop,
                        from: path.from,
                    });
                modified |= match want {
                    Some(l) => cur.insert(*p, l.clone()) != Some(l),
                    None => cur.remove(p).is_some(),
                };
            }
            modified
        });
    }

    /// Publishes the best routes and brings every established peer up to date.
    async fn converge(&mut self) {
        self.decide();
        let best = &self.best;
        let local = Local {
            asn: self.cfg.asn,
            router_id: self.cfg.router_id,
            route_reflector: self.reflecting(),
            cluster_id: self.cluster_id(),
        };
        let asn = self.cfg.asn;
        let mut counts = Vec::new();
        for (addr, p) in self.peers.iter_mut() {
            let Some(up) = p.up.as_mut() else { continue };
            let to = ExportTo {
                address: *addr,
                kind: p.config.kind,
                ebgp: p.config.asn != asn,
                next_hop_self: up.local,
                policy: &p.config.export,
            };
            let want = rib::export(&local, &self.own, best, &to);
            let mut msgs = diff_updates(&up.advertised, &want);
            if !up.synced {
                msgs.push(Message::Update(Box::default())); // End-of-RIB (RFC 4724)
            }
            if !msgs.is_empty() {
                if up.tx.send(ToSession::Send(msgs)).await.is_err() {
                    continue;
                }
                up.advertised = want;
                up.synced = true;
            }
            counts.push((*addr, up.advertised.len()));
        }
        for (a, n) in counts {
            self.set_status(a, |s| s.advertised = n);
        }
    }
}

/// How long a removed peer's session gets to send its Cease and end by itself.
const RETIRE_WITHIN: Duration = Duration::from_secs(5);

/// Ends a removed peer's session. An established one is told so first (NOTIFICATION
/// Cease, "peer de-configured", RFC 4486): the peer drops our routes at once instead of
/// keeping them as a restart's stale routes (a router would otherwise hold a node that
/// no longer peers with it for its whole restart time). The Stop is queued behind what
/// the session still has to send (never dropped because its queue is full), and the
/// session ends by itself once the message is out; it is aborted only if it has not
/// within [`RETIRE_WITHIN`].
fn retire(s: PeerState) {
    let mut task = s.task;
    let Some(up) = s.up else {
        task.abort();
        return;
    };
    let n = Notification::new(code::CEASE, cease::PEER_DECONFIGURED, vec![]);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + RETIRE_WITHIN;
        let stop = ToSession::Stop(n, Duration::from_secs(3600));
        if tokio::time::timeout_at(deadline, up.tx.send(stop))
            .await
            .is_ok_and(|sent| sent.is_ok())
        {
            let _ = tokio::time::timeout_at(deadline, &mut task).await;
        }
        task.abort();
    });
}

/// The UPDATEs that turn `have` into `want`: withdrawals packed together, announcements
/// grouped by identical attributes, each message under 4,096 bytes.
fn diff_updates(
    have: &BTreeMap<Ipv4Net, PathAttributes>,
    want: &BTreeMap<Ipv4Net, PathAttributes>,
) -> Vec<Message> {
    let mut msgs = Vec::new();
    let withdrawn: Vec<Ipv4Net> = have
        .keys()
        .filter(|p| !want.contains_key(p))
        .copied()
        .collect();
    // 4,096 - 19 (header) - 4 (two length fields): at most 5 bytes per prefix.
    for chunk in withdrawn.chunks(800) {
        msgs.push(Message::Update(Box::new(Update {
            withdrawn: chunk.to_vec(),
            ..Default::default()
        })));
    }
    let mut groups: Vec<(&PathAttributes, Vec<Ipv4Net>)> = Vec::new();
    for (p, a) in want {
        if have.get(p) == Some(a) {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == a) {
            Some((_, v)) => v.push(*p),
            None => groups.push((a, vec![*p])),
        }
    }
    for (attrs, prefixes) in groups {
        let mut size = 0;
        // Sized with 4-octet AS numbers, the larger encoding.
        let mut buf = Vec::new();
        attrs.encode(true, &mut buf);
        let room = MAX_LEN - 23 - buf.len();
        let mut chunk = Vec::new();
        for p in prefixes {
            let len = 1 + (p.prefix_len() as usize).div_ceil(8);
            if size + len > room {
                msgs.push(Message::Update(Box::new(Update {
                    attrs: attrs.clone(),
                    nlri: std::mem::take(&mut chunk),
                    ..Default::default()
                })));
                size = 0;
            }
            size += len;
            chunk.push(p);
        }
        if !chunk.is_empty() {
            msgs.push(Message::Update(Box::new(Update {
                attrs: attrs.clone(),
                nlri: chunk,
                ..Default::default()
            })));
        }
    }
    msgs
}
