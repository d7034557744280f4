//! Receive side: the opposite of [`crate::segment`]. Packets that arrived through the
//! tunnel in one batch are grouped so that consecutive segments of one TCP flow go to the
//! TUN as a single GSO super-packet, which the kernel forwards (and the container's stack
//! receives) as one unit: far fewer trips through the stack for the same bytes.
//!
//! A segment joins the open group of its flow only when the result is exactly what the
//! sender's TSO would have cut into those segments: next sequence number, same headers
//! (addresses, ports, TOS, TTL, DF, ACK number, window, TCP options), the same payload
//! size as the group's first segment (a shorter one or a PSH closes the group), no
//! SYN/FIN/RST/URG/ECE/CWR, no IP options or fragments, and at most 64 KiB in total.
//! Anything else is written as it came. Order within a flow is always kept: a segment
//! that cannot join its flow's group closes that group and starts a new one.
//!
//! The planner keeps its vectors between batches and never allocates per packet.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::packet::{
    self, Ipv4, PROTO_TCP, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
};
use crate::vnet::{GsoType, VnetHdr, F_NEEDS_CSUM};

/// Largest number of segments in one coalesced packet.
pub const MAX_SEGMENTS: u32 = 64;
/// How many recent groups a segment is matched against.
const LOOKBACK: usize = 16;
const NONE: u32 = u32::MAX;

/// One output packet: a single packet as received, or a coalesced run.
#[derive(Debug, Clone)]
pub struct Group {
    pub head: u32,
    tail: u32,
    pub count: u32,
    /// Zero for a packet that cannot be coalesced.
    flow: u64,
    ports: u32,
    hlen: u16,
    gso_size: u16,
    payload: u32,
    next_seq: u32,
    open: bool,
    psh: bool,
}

/// The fields a coalescable segment is matched on.
struct Candidate {
    flow: u64,
    ports: u32,
    iphl: usize,
    hlen: usize,
    seq: u32,
    payload: usize,
    psh: bool,
}

fn candidate(p: &[u8], verify: bool) -> Option<Candidate> {
    let ip = Ipv4::parse(p)?;
    if ip.header_len() != 20
        || ip.total_len() != p.len()
        || ip.is_fragment()
        || ip.protocol() != PROTO_TCP
    {
        return None;
    }
    let iphl = 20;
    if p.len() < iphl + 20 {
        return None;
    }
    let tcphl = ((p[iphl + 12] >> 4) as usize) * 4;
    let hlen = iphl + tcphl;
    let flags = p[iphl + 13];
    let bad = TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_ECE | TCP_CWR;
    if tcphl < 20 || hlen >= p.len() || flags & TCP_ACK == 0 || flags & bad != 0 {
        return None;
    }
    if verify {
        let sum = checksum::pseudo_header(ip.src(), ip.dst(), PROTO_TCP, (p.len() - iphl) as u16);
        if checksum::fold(checksum::add(sum, &p[iphl..])) != 0xffff {
            return None; // let the kernel see (and drop) it on its own
        }
    }
    Some(Candidate {
        flow: ((u32::from(ip.src()) as u64) << 32) | u32::from(ip.dst()) as u64,
        ports: packet::be32(p, iphl),
        iphl,
        hlen,
        seq: packet::be32(p, iphl + 4),
        payload: p.len() - hlen,
        psh: flags & TCP_PSH != 0,
    })
}

/// Whether `p`'s headers equal `head`'s where a TSO burst's segments all agree.
fn same_headers(head: &[u8], p: &[u8], iphl: usize, hlen: usize) -> bool {
    head[1] == p[1]                                   // TOS
        && head[6] & 0x40 == p[6] & 0x40              // DF
        && head[8] == p[8]                            // TTL
        && head[iphl + 8..iphl + 12] == p[iphl + 8..iphl + 12] // ACK number
        && head[iphl + 13] & !TCP_PSH == p[iphl + 13] & !TCP_PSH
        && head[iphl + 14..iphl + 16] == p[iphl + 14..iphl + 16] // window
        && head[iphl + 20..hlen] == p[iphl + 20..hlen] // options
}

