//! A small stable hash for names and marks derived from data.
//!
//! FNV-1a: unlike std's hasher its output never changes between builds or releases, which
//! matters for values that outlive a process: the nftables table's fingerprint, the VTEP
//! MAC a node publishes, the host-side veth name the CNI plugin finds again at DEL.

/// 64-bit FNV-1a of `data`.
pub fn fnv1a(data: impl IntoIterator<Item = u8>) -> u64 {
    data.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        assert_eq!(super::fnv1a(*b""), 0xcbf29ce484222325);
        assert_eq!(super::fnv1a(*b"a"), 0xaf63dc4c8601ec8c);
    }
}
