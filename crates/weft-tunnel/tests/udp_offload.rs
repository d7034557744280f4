//! The UDP socket's offloads on loopback: one GSO send of many datagrams arrives either
//! as one GRO buffer with its segment size, or as separate datagrams; never mangled.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use weft_tunnel::sys::udp::{RecvMeta, UdpSocket};

#[test]
fn gso_send_arrives_intact_whether_coalesced_or_not() {
    let rx = UdpSocket::bind(0).unwrap();
    let port = rx.local_port().unwrap();
    let tx = UdpSocket::bind(0).unwrap();
    assert!(tx.gso(), "UDP GSO should work on this kernel");
    // 10 datagrams of 1000 bytes and a last one of 123.
    let mut data = Vec::new();
    for i in 0..11u8 {
        let len = if i == 10 { 123 } else { 1000 };
        data.extend(std::iter::repeat_n(i, len));
    }
    tx.send(&data, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), 1000)
        .unwrap();
    let mut bufs = vec![vec![0u8; 65536]; 8];
    let mut meta = vec![RecvMeta::default(); 8];
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while datagrams.len() < 11 && Instant::now() < deadline {
        let n = rx.recv_batch(&mut bufs, &mut meta).unwrap();
        for (b, m) in meta[..n].iter().enumerate() {
            assert_eq!(m.src.map(|s| *s.ip()), Some(Ipv4Addr::LOCALHOST));
            for chunk in bufs[b][..m.len].chunks(m.segment) {
                datagrams.push(chunk.to_vec());
            }
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(datagrams.len(), 11);
    for (i, d) in datagrams.iter().enumerate() {
        assert!(d.iter().all(|&b| b == i as u8), "datagram {i} intact");
    }
    assert_eq!(datagrams[10].len(), 123);
}
