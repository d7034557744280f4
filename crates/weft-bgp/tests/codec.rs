//! The BGP codec against byte vectors assembled by hand from the RFCs, malformed input
//! (each answered with the NOTIFICATION, or the RFC 7606 repair, it calls for), and
//! property tests: every message round-trips, and no input makes the decoder panic
//! (a bounded fuzz run, part of CI).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use weft_bgp::update::{AsSegment, MpReach, RawAttribute};
use weft_bgp::{
    decode, Capability, Codec, Message, Notification, Open, Origin, PathAttributes, Update,
};

const FOUR: Codec = Codec {
    four_octet_as: true,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const MARKER: &str = "ffffffffffffffffffffffffffffffff";

fn msg(len_type: &str, body: &str) -> Vec<u8> {
    hex(&format!("{MARKER}{len_type}{body}"))
}

fn one(bytes: &[u8]) -> Result<Message, Notification> {
    match decode(bytes, FOUR)? {
        Some((m, used)) => {
            assert_eq!(used, bytes.len());
            Ok(m)
        }
        None => panic!("incomplete"),
    }
}

fn err(bytes: &[u8]) -> (u8, u8, Vec<u8>) {
    let n = one(bytes).expect_err("must be refused");
    (n.code, n.subcode, n.data)
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn keepalive() {
    let b = msg("0013 04", "");
    assert_eq!(one(&b).unwrap(), Message::Keepalive);
    assert_eq!(Message::Keepalive.encode(FOUR), b);
}

#[test]
fn open_with_capabilities() {
    // AS 64512, hold 90, id 192.168.77.254; capabilities: IPv4 unicast, route refresh,
    // 4-octet AS 64512, graceful restart (time 120, IPv4 unicast, forwarding kept).
    let b = msg(
        "0035 01",
        "04 fc00 005a c0a84dfe 18 02 16 010400010001 0200 410400 00fc00 4006 0078 00010180",
    );
    let open = Open {
        asn: 64512,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(192, 168, 77, 254),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(64512),
            Capability::GracefulRestart {
                restarting: false,
                time: 120,
                families: vec![(1, 1, true)],
            },
        ],
    };
    assert_eq!(one(&b).unwrap(), Message::Open(open.clone()));
    assert_eq!(Message::Open(open).encode(FOUR), b);
}

#[test]
fn open_with_a_four_octet_as_sends_as_trans() {
    let open = Open {
        asn: 4_200_000_001,
        hold_time: 0,
        bgp_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![Capability::FourOctetAs(4_200_000_001)],
    };
    let b = Message::Open(open.clone()).encode(FOUR);
    assert_eq!(
        &b[20..22],
        &23456u16.to_be_bytes(),
        "AS_TRANS in the 2-octet field"
    );
    assert_eq!(one(&b).unwrap(), Message::Open(open));
}

fn announce() -> Update {
    Update {
        attrs: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: vec![AsSegment::Sequence(vec![64512])],
            next_hop: Some(Ipv4Addr::new(192, 168, 77, 1)),
            local_pref: Some(100),
            ..Default::default()
        },
        nlri: vec![net("10.244.1.0/24")],
        ..Default::default()
    }
}

const ANNOUNCE: &str =
    "0000 001b 400101 00 400206 0201 0000fc00 400304 c0a84d01 400504 00000064 18 0af401";

