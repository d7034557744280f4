//! The worker loops: one per TUN queue, each moving packets both ways.
//!
//! A loop reads its TUN queue and sends what it reads into the tunnel (UDP datagrams or
//! raw IP-in-IP), and receives from its tunnel socket and writes what it receives to the
//! same queue. Doing both in one thread is what keeps round trips short: writing a packet
//! to the TUN runs the receiving container's stack in that very system call, so a reply
//! (a TCP ACK, an echo reply) is usually waiting in the queue when the write returns, and
//! the same thread sends it on without any thread having to be woken. (The kernel queues
//! a flow's packets on the queue its opposite direction was written to.) IP-in-IP has one
//! receiver, on queue 0: a raw socket sees every packet, so several would each get a copy.
//!
//! Loops own all their buffers, allocated once, and never copy a payload in user space:
//! segments go out as gathered headers and payload slices of the TUN read, and coalesced
//! packets are written with `writev` straight from the receive buffers. Descriptors are
//! non-blocking and waited on with a timeout, so a stop request is noticed within half a
//! second.

use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{debug, error, warn};

use crate::coalesce::Coalescer;
use crate::encap::{self, IPIP_HEADER_LEN};
use crate::packet::{self, Ipv4};
use crate::segment::{self, Prepared};
use crate::stats::{add, Stats};
use crate::sys::{self, raw::RawIpip, tun, udp::RecvMeta, udp::UdpSocket};
use crate::table::Table;
use crate::vnet::{self, VnetHdr};

const WAIT_MS: i32 = 500;
/// Room for one TUN read: a 64 KiB super-packet, its virtio header and outer headroom.
const READ_BUF: usize = 65_536 + vnet::LEN + IPIP_HEADER_LEN;
/// Largest UDP GSO send: under the 64 KiB IP limit with room for the UDP/IP headers.
const GSO_SEND_MAX: usize = 65_000;
/// TUN reads per turn of a loop before it looks at its socket again.
const TX_BURST: usize = 8;

/// What every loop shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub table: Arc<ArcSwap<Table>>,
    pub stats: Arc<Stats>,
    pub stop: Arc<AtomicBool>,
    /// Set when a loop ended on an error (the device was deleted, say).
    pub dead: Arc<AtomicBool>,
}

/// Where transmitted packets go.
pub(crate) enum Sender {
    Udp { socket: Arc<UdpSocket>, port: u16 },
    Ipip { socket: Arc<RawIpip> },
}

/// Where received packets come from.
pub(crate) enum Receiver {
    Udp(Arc<UdpSocket>),
    Ipip(Arc<RawIpip>),
}

/// The loop of one TUN queue: transmits what the queue gives, and, with a receiver,
/// writes what arrives from the tunnel to the queue.
pub(crate) fn run(queue: OwnedFd, sender: Sender, receiver: Option<Receiver>, sh: Shared) {
    let mut tx = Transmit::new(sender);
    let mut rx = receiver.map(Receive::new);
    while !sh.stop.load(Ordering::Relaxed) {
        let mut busy = false;
        if let Some(rx) = rx.as_mut() {
            busy |= rx.step(&queue, &sh);
        }
        // Right after a write to the TUN, the replies it caused are in the queue.
        for _ in 0..TX_BURST {
            match tx.step(&queue, &sh) {
                Ok(true) => busy = true,
                Ok(false) => break,
                Err(e) => return fail(&sh, "reading the TUN", e),
            }
        }
        if !busy {
            let waited = match rx.as_ref() {
                Some(rx) => sys::wait_readable(&[queue.as_fd(), rx.fd()], WAIT_MS),
                None => sys::wait_readable(&[queue.as_fd()], WAIT_MS),
            };
            if let Err(e) = waited {
                return fail(&sh, "waiting on the TUN and the tunnel socket", e);
            }
        }
    }
}

/// TUN -> tunnel: the transmit half of a loop, with its buffers.
struct Transmit {
    sender: Sender,
    buf: Vec<u8>,
    /// Headers of up to 1,024 segments, each behind room for an outer header.
    headers: Vec<u8>,
    iov: Vec<libc::iovec>,
    icmp: [u8; 128],
    ipip_id: u16,
}

