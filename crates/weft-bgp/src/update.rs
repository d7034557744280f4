//! UPDATE (RFC 4271 section 4.3): withdrawn routes, path attributes, NLRI; IPv4 unicast
//! also through MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760).
//!
//! Errors follow RFC 7606. When the attribute block is well delimited (so the NLRI can be
//! found), a bad attribute value does not reset the session: the UPDATE's routes are
//! withdrawn instead ("treat-as-withdraw": [`Update::treat_as_withdraw`] says why and the
//! prefixes have been moved to `withdrawn`), or, for attributes that do not affect route
//! selection, the attribute alone is dropped ("attribute discard", listed in
//! [`Update::discarded`]). Errors that make the message unparseable reset the session
//! with the NOTIFICATION RFC 4271 names.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::notification::{code, update as sub, Notification};

/// Attribute type codes.
pub mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const LARGE_COMMUNITY: u8 = 32;
}

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const PARTIAL: u8 = 0x20;
const EXTENDED: u8 = 0x10;

pub const AFI_IPV4: u16 = 1;
pub const SAFI_UNICAST: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
}

/// An attribute Weft does not interpret, kept to pass on (optional transitive ones
/// get the Partial bit when re-advertised, RFC 4271 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// IPv4 unicast routes carried in MP_REACH_NLRI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub next_hop: Ipv4Addr,
    pub nlri: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Vec<AsSegment>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    /// RFC 8092: global administrator and two local values each.
    pub large_communities: Vec<[u32; 3]>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<Vec<Ipv4Net>>,
    pub other: Vec<RawAttribute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attrs: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
    /// Set when RFC 7606's treat-as-withdraw applied: why. The announced prefixes (NLRI
    /// and MP_REACH) are then in `withdrawn`, and `nlri`/`attrs.mp_reach` are empty.
    pub treat_as_withdraw: Option<String>,
    /// Attributes dropped under RFC 7606's attribute discard: type code and why.
    pub discarded: Vec<(u8, String)>,
}

impl Update {
    /// Every prefix announced, from the NLRI field and MP_REACH_NLRI.
    pub fn announced(&self) -> impl Iterator<Item = &Ipv4Net> {
        self.nlri
            .iter()
            .chain(self.attrs.mp_reach.iter().flat_map(|m| m.nlri.iter()))
    }

    /// Every prefix withdrawn, from the withdrawn field and MP_UNREACH_NLRI.
    pub fn withdrawn_all(&self) -> impl Iterator<Item = &Ipv4Net> {
        self.withdrawn
            .iter()
            .chain(self.attrs.mp_unreach.iter().flatten())
    }

    /// An End-of-RIB marker for IPv4 unicast (RFC 4724): an empty UPDATE.
    pub fn is_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty() && self.nlri.is_empty() && self.attrs == PathAttributes::default()
    }
}

fn update_error(subcode: u8, data: &[u8]) -> Notification {
    Notification::new(code::UPDATE, subcode, data.to_vec())
}

/// Prefixes in the RFC 4271 encoding (length in bits, then the significant octets).
pub fn decode_prefixes(mut b: &[u8]) -> Result<Vec<Ipv4Net>, Notification> {
    let mut out = Vec::new();
    while let Some(&len) = b.first() {
        let bytes = (len as usize).div_ceil(8);
        if len > 32 || b.len() < 1 + bytes {
            return Err(update_error(sub::INVALID_NETWORK_FIELD, &[]));
        }
        let mut o = [0u8; 4];
        o[..bytes].copy_from_slice(&b[1..1 + bytes]);
        out.push(
            Ipv4Net::new(Ipv4Addr::from(o), len)
                .expect("len <= 32")
                .trunc(),
        );
        b = &b[1 + bytes..];
    }
    Ok(out)
}

pub fn encode_prefixes(prefixes: &[Ipv4Net], out: &mut Vec<u8>) {
    for p in prefixes {
        let len = p.prefix_len();
        out.push(len);
        out.extend(&p.network().octets()[..(len as usize).div_ceil(8)]);
    }
}

