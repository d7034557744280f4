//! The `virtio_net_hdr` the kernel puts in front of every packet on a TUN opened with
//! `IFF_VNET_HDR`. It says whether the packet is a GSO "super-packet" that still has to
//! be cut into segments, and whether its transport checksum is still to be computed.
//! Little-endian on every host Weft runs on (the TUN default for a little-endian CPU).

/// Bytes of the header (`struct virtio_net_hdr`, without `num_buffers`).
pub const LEN: usize = 10;

/// `flags`: the checksum from `csum_start` to the end is still to be computed and stored
/// at `csum_start + csum_offset`; the field holds the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been verified.
pub const F_DATA_VALID: u8 = 2;

/// The GSO kind of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    None,
    TcpV4,
    UdpL4,
    TcpV6,
    /// Anything else, ECN-flagged GSO included: never enabled by Weft, so refused.
    Other(u8),
}

impl GsoType {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::TcpV4,
            4 => Self::TcpV6,
            5 => Self::UdpL4,
            other => Self::Other(other),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::TcpV4 => 1,
            Self::TcpV6 => 4,
            Self::UdpL4 => 5,
            Self::Other(v) => v,
        }
    }
}

/// One decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: GsoType,
    /// Bytes of headers (network + transport) in front of the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// A plain packet whose checksums are complete.
    pub const PLAIN: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: GsoType::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    pub fn decode(b: &[u8; LEN]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: GsoType::from_u8(b[1]),
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type.to_u8();
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: 52,
            gso_size: 1420,
            csum_start: 20,
            csum_offset: 16,
        };
        let b = h.encode();
        assert_eq!(b, [1, 1, 52, 0, 0x8c, 0x05, 20, 0, 16, 0]);
        assert_eq!(VnetHdr::decode(&b), h);
        assert_eq!(
            VnetHdr::decode(&[0, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]).gso_type,
            GsoType::Other(0x81)
        );
    }
}
