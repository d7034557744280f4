//! Transmit side: turn what the TUN hands over into packets that fit the tunnel.
//!
//! With TSO enabled on the TUN, the kernel hands over TCP "super-packets" of up to 64 KiB
//! with one set of headers and `gso_size` payload bytes per segment; plain packets may
//! arrive with their transport checksum still to be computed (`NEEDS_CSUM`). This module
//! does what a NIC would: cut a super-packet into segments (headers copied, length, id,
//! sequence number, flags and both checksums fixed per segment) and finish checksums.
//!
//! Segments are written one after another into an output buffer, each behind `headroom`
//! bytes left free for an outer header (20 for IP-in-IP, 0 for UDP, whose segments must
//! be contiguous so one UDP GSO send carries them all). Every segment but the last has
//! the same length, which is what UDP GSO needs.

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

/// Where the segments of one packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// The packet needed no cutting; its checksum (if any was pending) is done in place.
    InPlace { len: usize },
    /// `count` segments in the output buffer: segment `i` starts at `i * stride()` +
    /// headroom; all are `seg_len` long but the last, which is `last_len`.
    Segments {
        count: usize,
        headroom: usize,
        seg_len: usize,
        last_len: usize,
    },
}

impl Prepared {
    pub fn stride(&self) -> usize {
        match *self {
            Prepared::InPlace { len } => len,
            Prepared::Segments {
                headroom, seg_len, ..
            } => headroom + seg_len,
        }
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

/// Prepares one packet read from the TUN (header already decoded) for the tunnel.
pub fn prepare(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    out: &mut [u8],
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
        GsoType::TcpV4 if protocol == PROTO_TCP => split_tcp(hdr, &pkt[..total], out, headroom),
        GsoType::TcpV4 => Err(SplitError::Malformed("TCPv4 GSO on a non-TCP packet")),
        other => Err(SplitError::Unsupported(other)),
    }
}

fn split_tcp(
    hdr: &VnetHdr,
    pkt: &[u8],
    out: &mut [u8],
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
    let payload = &pkt[hlen..];
    let count = payload.len().div_ceil(mss).max(1);
    let seg_len = hlen + mss.min(payload.len());
    let last_len = hlen + (payload.len() - (count - 1) * mss);
    let stride = headroom + seg_len;
    let need = stride * (count - 1) + headroom + last_len;
    if out.len() < need {
        return Err(SplitError::NoRoom(need));
    }
    let (src, dst) = (ip.src(), ip.dst());
    let id0 = ip.id();
    let seq0 = packet::be32(pkt, iphl + 4);
    let flags = pkt[iphl + 13];
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let start = i * stride + headroom;
        let len = hlen + chunk.len();
        let seg = &mut out[start..start + len];
        seg[..hlen].copy_from_slice(&pkt[..hlen]);
        seg[hlen..].copy_from_slice(chunk);
        packet::set_ipv4_len_id(&mut seg[..iphl], len as u16, id0.wrapping_add(i as u16));
        let tcp = &mut seg[iphl..];
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
        let sum = checksum::pseudo_header(src, dst, PROTO_TCP, tcp.len() as u16);
        let c = checksum::finish(checksum::add(sum, tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
    Ok(Prepared::Segments {
        count,
        headroom,
        seg_len,
        last_len,
    })
}
