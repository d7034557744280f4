//! One query in, one answer out. Only containers of Weft's networks are served: the
//! resolver listens on a host address other machines reach too, and must not be an
//! open resolver for them (anything else is REFUSED). What a container's resolver asks
//! is answered here (standard queries, one question, class IN); anything else that is
//! well formed goes to the host's resolvers, and what cannot be read gets FORMERR.

use std::net::IpAddr;

use simple_dns::rdata::{RData, A};
use simple_dns::{
    Packet, PacketFlag, Question, ResourceRecord, CLASS, OPCODE, QCLASS, QTYPE, RCODE, TYPE,
};

use crate::directory::{Directory, Lookup};

/// Answers are not cached: a name follows its container the moment the store does.
pub const TTL: u32 = 0;

/// What to do with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not a container's name: ask the host's resolvers.
    Forward,
    /// Not a query (a stray response, a runt): nothing to answer.
    Drop,
}

/// The reply to `query`, asked by the container (or host) at `from`.
pub fn reply(query: &[u8], from: IpAddr, directory: &Directory) -> Reply {
    let packet = match Packet::parse(query) {
        Ok(p) => p,
        Err(_) => return failure(query, RCODE::FormatError),
    };
    if packet.has_flags(PacketFlag::RESPONSE) {
        return Reply::Drop;
    }
    let visible = directory.networks_of(from);
    if visible.is_empty() {
        return failure(query, RCODE::Refused);
    }
    if packet.opcode() != OPCODE::StandardQuery {
        return failure(query, RCODE::NotImplemented);
    }
    let [question] = packet.questions.as_slice() else {
        return failure(query, RCODE::FormatError);
    };
    if !matches!(question.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY) {
        return Reply::Forward;
    }
    let name = question.qname.to_string();
    let (rcode, addresses) = match directory.lookup_in(&name, &visible) {
        Lookup::Unknown => return Reply::Forward,
        Lookup::Hidden => (RCODE::NameError, Vec::new()),
        Lookup::Found(ips) => (RCODE::NoError, ips),
    };
    let mut out = Packet::new_reply(packet.id());
    out.set_flags(PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_AVAILABLE);
    if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
        out.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    *out.rcode_mut() = rcode;
    out.questions.push(Question::new(
        question.qname.clone(),
        question.qtype,
        question.qclass,
        false,
    ));
    // A name with addresses has no other record: AAAA, MX, ... get an empty answer.
    if matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY) {
        for ip in addresses {
            out.answers.push(ResourceRecord::new(
                question.qname.clone(),
                CLASS::IN,
                TTL,
                RData::A(A::from(ip)),
            ));
        }
    }
    match out.build_bytes_vec_compressed() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => failure(query, RCODE::ServerFailure),
    }
}

