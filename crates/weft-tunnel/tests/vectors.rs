//! Segmentation, coalescing and encapsulation against byte vectors. The expected bytes of
//! the small case were computed by an independent implementation (a few lines of Python
//! with its own checksum), not by this crate.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use weft_tunnel::coalesce::Coalescer;
use weft_tunnel::encap::{self, IPIP_HEADER_LEN};
use weft_tunnel::segment::{self, Prepared};
use weft_tunnel::vnet::{GsoType, VnetHdr, F_NEEDS_CSUM};

const SRC: [u8; 4] = [10, 244, 1, 2];
const DST: [u8; 4] = [10, 244, 2, 3];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Reference one's-complement sum, a byte at a time.
fn ref_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    let mut i = 0usize;
    for p in parts {
        for b in p.iter() {
            s += if i.is_multiple_of(2) {
                (*b as u64) << 8
            } else {
                *b as u64
            };
            i += 1;
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn ip_ok(p: &[u8]) -> bool {
    ref_sum(&[&p[..20]]) == 0xffff
}

fn l4_ok(p: &[u8], proto: u8) -> bool {
    let l4 = &p[20..];
    let pseudo = [
        &p[12..20],
        &[0, proto],
        &(l4.len() as u16).to_be_bytes()[..],
    ]
    .concat();
    ref_sum(&[&pseudo, l4]) == 0xffff
}

/// A TCP super-packet as the kernel hands it over with TSO: one header, the payload of
/// several segments, the TCP checksum field holding the pseudo-header sum.
fn super_packet(payload: &[u8], options: &[u8], flags: u8) -> Vec<u8> {
    let tcphl = 20 + options.len();
    let total = 20 + tcphl + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&SRC);
    p[16..20].copy_from_slice(&DST);
    let c = !ref_sum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[8..12].copy_from_slice(&5000u32.to_be_bytes());
    t[12] = ((tcphl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&502u16.to_be_bytes());
    t[20..tcphl].copy_from_slice(options);
    t[tcphl..].copy_from_slice(payload);
    let l4 = (total - 20) as u16;
    let pseudo = ref_sum(&[&SRC, &DST, &[0, 6], &l4.to_be_bytes()]);
    t[16..18].copy_from_slice(&pseudo.to_be_bytes());
    p
}

fn tso(hlen: usize, mss: u16) -> VnetHdr {
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        hdr_len: hlen as u16,
        gso_size: mss,
        csum_start: 20,
        csum_offset: 16,
    }
}

/// Each segment as it goes on the wire: its headers, then its slice of the payload.
fn segments(p: &Prepared, headers: &[u8], pkt: &[u8]) -> Vec<Vec<u8>> {
    let Prepared::Segments { count, .. } = *p else {
        panic!("{p:?}")
    };
    (0..count)
        .map(|i| [&headers[p.header(i)], &pkt[p.payload(i)]].concat())
        .collect()
}

#[test]
fn splits_a_super_packet_exactly_as_expected() {
    let mut p = super_packet(b"ABCDEFGHIJ", &[], 0x18);
    let mut out = vec![0u8; 4096];
    let prepared = segment::prepare(&tso(40, 4), &mut p, &mut out, 0).unwrap();
    let got = segments(&prepared, &out, &p);
    let want = [
        "4500002c1234400040060fac0af401020af402039c401451000003e800001388501001f64866000041424344",
        "4500002c1235400040060fab0af401020af402039c401451000003ec00001388501001f6405a000045464748",
        "4500002a1236400040060fac0af401020af402039c401451000003f000001388501801f683940000494a",
    ];
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, &hex(w));
    }
}

#[test]
fn segments_leave_headroom_for_an_outer_header() {
    let mut p = super_packet(&[7u8; 3000], &[], 0x10);
    let mut out = vec![0u8; 8192];
    let prepared = segment::prepare(&tso(40, 1400), &mut p, &mut out, IPIP_HEADER_LEN).unwrap();
    assert_eq!(
        prepared,
        Prepared::Segments {
            count: 3,
            headroom: 20,
            hlen: 40,
            mss: 1400,
            last: 200
        }
    );
    assert_eq!(
        prepared.header(1),
        80..120,
        "each header behind 20 bytes of room"
    );
    assert_eq!(prepared.payload(2), 2840..3040);
    for s in segments(&prepared, &out, &p) {
        assert!(ip_ok(&s) && l4_ok(&s, 6));
    }
}