/// Plans how one batch of received packets is written to the TUN.
#[derive(Debug, Default)]
pub struct Coalescer {
    groups: Vec<Group>,
    /// Next member of the same group, by packet index.
    next: Vec<u32>,
    /// Verify each segment's TCP checksum before merging (when no outer checksum did).
    verify: bool,
}

impl Coalescer {
    pub fn new(verify_tcp_checksum: bool) -> Self {
        Coalescer {
            verify: verify_tcp_checksum,
            ..Default::default()
        }
    }

    /// Groups packets `0..n` (`pkt(i)` gives packet `i`, exactly its IP length).
    pub fn plan<'a>(&mut self, n: usize, pkt: impl Fn(usize) -> &'a [u8]) {
        self.groups.clear();
        self.next.clear();
        self.next.resize(n, NONE);
        for i in 0..n {
            let p = pkt(i);
            let Some(c) = candidate(p, self.verify) else {
                self.groups.push(Group::single(i as u32, 0, 0));
                continue;
            };
            let start = self.groups.len().saturating_sub(LOOKBACK);
            let found = self.groups[start..]
                .iter()
                .rposition(|g| g.open && g.flow == c.flow && g.ports == c.ports)
                .map(|k| start + k);
            if let Some(k) = found {
                let g = &self.groups[k];
                let fits = c.seq == g.next_seq
                    && c.hlen == g.hlen as usize
                    && c.payload <= g.gso_size as usize
                    && g.count < MAX_SEGMENTS
                    && c.hlen + g.payload as usize + c.payload <= 65_535
                    && same_headers(pkt(g.head as usize), p, c.iphl, c.hlen);
                if fits {
                    let g = &mut self.groups[k];
                    self.next[g.tail as usize] = i as u32;
                    g.tail = i as u32;
                    g.count += 1;
                    g.payload += c.payload as u32;
                    g.next_seq = g.next_seq.wrapping_add(c.payload as u32);
                    g.psh |= c.psh;
                    g.open = !c.psh && c.payload == g.gso_size as usize;
                    continue;
                }
                // Never let a later segment of this flow join a group before this one.
                self.groups[k].open = false;
            }
            let mut g = Group::single(i as u32, c.flow, c.ports);
            g.hlen = c.hlen as u16;
            g.gso_size = c.payload as u16;
            g.payload = c.payload as u32;
            g.next_seq = c.seq.wrapping_add(c.payload as u32);
            g.open = !c.psh;
            g.psh = c.psh;
            self.groups.push(g);
        }
    }

    /// The output packets of the last [`Coalescer::plan`], in order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The packet indices of a group, in order.
    pub fn members(&self, g: &Group) -> impl Iterator<Item = usize> + '_ {
        let mut at = g.head;
        std::iter::from_fn(move || {
            (at != NONE).then(|| {
                let i = at;
                at = self.next[i as usize];
                i as usize
            })
        })
    }
}

impl Group {
    fn single(i: u32, flow: u64, ports: u32) -> Self {
        Group {
            head: i,
            tail: i,
            count: 1,
            flow,
            ports,
            hlen: 0,
            gso_size: 0,
            payload: 0,
            next_seq: 0,
            open: false,
            psh: false,
        }
    }

    /// Bytes of headers each member carries (payload starts there).
    pub fn header_len(&self) -> usize {
        self.hlen as usize
    }

    /// For a coalesced group: the virtio header and the merged packet's headers (written
    /// into `scratch`, built from the first member `head`). A single packet needs neither.
    pub fn merged_header(&self, head: &[u8], scratch: &mut [u8]) -> Option<(VnetHdr, usize)> {
        if self.count < 2 {
            return None;
        }
        let hlen = self.hlen as usize;
        let iphl = 20;
        let h = &mut scratch[..hlen];
        h.copy_from_slice(&head[..hlen]);
        let total = (hlen + self.payload as usize) as u16;
        let id = packet::be16(h, 4);
        packet::set_ipv4_len_id(&mut h[..iphl], total, id);
        if self.psh {
            h[iphl + 13] |= TCP_PSH;
        }
        // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum.
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        let pseudo = checksum::pseudo_header(src, dst, PROTO_TCP, total - iphl as u16);
        h[iphl + 16..iphl + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let vnet = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: hlen as u16,
            gso_size: self.gso_size,
            csum_start: iphl as u16,
            csum_offset: 16,
        };
        Some((vnet, hlen))
    }
}
