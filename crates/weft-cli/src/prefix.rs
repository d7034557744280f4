//! IPv4 prefixes on the command line, with errors that name the fault: `invalid IP
//! address syntax` says nothing about `10.244.0.0/33`, `10.244.0.0` or `fd00::/64`.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

/// What is wrong with a prefix given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPrefix {
    #[error("IPv6 is not supported here yet; give an IPv4 prefix (a dual-stack cluster's IPv6 network goes in `network init --ipv6-network`)")]
    Ipv6,
    #[error("{0} has no prefix length; write it as {0}/16, say")]
    NoLength(Ipv4Addr),
    #[error("{0:?} is not an IPv4 prefix like 10.244.0.0/16")]
    NotAPrefix(String),
    #[error("{0:?} is not an IPv4 address")]
    NotAnAddress(String),
    #[error("prefix length {0:?} is not a number")]
    NotANumber(String),
    #[error("prefix length {0} is out of range (0 to 32)")]
    OutOfRange(u8),
}

/// Parses `A.B.C.D/LEN`.
pub fn parse(s: &str) -> Result<Ipv4Net, BadPrefix> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => BadPrefix::Ipv6,
            Ok(IpAddr::V4(a)) => BadPrefix::NoLength(a),
            Err(_) => BadPrefix::NotAPrefix(s.to_owned()),
        });
    };
    let addr: Ipv4Addr = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a,
        Ok(IpAddr::V6(_)) => return Err(BadPrefix::Ipv6),
        Err(_) => return Err(BadPrefix::NotAnAddress(addr.to_owned())),
    };
    let len: u8 = len
        .parse()
        .map_err(|_| BadPrefix::NotANumber(len.to_owned()))?;
    Ipv4Net::new(addr, len).map_err(|_| BadPrefix::OutOfRange(len))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn each_fault_is_named() {
        assert_eq!(parse("10.244.0.0/16").unwrap().to_string(), "10.244.0.0/16");
        let err = |s| parse(s).unwrap_err().to_string();
        assert!(err("10.244.0.0/33").contains("prefix length 33 is out of range"));
        assert!(err("10.244.0.0").contains("has no prefix length"));
        assert!(err("fd00::/64").contains("IPv6 is not supported here yet"));
        assert!(err("fd00::").contains("--ipv6-network"));
        assert!(err("10.244.0/16").contains("is not an IPv4 address"));
        assert!(err("10.244.0.0/x").contains("is not a number"));
        assert!(err("banana").contains("is not an IPv4 prefix"));
    }
}