#[test]
fn update_announce_and_withdraw() {
    let b = msg("0036 02", ANNOUNCE);
    assert_eq!(one(&b).unwrap(), Message::Update(Box::new(announce())));
    assert_eq!(Message::Update(Box::new(announce())).encode(FOUR), b);
    // The same path with 2-octet AS numbers (no RFC 6793 on the session).
    let two = Codec {
        four_octet_as: false,
    };
    let b2 = Message::Update(Box::new(announce())).encode(two);
    assert_eq!(
        decode(&b2, two).unwrap().unwrap().0,
        Message::Update(Box::new(announce()))
    );
    // Withdrawal of 10.244.1.0/24 and 10.0.0.0/8.
    let w = msg("001d 02", "0006 18 0af401 08 0a 0000");
    let Message::Update(u) = one(&w).unwrap() else {
        panic!()
    };
    assert_eq!(u.withdrawn, [net("10.244.1.0/24"), net("10.0.0.0/8")]);
    // End-of-RIB is an empty UPDATE.
    let eor = msg("0017 02", "0000 0000");
    let Message::Update(u) = one(&eor).unwrap() else {
        panic!()
    };
    assert!(u.is_end_of_rib());
}

#[test]
fn mp_reach_and_unreach_for_ipv4_unicast() {
    let u = Update {
        attrs: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: vec![],
            mp_reach: Some(MpReach {
                next_hop: Ipv4Addr::new(192, 168, 77, 2),
                nlri: vec![net("10.244.2.0/24")],
            }),
            mp_unreach: Some(vec![net("10.244.9.0/24")]),
            ..Default::default()
        },
        ..Default::default()
    };
    let b = Message::Update(Box::new(u.clone())).encode(FOUR);
    let Message::Update(back) = one(&b).unwrap() else {
        panic!()
    };
    assert_eq!(*back, u);
    assert_eq!(
        back.announced().collect::<Vec<_>>(),
        [&net("10.244.2.0/24")]
    );
    assert_eq!(
        back.withdrawn_all().collect::<Vec<_>>(),
        [&net("10.244.9.0/24")]
    );
}

#[test]
fn header_errors() {
    let mut b = msg("0013 04", "");
    b[3] = 0;
    assert_eq!(
        err(&b),
        (1, 1, vec![]),
        "bad marker: connection not synchronized"
    );
    assert_eq!(
        err(&msg("0012 04", "")),
        (1, 2, vec![0, 0x12]),
        "length below 19"
    );
    assert_eq!(
        err(&msg("1001 04", "")),
        (1, 2, vec![0x10, 0x01]),
        "length above 4096"
    );
    assert_eq!(
        err(&msg("0014 04", "00")),
        (1, 2, vec![0, 0x14]),
        "KEEPALIVE of 20 bytes"
    );
    assert_eq!(err(&msg("0013 09", "")), (1, 3, vec![9]), "unknown type");
    assert_eq!(
        decode(&msg("0013 04", "")[..18], FOUR).unwrap(),
        None,
        "incomplete header"
    );
    assert_eq!(
        decode(&msg("0036 02", ANNOUNCE)[..40], FOUR).unwrap(),
        None,
        "incomplete body"
    );
}

#[test]
fn open_errors() {
    assert_eq!(
        err(&msg("001d 01", "03 fc00 005a c0a84dfe 00")),
        (2, 1, vec![0, 4]),
        "version 3"
    );
    assert_eq!(
        err(&msg("001d 01", "04 fc00 0001 c0a84dfe 00")).1,
        6,
        "hold time 1"
    );
    assert_eq!(
        err(&msg("001d 01", "04 fc00 005a 00000000 00")).1,
        3,
        "BGP id 0"
    );
    assert_eq!(
        err(&msg("001f 01", "04 fc00 005a c0a84dfe 02 0100")).1,
        4,
        "optional parameter type 1"
    );
    assert_eq!(
        err(&msg("001f 01", "04 fc00 005a c0a84dfe 05 0100")),
        (1, 2, vec![0, 0x1f]),
        "optional parameters overrun"
    );
}

/// An UPDATE for 10.244.1.0/24 with the given attribute bytes.
fn update_with(attrs: &str) -> Vec<u8> {
    let a = hex(attrs);
    let body = format!("0000 {:04x} {attrs} 18 0af401", a.len());
    let len = 19 + 4 + a.len() + 4;
    msg(&format!("{len:04x} 02"), &body)
}

const GOOD: &str = "400101 00 400206 0201 0000fc00 400304 c0a84d01";

