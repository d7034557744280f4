//! One BGP session over TCP: connect (or take an accepted connection), exchange OPENs and
//! KEEPALIVEs (RFC 4271 section 8's OpenSent / OpenConfirm / Established), then carry
//! messages both ways with the hold and keepalive timers, until an error or a stop. The
//! routing decisions are not made here: received UPDATEs go to the speaker's core, and
//! the core says what to send.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

use crate::auth::Md5Key;
use crate::message::{decode, Codec, Message};
use crate::notification::{code, Notification};
use crate::open::{Capability, Open};
use crate::update::{AFI_IPV4, SAFI_UNICAST};

pub const BGP_PORT: u16 = 179;
/// The hold time offered before a session is up (RFC 4271 suggests a large value).
const OPEN_HOLD: Duration = Duration::from_secs(240);
/// Graceful restart time this speaker advertises (RFC 4724, as receiving speaker).
pub const RESTART_TIME: u16 = 120;

/// What a session is told by the speaker's core.
#[derive(Debug)]
pub enum ToSession {
    Send(Vec<Message>),
    /// Send this NOTIFICATION, close, and stay idle this long before connecting or
    /// accepting again (the max-prefix restart timer).
    Stop(Notification, Duration),
}

/// What a session tells the core.
#[derive(Debug)]
pub enum FromSession {
    State {
        peer: Ipv4Addr,
        state: &'static str,
        info: String,
    },
    Up {
        peer: Ipv4Addr,
        local: Ipv4Addr,
        peer_id: Ipv4Addr,
        /// The peer's graceful restart time, if it offered graceful restart.
        restart_time: Option<u16>,
        to_session: mpsc::Sender<ToSession>,
    },
    Received {
        peer: Ipv4Addr,
        message: Message,
    },
    Down {
        peer: Ipv4Addr,
        reason: String,
        /// Whether the peer closed with a NOTIFICATION (no graceful restart then).
        notified: bool,
    },
}

/// Fixed parameters of one session.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub peer: Ipv4Addr,
    pub peer_as: u32,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub hold_time: u16,
    pub passive: bool,
    pub connect_retry: Duration,
    pub port: u16,
    /// The TCP MD5 key both sides sign with, if any.
    pub md5: Option<Md5Key>,
    /// TTL security (RFC 5082) for a peer this many hops away, if any.
    pub ttl_security: Option<u8>,
    /// eBGP multihop: the TTL every packet of the session leaves with, if set.
    pub multihop: Option<u8>,
    /// When this speaker started (the R bit of graceful restart is set for a while after).
    pub started: Instant,
}

/// Why a connection ended.
struct Ended {
    reason: String,
    notified: bool,
}

impl Ended {
    fn local(n: Notification) -> Self {
        Ended {
            reason: format!("sent NOTIFICATION: {n}"),
            notified: false,
        }
    }
}

fn our_open(p: &SessionParams) -> Open {
    Open {
        asn: p.local_as,
        hold_time: p.hold_time,
        bgp_id: p.router_id,
        capabilities: vec![
            Capability::Multiprotocol {
                afi: AFI_IPV4,
                safi: SAFI_UNICAST,
            },
            Capability::RouteRefresh,
            // RFC 4724 as the restarting speaker too: the R bit for a while after this
            // speaker started (it may be a restart), and the F bit always, because the
            // agent leaves its routes in the kernel when it stops: a peer then keeps
            // this node's routes, stale, until our End-of-RIB instead of flushing them.
            Capability::GracefulRestart {
                restarting: p.started.elapsed() < Duration::from_secs(RESTART_TIME as u64),
                time: RESTART_TIME,
                families: vec![(AFI_IPV4, SAFI_UNICAST, true)],
            },
            Capability::FourOctetAs(p.local_as),
        ],
    }
}

/// A framed BGP connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    codec: Codec,
}

impl Conn {
    async fn send(&mut self, m: &Message) -> std::io::Result<()> {
        self.stream.write_all(&m.encode(self.codec)).await
    }

