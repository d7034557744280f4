//! Watching the kernel for changes to what Weft owns.
//!
//! The monitor does not try to keep a picture of the kernel from events: any relevant
//! event only wakes the agent, which then re-reads everything it owns and re-applies the
//! plan. So a lost event (a netlink buffer overrun) cannot leave a wrong view behind: the
//! next event or the periodic resync re-reads all of it.

use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use crate::route::WEFT_PROTO;
use crate::KernelError;

/// Why the agent was woken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A link appeared, vanished or changed (state, address, MTU).
    Link(String),
    /// One of Weft's routes changed or vanished.
    Route,
    /// A permanent neighbour or FDB entry changed.
    Neighbour,
    /// An interface address changed (the node's public IP may have moved).
    Address,
    /// The monitor lost its socket; everything must be re-read.
    Lost,
}

fn classify(msg: &RouteNetlinkMessage) -> Option<KernelEvent> {
    use netlink_packet_route::link::LinkAttribute;
    match msg {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            Some(KernelEvent::Link(name.unwrap_or_default()))
        }
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            (r.header.protocol == RouteProtocol::from(WEFT_PROTO)).then_some(KernelEvent::Route)
        }
        RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => {
            let ours = n.header.state == NeighbourState::Permanent
                || n.header.family == AddressFamily::Bridge;
            ours.then_some(KernelEvent::Neighbour)
        }
        RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_) => {
            Some(KernelEvent::Address)
        }
        _ => None,
    }
}

/// Starts listening; relevant events arrive on the returned channel. The channel holds
/// one pending event: bursts collapse into a single wake-up.
pub fn watch() -> Result<mpsc::Receiver<KernelEvent>, KernelError> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv4Ifaddr,
    ];
    let (conn, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&groups).map_err(KernelError::Socket)?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some((msg, _)) = futures::StreamExt::next(&mut messages).await {
            if let NetlinkPayload::InnerMessage(inner) = msg.payload {
                if let Some(ev) = classify(&inner) {
                    if tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(ev);
                }
            }
        }
        let _ = tx.send(KernelEvent::Lost).await;
    });
    Ok(rx)
}