/// An answer with no question or record: the query's ID and `rcode`. Nothing for a
/// datagram too short to hold a header.
pub fn failure(query: &[u8], rcode: RCODE) -> Reply {
    let [a, b, ..] = query else {
        return Reply::Drop;
    };
    if query.len() < 12 {
        return Reply::Drop;
    }
    let mut out = Packet::new_reply(u16::from_be_bytes([*a, *b]));
    out.set_flags(PacketFlag::RECURSION_AVAILABLE);
    *out.rcode_mut() = rcode;
    out.build_bytes_vec()
        .map(Reply::Answer)
        .unwrap_or(Reply::Drop)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use weft_model::named::Endpoint;

    fn directory() -> Directory {
        let e = |c: &str, n: &str| Endpoint {
            node: "192.168.77.1".parse().unwrap(),
            endpoint_id: c.into(),
            mac: None,
            host_iface: String::new(),
            ports: Vec::new(),
            container: c.into(),
            names: vec![n.into()],
        };
        let eps = [
            ("blue", Ipv4Addr::new(10, 1, 0, 2), e("c1", "a1")),
            ("blue", Ipv4Addr::new(10, 1, 0, 3), e("c2", "a2")),
            ("red", Ipv4Addr::new(10, 2, 0, 2), e("c3", "r1")),
        ];
        Directory::new(eps.iter().map(|(n, i, e)| (*n, *i, e)))
    }

    fn query(name: &str, qtype: TYPE) -> Vec<u8> {
        let mut q = Packet::new_query(0x1234);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        q.questions.push(Question::new(
            simple_dns::Name::new_unchecked(name),
            qtype.into(),
            CLASS::IN.into(),
            false,
        ));
        q.build_bytes_vec().unwrap()
    }

    fn answered(r: Reply) -> (RCODE, Vec<Ipv4Addr>, u16) {
        let Reply::Answer(bytes) = r else {
            panic!("not answered: {r:?}")
        };
        let p = Packet::parse(&bytes).unwrap();
        let ips = p
            .answers
            .iter()
            .map(|rr| match &rr.rdata {
                RData::A(a) => Ipv4Addr::from(a.address),
                other => panic!("{other:?}"),
            })
            .collect();
        (p.rcode(), ips, p.id())
    }

    const FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3));

    #[test]
    fn a_records_for_the_network_s_names() {
        let d = directory();
        let (rcode, ips, id) = answered(reply(&query("a1", TYPE::A), FROM, &d));
        assert_eq!((rcode, id), (RCODE::NoError, 0x1234));
        assert_eq!(ips, vec![Ipv4Addr::new(10, 1, 0, 2)]);
        // TTL 0: no resolver on the way keeps an answer past a container's move.
        let Reply::Answer(bytes) = reply(&query("a1", TYPE::A), FROM, &d) else {
            panic!("answered above")
        };
        assert!(Packet::parse(&bytes)
            .unwrap()
            .answers
            .iter()
            .all(|rr| rr.ttl == 0));
        // No IPv6 address: NOERROR and no record, so the client uses the A record.
        let (rcode, ips, _) = answered(reply(&query("a1", TYPE::AAAA), FROM, &d));
        assert_eq!((rcode, ips.len()), (RCODE::NoError, 0));
    }

    #[test]
    fn another_network_s_name_is_nxdomain_and_the_rest_forwarded() {
        let d = directory();
        let (rcode, ips, _) = answered(reply(&query("r1", TYPE::A), FROM, &d));
        assert_eq!((rcode, ips.len()), (RCODE::NameError, 0));
        assert_eq!(
            reply(&query("example.org", TYPE::A), FROM, &d),
            Reply::Forward
        );
    }

    #[test]
    fn only_containers_are_served() {
        let d = directory();
        for from in ["192.168.77.9", "10.1.0.99", "::1"] {
            let (rcode, ips, _) = answered(reply(&query("a1", TYPE::A), from.parse().unwrap(), &d));
            assert_eq!((rcode, ips.len()), (RCODE::Refused, 0), "{from}");
            let (rcode, _, _) = answered(reply(
                &query("example.org", TYPE::A),
                from.parse().unwrap(),
                &d,
            ));
            assert_eq!(rcode, RCODE::Refused, "{from}: not forwarded either");
        }
    }

    #[test]
    fn garbage_gets_formerr_or_nothing() {
        let d = directory();
        let mut bad = query("a1", TYPE::A);
        bad.truncate(15);
        let (rcode, _, id) = answered(reply(&bad, FROM, &d));
        assert_eq!((rcode, id), (RCODE::FormatError, 0x1234));
        assert_eq!(reply(&[1, 2, 3], FROM, &d), Reply::Drop);
        // A response is never answered (no loops between two resolvers).
        let mut resp = Packet::new_reply(7);
        resp.questions.push(Question::new(
            simple_dns::Name::new_unchecked("a1"),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        assert_eq!(
            reply(&resp.build_bytes_vec().unwrap(), FROM, &d),
            Reply::Drop
        );
    }
}
