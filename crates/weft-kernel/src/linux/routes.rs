//! Routes: Weft's own (protocol [`WEFT_PROTO`], main table, both families) read back as
//! plan values and written in batches; and single routes without the mark for
//! attachments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use weft_plan::{Route, RouteKind, WEFT_PROTO};

use super::nl;
use crate::error::KernelError;

pub use weft_plan::route::BLACKHOLE_METRIC;

const MAIN_TABLE: u8 = 254;

/// Every route of the family `request` names.
async fn of_family(
    handle: &Handle,
    op: &'static str,
    request: RouteMessage,
) -> Result<Vec<RouteMessage>, KernelError> {
    super::dump(op, || handle.route().get(request.clone()).execute()).await
}

async fn ipv4(handle: &Handle) -> Result<Vec<RouteMessage>, KernelError> {
    let request = RouteMessageBuilder::<Ipv4Addr>::new().build();
    of_family(handle, "list routes", request).await
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

async fn ipv6(handle: &Handle) -> Result<Vec<RouteMessage>, KernelError> {
    let request = RouteMessageBuilder::<Ipv6Addr>::new().build();
    of_family(handle, "list IPv6 routes", request).await
}

/// Weft's routes of both families.
pub(super) async fn weft(handle: &Handle) -> Result<Vec<Route>, KernelError> {
    let mut all: Vec<Route> = ipv4(handle).await?.iter().filter_map(to_route).collect();
    all.extend(ipv6(handle).await?.iter().filter_map(to_route));
    Ok(all)
}

/// Reads a kernel route back as a [`Route`] if it is Weft's.
fn to_route(m: &RouteMessage) -> Option<Route> {
    if m.header.protocol != RouteProtocol::from(WEFT_PROTO) || m.header.table != MAIN_TABLE {
        return None;
    }
    let dst_ip: IpAddr = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some((*ip).into()),
        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some((*ip).into()),
        _ => None,
    })?;
    let dst = IpNet::new(dst_ip, m.header.destination_prefix_length).ok()?;
    if m.header.kind == RouteType::BlackHole {
        return Some(Route::blackhole(dst));
    }
    let gateway: Option<IpAddr> = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some((*ip).into()),
        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => Some((*ip).into()),
        _ => None,
    });
    let dev = oif(m)?;
    Some(match gateway {
        None => Route::device(dst, dev),
        Some(gw) if m.header.flags.contains(RouteFlags::Onlink) => Route::onlink(dst, gw, dev),
        Some(gw) => Route::via(dst, gw, dev),
    })
}

/// The netlink message for a route, without the protocol. The family is the
/// destination's; a gateway of the other family (which no backend plans) is written as
/// the kernel's `via` attribute for IPv4 and left for the kernel to refuse for IPv6.
fn build(r: &Route) -> RouteMessageBuilder<IpAddr> {
    let b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .expect("an IpNet's prefix length fits its family");
    let gw = |b: RouteMessageBuilder<IpAddr>, gateway: IpAddr| {
        let gateway = match (r.dst, gateway) {
            (IpNet::V6(_), IpAddr::V4(g)) => IpAddr::V6(g.to_ipv6_mapped()),
            _ => gateway,
        };
        b.gateway(gateway)
            .expect("IPv4 routes take either family's gateway, IPv6 routes an IPv6 one")
    };
    match r.kind {
        RouteKind::Blackhole => b
            .scope(RouteScope::Universe)
            .kind(RouteType::BlackHole)
            .priority(BLACKHOLE_METRIC),
        RouteKind::Via { gateway, dev } => gw(b, gateway)
            .output_interface(dev)
            .kind(RouteType::Unicast)
            .scope(RouteScope::Universe),
        RouteKind::OnLink { gateway, dev } => gw(b, gateway)
            .output_interface(dev)
            .kind(RouteType::Unicast)
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
        for (dst, gw) in [
            ("10.244.2.0/24", "192.168.1.2"),
            ("fd00:10:244:2::/64", "fd00:77::2"),
        ] {
            let dst: IpNet = dst.parse().unwrap();
            let gw: IpAddr = gw.parse().unwrap();
            for r in [
                Route::via(dst, gw, 3),
                Route::onlink(dst, gw, 4),
                Route::device(dst, 5),
                Route::blackhole(dst),
            ] {
                assert_eq!(to_route(&message(&r)), Some(r), "{r}");
            }
        }
        let dst: IpNet = "10.244.2.0/24".parse().unwrap();
        let theirs = build(&Route::device(dst, 5)).build();
        assert_eq!(
            to_route(&theirs),
            None,
            "a route without the mark is not Weft's"
        );
    }
}
