//! Attaching a container: a veth pair whose peer is created directly inside the
//! container's network namespace under its final name, then either plugged into a host
//! bridge that holds the gateway (bridge mode) or given a /32 host route and proxy ARP
//! (routed mode, Calico's layout). All over netlink, in-process: no `ip` commands.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use weft_kernel::bigtcp;
use weft_kernel::netlink::ensure_big_tcp;
use weft_kernel::netns::{self, NetnsError};

use crate::spec::{CniError, CniResult, Code, Interface, Mode};

/// The routed mode's gateway inside every container (Calico's convention).
pub const ROUTED_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The routed mode's host-side MAC (Calico's convention).
pub const ROUTED_HOST_MAC: [u8; 6] = [0xee; 6];

/// The host side's name: stable for a container interface, so DEL finds it.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let h = weft_kernel::hash::fnv1a(container_id.bytes().chain([0]).chain(ifname.bytes()));
    format!("weft{:011x}", h & 0xfff_ffff_ffff)
}

fn kernel(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> CniError {
    let what = what.into();
    move |e| CniError::new(Code::Kernel, what).with_details(e.to_string())
}

fn mac_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => weft_kernel::MacAddr::from_slice(b).map(|m| m.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

async fn link(handle: &Handle, name: &str) -> CniResult<Option<LinkMessage>> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(l) => Ok(l),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(kernel(format!("cannot read link {name}"))(e)),
    }
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

/// Refuses a CNI_NETNS that is not a network namespace file (on nsfs), before anything
/// is allocated or created.
pub fn validate_netns(netns: &Path) -> CniResult<()> {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let bad = |why: String| {
        CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_NETNS {} is not a network namespace", netns.display()),
        )
        .with_details(why)
    };
    let file = File::open(netns).map_err(|e| bad(e.to_string()))?;
    // SAFETY: fstatfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(bad(std::io::Error::last_os_error().to_string()));
    }
    if st.f_type as i64 != NSFS_MAGIC {
        return Err(bad(
            "the file is not on nsfs (expected e.g. /run/netns/NAME or /proc/PID/ns/net)".into(),
        ));
    }
    Ok(())
}

/// [`weft_kernel::netlink::block_on`] with the plugin's errors.
pub fn with_netlink<T, F: std::future::Future<Output = CniResult<T>>>(
    f: impl FnOnce(Handle) -> F,
) -> CniResult<T> {
    weft_kernel::netlink::block_on(f).map_err(|e| CniError::new(Code::Io, e.to_string()))?
}

/// [`with_netlink`] in a thread that has joined `netns`.
pub fn in_netns<T: Send>(
    netns: &Path,
    f: impl for<'a> FnOnce(
            &'a Handle,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = CniResult<T>> + 'a>>
        + Send,
) -> CniResult<T> {
    let ran = netns::run_in(netns, || with_netlink(|h| async move { f(&h).await }));
    ran.unwrap_or_else(|e| {
        Err(match e {
            NetnsError::Open { source, .. } => CniError::new(
                Code::InvalidEnvironment,
                format!("cannot open network namespace {}", netns.display()),
            )
            .with_details(source.to_string()),
            NetnsError::Enter { source, .. } => CniError::new(
                Code::InvalidEnvironment,
                format!("{} is not a network namespace", netns.display()),
            )
            .with_details(source.to_string()),
            NetnsError::Panicked { .. } => CniError::new(Code::Io, "namespace worker panicked"),
        })
    })
}

/// What the host side looks like after attaching.
pub struct HostSide {
    pub bridge: Option<Interface>,
    pub veth: Interface,
}

/// Everything ADD needs to build the attachment.
pub struct Request<'a> {
    pub mode: Mode,
    pub bridge: &'a str,
    pub hairpin: bool,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub container_id: &'a str,
    pub address: Ipv4Net,
    /// Bridge mode: the subnet's gateway, held by the bridge.
    pub gateway: Ipv4Net,
    pub mtu: u32,
    /// BIG TCP: the IPv4 GSO/GRO limit for the links made here (from the subnet file).
    pub gso_max_size: Option<u32>,
}

/// Adds the BIG TCP limits to a link message, when they are asked for.
fn with_big_tcp(mut msg: LinkMessage, size: Option<u32>) -> LinkMessage {
    if let Some(size) = size {
        msg.attributes.extend(bigtcp::attributes(size));
    }
    msg
}

