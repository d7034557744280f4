//! Routes: Weft's own (protocol [`WEFT_PROTO`], main table) read back as plan values and
//! written in batches; and single routes without the mark for attachments.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use weft_plan::{Route, RouteKind, WEFT_PROTO};

use super::nl;
use crate::error::KernelError;

pub use weft_plan::route::BLACKHOLE_METRIC;

const MAIN_TABLE: u8 = 254;

async fn ipv4(handle: &Handle) -> Result<Vec<RouteMessage>, KernelError> {
    super::dump("list routes", || {
        handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
    })
    .await
}

fn oif(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

pub(super) async fn default_dev(handle: &Handle) -> Result<Option<u32>, KernelError> {
    Ok(ipv4(handle).await?.into_iter().find_map(|m| {
        let main = m.header.table == MAIN_TABLE;
        (main && m.header.destination_prefix_length == 0)
            .then(|| oif(&m))
            .flatten()
    }))
}

pub(super) async fn weft(handle: &Handle) -> Result<Vec<Route>, KernelError> {
    Ok(ipv4(handle).await?.iter().filter_map(to_route).collect())
}

/// Reads a kernel route back as a [`Route`] if it is Weft's.
fn to_route(m: &RouteMessage) -> Option<Route> {
    if m.header.protocol != RouteProtocol::from(WEFT_PROTO) || m.header.table != MAIN_TABLE {
        return None;
    }
    let dst_ip = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })?;
    let dst = Ipv4Net::new(dst_ip, m.header.destination_prefix_length).ok()?;
    if m.header.kind == RouteType::BlackHole {
        return Some(Route::blackhole(dst));
    }
    let gateway = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    });
    let dev = oif(m)?;
    Some(match gateway {
        None => Route::device(dst, dev),
        Some(gw) if m.header.flags.contains(RouteFlags::Onlink) => Route::onlink(dst, gw, dev),
        Some(gw) => Route::via(dst, gw, dev),
    })
}

/// The netlink message for a route, without the protocol.
fn build(r: &Route) -> RouteMessageBuilder<Ipv4Addr> {
    let b =
        RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(r.dst.addr(), r.dst.prefix_len());
    match r.kind {
        RouteKind::Blackhole => b
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            .priority(BLACKHOLE_METRIC),
        RouteKind::Via { gateway, dev } => b
            .output_interface(dev)
            .kind(RouteType::Unicast)
            .gateway(gateway)
            .scope(RouteScope::Universe),
        RouteKind::OnLink { gateway, dev } => b
            .output_interface(dev)
            .kind(RouteType::Unicast)
            .gateway(gateway)
            .scope(RouteScope::Universe)
            .onlink(),
        RouteKind::Device { dev } => b
            .output_interface(dev)
            .kind(RouteType::Unicast)
            .scope(RouteScope::Link),
    }
}

/// The netlink message for a Weft route: marked with [`WEFT_PROTO`].
pub(super) fn message(r: &Route) -> RouteMessage {
    build(r).protocol(RouteProtocol::from(WEFT_PROTO)).build()
}

/// Adds a route with the kernel's default protocol (`boot`), not Weft's mark.
pub(super) async fn add_unowned(handle: &Handle, r: &Route) -> Result<(), KernelError> {
    handle
        .route()
        .add(build(r).build())
        .execute()
        .await
        .map_err(nl("add route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_as_written() {
        let dst: Ipv4Net = "10.244.2.0/24".parse().unwrap();
        let gw: Ipv4Addr = "192.168.1.2".parse().unwrap();
        for r in [
            Route::via(dst, gw, 3),
            Route::onlink(dst, gw, 4),
            Route::device(dst, 5),
            Route::blackhole(dst),
        ] {
            assert_eq!(to_route(&message(&r)), Some(r), "{r}");
        }
        let theirs = build(&Route::device(dst, 5)).build();
        assert_eq!(
            to_route(&theirs),
            None,
            "a route without the mark is not Weft's"
        );
    }
}