impl Transmit {
    fn new(sender: Sender) -> Self {
        Transmit {
            sender,
            buf: vec![0u8; READ_BUF],
            headers: vec![0u8; 1024 * (IPIP_HEADER_LEN + 120)],
            iov: Vec::with_capacity(130),
            icmp: [0u8; 128],
            ipip_id: rand_seed(),
        }
    }

    /// Reads one packet from the TUN and sends it on; false when the queue was empty.
    /// An error means the TUN itself failed.
    fn step(&mut self, queue: &OwnedFd, sh: &Shared) -> std::io::Result<bool> {
        let Transmit {
            sender,
            buf,
            headers,
            iov,
            icmp,
            ipip_id,
        } = self;
        // The packet starts at offset 20: the virtio header's room becomes the outer
        // IP-in-IP header, so a plain packet is never copied.
        let n = match tun::read(queue, &mut buf[IPIP_HEADER_LEN - vnet::LEN..])? {
            Some(n) if n > vnet::LEN => n - vnet::LEN,
            Some(_) => return Ok(true),
            None => return Ok(false),
        };
        let hdr = VnetHdr::decode(
            buf[IPIP_HEADER_LEN - vnet::LEN..IPIP_HEADER_LEN]
                .try_into()
                .expect("10 bytes"),
        );
        let table = sh.table.load();
        let (head, pkt) = buf.split_at_mut(IPIP_HEADER_LEN);
        let pkt = &mut pkt[..n];
        let Some(dst) = packet::dst_of(pkt) else {
            add(&sh.stats.dropped_malformed, 1);
            return Ok(true);
        };
        let Some(peer) = table.lookup(dst) else {
            if table.network.contains(&dst) && !table.local.contains(&dst) {
                if let Some(len) = encap::net_unreachable(icmp, pkt, table.icmp_source()) {
                    let plain = VnetHdr::PLAIN.encode();
                    if tun::writev(queue, &[tun::iovec(&plain), tun::iovec(&icmp[..len])]).is_ok() {
                        add(&sh.stats.unreachable_sent, 1);
                    }
                }
            }
            return Ok(true);
        };
        // UDP GSO needs the segments back to back; IP-in-IP wants room for its header.
        let headroom = match sender {
            Sender::Udp { .. } => 0,
            Sender::Ipip { .. } => IPIP_HEADER_LEN,
        };
        let prepared = match segment::prepare(&hdr, pkt, headers, headroom) {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "dropping a packet from the TUN");
                add(&sh.stats.dropped_malformed, 1);
                return Ok(true);
            }
        };
        let count = match prepared {
            Prepared::InPlace { .. } => 1,
            Prepared::Segments { count, .. } => count,
        };
        let bytes: usize = (0..count).map(|i| prepared.segment_len(i)).sum();
        let sends = match sender {
            Sender::Udp { socket, port } => {
                let to = SocketAddrV4::new(peer, *port);
                send_udp(socket, to, prepared, pkt, headers, iov)
            }
            Sender::Ipip { socket } => match prepared {
                Prepared::InPlace { len } => {
                    encap::write_ipip_header(head, &pkt[..len], table.public_ip, peer, *ipip_id);
                    *ipip_id = ipip_id.wrapping_add(1);
                    let whole = &buf[..IPIP_HEADER_LEN + len];
                    socket.send_batch(1, |_| (whole, &[], peer))
                }
                Prepared::Segments { .. } => {
                    // Outer header in the headroom in front of each segment's headers.
                    for i in 0..count {
                        let h = prepared.header(i);
                        let (outer, inner_head) =
                            headers[h.start - IPIP_HEADER_LEN..h.end].split_at_mut(IPIP_HEADER_LEN);
                        let inner_len = prepared.segment_len(i);
                        encap::write_ipip_header_for(
                            outer,
                            inner_head,
                            inner_len,
                            table.public_ip,
                            peer,
                            *ipip_id,
                        );
                        *ipip_id = ipip_id.wrapping_add(1);
                    }
                    let (headers, pkt) = (&*headers, &*pkt);
                    socket.send_batch(count, |i| {
                        let h = prepared.header(i);
                        (
                            &headers[h.start - IPIP_HEADER_LEN..h.end],
                            &pkt[prepared.payload(i)],
                            peer,
                        )
                    })
                }
            },
        };
        match sends {
            Ok(s) => {
                add(&sh.stats.tx_packets, count as u64);
                add(&sh.stats.tx_bytes, bytes as u64);
                add(&sh.stats.tx_sends, s as u64);
            }
            Err(e) => {
                add(&sh.stats.errors, 1);
                debug!(error = %e, %peer, "send failed");
            }
        }
        Ok(true)
    }
}

