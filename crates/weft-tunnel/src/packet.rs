//! Just enough of IPv4, TCP and UDP to segment, coalesce and encapsulate: field offsets
//! and checked accessors over byte slices. Nothing here allocates.

use std::net::Ipv4Addr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// A well-formed IPv4 header at the start of a packet: version 4, a sane header length,
/// and a total length the buffer holds.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4<'a> {
    pub bytes: &'a [u8],
}

impl<'a> Ipv4<'a> {
    /// The header, if `p` starts with a valid one. The packet is `p[..total_len()]`.
    pub fn parse(p: &'a [u8]) -> Option<Self> {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return None;
        }
        let ihl = ((p[0] & 0x0f) as usize) * 4;
        let total = u16::from_be_bytes([p[2], p[3]]) as usize;
        if ihl < 20 || total < ihl || total > p.len() {
            return None;
        }
        Some(Ipv4 { bytes: p })
    }

    pub fn header_len(&self) -> usize {
        ((self.bytes[0] & 0x0f) as usize) * 4
    }
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]]) as usize
    }
    pub fn tos(&self) -> u8 {
        self.bytes[1]
    }
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.bytes[4], self.bytes[5]])
    }
    /// Flags and fragment offset as on the wire.
    pub fn frag(&self) -> u16 {
        u16::from_be_bytes([self.bytes[6], self.bytes[7]])
    }
    pub fn dont_fragment(&self) -> bool {
        self.frag() & 0x4000 != 0
    }
    pub fn is_fragment(&self) -> bool {
        self.frag() & 0x3fff != 0
    }
    pub fn ttl(&self) -> u8 {
        self.bytes[8]
    }
    pub fn protocol(&self) -> u8 {
        self.bytes[9]
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[12],
            self.bytes[13],
            self.bytes[14],
            self.bytes[15],
        )
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[16],
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
        )
    }
    /// The transport header and payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.header_len()..self.total_len()]
    }
}

/// The destination address of whatever starts with an IPv4 header, unchecked beyond length.
pub fn dst_of(p: &[u8]) -> Option<Ipv4Addr> {
    (p.len() >= 20 && p[0] >> 4 == 4).then(|| Ipv4Addr::new(p[16], p[17], p[18], p[19]))
}

/// Writes an IPv4 header's total length, identification and a fresh checksum.
pub fn set_ipv4_len_id(header: &mut [u8], total_len: u16, id: u16) {
    header[2..4].copy_from_slice(&total_len.to_be_bytes());
    header[4..6].copy_from_slice(&id.to_be_bytes());
    header[10..12].copy_from_slice(&[0, 0]);
    let c = crate::checksum::ipv4_header(header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