#[test]
fn finishes_a_pending_udp_checksum_in_place() {
    let mut p = vec![0u8; 20 + 8 + 5];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(33u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&SRC);
    p[16..20].copy_from_slice(&DST);
    let c = !ref_sum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&53u16.to_be_bytes());
    p[22..24].copy_from_slice(&53u16.to_be_bytes());
    p[24..26].copy_from_slice(&13u16.to_be_bytes());
    p[28..].copy_from_slice(b"hello");
    let pseudo = ref_sum(&[&SRC, &DST, &[0, 17], &13u16.to_be_bytes()]);
    p[26..28].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GsoType::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 20,
        csum_offset: 6,
    };
    let prepared = segment::prepare(&hdr, &mut p, &mut [], 0).unwrap();
    assert_eq!(prepared, Prepared::InPlace { len: 33 });
    assert!(l4_ok(&p, 17));
}

#[test]
fn refuses_what_it_cannot_cut() {
    let mut p = super_packet(b"ABCD", &[], 0x10);
    let mut hdr = tso(40, 2);
    hdr.gso_type = GsoType::UdpL4;
    assert!(segment::prepare(&hdr, &mut p, &mut [0u8; 512], 0).is_err());
    let mut short = p[..30].to_vec();
    assert!(segment::prepare(&tso(40, 2), &mut short, &mut [0u8; 512], 0).is_err());
    assert!(
        segment::prepare(&tso(40, 2), &mut p.clone(), &mut [0u8; 8], 0).is_err(),
        "no room for headers"
    );
}

/// Coalesces `segs` and returns (vnet header, merged packet) per output packet.
fn coalesce(segs: &[Vec<u8>], verify: bool) -> Vec<(Option<VnetHdr>, Vec<u8>)> {
    let mut co = Coalescer::new(verify);
    co.plan(segs.len(), |i| &segs[i][..]);
    let mut out = Vec::new();
    for g in co.groups() {
        let head = &segs[g.head as usize];
        let mut scratch = [0u8; 128];
        match g.merged_header(head, &mut scratch) {
            None => out.push((None, head.clone())),
            Some((vnet, hlen)) => {
                let mut p = scratch[..hlen].to_vec();
                for i in co.members(g) {
                    p.extend_from_slice(&segs[i][hlen..]);
                }
                out.push((Some(vnet), p));
            }
        }
    }
    out
}

#[test]
fn coalescing_restores_the_super_packet() {
    let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP timestamps
    let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let original = super_packet(&payload, &ts, 0x18);
    let mut out = vec![0u8; 16384];
    let prepared = segment::prepare(&tso(52, 1388), &mut original.clone(), &mut out, 0).unwrap();
    let segs = segments(&prepared, &out, &original);
    assert_eq!(segs.len(), 4);
    for verify in [false, true] {
        let merged = coalesce(&segs, verify);
        assert_eq!(merged.len(), 1);
        let (vnet, p) = &merged[0];
        assert_eq!(*vnet, Some(tso(52, 1388)));
        assert_eq!(
            p, &original,
            "headers, flags, length and partial checksum as the kernel made them"
        );
    }
}

#[test]
fn coalescing_keeps_flows_apart_and_in_order() {
    let mut out = vec![0u8; 16384];
    let a = super_packet(&[1u8; 300], &[], 0x10);
    let pa = segment::prepare(&tso(40, 100), &mut a.clone(), &mut out, 0).unwrap();
    let sa = segments(&pa, &out, &a);
    // A second flow: other source port.
    let mut b = super_packet(&[2u8; 200], &[], 0x10);
    b[20..22].copy_from_slice(&40001u16.to_be_bytes());
    let pseudo_l4 = ref_sum(&[&SRC, &DST, &[0, 6], &((b.len() - 20) as u16).to_be_bytes()]);
    b[36..38].copy_from_slice(&pseudo_l4.to_be_bytes());
    let pb = segment::prepare(&tso(40, 100), &mut b.clone(), &mut out, 0).unwrap();
    let sb = segments(&pb, &out, &b);
    // Interleaved: a0 b0 a1 b1 a2, then a SYN and a segment with a sequence gap.
    let mut syn = sa[0].clone();
    syn[33] = 0x02;
    let mut gap = sa[2].clone();
    gap[24..28].copy_from_slice(&99_999u32.to_be_bytes());
    let batch = vec![
        sa[0].clone(),
        sb[0].clone(),
        sa[1].clone(),
        sb[1].clone(),
        sa[2].clone(),
        syn,
        gap,
    ];
    let merged = coalesce(&batch, false);
    let sizes: Vec<(bool, usize)> = merged.iter().map(|(v, p)| (v.is_some(), p.len())).collect();
    assert_eq!(
        sizes,
        [(true, 340), (true, 240), (false, 140), (false, 140)]
    );
    // A corrupted segment is not merged when verification is on.
    let mut bad = sa[1].clone();
    bad[60] ^= 0xff;
    let merged = coalesce(&[sa[0].clone(), bad, sa[2].clone()], true);
    assert_eq!(merged.len(), 3);
}