/// The (optional, transitive) bits an attribute must carry, for the ones Weft knows.
fn expected_flags(type_code: u8) -> Option<u8> {
    use attr::*;
    match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(TRANSITIVE),
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => Some(OPTIONAL),
        AGGREGATOR | COMMUNITIES | LARGE_COMMUNITY => Some(OPTIONAL | TRANSITIVE),
        _ => None,
    }
}

/// What one bad attribute means under RFC 7606.
enum Flaw {
    Withdraw(String),
    Discard(String),
    Reset(Notification),
}

fn u32_at(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

fn ip_at(v: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(v[0], v[1], v[2], v[3])
}

fn decode_as_path(v: &[u8], four: bool) -> Option<Vec<AsSegment>> {
    let width = if four { 4 } else { 2 };
    let mut segs = Vec::new();
    let mut p = v;
    while !p.is_empty() {
        if p.len() < 2 {
            return None;
        }
        let (kind, n) = (p[0], p[1] as usize);
        if n == 0 || p.len() < 2 + n * width {
            return None;
        }
        let asns = p[2..2 + n * width]
            .chunks_exact(width)
            .map(|c| {
                if four {
                    u32_at(c)
                } else {
                    u16::from_be_bytes([c[0], c[1]]) as u32
                }
            })
            .collect();
        segs.push(match kind {
            1 => AsSegment::Set(asns),
            2 => AsSegment::Sequence(asns),
            _ => return None,
        });
        p = &p[2 + n * width..];
    }
    Some(segs)
}

fn decode_mp_reach(v: &[u8]) -> Result<Option<MpReach>, Notification> {
    let reset = || update_error(sub::OPTIONAL_ATTRIBUTE, &[]);
    if v.len() < 5 {
        return Err(reset());
    }
    let (afi, safi, nh_len) = (u16::from_be_bytes([v[0], v[1]]), v[2], v[3] as usize);
    if v.len() < 4 + nh_len + 1 {
        return Err(reset());
    }
    if afi != AFI_IPV4 || safi != SAFI_UNICAST {
        return Ok(None); // a family this session did not negotiate: ignored
    }
    if nh_len != 4 {
        return Err(reset());
    }
    let nlri = decode_prefixes(&v[4 + nh_len + 1..])?;
    Ok(Some(MpReach {
        next_hop: ip_at(&v[4..8]),
        nlri,
    }))
}

fn decode_mp_unreach(v: &[u8]) -> Result<Option<Vec<Ipv4Net>>, Notification> {
    if v.len() < 3 {
        return Err(update_error(sub::OPTIONAL_ATTRIBUTE, &[]));
    }
    if u16::from_be_bytes([v[0], v[1]]) != AFI_IPV4 || v[2] != SAFI_UNICAST {
        return Ok(None);
    }
    decode_prefixes(&v[3..]).map(Some)
}

/// Applies one attribute to `a`, or says what is wrong with it.
fn apply(a: &mut PathAttributes, flags: u8, t: u8, v: &[u8], four: bool) -> Result<(), Flaw> {
    use attr::*;
    let withdraw = |what: &str| Flaw::Withdraw(what.to_owned());
    if let Some(want) = expected_flags(t) {
        if flags & (OPTIONAL | TRANSITIVE) != want {
            return match t {
                MP_REACH_NLRI | MP_UNREACH_NLRI => {
                    Err(Flaw::Reset(update_error(sub::ATTRIBUTE_FLAGS, &[flags, t])))
                }
                _ => Err(withdraw(&format!("attribute {t} has flags {flags:#04x}"))),
            };
        }
    }
    match t {
        ORIGIN => match v {
            [0] => a.origin = Some(Origin::Igp),
            [1] => a.origin = Some(Origin::Egp),
            [2] => a.origin = Some(Origin::Incomplete),
            _ => return Err(withdraw("malformed ORIGIN")),
        },
        AS_PATH => {
            a.as_path = decode_as_path(v, four).ok_or_else(|| withdraw("malformed AS_PATH"))?
        }
        NEXT_HOP if v.len() == 4 => {
            let nh = ip_at(v);
            if nh.is_unspecified() || nh.is_broadcast() || nh.is_multicast() || nh.is_loopback() {
                return Err(withdraw(&format!("invalid NEXT_HOP {nh}")));
            }
            a.next_hop = Some(nh);
        }
        NEXT_HOP => return Err(withdraw("NEXT_HOP length is not 4")),
        MED if v.len() == 4 => a.med = Some(u32_at(v)),
        MED => return Err(withdraw("MULTI_EXIT_DISC length is not 4")),
        LOCAL_PREF if v.len() == 4 => a.local_pref = Some(u32_at(v)),
        LOCAL_PREF => return Err(withdraw("LOCAL_PREF length is not 4")),
        ATOMIC_AGGREGATE if v.is_empty() => a.atomic_aggregate = true,
        ATOMIC_AGGREGATE => return Err(Flaw::Discard("ATOMIC_AGGREGATE length is not 0".into())),
        AGGREGATOR => match (v.len(), four) {
            (8, true) => a.aggregator = Some((u32_at(v), ip_at(&v[4..]))),
            (6, false) => {
                a.aggregator = Some((u16::from_be_bytes([v[0], v[1]]) as u32, ip_at(&v[2..])))
            }
            _ => return Err(Flaw::Discard("AGGREGATOR has the wrong length".into())),
        },
        COMMUNITIES if v.len().is_multiple_of(4) => {
            a.communities = v.chunks_exact(4).map(u32_at).collect()
        }
        COMMUNITIES => return Err(withdraw("COMMUNITIES length is not a multiple of 4")),
        LARGE_COMMUNITY if !v.is_empty() && v.len().is_multiple_of(12) => {
            a.large_communities = v
                .chunks_exact(12)
                .map(|c| [u32_at(c), u32_at(&c[4..]), u32_at(&c[8..])])
                .collect()
        }
        // RFC 8092 section 6: treat-as-withdraw.
        LARGE_COMMUNITY => {
            return Err(withdraw(
                "LARGE_COMMUNITY length is not a non-zero multiple of 12",
            ))
        }
        ORIGINATOR_ID if v.len() == 4 => a.originator_id = Some(ip_at(v)),
        ORIGINATOR_ID => return Err(withdraw("ORIGINATOR_ID length is not 4")),
        CLUSTER_LIST if v.len().is_multiple_of(4) => {
            a.cluster_list = v.chunks_exact(4).map(ip_at).collect()
        }
        CLUSTER_LIST => return Err(withdraw("CLUSTER_LIST length is not a multiple of 4")),
        MP_REACH_NLRI => a.mp_reach = decode_mp_reach(v).map_err(Flaw::Reset)?,
        MP_UNREACH_NLRI => a.mp_unreach = decode_mp_unreach(v).map_err(Flaw::Reset)?,
        _ if flags & OPTIONAL == 0 => {
            return Err(Flaw::Reset(update_error(
                sub::UNRECOGNIZED_WELL_KNOWN,
                &[flags, t],
            )))
        }
        _ if flags & TRANSITIVE != 0 => a.other.push(RawAttribute {
            flags,
            type_code: t,
            value: v.to_vec(),
        }),
        _ => {} // unknown optional non-transitive: quietly ignored (RFC 4271 section 5)
    }
    Ok(())
}

impl Update {
    /// Decodes an UPDATE body. `four` says whether AS numbers are 4 octets (both sides
    /// sent the RFC 6793 capability).
    pub(crate) fn decode(b: &[u8], four: bool) -> Result<Self, Notification> {
        let malformed = || update_error(sub::MALFORMED_ATTRIBUTE_LIST, &[]);
        if b.len() < 4 {
            return Err(malformed());
        }
        let wlen = u16::from_be_bytes([b[0], b[1]]) as usize;
        if b.len() < 2 + wlen + 2 {
            return Err(malformed());
        }
        let withdrawn = decode_prefixes(&b[2..2 + wlen])?;
        let alen = u16::from_be_bytes([b[2 + wlen], b[3 + wlen]]) as usize;
        let astart = 4 + wlen;
        if b.len() < astart + alen {
            return Err(malformed());
        }
        let nlri = decode_prefixes(&b[astart + alen..])?;
        let mut u = Update {
            withdrawn,
            nlri,
            ..Default::default()
        };
        let mut seen = [false; 256];
        let mut p = &b[astart..astart + alen];
        while !p.is_empty() {
            let (flags, t) = match p {
                [f, t, ..] => (*f, *t),
                _ => {
                    u.withdraw_all("attribute header cut short");
                    break;
                }
            };
            let (hlen, vlen) = if flags & EXTENDED != 0 {
                match p.get(2..4) {
                    Some(l) => (4, u16::from_be_bytes([l[0], l[1]]) as usize),
                    None => {
                        u.withdraw_all("attribute header cut short");
                        break;
                    }
                }
            } else {
                match p.get(2) {
                    Some(&l) => (3, l as usize),
                    None => {
                        u.withdraw_all("attribute header cut short");
                        break;
                    }
                }
            };
            if p.len() < hlen + vlen {
                if t == attr::MP_REACH_NLRI || t == attr::MP_UNREACH_NLRI {
                    return Err(update_error(sub::ATTRIBUTE_LENGTH, &[]));
                }
                u.withdraw_all(&format!("attribute {t} overruns the attribute list"));
                break;
            }
            let v = &p[hlen..hlen + vlen];
            p = &p[hlen + vlen..];
            if seen[t as usize] {
                // Duplicates: only the first counts (RFC 7606 section 3.g), but two
                // MP_REACH/MP_UNREACH cannot be told apart safely.
                if t == attr::MP_REACH_NLRI || t == attr::MP_UNREACH_NLRI {
                    return Err(malformed());
                }
                continue;
            }
            seen[t as usize] = true;
            match apply(&mut u.attrs, flags, t, v, four) {
                Ok(()) => {}
                Err(Flaw::Discard(why)) => u.discarded.push((t, why)),
                Err(Flaw::Withdraw(why)) => {
                    if u.treat_as_withdraw.is_none() {
                        u.treat_as_withdraw = Some(why);
                    }
                }
                Err(Flaw::Reset(n)) => return Err(n),
            }
        }
        let announces = !u.nlri.is_empty()
            || u.attrs
                .mp_reach
                .as_ref()
                .is_some_and(|m| !m.nlri.is_empty());
        if announces && u.treat_as_withdraw.is_none() {
            let missing = [
                (u.attrs.origin.is_none(), "ORIGIN"),
                (!seen[attr::AS_PATH as usize], "AS_PATH"),
                (!u.nlri.is_empty() && u.attrs.next_hop.is_none(), "NEXT_HOP"),
            ];
            if let Some((_, name)) = missing.iter().find(|(m, _)| *m) {
                u.treat_as_withdraw = Some(format!("missing well-known attribute {name}"));
            }
        }
        if let Some(why) = u.treat_as_withdraw.take() {
            u.withdraw_all(&why);
        }
        Ok(u)
    }

    /// Moves every announced prefix to `withdrawn` (RFC 7606 treat-as-withdraw).
    fn withdraw_all(&mut self, why: &str) {
        let mut gone = std::mem::take(&mut self.nlri);
        if let Some(m) = self.attrs.mp_reach.take() {
            gone.extend(m.nlri);
        }
        self.withdrawn.extend(gone);
        if self.treat_as_withdraw.is_none() {
            self.treat_as_withdraw = Some(why.to_owned());
        }
    }

    pub(crate) fn encode(&self, four: bool, out: &mut Vec<u8>) {
        let mut w = Vec::new();
        encode_prefixes(&self.withdrawn, &mut w);
        out.extend((w.len() as u16).to_be_bytes());
        out.extend(w);
        let mut attrs = Vec::new();
        self.attrs.encode(four, &mut attrs);
        out.extend((attrs.len() as u16).to_be_bytes());
        out.extend(attrs);
        encode_prefixes(&self.nlri, out);
    }
}

fn put_attr(out: &mut Vec<u8>, flags: u8, t: u8, v: &[u8]) {
    if v.len() > 255 {
        out.extend([flags | EXTENDED, t]);
        out.extend((v.len() as u16).to_be_bytes());
    } else {
        out.extend([flags & !EXTENDED, t, v.len() as u8]);
    }
    out.extend(v);
}

impl PathAttributes {
    /// Encodes in type-code order (RFC 4271 recommends ascending order).
    pub fn encode(&self, four: bool, out: &mut Vec<u8>) {
        use attr::*;
        let wk = TRANSITIVE;
        if let Some(o) = self.origin {
            put_attr(out, wk, ORIGIN, &[o as u8]);
        }
        let mut path = Vec::new();
        for seg in &self.as_path {
            let (kind, asns) = match seg {
                AsSegment::Set(a) => (1u8, a),
                AsSegment::Sequence(a) => (2u8, a),
            };
            for chunk in asns.chunks(255) {
                path.extend([kind, chunk.len() as u8]);
                for asn in chunk {
                    if four {
                        path.extend(asn.to_be_bytes());
                    } else {
                        path.extend(
                            u16::try_from(*asn)
                                .unwrap_or(crate::open::AS_TRANS)
                                .to_be_bytes(),
                        );
                    }
                }
            }
        }
        if self.origin.is_some() || !self.as_path.is_empty() {
            put_attr(out, wk, AS_PATH, &path);
        }
        if let Some(nh) = self.next_hop {
            put_attr(out, wk, NEXT_HOP, &nh.octets());
        }
        if let Some(m) = self.med {
            put_attr(out, OPTIONAL, MED, &m.to_be_bytes());
        }
        if let Some(l) = self.local_pref {
            put_attr(out, wk, LOCAL_PREF, &l.to_be_bytes());
        }
        if self.atomic_aggregate {
            put_attr(out, wk, ATOMIC_AGGREGATE, &[]);
        }
        if let Some((asn, ip)) = self.aggregator {
            let mut v = if four {
                asn.to_be_bytes().to_vec()
            } else {
                u16::try_from(asn)
                    .unwrap_or(crate::open::AS_TRANS)
                    .to_be_bytes()
                    .to_vec()
            };
            v.extend(ip.octets());
            put_attr(out, OPTIONAL | TRANSITIVE, AGGREGATOR, &v);
        }
        if !self.communities.is_empty() {
            let v: Vec<u8> = self
                .communities
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            put_attr(out, OPTIONAL | TRANSITIVE, COMMUNITIES, &v);
        }
        if let Some(id) = self.originator_id {
            put_attr(out, OPTIONAL, ORIGINATOR_ID, &id.octets());
        }
        if !self.cluster_list.is_empty() {
            let v: Vec<u8> = self.cluster_list.iter().flat_map(|c| c.octets()).collect();
            put_attr(out, OPTIONAL, CLUSTER_LIST, &v);
        }
        if let Some(m) = &self.mp_reach {
            let mut v = AFI_IPV4.to_be_bytes().to_vec();
            v.extend([SAFI_UNICAST, 4]);
            v.extend(m.next_hop.octets());
            v.push(0);
            encode_prefixes(&m.nlri, &mut v);
            put_attr(out, OPTIONAL, MP_REACH_NLRI, &v);
        }
        if let Some(w) = &self.mp_unreach {
            let mut v = AFI_IPV4.to_be_bytes().to_vec();
            v.push(SAFI_UNICAST);
            encode_prefixes(w, &mut v);
            put_attr(out, OPTIONAL, MP_UNREACH_NLRI, &v);
        }
        if !self.large_communities.is_empty() {
            let v: Vec<u8> = self
                .large_communities
                .iter()
                .flat_map(|c| c.iter().flat_map(|n| n.to_be_bytes()))
                .collect();
            put_attr(out, OPTIONAL | TRANSITIVE, LARGE_COMMUNITY, &v);
        }
        for o in &self.other {
            // Passed on: an optional transitive attribute we did not interpret is Partial.
            put_attr(out, o.flags | PARTIAL, o.type_code, &o.value);
        }
    }
}