/// Sends prepared segments to one peer: one GSO send per 64 KiB, gathering each
/// segment's headers and payload without copying.
fn send_udp(
    socket: &UdpSocket,
    to: SocketAddrV4,
    p: Prepared,
    pkt: &[u8],
    headers: &[u8],
    iov: &mut Vec<libc::iovec>,
) -> std::io::Result<usize> {
    let Prepared::Segments { count, .. } = p else {
        let Prepared::InPlace { len } = p else {
            unreachable!()
        };
        return socket.send(&pkt[..len], to, len).map(|_| 1);
    };
    let seg_len = p.segment_len(0);
    let per_send = if socket.gso() {
        (GSO_SEND_MAX / seg_len).clamp(1, 64)
    } else {
        1
    };
    let mut sends = 0;
    let mut i = 0;
    while i < count {
        let end = (i + per_send).min(count);
        iov.clear();
        let mut len = 0;
        for k in i..end {
            iov.push(tun::iovec(&headers[p.header(k)]));
            iov.push(tun::iovec(&pkt[p.payload(k)]));
            len += p.segment_len(k);
        }
        socket.send_iov(iov, len, to, seg_len)?;
        sends += 1;
        i = end;
    }
    Ok(sends)
}

/// A received inner packet: which buffer, where, how long.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    buf: u16,
    start: u32,
    len: u32,
}

/// Checks a decapsulated packet; returns its IP length if it may go to the TUN.
fn accept_inner(p: &[u8], table: &Table, stats: &Stats) -> Option<usize> {
    let Some(ip) = Ipv4::parse(p) else {
        add(&stats.dropped_malformed, 1);
        return None;
    };
    if !table.local.contains(&ip.dst()) {
        add(&stats.dropped_misdirected, 1);
        return None;
    }
    Some(ip.total_len())
}

/// Writes one batch of received packets to the TUN, coalesced.
fn write_batch(
    queue: &OwnedFd,
    bufs: &[Vec<u8>],
    slots: &[Slot],
    co: &mut Coalescer,
    sh: &Shared,
    iov: &mut Vec<libc::iovec>,
) {
    let slice = |i: usize| {
        let s = slots[i];
        &bufs[s.buf as usize][s.start as usize..(s.start + s.len) as usize]
    };
    co.plan(slots.len(), slice);
    let plain = VnetHdr::PLAIN.encode();
    let mut scratch = [0u8; 128];
    let mut writes = 0u64;
    for g in co.groups() {
        iov.clear();
        let head = slice(g.head as usize);
        let vnet_bytes;
        match g.merged_header(head, &mut scratch) {
            None => {
                iov.push(tun::iovec(&plain));
                iov.push(tun::iovec(head));
            }
            Some((vnet, hlen)) => {
                vnet_bytes = vnet.encode();
                iov.push(tun::iovec(&vnet_bytes));
                iov.push(tun::iovec(&scratch[..hlen]));
                for i in co.members(g) {
                    iov.push(tun::iovec(&slice(i)[hlen..]));
                }
            }
        }
        match tun::writev(queue, iov) {
            Ok(_) => writes += 1,
            Err(e) => {
                add(&sh.stats.errors, 1);
                debug!(error = %e, "TUN write failed");
            }
        }
    }
    add(&sh.stats.rx_writes, writes);
}

/// Tunnel -> TUN: the receive half of a loop, with its buffers.
struct Receive {
    from: Receiver,
    bufs: Vec<Vec<u8>>,
    /// Per buffer: what `recvmmsg` said about it (UDP).
    meta: Vec<RecvMeta>,
    /// Per buffer: the packet's length (IP-in-IP).
    lens: Vec<usize>,
    slots: Vec<Slot>,
    co: Coalescer,
    iov: Vec<libc::iovec>,
}

