//! The two wire formats, both flannel/kernel compatible, and the ICMP error Weft answers
//! with when no node holds a destination.
//!
//! - **udp** (flannel's `udp` backend): the inner IPv4 packet, unchanged, is the whole
//!   payload of one UDP datagram to the peer's port (8285). No header of Weft's own, so
//!   there is nothing to build here: the socket adds UDP and IP.
//! - **ipip** (RFC 2003, IP protocol 4): a 20-byte outer IPv4 header in front of the inner
//!   packet, filled exactly as Linux's `ipip` device with its defaults (`ip link add ...
//!   type ipip`) fills it, so user-space and kernel nodes can share a cluster: no options,
//!   TOS 0 with the inner packet's ECN bits (RFC 6040 normal mode: CE becomes ECT(0)),
//!   DF set (path MTU discovery on), TTL copied from the inner packet ("inherit"), the
//!   tunnel end points as addresses.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::packet::{self, PROTO_ICMP, PROTO_IPIP};

pub const IPIP_HEADER_LEN: usize = 20;

/// Writes the RFC 2003 outer header into `out[..20]` for `inner` (a whole IPv4 packet).
pub fn write_ipip_header(out: &mut [u8], inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, id: u16) {
    write_ipip_header_for(out, inner, inner.len(), src, dst, id)
}

/// Like [`write_ipip_header`] when only the inner packet's headers (`inner_head`, at least
/// 20 bytes) are at hand and its whole length is `inner_len`.
pub fn write_ipip_header_for(
    out: &mut [u8],
    inner_head: &[u8],
    inner_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
) {
    let inner = inner_head;
    let ecn = inner[1] & 0x03;
    let outer_ecn = if ecn == 0x03 { 0x02 } else { ecn };
    let h = &mut out[..IPIP_HEADER_LEN];
    h[0] = 0x45;
    h[1] = outer_ecn;
    h[6] = 0x40; // DF
    h[7] = 0;
    h[8] = inner[8];
    h[9] = PROTO_IPIP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    packet::set_ipv4_len_id(h, (IPIP_HEADER_LEN + inner_len) as u16, id);
}

/// Builds an ICMP "destination net unreachable" from `from` answering `original` into
/// `out`; returns its length. Carries the original header and 8 bytes (RFC 792).
pub fn net_unreachable(out: &mut [u8], original: &[u8], from: Ipv4Addr) -> Option<usize> {
    let ip = packet::Ipv4::parse(original)?;
    // Never answer an ICMP error with one (RFC 1122 3.2.2), nor a fragment's tail.
    if ip.protocol() == PROTO_ICMP
        && original
            .get(ip.header_len())
            .is_some_and(|t| ![0u8, 8, 13, 15, 17].contains(t))
    {
        return None;
    }
    if ip.frag() & 0x1fff != 0 {
        return None;
    }
    let quoted = (ip.header_len() + 8).min(ip.total_len());
    let len = 20 + 8 + quoted;
    if out.len() < len {
        return None;
    }
    let h = &mut out[..len];
    h.fill(0);
    h[0] = 0x45;
    h[8] = 64;
    h[9] = PROTO_ICMP;
    h[12..16].copy_from_slice(&from.octets());
    h[16..20].copy_from_slice(&ip.src().octets());
    packet::set_ipv4_len_id(&mut h[..20], len as u16, 0);
    h[20] = 3; // destination unreachable
    h[21] = 0; // net unreachable
    h[28..].copy_from_slice(&original[..quoted]);
    let c = checksum::finish(checksum::add(0, &h[20..]));
    h[22..24].copy_from_slice(&c.to_be_bytes());
    Some(len)
}
