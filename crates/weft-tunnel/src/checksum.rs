//! The Internet checksum (RFC 1071), the one piece of arithmetic every header here needs.
//!
//! Sums are kept unfolded in a `u64` so long buffers can be added without carries being
//! lost; [`fold`] reduces to 16 bits at the end.

use std::net::Ipv4Addr;

/// Adds `data` (big-endian 16-bit words, an odd last byte padded with zero) to `sum`.
///
/// The hot loop adds *little-endian* 32-bit words into eight independent 64-bit lanes,
/// which the compiler turns into vector adds: the one's-complement sum may be taken in
/// any word size and either byte order and converted at the end by folding and swapping
/// the two bytes (RFC 1071, section 2). That is twice as fast as big-endian words.
pub fn add(mut sum: u64, data: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (k, lane) in lanes.iter_mut().enumerate() {
            let w = u32::from_le_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]]);
            *lane += w as u64;
        }
    }
    let mut le = 0u64;
    for lane in lanes {
        le = le.wrapping_add(lane >> 32).wrapping_add(lane & 0xffff_ffff);
    }
    sum += fold(le).swap_bytes() as u64;
    let mut rest = blocks.remainder();
    while rest.len() >= 2 {
        sum += u16::from_be_bytes([rest[0], rest[1]]) as u64;
        rest = &rest[2..];
    }
    if let [last] = rest {
        sum += (*last as u64) << 8;
    }
    sum
}

/// Folds a running sum to 16 bits (not complemented).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store in a header: the complement of the folded sum.
pub fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// The IPv4 pseudo-header's contribution for a TCP or UDP checksum.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u64 {
    let mut sum = add(0, &src.octets());
    sum = add(sum, &dst.octets());
    sum + protocol as u64 + l4_len as u64
}

/// The header checksum of an IPv4 header whose checksum field is zero or stale.
pub fn ipv4_header(header: &[u8]) -> u16 {
    let sum = add(add(0, &header[..10]), &header[12..]);
    finish(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(finish(add(0, &data)), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A header from a capture: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&h), 0xb861);
    }

    #[test]
    fn odd_lengths_and_split_sums_agree() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = fold(add(0, &data));
        // Splitting at any even offset gives the same sum.
        for at in [2, 30, 32, 500, 998] {
            let split = fold(add(add(0, &data[..at]), &data[at..]));
            assert_eq!(whole, split, "split at {at}");
        }
        // Byte-at-a-time reference.
        let mut r: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            r += if i % 2 == 0 {
                (*b as u64) << 8
            } else {
                *b as u64
            };
        }
        assert_eq!(whole, fold(r));
    }
}