/// Makes sure the bridge exists, is up and holds the gateway address.
async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Net,
    mtu: u32,
) -> CniResult<LinkMessage> {
    if link(handle, name).await?.is_none() {
        let msg = LinkBridge::new(name).mtu(mtu).up().build();
        if let Err(e) = handle.link().add(msg).execute().await {
            if !is_exists(&e) {
                return Err(kernel(format!("cannot create bridge {name}"))(e));
            }
        }
    }
    let br = link(handle, name)
        .await?
        .ok_or_else(|| CniError::new(Code::Kernel, format!("bridge {name} vanished")))?;
    let index = br.header.index;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(kernel("cannot bring the bridge up"))?;
    if let Err(e) = handle
        .address()
        .add(index, gateway.addr().into(), gateway.prefix_len())
        .execute()
        .await
    {
        if !is_exists(&e) {
            return Err(kernel(format!("cannot give {name} the gateway {gateway}"))(
                e,
            ));
        }
    }
    Ok(br)
}

fn write_sys(path: &str, value: &str) -> CniResult<()> {
    std::fs::write(path, value).map_err(|e| {
        CniError::new(Code::Io, format!("cannot write {path}")).with_details(e.to_string())
    })
}

/// Builds the host side and the container side; on failure removes what it made.
pub async fn add(host: &Handle, req: &Request<'_>) -> CniResult<(HostSide, Interface)> {
    let bridge = match req.mode {
        Mode::Bridge => Some(ensure_bridge(host, req.bridge, req.gateway, req.mtu).await?),
        Mode::Routed => None,
    };
    let veth_name = host_veth_name(req.container_id, req.ifname);
    if let Some(stale) = link(host, &veth_name).await? {
        // An earlier ADD for this container interface died half-way: start over.
        let _ = host.link().del(stale.header.index).execute().await;
    }
    let ns = File::open(req.netns).map_err(|e| {
        CniError::new(
            Code::InvalidEnvironment,
            format!("cannot open network namespace {}", req.netns.display()),
        )
        .with_details(e.to_string())
    })?;
    let peer = with_big_tcp(
        LinkUnspec::new_with_name(req.ifname)
            .mtu(req.mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build(),
        req.gso_max_size,
    );
    let mut veth = LinkVeth::new(&veth_name, req.ifname).mtu(req.mtu);
    veth = veth.set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if req.mode == Mode::Routed {
        veth = veth.address(ROUTED_HOST_MAC.to_vec());
    }
    let veth = with_big_tcp(veth.build(), req.gso_max_size);
    host.link().add(veth).execute().await.map_err(|e| {
        let exists = is_exists(&e);
        let err = kernel(format!(
            "cannot create the veth pair {veth_name} / {}",
            req.ifname
        ))(e);
        if exists {
            CniError::new(
                Code::Kernel,
                format!("interface {} already exists in the container", req.ifname),
            )
            .with_details(err.details)
        } else {
            err
        }
    })?;
    let result = finish(host, req, &veth_name, bridge.as_ref()).await;
    if result.is_err() {
        if let Ok(Some(l)) = link(host, &veth_name).await {
            let _ = host.link().del(l.header.index).execute().await;
        }
    }
    result
}

async fn finish(
    host: &Handle,
    req: &Request<'_>,
    veth_name: &str,
    bridge: Option<&LinkMessage>,
) -> CniResult<(HostSide, Interface)> {
    let veth = link(host, veth_name)
        .await?
        .ok_or_else(|| CniError::new(Code::Kernel, format!("{veth_name} vanished")))?;
    let index = veth.header.index;
    let mut set = LinkUnspec::new_with_index(index).up();
    if let Some(br) = bridge {
        set = set.controller(br.header.index);
    }
    host.link()
        .set(set.build())
        .execute()
        .await
        .map_err(kernel(format!("cannot set up {veth_name}")))?;
    if let (Some(br), Some(size)) = (bridge, req.gso_max_size) {
        // Every container's traffic crosses the bridge, which needs the BIG TCP limit as
        // much as the veths; it can take it only once it has a port that can.
        ensure_big_tcp(host, br.header.index, size)
            .await
            .map_err(|e| {
                CniError::new(
                    Code::Kernel,
                    format!("cannot raise {}'s GSO limit", req.bridge),
                )
                .with_details(e.to_string())
            })?;
    }
    match req.mode {
        Mode::Bridge => {
            if req.hairpin {
                write_sys(
                    &format!("/sys/class/net/{veth_name}/brport/hairpin_mode"),
                    "1",
                )?;
            }
        }
        Mode::Routed => {
            write_sys(
                &format!("/proc/sys/net/ipv4/conf/{veth_name}/proxy_arp"),
                "1",
            )?;
            write_sys(
                &format!("/proc/sys/net/ipv4/neigh/{veth_name}/proxy_delay"),
                "0",
            )?;
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(req.address.addr(), 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build();
            host.route()
                .add(route)
                .execute()
                .await
                .map_err(kernel(format!(
                    "cannot route {}/32 to {veth_name}",
                    req.address.addr()
                )))?;
        }
    }
    let (ifname, address, mode) = (req.ifname.to_owned(), req.address, req.mode);
    let gateway = req.gateway.addr();
    let container_mac = in_netns(req.netns, move |h| {
        Box::pin(configure_container(h, ifname, address, gateway, mode))
    })?;
    let host_side = HostSide {
        bridge: bridge.map(|b| Interface {
            name: req.bridge.to_owned(),
            mac: mac_of(b),
            sandbox: None,
        }),
        veth: Interface {
            name: veth_name.to_owned(),
            mac: mac_of(&veth),
            sandbox: None,
        },
    };
    let ctr = Interface {
        name: req.ifname.to_owned(),
        mac: container_mac,
        sandbox: Some(req.netns.display().to_string()),
    };
    Ok((host_side, ctr))
}

/// Inside the container: loopback and the interface up, the address, the routes.
async fn configure_container(
    h: &Handle,
    ifname: String,
    address: Ipv4Net,
    gateway: Ipv4Addr,
    mode: Mode,
) -> CniResult<String> {
    if let Some(lo) = link(h, "lo").await? {
        h.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(kernel("cannot bring lo up"))?;
    }
    let l = link(h, &ifname).await?.ok_or_else(|| {
        CniError::new(
            Code::Kernel,
            format!("{ifname} is missing in the container"),
        )
    })?;
    let index = l.header.index;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(kernel(format!("cannot bring {ifname} up")))?;
    let (prefix, gw) = match mode {
        Mode::Bridge => (address.prefix_len(), gateway),
        Mode::Routed => (32, ROUTED_GATEWAY),
    };
    h.address()
        .add(index, address.addr().into(), prefix)
        .execute()
        .await
        .map_err(kernel(format!("cannot add {address} to {ifname}")))?;
    if mode == Mode::Routed {
        // The gateway's MAC is fixed: a permanent entry spares the container an ARP
        // that only proxy ARP (and a host route to 169.254.1.1) could answer.
        h.neighbours()
            .add(index, ROUTED_GATEWAY.into())
            .link_layer_address(&ROUTED_HOST_MAC)
            .state(netlink_packet_route::neighbour::NeighbourState::Permanent)
            .execute()
            .await
            .map_err(kernel("cannot add the neighbour entry for 169.254.1.1"))?;
        let to_gw = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ROUTED_GATEWAY, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        h.route()
            .add(to_gw)
            .execute()
            .await
            .map_err(kernel("cannot add the route to 169.254.1.1"))?;
    }
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(gw)
        .output_interface(index)
        .build();
    h.route()
        .add(default)
        .execute()
        .await
        .map_err(kernel(format!("cannot add the default route via {gw}")))?;
    Ok(mac_of(&l))
}

/// Removes the container interface's host side (its peer goes with it). Absent is fine.
pub async fn del(host: &Handle, container_id: &str, ifname: &str) -> CniResult<()> {
    if let Some(l) = link(host, &host_veth_name(container_id, ifname)).await? {
        if let Err(e) = host.link().del(l.header.index).execute().await {
            if !matches!(&e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV) {
                return Err(kernel("cannot delete the veth pair")(e));
            }
        }
    }
    Ok(())
}

/// CHECK: the container interface exists and holds `address`.
pub fn check(netns: &Path, ifname: &str, address: Ipv4Addr) -> CniResult<()> {
    let ifname = ifname.to_owned();
    in_netns(netns, move |h| {
        Box::pin(async move {
            let l = link(h, &ifname).await?.ok_or_else(|| {
                CniError::new(
                    Code::UnknownContainer,
                    format!("{ifname} is missing in the container"),
                )
            })?;
            let addrs: Vec<_> = h
                .address()
                .get()
                .set_link_index_filter(l.header.index)
                .execute()
                .try_collect()
                .await
                .map_err(kernel("cannot read addresses"))?;
            let has = addrs.iter().any(|m| {
                m.attributes.iter().any(|a| matches!(a, netlink_packet_route::address::AddressAttribute::Address(std::net::IpAddr::V4(ip)) if *ip == address))
            });
            if has {
                Ok(())
            } else {
                Err(CniError::new(
                    Code::UnknownContainer,
                    format!("{ifname} does not hold {address}"),
                ))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_veth_names_are_stable_and_short() {
        let a = super::host_veth_name("abc", "eth0");
        assert_eq!(a, super::host_veth_name("abc", "eth0"));
        assert_ne!(a, super::host_veth_name("abc", "eth1"));
        assert!(a.len() <= 15 && a.starts_with("weft"), "{a}");
    }
}
