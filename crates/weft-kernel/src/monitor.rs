//! Watching the kernel for changes to what Weft owns.
//!
//! The monitor does not try to keep a picture of the kernel from events: any relevant
//! event only wakes the agent, which then re-reads everything it owns and re-applies the
//! plan. So a lost event (a netlink buffer overrun) cannot leave a wrong view behind: it
//! wakes the agent like any other, and the re-read covers whatever was lost.
//!
//! Events are classified from their fixed headers only, on a plain thread: installing
//! 10,000 learned BGP routes produces 10,000 route events, and decoding each into a full
//! message took as much CPU as installing them. Route changes Weft made itself (through
//! [`crate::batch`], whose sockets are recorded in [`Owned`]) wake nobody: the
//! kernel names the requesting socket in each notification.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tokio::sync::mpsc;

use weft_plan::WEFT_PROTO;

use crate::own::Owned;
use crate::KernelError;

/// Why the agent was woken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A link appeared, vanished or changed (state, address, MTU).
    Link(String),
    /// One of Weft's routes changed or vanished, by someone else's hand.
    Route,
    /// A permanent neighbour or FDB entry changed.
    Neighbour,
    /// An interface address changed (the node's public IP may have moved).
    Address,
    /// Events were dropped (receive buffer overrun): everything must be re-read.
    Overrun,
    /// The monitor lost its socket; everything must be re-read.
    Lost,
}

// rtnetlink message types and multicast groups (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const IFLA_IFNAME: u16 = 3;
const NUD_PERMANENT: u16 = 0x80;
const AF_BRIDGE: u8 = 7;
const NLMSG_HDRLEN: usize = 16;
/// struct ifinfomsg.
const IFINFO_LEN: usize = 16;

/// The receive buffer asked for (root may exceed `rmem_max`): room for the events of a
/// large route change made by someone else before the thread reads them.
const RCVBUF: i32 = 4 << 20;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The interface name attribute of a link message's payload, if present.
fn link_name(payload: &[u8]) -> String {
    let mut at = IFINFO_LEN;
    while let (Some(len), Some(kind)) = (u16_at(payload, at), u16_at(payload, at + 2)) {
        let len = len as usize;
        if len < 4 || at + len > payload.len() {
            break;
        }
        if kind & 0x3fff == IFLA_IFNAME {
            let name = &payload[at + 4..at + len];
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            return String::from_utf8_lossy(&name[..end]).into_owned();
        }
        at += (len + 3) & !3;
    }
    String::new()
}

/// The events in one datagram of rtnetlink notifications; `own` says whether a port id
/// is one of Weft's own sockets. Pure, so it is tested on bytes.
pub fn classify(data: &[u8], own: &Owned) -> Vec<KernelEvent> {
    let mut out = Vec::new();
    let mut off = 0;
    while let (Some(len), Some(kind), Some(port)) = (
        u32_at(data, off),
        u16_at(data, off + 4),
        u32_at(data, off + 12),
    ) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || off + len > data.len() {
            break;
        }
        let payload = &data[off + NLMSG_HDRLEN..off + len];
        let event = match kind {
            RTM_NEWLINK | RTM_DELLINK => Some(KernelEvent::Link(link_name(payload))),
            // struct rtmsg: family, dst_len, src_len, tos, table, protocol, ...
            RTM_NEWROUTE | RTM_DELROUTE => (payload.get(5) == Some(&WEFT_PROTO)
                && !own.is_own_port(port))
            .then_some(KernelEvent::Route),
            // struct ndmsg: family, pad, pad, ifindex (4), state (2), ...
            RTM_NEWNEIGH | RTM_DELNEIGH => {
                // A permanent entry anywhere, any FDB entry, or any entry on Weft's own
                // device: an entry deleted by hand is announced with NUD_FAILED.
                let ours = u16_at(payload, 8).is_some_and(|s| s & NUD_PERMANENT != 0)
                    || payload.first() == Some(&AF_BRIDGE)
                    || u32_at(payload, 4).is_some_and(|i| own.is_own_link(i));
                ours.then_some(KernelEvent::Neighbour)
            }
            RTM_NEWADDR | RTM_DELADDR => Some(KernelEvent::Address),
            _ => None,
        };
        out.extend(event);
        off += (len + 3) & !3;
    }
    out
}

/// A socket filter run by the kernel before queueing an event: drops RTM_NEWROUTE of
/// protocol 77, which is Weft installing its own routes (10,000 of them for a BGP
/// table) and would otherwise wake this thread once each. Deletions of Weft's routes
/// still come through, since a route deleted by hand is what must be repaired; a route
/// someone else adds with Weft's protocol is found by the next resync.
fn own_additions_filter() -> [libc::sock_filter; 6] {
    // Absolute loads read in network byte order; netlink headers are in host order.
    let newroute = u16::from_be_bytes(RTM_NEWROUTE.to_ne_bytes()) as u32;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    [
        stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 4), // nlmsg_type
        jump(newroute, 0, 3),
        stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 16 + 5), // rtm_protocol
        jump(WEFT_PROTO as u32, 0, 1),
        stmt(libc::BPF_RET | libc::BPF_K, 0),           // drop
        stmt(libc::BPF_RET | libc::BPF_K, 0xffff_ffff), // keep
    ]
}

fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    // Both families' routes: a dual-stack node's IPv6 routes are Weft's too (events of
    // other protocols are dropped here, so an IPv4-only node pays nothing for this).
    // IPv6 address events are left out: every new veth's link-local address would wake
    // the agent twice; a change of the node's public IPv6 address waits for the resync.
    let groups =
        RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
    socket.bind(&SocketAddr::new(0, groups))?;
    crate::batch::force_rcvbuf(&mut socket, RCVBUF);
    let filter = own_additions_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program.
    if let Err(e) = crate::sys::set_sockopt(&socket, libc::SO_ATTACH_FILTER, &prog) {
        // Only a cost, not a fault: the events are then dropped in user space.
        tracing::debug!(error = %e, "no socket filter on the kernel event monitor");
    }
    // Wake up now and then to notice that nobody listens any more.
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    let _ = crate::sys::set_sockopt(&socket, libc::SO_RCVTIMEO, &timeout);
    Ok(socket)
}

/// Starts listening (in `netns`, or the caller's namespace); relevant events arrive on
/// the returned channel. The channel holds one pending event: bursts collapse into a
/// single wake-up. Route changes made through sockets in `own` wake nobody; any
/// neighbour change on one of its links wakes the agent.
pub fn watch(
    netns: Option<&Path>,
    own: Arc<Owned>,
) -> Result<mpsc::Receiver<KernelEvent>, KernelError> {
    let socket = match netns {
        Some(ns) => crate::netns::run_in(ns, open)?,
        None => open(),
    }
    .map_err(KernelError::Socket)?;
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("weft-kernel-events".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut flags = 0;
            while !tx.is_closed() {
                match socket.recv(&mut &mut buf[..], flags) {
                    Ok(n) => {
                        for ev in classify(&buf[..n.min(buf.len())], &own) {
                            let _ = tx.try_send(ev);
                        }
                        // Drain what else is queued without blocking.
                        flags = libc::MSG_DONTWAIT;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        let _ = tx.try_send(KernelEvent::Overrun);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && flags != 0 => {
                        // Drained: let the next burst pile up rather than waking per
                        // event (a route change of thousands is thousands of events).
                        flags = 0;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => {
                        let _ = tx.blocking_send(KernelEvent::Lost);
                        return;
                    }
                }
            }
        })
        .map_err(KernelError::Socket)?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::neighbour::{NeighbourMessage, NeighbourState};
    use netlink_packet_route::route::{RouteMessage, RouteProtocol};
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

    fn bytes(msgs: Vec<(RouteNetlinkMessage, u32)>) -> Vec<u8> {
        let mut out = Vec::new();
        for (inner, port) in msgs {
            let mut header = NetlinkHeader::default();
            header.port_number = port;
            let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
            m.finalize();
            let at = out.len();
            out.resize(at + m.header.length as usize, 0);
            m.serialize(&mut out[at..]);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    fn route(proto: u8) -> RouteNetlinkMessage {
        let mut r = RouteMessage::default();
        r.header.protocol = RouteProtocol::from(proto);
        RouteNetlinkMessage::NewRoute(r)
    }

    #[test]
    fn routes_count_only_when_ours_and_changed_by_someone_else() {
        let none = Owned::default();
        let data = bytes(vec![(route(WEFT_PROTO), 0), (route(12), 0)]);
        assert_eq!(classify(&data, &none), vec![KernelEvent::Route]);
        let data = bytes(vec![(route(WEFT_PROTO), 4242)]);
        let own = Owned::default();
        own.note_port(4242);
        assert_eq!(classify(&data, &own), vec![]);
        assert_eq!(classify(&data, &none), vec![KernelEvent::Route]);
    }

    #[test]
    fn links_neighbours_and_addresses() {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName("weft.1".into()));
        let mut permanent = NeighbourMessage::default();
        permanent.header.family = AddressFamily::Inet;
        permanent.header.state = NeighbourState::Permanent;
        let mut learned = NeighbourMessage::default();
        learned.header.family = AddressFamily::Inet;
        learned.header.state = NeighbourState::Reachable;
        let mut fdb = NeighbourMessage::default();
        fdb.header.family = AddressFamily::Bridge;
        let data = bytes(vec![
            (RouteNetlinkMessage::DelLink(link), 0),
            (RouteNetlinkMessage::NewNeighbour(permanent), 0),
            (RouteNetlinkMessage::NewNeighbour(learned), 0),
            (RouteNetlinkMessage::NewNeighbour(fdb), 0),
            (RouteNetlinkMessage::NewAddress(Default::default()), 0),
        ]);
        assert_eq!(
            classify(&data, &Owned::default()),
            vec![
                KernelEvent::Link("weft.1".into()),
                KernelEvent::Neighbour,
                KernelEvent::Neighbour,
                KernelEvent::Address,
            ]
        );
    }

    #[test]
    fn any_neighbour_change_on_weft_s_device_counts() {
        // `ip neigh del` of a permanent entry is announced as failed, not permanent.
        let mut deleted = NeighbourMessage::default();
        deleted.header.family = AddressFamily::Inet;
        deleted.header.ifindex = 9;
        deleted.header.state = NeighbourState::Failed;
        let mut elsewhere = deleted.clone();
        elsewhere.header.ifindex = 3;
        let data = bytes(vec![
            (RouteNetlinkMessage::DelNeighbour(deleted), 0),
            (RouteNetlinkMessage::DelNeighbour(elsewhere), 0),
        ]);
        assert_eq!(classify(&data, &Owned::default()), vec![]);
        let own = Owned::default();
        own.note_link(9);
        assert_eq!(classify(&data, &own), vec![KernelEvent::Neighbour]);
    }

    #[test]
    fn truncated_data_ends_the_walk() {
        let data = bytes(vec![(route(WEFT_PROTO), 0)]);
        let own = Owned::default();
        assert_eq!(classify(&data[..data.len() - 4], &own), vec![]);
        assert_eq!(classify(&[1, 2, 3], &own), vec![]);
    }
}