fn withdrawn_because(b: &[u8]) -> String {
    let Message::Update(u) = one(b).unwrap() else {
        panic!()
    };
    assert!(u.nlri.is_empty(), "nothing announced");
    assert_eq!(
        u.withdrawn,
        [net("10.244.1.0/24")],
        "the route is withdrawn instead"
    );
    u.treat_as_withdraw.expect("a reason")
}

#[test]
fn rfc7606_treat_as_withdraw() {
    assert!(withdrawn_because(&update_with(
        "400101 05 400206 0201 0000fc00 400304 c0a84d01"
    ))
    .contains("ORIGIN"));
    assert!(withdrawn_because(&update_with(
        "c00101 00 400206 0201 0000fc00 400304 c0a84d01"
    ))
    .contains("flags"));
    assert!(
        withdrawn_because(&update_with("400101 00 400206 0201 0000fc00 400303 c0a84d"))
            .contains("NEXT_HOP")
    );
    assert!(withdrawn_because(&update_with("400101 00 400205 0201 0000fc")).contains("AS_PATH"));
    assert!(
        withdrawn_because(&update_with("400101 00 400206 0201 0000fc00"))
            .contains("missing well-known attribute NEXT_HOP")
    );
    assert!(withdrawn_because(&update_with(
        "400101 00 400206 0201 0000fc00 400304 00000000"
    ))
    .contains("invalid NEXT_HOP"));
    assert!(
        withdrawn_because(&update_with(&format!("{GOOD} c00803 000001"))).contains("COMMUNITIES")
    );
    assert!(withdrawn_because(&update_with(&format!("{GOOD} 400509 00"))).contains("overruns"));
    // RFC 8092 section 6: a LARGE_COMMUNITY not a non-zero multiple of 12 octets.
    assert!(withdrawn_because(&update_with(&format!(
        "{GOOD} c0200b 0000fc00 00000001 000002"
    )))
    .contains("LARGE_COMMUNITY"));
    assert!(withdrawn_because(&update_with(&format!("{GOOD} c02000"))).contains("LARGE_COMMUNITY"));
}

#[test]
fn rfc7606_attribute_discard_and_duplicates() {
    let Message::Update(u) = one(&update_with(&format!("{GOOD} 400601 00"))).unwrap() else {
        panic!()
    };
    assert_eq!(u.nlri, [net("10.244.1.0/24")], "route kept");
    assert_eq!(u.discarded.len(), 1);
    assert!(!u.attrs.atomic_aggregate);
    // A second ORIGIN is ignored, the first counts.
    let Message::Update(u) = one(&update_with(&format!("{GOOD} 400101 02"))).unwrap() else {
        panic!()
    };
    assert_eq!(u.attrs.origin, Some(Origin::Igp));
}

#[test]
fn update_errors_that_reset_the_session() {
    assert_eq!(
        err(&update_with(&format!("{GOOD} 406301 00"))).1,
        2,
        "unrecognized well-known attribute"
    );
    assert_eq!(
        err(&msg("0018 02", "0009 0000 00")).1,
        1,
        "withdrawn length overruns"
    );
    assert_eq!(
        err(&msg("001b 02", "0000 0000 21 0af401")).1,
        10,
        "prefix length 33"
    );
    assert_eq!(
        err(&msg("0019 02", "0000 0000 18 0a")).1,
        10,
        "prefix cut short"
    );
    assert_eq!(
        err(&update_with(&format!("{GOOD} 800e03 000101"))).1,
        9,
        "MP_REACH cut short"
    );
}

#[test]
fn notification_and_route_refresh() {
    let n = Message::Notification(Notification::new(6, 2, vec![]));
    let b = n.encode(FOUR);
    assert_eq!(b, msg("0015 03", "0602"));
    assert_eq!(one(&b).unwrap(), n);
    assert_eq!(
        Notification::new(3, 11, vec![]).describe(),
        "UPDATE message error: malformed AS_PATH"
    );
    let rr = Message::RouteRefresh { afi: 1, safi: 1 };
    assert_eq!(rr.encode(FOUR), msg("0017 05", "00010001"));
    assert_eq!(one(&rr.encode(FOUR)).unwrap(), rr);
}