impl Receive {
    fn new(from: Receiver) -> Self {
        let (count, size, verify) = match from {
            // The UDP checksum covered every inner byte.
            Receiver::Udp(_) => (sys::udp::RECV_BATCH, 65_536, false),
            // No outer checksum covered the inner bytes.
            Receiver::Ipip(_) => (sys::raw::BATCH, 2048, true),
        };
        Receive {
            from,
            bufs: vec![vec![0u8; size]; count],
            meta: vec![RecvMeta::default(); count],
            lens: vec![0usize; count],
            slots: Vec::with_capacity(count * 64),
            co: Coalescer::new(verify),
            iov: Vec::with_capacity(80),
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.from {
            Receiver::Udp(s) => s.as_fd(),
            Receiver::Ipip(s) => s.as_fd(),
        }
    }

    /// Receives one batch and writes it to the TUN; false when nothing was waiting.
    fn step(&mut self, queue: &OwnedFd, sh: &Shared) -> bool {
        let got = match &self.from {
            Receiver::Udp(s) => s.recv_batch(&mut self.bufs, &mut self.meta),
            Receiver::Ipip(s) => s.recv_batch(&mut self.bufs, &mut self.lens),
        };
        let got = match got {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "tunnel receive failed");
                return false;
            }
        };
        let table = sh.table.load();
        self.slots.clear();
        let counts = match self.from {
            Receiver::Udp(_) => self.split_udp(got, &table, &sh.stats),
            Receiver::Ipip(_) => self.split_ipip(got, &table, &sh.stats),
        };
        let (packets, bytes, foreign) = counts;
        add(&sh.stats.dropped_nonmember, foreign);
        add(&sh.stats.rx_packets, packets);
        add(&sh.stats.rx_bytes, bytes);
        write_batch(
            queue,
            &self.bufs,
            &self.slots,
            &mut self.co,
            sh,
            &mut self.iov,
        );
        true
    }

    /// Cuts GRO-merged datagrams into their inner packets; (packets, bytes, foreign).
    fn split_udp(&mut self, got: usize, table: &Table, stats: &Stats) -> (u64, u64, u64) {
        let (mut packets, mut bytes, mut foreign) = (0u64, 0u64, 0u64);
        for (b, m) in self.meta[..got].iter().enumerate() {
            if !m.src.is_some_and(|s| table.is_member(*s.ip())) {
                foreign += m.len.div_ceil(m.segment) as u64;
                continue;
            }
            let mut at = 0;
            while at < m.len {
                let len = m.segment.min(m.len - at);
                let p = &self.bufs[b][at..at + len];
                if let Some(ip_len) = accept_inner(p, table, stats) {
                    self.slots.push(Slot {
                        buf: b as u16,
                        start: at as u32,
                        len: ip_len.min(len) as u32,
                    });
                    packets += 1;
                    bytes += len as u64;
                }
                at += len;
            }
        }
        (packets, bytes, foreign)
    }

    /// Strips the outer headers of IP-in-IP packets; (packets, bytes, foreign).
    fn split_ipip(&mut self, got: usize, table: &Table, stats: &Stats) -> (u64, u64, u64) {
        let (mut packets, mut bytes, mut foreign) = (0u64, 0u64, 0u64);
        for b in 0..got {
            let outer_bytes = &self.bufs[b][..self.lens[b]];
            let Some(outer) =
                Ipv4::parse(outer_bytes).filter(|o| o.protocol() == packet::PROTO_IPIP)
            else {
                add(&stats.dropped_malformed, 1);
                continue;
            };
            if !table.is_member(outer.src()) {
                foreign += 1;
                continue;
            }
            let start = outer.header_len();
            if let Some(ip_len) = accept_inner(outer.payload(), table, stats) {
                self.slots.push(Slot {
                    buf: b as u16,
                    start: start as u32,
                    len: ip_len as u32,
                });
                packets += 1;
                bytes += ip_len as u64;
            }
        }
        (packets, bytes, foreign)
    }
}

fn fail(sh: &Shared, what: &str, e: std::io::Error) {
    if !sh.stop.load(Ordering::Relaxed) {
        error!(error = %e, "{what} failed; this data-path worker stops and the agent will rebuild the tunnel");
        sh.dead.store(true, Ordering::Relaxed);
    }
}

fn rand_seed() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ (t >> 16)) as u16
}
