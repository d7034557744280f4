//! Permanent neighbour entries and FDB entries on an overlay device.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;
use weft_plan::{Applied, Change, FdbEntry, MacAddr, Neighbour};

use super::refusal;
use crate::error::KernelError;

/// Every neighbour (or FDB) entry of `family`.
async fn dump(
    handle: &Handle,
    family: AddressFamily,
    op: &'static str,
) -> Result<Vec<NeighbourMessage>, KernelError> {
    super::dump(op, || {
        handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
    })
    .await
}

/// Both families' permanent entries on the link.
pub(super) async fn neighbours(handle: &Handle, index: u32) -> Result<Vec<Neighbour>, KernelError> {
    let mut all = dump(handle, AddressFamily::Inet, "list neighbours").await?;
    all.extend(dump(handle, AddressFamily::Inet6, "list IPv6 neighbours").await?);
    Ok(all
        .iter()
        .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| {
            Some(Neighbour {
                ip: neigh_ip(m)?,
                mac: neigh_mac(m)?,
            })
        })
        .collect())
}

pub(super) async fn fdb(handle: &Handle, index: u32) -> Result<Vec<FdbEntry>, KernelError> {
    Ok(dump(handle, AddressFamily::Bridge, "list fdb")
        .await?
        .iter()
        .filter(|m| m.header.ifindex == index)
        .filter_map(|m| {
            Some(FdbEntry {
                mac: neigh_mac(m)?,
                dst: neigh_ip(m)?,
            })
        })
        .collect())
}

pub(super) async fn apply_neighbours(
    handle: &Handle,
    index: u32,
    changes: Vec<Change<Neighbour>>,
) -> Applied<Neighbour> {
    let mut applied = Applied::default();
    for change in changes {
        let result = neighbour_change(handle, index, change).await;
        applied.record(change, result.map_err(refusal));
    }
    applied
}

async fn neighbour_change(
    handle: &Handle,
    index: u32,
    change: Change<Neighbour>,
) -> Result<(), rtnetlink::Error> {
    match change {
        Change::Add(n) | Change::Replace(n) => {
            handle
                .neighbours()
                .add(index, n.ip)
                .link_layer_address(&n.mac.0)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
        }
        Change::Remove(n) => {
            let mut m = NeighbourMessage::default();
            m.header.family = match n.ip {
                IpAddr::V4(_) => AddressFamily::Inet,
                IpAddr::V6(_) => AddressFamily::Inet6,
            };
            m.header.ifindex = index;
            m.attributes
                .push(NeighbourAttribute::Destination(address(n.ip)));
            handle.neighbours().del(m).execute().await
        }
    }
}

pub(super) async fn apply_fdb(
    handle: &Handle,
    index: u32,
    changes: Vec<Change<FdbEntry>>,
) -> Applied<FdbEntry> {
    let mut applied = Applied::default();
    for change in changes {
        let result = fdb_change(handle, index, change).await;
        applied.record(change, result.map_err(refusal));
    }
    applied
}

async fn fdb_change(
    handle: &Handle,
    index: u32,
    change: Change<FdbEntry>,
) -> Result<(), rtnetlink::Error> {
    match change {
        Change::Add(f) | Change::Replace(f) => {
            handle
                .neighbours()
                .add_bridge(index, &f.mac.0)
                .flags(NeighbourFlags::Own)
                .destination(f.dst)
                .replace()
                .execute()
                .await
        }
        Change::Remove(f) => {
            let mut m = NeighbourMessage::default();
            m.header.family = AddressFamily::Bridge;
            m.header.ifindex = index;
            m.header.flags = NeighbourFlags::Own;
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(f.mac.0.to_vec()));
            m.attributes
                .push(NeighbourAttribute::Destination(address(f.dst)));
            handle.neighbours().del(m).execute().await
        }
    }
}

fn address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
        IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
    }
}

fn neigh_ip(m: &NeighbourMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some((*ip).into()),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some((*ip).into()),
        // An FDB entry (family AF_BRIDGE) carries its destination as raw bytes: the
        // parser cannot tell the address family from the message's.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => match b.len() {
            4 => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()),
            16 => <[u8; 16]>::try_from(b.as_slice())
                .ok()
                .map(|o| Ipv6Addr::from(o).into()),
            _ => None,
        },
        _ => None,
    })
}

fn neigh_mac(m: &NeighbourMessage) -> Option<MacAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => MacAddr::from_slice(b),
        _ => None,
    })
}