#[test]
fn short_or_pushed_segment_closes_the_group() {
    let mut out = vec![0u8; 16384];
    let a = super_packet(&[1u8; 250], &[], 0x18);
    let p = segment::prepare(&tso(40, 100), &mut a.clone(), &mut out, 0).unwrap();
    let s = segments(&p, &out, &a); // 100, 100, 50 (PSH on the last)
    let mut next = s[0].clone(); // a segment that would follow the short one
    next[24..28].copy_from_slice(&(1000u32 + 250).to_be_bytes());
    let merged = coalesce(&[s[0].clone(), s[1].clone(), s[2].clone(), next], false);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].1.len(), 290);
    assert_eq!(
        merged[0].1[33] & 0x08,
        0x08,
        "PSH carried to the merged packet"
    );
}

#[test]
fn ipip_header_follows_rfc_2003() {
    // An ICMP echo request, TTL 63, ECN CE (to check RFC 6040's mapping).
    let inner = hex("4503001c00004000" /* tos CE, len 28, DF */
        .to_owned()
        .as_str())
    .into_iter()
    .chain(hex("3f01000a0af401020af402030800f7ff00000000"))
    .collect::<Vec<u8>>();
    let mut pkt = vec![0u8; IPIP_HEADER_LEN + inner.len()];
    pkt[IPIP_HEADER_LEN..].copy_from_slice(&inner);
    let (h, rest) = pkt.split_at_mut(IPIP_HEADER_LEN);
    encap::write_ipip_header(
        h,
        rest,
        Ipv4Addr::new(192, 168, 77, 1),
        Ipv4Addr::new(192, 168, 77, 2),
        7,
    );
    assert_eq!(pkt[0], 0x45, "version 4, no options");
    assert_eq!(pkt[1], 0x02, "TOS 0, ECN CE carried as ECT(0)");
    assert_eq!(
        u16::from_be_bytes([pkt[2], pkt[3]]) as usize,
        20 + inner.len()
    );
    assert_eq!(u16::from_be_bytes([pkt[4], pkt[5]]), 7);
    assert_eq!(pkt[6] & 0x40, 0x40, "DF");
    assert_eq!(pkt[8], 63, "TTL inherited from the inner packet");
    assert_eq!(pkt[9], 4, "protocol 4, IP in IP");
    assert!(ip_ok(&pkt));
    assert_eq!(&pkt[12..20], &[192, 168, 77, 1, 192, 168, 77, 2]);
    assert_eq!(&pkt[20..], &inner[..], "inner packet untouched");
}

#[test]
fn net_unreachable_quotes_the_original() {
    let p = super_packet(b"0123456789abcdef", &[], 0x10);
    let mut out = [0u8; 128];
    let len = encap::net_unreachable(&mut out, &p, Ipv4Addr::new(10, 244, 1, 0)).unwrap();
    let icmp = &out[..len];
    assert_eq!(len, 20 + 8 + 28);
    assert!(ip_ok(icmp));
    assert_eq!(icmp[9], 1);
    assert_eq!(&icmp[12..16], &[10, 244, 1, 0]);
    assert_eq!(&icmp[16..20], &SRC);
    assert_eq!((icmp[20], icmp[21]), (3, 0), "destination net unreachable");
    assert_eq!(ref_sum(&[&icmp[20..]]), 0xffff);
    assert_eq!(&icmp[28..], &p[..28]);
    // Never in answer to an ICMP error.
    let err = icmp.to_vec();
    assert!(encap::net_unreachable(&mut out, &err, Ipv4Addr::new(10, 244, 1, 0)).is_none());
}

proptest! {
    #[test]
    fn split_then_coalesce_is_identity(len in 1usize..20_000, mss in 536u16..1460, opts in prop::bool::ANY) {
        let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let options: &[u8] = if opts { &ts } else { &[] };
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        let original = super_packet(&payload, options, 0x18);
        let hlen = 40 + options.len();
        let mut out = vec![0u8; 65536];
        let p = segment::prepare(&tso(hlen, mss), &mut original.clone(), &mut out, 0).unwrap();
        let segs = segments(&p, &out, &original);
        prop_assert_eq!(segs.len(), len.div_ceil(mss as usize));
        for s in &segs {
            prop_assert!(ip_ok(s) && l4_ok(s, 6));
        }
        let merged = coalesce(&segs, true);
        prop_assert_eq!(merged.len(), 1);
        if segs.len() > 1 {
            prop_assert_eq!(&merged[0].1, &original);
        } else {
            prop_assert!(merged[0].0.is_none());
        }
    }
}
