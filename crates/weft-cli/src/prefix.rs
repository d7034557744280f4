//! IPv4 prefixes on the command line, with errors that name the fault: `invalid IP
//! address syntax` says nothing about `10.244.0.0/33`, `10.244.0.0` or `fd00::/64`.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

/// Parses `A.B.C.D/LEN`.
pub fn parse(s: &str) -> Result<Ipv4Net, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => "IPv6 is not supported yet; give an IPv4 prefix".into(),
            Ok(IpAddr::V4(_)) => format!("{s} has no prefix length; write it as {s}/16, say"),
            Err(_) => format!("{s:?} is not an IPv4 prefix like 10.244.0.0/16"),
        });
    };
    let addr: Ipv4Addr = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a,
        Ok(IpAddr::V6(_)) => return Err("IPv6 is not supported yet; give an IPv4 prefix".into()),
        Err(_) => return Err(format!("{addr:?} is not an IPv4 address")),
    };
    let len: u8 = len
        .parse()
        .map_err(|_| format!("prefix length {len:?} is not a number"))?;
    Ipv4Net::new(addr, len).map_err(|_| format!("prefix length {len} is out of range (0 to 32)"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn each_fault_is_named() {
        assert_eq!(parse("10.244.0.0/16").unwrap().to_string(), "10.244.0.0/16");
        let err = |s| parse(s).unwrap_err();
        assert!(err("10.244.0.0/33").contains("prefix length 33 is out of range"));
        assert!(err("10.244.0.0").contains("has no prefix length"));
        assert!(err("fd00::/64").contains("IPv6 is not supported yet"));
        assert!(err("fd00::").contains("IPv6 is not supported yet"));
        assert!(err("10.244.0/16").contains("is not an IPv4 address"));
        assert!(err("10.244.0.0/x").contains("is not a number"));
        assert!(err("banana").contains("is not an IPv4 prefix"));
    }
}
