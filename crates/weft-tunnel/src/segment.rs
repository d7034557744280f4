//! Transmit side: turn what the TUN hands over into packets that fit the tunnel.
//!
//! With TSO enabled on the TUN, the kernel hands over TCP "super-packets" of up to 64 KiB
//! with one set of headers and `gso_size` payload bytes per segment; plain packets may
//! arrive with their transport checksum still to be computed (`NEEDS_CSUM`). This module
//! does what a NIC would: cut a super-packet into segments (headers copied, length, id,
//! sequence number, flags and both checksums fixed per segment) and finish checksums.
//!
//! Nothing is copied: only each segment's headers are written (into a small buffer,
//! behind `headroom` bytes left free for an outer IP-in-IP header), and the sender
//! gathers headers and payload slices with one scatter/gather call. Every segment but
//! the last has the same length, which is what UDP GSO needs.

use thiserror::Error;

use crate::checksum;
use crate::packet::{self, Ipv4, PROTO_TCP, PROTO_UDP, TCP_CWR, TCP_FIN, TCP_PSH};
use crate::vnet::{GsoType, VnetHdr};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("malformed packet from the TUN: {0}")]
    Malformed(&'static str),
    #[error("GSO type {0:?} is not enabled on Weft's TUN")]
    Unsupported(GsoType),
    #[error("output buffer too small for {0} bytes of segments")]
    NoRoom(usize),
}

/// What the tunnel sends for one packet read from the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// The packet needed no cutting; its checksum (if any was pending) is done in place.
    InPlace { len: usize },
    /// `count` segments. Nothing is copied: segment `i` is its headers, written into the
    /// header buffer at [`Prepared::header`], followed by its payload, which stays in the
    /// packet at [`Prepared::payload`]. Every segment's payload is `mss` bytes but the
    /// last one's (`last`).
    Segments {
        count: usize,
        headroom: usize,
        hlen: usize,
        mss: usize,
        last: usize,
    },
}

impl Prepared {
    /// Range of segment `i`'s headers (after `headroom` free bytes) in the header buffer.
    pub fn header(&self, i: usize) -> std::ops::Range<usize> {
        match *self {
            Prepared::InPlace { .. } => 0..0,
            Prepared::Segments { headroom, hlen, .. } => {
                let at = i * (headroom + hlen) + headroom;
                at..at + hlen
            }
        }
    }

    /// Range of segment `i`'s payload in the packet.
    pub fn payload(&self, i: usize) -> std::ops::Range<usize> {
        match *self {
            Prepared::InPlace { len } => 0..len,
            Prepared::Segments {
                count,
                hlen,
                mss,
                last,
                ..
            } => {
                let at = hlen + i * mss;
                at..at + if i + 1 == count { last } else { mss }
            }
        }
    }

    /// Bytes of segment `i` (headers and payload).
    pub fn segment_len(&self, i: usize) -> usize {
        self.header(i).len() + self.payload(i).len()
    }
}

/// Completes a pending transport checksum in place (`NEEDS_CSUM` on a plain packet).
fn finish_checksum(hdr: &VnetHdr, pkt: &mut [u8], protocol: u8) -> Result<(), SplitError> {
    let start = hdr.csum_start as usize;
    let at = start + hdr.csum_offset as usize;
    if at + 2 > pkt.len() || start >= pkt.len() {
        return Err(SplitError::Malformed("checksum offsets outside the packet"));
    }
    // The field holds the pseudo-header sum, so summing the whole segment is enough.
    let mut c = checksum::finish(checksum::add(0, &pkt[start..]));
    if c == 0 && protocol == PROTO_UDP {
        c = 0xffff;
    }
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Prepares one packet read from the TUN (header already decoded) for the tunnel;
/// segment headers go to `headers`, each behind `headroom` free bytes.
pub fn prepare(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    headers: &mut [u8],
    headroom: usize,
) -> Result<Prepared, SplitError> {
    let ip = Ipv4::parse(pkt).ok_or(SplitError::Malformed("not a complete IPv4 packet"))?;
    let (total, protocol) = (ip.total_len(), ip.protocol());
    match hdr.gso_type {
        GsoType::None => {
            if hdr.needs_csum() {
                finish_checksum(hdr, &mut pkt[..total], protocol)?;
            }
            Ok(Prepared::InPlace { len: total })
        }
        GsoType::TcpV4 if protocol == PROTO_TCP => split_tcp(hdr, &pkt[..total], headers, headroom),
        GsoType::TcpV4 => Err(SplitError::Malformed("TCPv4 GSO on a non-TCP packet")),
        other => Err(SplitError::Unsupported(other)),
    }
}

fn split_tcp(
    hdr: &VnetHdr,
    pkt: &[u8],
    headers: &mut [u8],
    headroom: usize,
) -> Result<Prepared, SplitError> {
    let ip = Ipv4::parse(pkt).expect("checked by the caller");
    let iphl = ip.header_len();
    if pkt.len() < iphl + 20 {
        return Err(SplitError::Malformed("TCP header cut short"));
    }
    let tcphl = ((pkt[iphl + 12] >> 4) as usize) * 4;
    let hlen = iphl + tcphl;
    if tcphl < 20 || hlen > pkt.len() {
        return Err(SplitError::Malformed("bad TCP data offset"));
    }
    let mss = hdr.gso_size as usize;
    if mss == 0 {
        return Err(SplitError::Malformed("GSO packet with gso_size 0"));
    }
    let payload_len = pkt.len() - hlen;
    let count = payload_len.div_ceil(mss).max(1);
    let prepared = Prepared::Segments {
        count,
        headroom,
        hlen,
        mss,
        last: payload_len - (count - 1) * mss,
    };
    let need = count * (headroom + hlen);
    if headers.len() < need {
        return Err(SplitError::NoRoom(need));
    }
    let (src, dst) = (ip.src(), ip.dst());
    let id0 = ip.id();
    let seq0 = packet::be32(pkt, iphl + 4);
    let flags = pkt[iphl + 13];
    // The pseudo-header and the TCP header minus the fields that change per segment are
    // the same for all segments: sum the options once.
    let options = checksum::add(0, &pkt[iphl + 20..hlen]);
    for i in 0..count {
        let payload = &pkt[prepared.payload(i)];
        let h = &mut headers[prepared.header(i)];
        h.copy_from_slice(&pkt[..hlen]);
        let len = hlen + payload.len();
        packet::set_ipv4_len_id(&mut h[..iphl], len as u16, id0.wrapping_add(i as u16));
        let tcp = &mut h[iphl..];
        let seq = seq0.wrapping_add((i * mss) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        tcp[13] = f;
        tcp[16..18].copy_from_slice(&[0, 0]);
        let mut sum = checksum::pseudo_header(src, dst, PROTO_TCP, (len - iphl) as u16);
        sum = checksum::add(sum, &tcp[..20]) + options;
        sum = checksum::add(sum, payload);
        tcp[16..18].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    }
    Ok(prepared)
}