    /// The next message; a decode error is sent back as NOTIFICATION and ends the connection.
    async fn recv(&mut self) -> Result<Message, Ended> {
        loop {
            match decode(&self.buf, self.codec) {
                Ok(Some((m, used))) => {
                    self.buf.drain(..used);
                    return Ok(m);
                }
                Ok(None) => {}
                Err(n) => {
                    let _ = self.send(&Message::Notification(n.clone())).await;
                    return Err(Ended::local(n));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk).await {
                Ok(0) => {
                    return Err(Ended {
                        reason: "connection closed by peer".into(),
                        notified: false,
                    })
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    return Err(Ended {
                        reason: format!("connection error: {e}"),
                        notified: false,
                    })
                }
            }
        }
    }

    async fn notify(&mut self, n: Notification) -> Ended {
        let _ = self.send(&Message::Notification(n.clone())).await;
        Ended::local(n)
    }
}

/// Runs a peer's session until the core drops `incoming`'s sender and the events channel.
pub async fn run(
    p: SessionParams,
    mut incoming: mpsc::Receiver<TcpStream>,
    events: mpsc::Sender<FromSession>,
) {
    let state = |state: &'static str, info: String| FromSession::State {
        peer: p.peer,
        state,
        info,
    };
    // A connection the peer opened while we were waiting to retry: used next.
    let mut accepted: Option<TcpStream> = None;
    // With TTL security, only connections this side opens are used: their socket has
    // its minimum TTL before the SYN leaves, so the kernel checks every packet of the
    // peer's from the first. An accepted one gets it only after the peer's first data
    // may already be queued (a peer further away could open a session that way). A
    // passive peer is the exception: accepted, then held to the minimum at once.
    let take_incoming = p.ttl_security.is_none() || p.passive;
    loop {
        let _ = events
            .send(state(
                if p.passive { "Active" } else { "Connect" },
                String::new(),
            ))
            .await;
        let stream = match accepted.take() {
            Some(s) => s,
            None if p.passive => match incoming.recv().await {
                Some(s) => s,
                None => return,
            },
            None => {
                let addr = SocketAddr::V4(SocketAddrV4::new(p.peer, p.port));
                let attempt = timeout(
                    Duration::from_secs(5),
                    connect(addr, p.md5.as_ref(), p.ttl_security, p.multihop),
                );
                tokio::pin!(attempt);
                let failed = loop {
                    tokio::select! {
                        s = incoming.recv() => match s {
                            None => return,
                            Some(s) if take_incoming => break Ok(s),
                            // TTL security: only our own connections (see `take_incoming`).
                            Some(refused) => drop(refused),
                        },
                        c = &mut attempt => break match c {
                            Ok(Ok(s)) => Ok(s),
                            Ok(Err(e)) => Err(format!("connect: {e}")),
                            // The kernel drops segments whose signature is missing or wrong
                            // without a word, so a password mismatch looks like silence.
                            Err(_) if p.md5.is_some() => Err("connect: timed out (MD5 is on: a wrong or missing password on either side looks like this)".to_string()),
                            Err(_) => Err("connect: timed out".to_string()),
                        },
                    }
                };
                match failed {
                    Ok(s) => s,
                    Err(info) => {
                        let _ = events.send(state("Active", info)).await;
                        tokio::select! {
                            _ = sleep(p.connect_retry) => {}
                            s = incoming.recv() => match s {
                                None => return,
                                Some(s) if take_incoming => accepted = Some(s),
                                Some(refused) => drop(refused),
                            },
                        }
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        // Multihop: an accepted connection's packets leave with the configured TTL too.
        if let Some(ttl) = p.multihop {
            let _ = stream.set_ttl(u32::from(ttl));
        }
        // With TTL security a stream here is one this side opened (already held to the
        // minimum before its SYN) unless the session is passive: then it was accepted,
        // and from now on packets from further away are dropped and ours leave with 255.
        if let (Some(hops), true) = (p.ttl_security, p.passive) {
            if let Err(e) = crate::sys::set_ttl_security(&stream, hops) {
                let _ = events
                    .send(state("Idle", format!("cannot set TTL security: {e}")))
                    .await;
                sleep(p.connect_retry).await;
                continue;
            }
        }
        let mut idle = None;
        let ended = connection(&p, stream, &mut incoming, &events, &mut idle).await;
        if events.is_closed() {
            return;
        }
        let _ = events
            .send(FromSession::Down {
                peer: p.peer,
                reason: ended.reason.clone(),
                notified: ended.notified,
            })
            .await;
        let wait = idle.unwrap_or(p.connect_retry);
        let info = match idle {
            Some(d) => format!("{}; idle for {} s", ended.reason, d.as_secs()),
            None => ended.reason,
        };
        let _ = events.send(state("Idle", info)).await;
        sleep(wait).await;
        if idle.is_some() {
            // Connections the peer opened while we were idle are not taken up.
            while incoming.try_recv().is_ok() {}
        }
    }
}

/// Connects to `addr`, signing every segment with `md5` and holding the connection to
/// TTL security when given (its SYN already leaves with TTL 255), or sending with the
/// multihop TTL.
async fn connect(
    addr: SocketAddr,
    md5: Option<&Md5Key>,
    ttl_security: Option<u8>,
    multihop: Option<u8>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let (Some(key), SocketAddr::V4(to)) = (md5, addr) {
        crate::sys::set_md5(&socket, *to.ip(), key.bytes())?;
    }
    if let Some(hops) = ttl_security {
        crate::sys::set_ttl_security(&socket, hops)?;
    }
    if let Some(ttl) = multihop {
        crate::sys::set_ttl(&socket, ttl)?;
    }
    socket.connect(addr).await
}

/// One TCP connection's life: handshake, then Established until it ends.
async fn connection(
    p: &SessionParams,
    stream: TcpStream,
    incoming: &mut mpsc::Receiver<TcpStream>,
    events: &mpsc::Sender<FromSession>,
    idle: &mut Option<Duration>,
) -> Ended {
    let local = match stream.local_addr() {
        Ok(SocketAddr::V4(a)) => *a.ip(),
        _ => {
            return Ended {
                reason: "not an IPv4 connection".into(),
                notified: false,
            }
        }
    };
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        codec: Codec::default(),
    };
    let state = |s: &'static str| FromSession::State {
        peer: p.peer,
        state: s,
        info: String::new(),
    };
    if let Err(e) = c.send(&Message::Open(our_open(p))).await {
        return Ended {
            reason: format!("cannot send OPEN: {e}"),
            notified: false,
        };
    }
    let _ = events.send(state("OpenSent")).await;
    let open = match open_sent(p, &mut c).await {
        Ok(open) => open,
        Err(ended) => return ended,
    };
    // Collision (RFC 4271 section 6.8): if the peer also connected to us, keep the
    // connection opened by the speaker with the higher BGP identifier.
    if let Ok(other) = incoming.try_recv() {
        let ours_outgoing = !p.passive;
        // With TTL security the peer's connection is never the one kept (see `run`).
        if ours_outgoing
            && p.ttl_security.is_none()
            && u32::from(open.bgp_id) > u32::from(p.router_id)
        {
            let _ = c
                .send(&Message::Notification(Notification::new(
                    code::CEASE,
                    7,
                    vec![],
                )))
                .await;
            return Box::pin(connection(p, other, incoming, events, idle)).await;
        }
        drop(other);
    }
    c.codec.four_octet_as = open.four_octet_as().is_some();
    let hold = Duration::from_secs(p.hold_time.min(open.hold_time) as u64);
    let restart_time = open.capabilities.iter().find_map(|cap| match cap {
        Capability::GracefulRestart { time, .. } => Some(*time),
        _ => None,
    });
    if let Err(e) = c.send(&Message::Keepalive).await {
        return Ended {
            reason: format!("cannot send KEEPALIVE: {e}"),
            notified: false,
        };
    }
    let _ = events.send(state("OpenConfirm")).await;
    if let Err(ended) = open_confirm(&mut c, hold).await {
        return ended;
    }
    let (to_tx, mut to_rx) = mpsc::channel(64);
    let _ = events
        .send(FromSession::Up {
            peer: p.peer,
            local,
            peer_id: open.bgp_id,
            restart_time,
            to_session: to_tx,
        })
        .await;
    established(p, c, hold, &mut to_rx, incoming, events, idle).await
}

/// OpenSent: the peer's OPEN, checked (its AS, a BGP identifier not ours), or how the
/// connection ended.
async fn open_sent(p: &SessionParams, c: &mut Conn) -> Result<Open, Ended> {
    let open = match timeout(OPEN_HOLD, c.recv()).await {
        Err(_) => {
            return Err(c
                .notify(Notification::new(code::HOLD_TIMER_EXPIRED, 0, vec![]))
                .await)
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Message::Open(o))) => o,
        Ok(Ok(Message::Notification(n))) => {
            return Err(Ended {
                reason: format!("peer sent NOTIFICATION: {n}"),
                notified: true,
            })
        }
        Ok(Ok(_)) => return Err(c.notify(Notification::new(code::FSM, 1, vec![])).await),
    };
    if open.asn != p.peer_as {
        return Err(c
            .notify(Notification::new(
                code::OPEN,
                crate::notification::open::BAD_PEER_AS,
                (open.asn.min(65535) as u16).to_be_bytes(),
            ))
            .await);
    }
    if open.bgp_id == p.router_id {
        return Err(c
            .notify(Notification::new(
                code::OPEN,
                crate::notification::open::BAD_BGP_ID,
                vec![],
            ))
            .await);
    }
    Ok(open)
}

/// OpenConfirm: the peer's KEEPALIVE within the hold time, or how the connection ended.
async fn open_confirm(c: &mut Conn, hold: Duration) -> Result<(), Ended> {
    match timeout(if hold.is_zero() { OPEN_HOLD } else { hold }, c.recv()).await {
        Err(_) => Err(c
            .notify(Notification::new(code::HOLD_TIMER_EXPIRED, 0, vec![]))
            .await),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Message::Keepalive)) => Ok(()),
        Ok(Ok(Message::Notification(n))) => Err(Ended {
            reason: format!("peer sent NOTIFICATION: {n}"),
            notified: true,
        }),
        Ok(Ok(_)) => Err(c.notify(Notification::new(code::FSM, 2, vec![])).await),
    }
}

