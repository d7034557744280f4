//! Ethernet addresses.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A locally administered unicast address derived from `seed`: the same seed always
    /// gives the same address, so a VTEP keeps its MAC across restarts and recreations.
    pub fn derived(seed: &[u8]) -> MacAddr {
        let b = crate::hash::fnv1a(seed.iter().copied()).to_be_bytes();
        MacAddr([(b[0] & 0xfe) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }

    pub fn from_slice(s: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(s.try_into().ok()?))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Text that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address like c6:d2:32:6f:8f:44")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let parts: Vec<u8> = s
            .split(':')
            .map(|p| {
                if p.len() == 2 {
                    u8::from_str_radix(p, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<_>>()
            .ok_or_else(|| BadMac(s.to_owned()))?;
        MacAddr::from_slice(&parts).ok_or_else(|| BadMac(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_derive() {
        let m: MacAddr = "c6:d2:32:6f:8f:44".parse().unwrap();
        assert_eq!(m.to_string(), "c6:d2:32:6f:8f:44");
        assert!(
            "c6:d2:32:6f:8f".parse::<MacAddr>().is_err()
                && "zz:d2:32:6f:8f:44".parse::<MacAddr>().is_err()
        );
        let d = MacAddr::derived(b"192.168.1.1/1");
        assert_eq!(d, MacAddr::derived(b"192.168.1.1/1"));
        assert_ne!(d, MacAddr::derived(b"192.168.1.2/1"));
        assert_eq!(d.0[0] & 0x03, 0x02, "locally administered unicast");
    }
}
