//! Addresses: reading them (each family apart), adding one, and making one the only
//! IPv4 address of an overlay device.

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;
use weft_plan::address::plan_addresses;
use weft_plan::iface::{Addr6Info, AddrInfo};
use weft_plan::Change;

use super::{errno_is, nl};
use crate::error::KernelError;

/// Every address of `family`: the request names it, so the kernel dumps that family's
/// table alone.
async fn of_family(
    handle: &Handle,
    family: AddressFamily,
    op: &'static str,
) -> Result<Vec<AddressMessage>, KernelError> {
    let msgs = super::dump(op, || {
        let mut request = handle.address().get();
        request.message_mut().header.family = family;
        request.execute()
    })
    .await?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.family == family)
        .collect())
}

pub(super) async fn all(handle: &Handle) -> Result<Vec<AddrInfo>, KernelError> {
    Ok(of_family(handle, AddressFamily::Inet, "list addresses")
        .await?
        .into_iter()
        .filter_map(|m| {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })?;
            Some(AddrInfo {
                index: m.header.index,
                addr,
                prefix_len: m.header.prefix_len,
            })
        })
        .collect())
}

pub(super) async fn all_v6(handle: &Handle) -> Result<Vec<Addr6Info>, KernelError> {
    Ok(
        of_family(handle, AddressFamily::Inet6, "list IPv6 addresses")
            .await?
            .into_iter()
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(std::net::IpAddr::V6(ip)) => Some(*ip),
                    _ => None,
                })?;
                Some(Addr6Info {
                    index: m.header.index,
                    addr,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect(),
    )
}

/// Adds `address` to the link; already there is fine. An IPv6 address is added
/// without duplicate address detection (`nodad`): Weft hands each address to one holder,
/// and a tentative address would hold up the first packets for a second or more.
pub(super) async fn ensure(handle: &Handle, index: u32, address: IpNet) -> Result<(), KernelError> {
    let mut request = handle
        .address()
        .add(index, address.addr(), address.prefix_len());
    if address.addr().is_ipv6() {
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(
                netlink_packet_route::address::AddressFlags::Nodad,
            ));
    }
    match request.execute().await {
        Err(e) if !errno_is(&e, libc::EEXIST) => Err(nl("add address")(e)),
        _ => Ok(()),
    }
}

/// Makes `address` the only IPv4 address on the link; whether that changed anything.
pub(super) async fn ensure_only(
    handle: &Handle,
    index: u32,
    address: Ipv4Net,
) -> Result<bool, KernelError> {
    let have: Vec<Ipv4Net> = all(handle)
        .await?
        .into_iter()
        .filter(|a| a.index == index)
        .filter_map(|a| Ipv4Net::new(a.addr, a.prefix_len).ok())
        .collect();
    let changes = plan_addresses(&[address], &have);
    for change in &changes {
        match change {
            Change::Remove(a) => {
                let msgs: Vec<_> = handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .set_address_filter(a.addr().into())
                    .execute()
                    .try_collect()
                    .await
                    .map_err(nl("read address"))?;
                for m in msgs
                    .into_iter()
                    .filter(|m| m.header.prefix_len == a.prefix_len())
                {
                    handle
                        .address()
                        .del(m)
                        .execute()
                        .await
                        .map_err(nl("delete address"))?;
                }
            }
            Change::Add(a) | Change::Replace(a) => ensure(handle, index, (*a).into()).await?,
        }
    }
    Ok(!changes.is_empty())
}