async fn established(
    p: &SessionParams,
    mut c: Conn,
    hold: Duration,
    to_rx: &mut mpsc::Receiver<ToSession>,
    incoming: &mut mpsc::Receiver<TcpStream>,
    events: &mpsc::Sender<FromSession>,
    idle: &mut Option<Duration>,
) -> Ended {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut hold_deadline = if hold.is_zero() {
        far
    } else {
        Instant::now() + hold
    };
    let keepalive_every = if hold.is_zero() {
        Duration::from_secs(86_400)
    } else {
        hold / 3
    };
    let mut keepalive = tokio::time::interval(keepalive_every);
    keepalive.tick().await;
    loop {
        tokio::select! {
            m = c.recv() => {
                let m = match m { Ok(m) => m, Err(e) => return e };
                if !hold.is_zero() {
                    hold_deadline = Instant::now() + hold;
                }
                match m {
                    Message::Keepalive => {}
                    Message::Notification(n) => {
                        return Ended { reason: format!("peer sent NOTIFICATION: {n}"), notified: true };
                    }
                    Message::Open(_) => return c.notify(Notification::new(code::FSM, 3, vec![])).await,
                    other => {
                        if events.send(FromSession::Received { peer: p.peer, message: other }).await.is_err() {
                            return c.notify(Notification::new(code::CEASE, 3, vec![])).await;
                        }
                    }
                }
            }
            cmd = to_rx.recv() => match cmd {
                Some(ToSession::Send(msgs)) => {
                    for m in msgs {
                        if let Err(e) = c.send(&m).await {
                            return Ended { reason: format!("write: {e}"), notified: false };
                        }
                    }
                }
                Some(ToSession::Stop(n, wait)) => {
                    *idle = Some(wait);
                    let _ = c.send(&Message::Notification(n.clone())).await;
                    // Ours, and final: the peer's routes go at once (no graceful restart).
                    return Ended { reason: format!("sent NOTIFICATION: {n}"), notified: true };
                }
                // The speaker is gone (the agent stops, dies or is upgraded): close
                // without a NOTIFICATION, so the peer keeps our routes as a graceful
                // restart's (RFC 4724). A peer that is removed is told so first
                // (`speaker::retire`).
                None => return Ended { reason: "the speaker stopped".into(), notified: false },
            },
            _ = keepalive.tick() => {
                if let Err(e) = c.send(&Message::Keepalive).await {
                    return Ended { reason: format!("write: {e}"), notified: false };
                }
            }
            _ = tokio::time::sleep_until(hold_deadline) => {
                return c.notify(Notification::new(code::HOLD_TIMER_EXPIRED, 0, vec![])).await;
            }
            s = incoming.recv() => {
                // Established wins every collision (RFC 4271 section 6.8).
                if let Some(mut s) = s {
                    let n = Message::Notification(Notification::new(code::CEASE, 7, vec![]));
                    let _ = s.write_all(&n.encode(Codec::default())).await;
                }
            }
        }
    }
}