fn prefix() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn attrs() -> impl Strategy<Value = PathAttributes> {
    (
        prop::option::of(prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ]),
        prop::collection::vec(prop::collection::vec(1u32.., 1..5), 0..3),
        prop::option::of(
            (1u8..224, any::<[u8; 3]>()).prop_map(|(a, r)| Ipv4Addr::new(a, r[0], r[1], r[2])),
        ),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..4),
        prop::collection::vec(any::<[u8; 4]>().prop_map(Ipv4Addr::from), 0..3),
        prop::option::of(prop::collection::vec(prefix(), 0..5)),
        prop::collection::vec(any::<[u32; 3]>(), 0..3),
    )
        .prop_map(
            |(
                origin,
                path,
                next_hop,
                med,
                local_pref,
                communities,
                cluster_list,
                mp_unreach,
                large_communities,
            )| {
                PathAttributes {
                    origin,
                    as_path: path.into_iter().map(AsSegment::Sequence).collect(),
                    next_hop: next_hop.filter(|n| !n.is_loopback()),
                    med,
                    local_pref,
                    communities,
                    large_communities,
                    cluster_list,
                    mp_unreach,
                    other: vec![RawAttribute {
                        flags: 0xe0,
                        type_code: 33,
                        value: vec![1, 2, 3],
                    }],
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn updates_round_trip(
        withdrawn in prop::collection::vec(prefix(), 0..20),
        attrs in attrs(),
        nlri in prop::collection::vec(prefix(), 0..20),
    ) {
        // Announcing needs ORIGIN, AS_PATH and NEXT_HOP; without them RFC 7606 withdraws.
        let complete = attrs.origin.is_some() && attrs.next_hop.is_some();
        let nlri = if complete { nlri } else { vec![] };
        let u = Update { withdrawn, attrs, nlri, ..Default::default() };
        let bytes = Message::Update(Box::new(u.clone())).encode(FOUR);
        prop_assume!(bytes.len() <= 4096);
        prop_assert_eq!(one(&bytes).unwrap(), Message::Update(Box::new(u)));
    }

    /// The bounded fuzz run: random bodies behind a valid header never panic the
    /// decoder; they decode or are refused with a NOTIFICATION.
    #[test]
    fn no_input_panics(kind in 1u8..=6, body in prop::collection::vec(any::<u8>(), 0..300), four in any::<bool>()) {
        let mut b = hex(MARKER);
        b.extend(((19 + body.len()) as u16).to_be_bytes());
        b.push(kind);
        b.extend(&body);
        let _ = decode(&b, Codec { four_octet_as: four });
    }

    /// Mutations of valid messages (the likelier shape of a broken peer) never panic.
    #[test]
    fn mutated_messages_never_panic(at in 19usize..60, byte in any::<u8>(), cut in 19usize..60) {
        for base in [msg("0036 02", ANNOUNCE), update_with(&format!("{GOOD} c00804 00010002"))] {
            let mut b = base.clone();
            let at = at.min(b.len() - 1);
            b[at] = byte;
            let _ = decode(&b, FOUR);
            let _ = decode(&base[..cut.min(base.len())], FOUR);
        }
    }
}

/// RFC 8092's wire form: type 32, optional transitive, 12 octets per community.
#[test]
fn large_communities_on_the_wire() {
    let Message::Update(u) = one(&update_with(&format!(
        "{GOOD} c0200c 0000fc00 00000007 0000002a"
    )))
    .unwrap() else {
        panic!()
    };
    assert_eq!(u.attrs.large_communities, [[64512, 7, 42]]);
    assert!(u.treat_as_withdraw.is_none());
}
