//! OPEN (RFC 4271 section 4.2) and its capabilities (RFC 5492).

use std::net::Ipv4Addr;

use crate::notification::{code, open as sub, Notification};

/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// A capability advertised in OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 (code 1).
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918 (code 2).
    RouteRefresh,
    /// RFC 4724 (code 64): restart flags (4 bits), restart time (12 bits), and per
    /// address family whether forwarding state was preserved.
    GracefulRestart {
        restarting: bool,
        time: u16,
        families: Vec<(u16, u8, bool)>,
    },
    /// RFC 6793 (code 65).
    FourOctetAs(u32),
    /// Anything else, kept as it came.
    Other { code: u8, data: Vec<u8> },
}

impl Capability {
    fn encode(&self, out: &mut Vec<u8>) {
        let (code, data): (u8, Vec<u8>) = match self {
            Capability::Multiprotocol { afi, safi } => {
                let mut d = afi.to_be_bytes().to_vec();
                d.extend([0, *safi]);
                (1, d)
            }
            Capability::RouteRefresh => (2, vec![]),
            Capability::GracefulRestart {
                restarting,
                time,
                families,
            } => {
                let head = ((*restarting as u16) << 15) | (time & 0x0fff);
                let mut d = head.to_be_bytes().to_vec();
                for (afi, safi, fwd) in families {
                    d.extend(afi.to_be_bytes());
                    d.extend([*safi, if *fwd { 0x80 } else { 0 }]);
                }
                (64, d)
            }
            Capability::FourOctetAs(asn) => (65, asn.to_be_bytes().to_vec()),
            Capability::Other { code, data } => (*code, data.clone()),
        };
        out.push(code);
        out.push(data.len() as u8);
        out.extend(data);
    }

    fn decode(code: u8, d: &[u8]) -> Result<Self, Notification> {
        let bad = || Notification::new(code::OPEN, 0, vec![]);
        Ok(match code {
            1 if d.len() == 4 => Capability::Multiprotocol {
                afi: u16::from_be_bytes([d[0], d[1]]),
                safi: d[3],
            },
            1 => return Err(bad()),
            2 => Capability::RouteRefresh,
            64 if d.len() >= 2 && (d.len() - 2).is_multiple_of(4) => {
                let head = u16::from_be_bytes([d[0], d[1]]);
                Capability::GracefulRestart {
                    restarting: head & 0x8000 != 0,
                    time: head & 0x0fff,
                    families: d[2..]
                        .chunks_exact(4)
                        .map(|c| (u16::from_be_bytes([c[0], c[1]]), c[2], c[3] & 0x80 != 0))
                        .collect(),
                }
            }
            64 => return Err(bad()),
            65 if d.len() == 4 => {
                Capability::FourOctetAs(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
            }
            65 => return Err(bad()),
            other => Capability::Other {
                code: other,
                data: d.to_vec(),
            },
        })
    }
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The speaker's AS: 4 octets; the 2-octet field carries AS_TRANS when it does not fit.
    pub asn: u32,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The AS the peer really has: from the 4-octet AS capability if present.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(4);
        let two = u16::try_from(self.asn).unwrap_or(AS_TRANS);
        out.extend(two.to_be_bytes());
        out.extend(self.hold_time.to_be_bytes());
        out.extend(self.bgp_id.octets());
        let mut caps = Vec::new();
        for c in &self.capabilities {
            c.encode(&mut caps);
        }
        // One optional parameter of type 2 (capabilities) holding them all.
        if caps.is_empty() {
            out.push(0);
        } else {
            out.push((caps.len() + 2) as u8);
            out.push(2);
            out.push(caps.len() as u8);
            out.extend(caps);
        }
    }

    /// Decodes an OPEN body, checking what RFC 4271 section 6.2 asks.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, Notification> {
        let bad_len = || {
            Notification::new(
                code::HEADER,
                crate::notification::header::BAD_LENGTH,
                ((b.len() + 19) as u16).to_be_bytes(),
            )
        };
        if b.len() < 10 {
            return Err(bad_len());
        }
        if b[0] != 4 {
            return Err(Notification::new(
                code::OPEN,
                sub::UNSUPPORTED_VERSION,
                4u16.to_be_bytes(),
            ));
        }
        let as2 = u16::from_be_bytes([b[1], b[2]]);
        let hold_time = u16::from_be_bytes([b[3], b[4]]);
        if hold_time == 1 || hold_time == 2 {
            return Err(Notification::new(
                code::OPEN,
                sub::UNACCEPTABLE_HOLD_TIME,
                vec![],
            ));
        }
        let bgp_id = Ipv4Addr::new(b[5], b[6], b[7], b[8]);
        if bgp_id.is_unspecified() || bgp_id.is_broadcast() {
            return Err(Notification::new(code::OPEN, sub::BAD_BGP_ID, vec![]));
        }
        let opt_len = b[9] as usize;
        if b.len() != 10 + opt_len {
            return Err(bad_len());
        }
        let mut capabilities = Vec::new();
        let mut p = &b[10..];
        while !p.is_empty() {
            if p.len() < 2 || p.len() < 2 + p[1] as usize {
                return Err(Notification::new(code::OPEN, 0, vec![]));
            }
            let (ptype, plen) = (p[0], p[1] as usize);
            let value = &p[2..2 + plen];
            if ptype != 2 {
                return Err(Notification::new(
                    code::OPEN,
                    sub::UNSUPPORTED_OPTIONAL_PARAMETER,
                    vec![],
                ));
            }
            let mut c = value;
            while !c.is_empty() {
                if c.len() < 2 || c.len() < 2 + c[1] as usize {
                    return Err(Notification::new(code::OPEN, 0, vec![]));
                }
                capabilities.push(Capability::decode(c[0], &c[2..2 + c[1] as usize])?);
                c = &c[2 + c[1] as usize..];
            }
            p = &p[2 + plen..];
        }
        let mut open = Open {
            asn: as2 as u32,
            hold_time,
            bgp_id,
            capabilities,
        };
        if let Some(four) = open.four_octet_as() {
            if four == 0 {
                return Err(Notification::new(code::OPEN, sub::BAD_PEER_AS, vec![]));
            }
            open.asn = four;
        }
        Ok(open)
    }
}
