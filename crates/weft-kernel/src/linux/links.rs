//! Links: reading them, Weft's overlay devices (VXLAN, IP-in-IP, TUN) made to match
//! their specs, and the bridge and veth pairs the CNI plugin attaches containers with.

use std::fs::File;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::{
    Handle, LinkBridge, LinkIpIp, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan,
};
use weft_plan::iface::LinkInfo;
use weft_plan::link::{must_recreate, VxlanState};
use weft_plan::{IpipSpec, LinkOutcome, MacAddr, TunSpec, VxlanSpec};

use super::{errno_is, nl, refusal};
use crate::bigtcp;
use crate::dataplane::{LinkUpdate, VethPair};
use crate::error::KernelError;

/// A link message as plan values.
pub(super) fn info(m: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: m.header.index,
        mtu: 1500,
        up: m.header.flags.contains(LinkFlags::Up),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Address(mac) => info.mac = MacAddr::from_slice(mac),
            LinkAttribute::Controller(c) => info.controller = Some(*c),
            _ => {}
        }
    }
    info
}

pub(super) async fn all(handle: &Handle) -> Result<Vec<LinkInfo>, KernelError> {
    let msgs: Vec<_> = super::dump("list links", || handle.link().get().execute()).await?;
    Ok(msgs.iter().map(info).collect())
}

/// A link by name, if it exists.
pub(super) async fn by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, KernelError> {
    let mut stream = handle.link().get().match_name(name.to_owned()).execute();
    match stream.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno_is(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl("read link")(e)),
    }
}

/// A link by index, if it exists.
pub(super) async fn by_index(
    handle: &Handle,
    index: u32,
) -> Result<Option<LinkMessage>, KernelError> {
    let mut stream = handle.link().get().match_index(index).execute();
    match stream.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno_is(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl("read link")(e)),
    }
}

async fn index_of_new(handle: &Handle, name: &str) -> Result<u32, KernelError> {
    by_name(handle, name)
        .await?
        .map(|l| l.header.index)
        .ok_or_else(|| KernelError::Vanished(name.to_owned()))
}

async fn apply_set(
    handle: &Handle,
    set: LinkMessageBuilder<LinkUnspec>,
) -> Result<(), KernelError> {
    handle
        .link()
        .set(set.build())
        .execute()
        .await
        .map_err(nl("set link"))
}

pub(super) async fn set(
    handle: &Handle,
    index: u32,
    update: LinkUpdate,
) -> Result<(), KernelError> {
    let mut set = LinkUnspec::new_with_index(index);
    if update.up {
        set = set.up();
    }
    if let Some(bridge) = update.controller {
        set = set.controller(bridge);
    }
    apply_set(handle, set).await
}

pub(super) async fn del(handle: &Handle, index: u32) -> Result<(), KernelError> {
    match handle.link().del(index).execute().await {
        Err(e) if !errno_is(&e, libc::ENODEV) => Err(nl("delete link")(e)),
        _ => Ok(()),
    }
}

/// Makes the VXLAN device match `spec` (its address is the caller's): created if
/// missing, recreated if a property that cannot change in place differs, else adjusted
/// in place.
pub(super) async fn ensure_vxlan(
    handle: &Handle,
    spec: &VxlanSpec,
) -> Result<(u32, LinkOutcome), KernelError> {
    let have = match by_name(handle, &spec.name).await? {
        Some(m) => vxlan_state(&m),
        None => match create_vxlan(handle, spec).await? {
            Some(index) => return Ok((index, LinkOutcome::Created)),
            // Made meanwhile by another task (a Docker Join's segment beside the
            // agent's plan for it): taken as found.
            None => by_name(handle, &spec.name)
                .await?
                .map(|m| vxlan_state(&m))
                .ok_or_else(|| KernelError::Vanished(spec.name.clone()))?,
        },
    };
    if let Some(why) = must_recreate(spec, &have) {
        del(handle, have.index).await?;
        let index = create_vxlan(handle, spec)
            .await?
            .ok_or_else(|| KernelError::Vanished(spec.name.clone()))?;
        return Ok((index, LinkOutcome::Recreated(why)));
    }
    let mut what = Vec::new();
    let mut set = LinkUnspec::new_with_index(have.index);
    if have.mtu != spec.mtu {
        what.push(format!("mtu {} -> {}", have.mtu, spec.mtu));
        set = set.mtu(spec.mtu);
    }
    if have.mac != Some(spec.mac) {
        what.push(format!("mac -> {}", spec.mac));
        set = set.address(spec.mac.0.to_vec());
    }
    if !have.up {
        what.push("up".into());
        set = set.up();
    }
    if !what.is_empty() {
        apply_set(handle, set).await?;
    }
    Ok((have.index, LinkOutcome::updated(what)))
}

/// Creates the device; `None` when a link of that name exists already.
async fn create_vxlan(handle: &Handle, spec: &VxlanSpec) -> Result<Option<u32>, KernelError> {
    let msg = LinkVxlan::new(&spec.name, spec.vni)
        .dev(spec.underlay)
        .port(spec.port);
    let msg = match spec.local {
        std::net::IpAddr::V4(ip) => msg.local(ip),
        std::net::IpAddr::V6(ip) => msg.local6(ip),
    };
    let msg = msg
        .learning(false)
        .proxy(spec.proxy)
        .mtu(spec.mtu)
        .address(spec.mac.0.to_vec())
        .up()
        .build();
    match handle.link().add(msg).execute().await {
        Ok(()) => Ok(Some(index_of_new(handle, &spec.name).await?)),
        Err(e) if errno_is(&e, libc::EEXIST) => Ok(None),
        Err(e) => Err(nl("create vxlan link")(e)),
    }
}

/// Sets MTU and up state of an existing link in place; says what changed.
async fn adjust(handle: &Handle, m: &LinkMessage, mtu: u32) -> Result<LinkOutcome, KernelError> {
    let have = info(m);
    let mut what = Vec::new();
    let mut set = LinkUnspec::new_with_index(have.index);
    if have.mtu != mtu {
        what.push(format!("mtu {} -> {mtu}", have.mtu));
        set = set.mtu(mtu);
    }
    if !have.up {
        what.push("up".into());
        set = set.up();
    }
    if !what.is_empty() {
        apply_set(handle, set).await?;
    }
    Ok(LinkOutcome::updated(what))
}

/// Makes the (already opened) TUN device match `spec`: MTU and up.
pub(super) async fn ensure_tun(
    handle: &Handle,
    spec: &TunSpec,
) -> Result<(u32, LinkOutcome), KernelError> {
    let m = by_name(handle, &spec.name)
        .await?
        .ok_or_else(|| KernelError::Missing(spec.name.clone()))?;
    Ok((m.header.index, adjust(handle, &m, spec.mtu).await?))
}

/// Makes the kernel IP-in-IP device match `spec`, creating it if missing. Fails with
/// [`KernelError::Unsupported`] when the kernel has no `ipip` module.
pub(super) async fn ensure_ipip(
    handle: &Handle,
    spec: &IpipSpec,
) -> Result<(u32, LinkOutcome), KernelError> {
    match by_name(handle, &spec.name).await? {
        Some(m) if ipip_matches(&m, spec) => {
            Ok((m.header.index, adjust(handle, &m, spec.mtu).await?))
        }
        Some(m) => {
            del(handle, m.header.index).await?;
            let index = create_ipip(handle, spec).await?;
            Ok((
                index,
                LinkOutcome::Recreated("not the ipip device Weft wants".into()),
            ))
        }
        None => Ok((create_ipip(handle, spec).await?, LinkOutcome::Created)),
    }
}

async fn create_ipip(handle: &Handle, spec: &IpipSpec) -> Result<u32, KernelError> {
    match handle.link().add(ipip_link_message(spec)).execute().await {
        Ok(()) => {}
        Err(e) if errno_is(&e, libc::EOPNOTSUPP) || errno_is(&e, libc::ENODEV) => {
            return Err(KernelError::Unsupported {
                kind: "ipip",
                refusal: refusal(e),
            })
        }
        Err(e) => return Err(nl("create ipip link")(e)),
    }
    index_of_new(handle, &spec.name).await
}

/// Makes the bridge exist and be up.
pub(super) async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    mtu: u32,
) -> Result<LinkInfo, KernelError> {
    if by_name(handle, name).await?.is_none() {
        let msg = LinkBridge::new(name).mtu(mtu).up().build();
        if let Err(e) = handle.link().add(msg).execute().await {
            if !errno_is(&e, libc::EEXIST) {
                return Err(nl("create bridge")(e));
            }
        }
    }
    let br = by_name(handle, name)
        .await?
        .ok_or_else(|| KernelError::Vanished(name.to_owned()))?;
    // Called on every reconcile for a named network's segment: write only what differs.
    if !br.header.flags.contains(LinkFlags::Up) {
        set(
            handle,
            br.header.index,
            LinkUpdate {
                up: true,
                controller: None,
            },
        )
        .await?;
    }
    Ok(info(&br))
}

/// Adds the BIG TCP limits to a link message, when they are asked for.
fn with_big_tcp(mut msg: LinkMessage, size: Option<u32>) -> LinkMessage {
    if let Some(size) = size {
        msg.attributes.extend(bigtcp::attributes(size));
    }
    msg
}

/// Creates a veth pair whose peer is born inside `pair.peer_netns`.
pub(super) async fn add_veth(handle: &Handle, pair: &VethPair) -> Result<(), KernelError> {
    let ns = File::open(&pair.peer_netns).map_err(|source| {
        KernelError::Netns(crate::netns::NetnsError::Open {
            path: pair.peer_netns.display().to_string(),
            source,
        })
    })?;
    let peer = with_big_tcp(
        LinkUnspec::new_with_name(&pair.peer)
            .mtu(pair.mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build(),
        pair.gso_max_size,
    );
    let mut veth = LinkVeth::new(&pair.host, &pair.peer).mtu(pair.mtu);
    veth = veth.set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if let Some(mac) = pair.host_mac {
        veth = veth.address(mac.0.to_vec());
    }
    let veth = with_big_tcp(veth.build(), pair.gso_max_size);
    match handle.link().add(veth).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno_is(&e, libc::EEXIST) => Err(KernelError::Exists(format!(
            "{} or {} (in {})",
            pair.host,
            pair.peer,
            pair.peer_netns.display()
        ))),
        Err(e) => Err(nl("create veth pair")(e)),
    }
}

/// Reads the properties Weft cares about from a link dump.
fn vxlan_state(m: &LinkMessage) -> VxlanState {
    let mut s = VxlanState {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Mtu(mtu) => s.mtu = *mtu,
            LinkAttribute::Address(mac) => s.mac = MacAddr::from_slice(mac),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        NlLinkInfo::Kind(InfoKind::Vxlan) => s.is_vxlan = true,
                        NlLinkInfo::Data(InfoData::Vxlan(attrs)) => {
                            for v in attrs {
                                match v {
                                    InfoVxlan::Id(id) => s.vni = Some(*id),
                                    InfoVxlan::Port(p) => s.port = Some(*p),
                                    InfoVxlan::Local(ip) => s.local = Some((*ip).into()),
                                    InfoVxlan::Local6(ip) => s.local = Some((*ip).into()),
                                    InfoVxlan::Link(l) => s.underlay = Some(*l),
                                    InfoVxlan::Learning(l) => s.learning = Some(*l),
                                    InfoVxlan::Proxy(p) => s.proxy = Some(*p),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// The RTM_NEWLINK message for Weft's kernel IP-in-IP device (pure, tested).
pub fn ipip_link_message(spec: &IpipSpec) -> LinkMessage {
    LinkIpIp::new(&spec.name)
        .local(spec.local)
        .dev(spec.underlay)
        .ttl(0)
        .pmtudisc(true)
        .mtu(spec.mtu)
        .up()
        .build()
}

/// Whether an existing link is the IP-in-IP device `spec` describes.
fn ipip_matches(m: &LinkMessage, spec: &IpipSpec) -> bool {
    let mut kind = false;
    let mut local = None;
    for a in &m.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for info in infos {
                match info {
                    NlLinkInfo::Kind(InfoKind::IpIp) => kind = true,
                    NlLinkInfo::Data(InfoData::IpTunnel(attrs)) => {
                        for t in attrs {
                            if let InfoIpTunnel::Local(std::net::IpAddr::V4(ip)) = t {
                                local = Some(*ip);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    kind && local == Some(spec.local)
}

#[cfg(test)]
mod tests {
    //! The kernel IP-in-IP path cannot run on a kernel without the `ipip` module (this
    //! project's CI machine); its netlink message is checked here byte for byte instead.
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    #[test]
    fn ipip_message_says_what_ip_link_add_would() {
        let spec = IpipSpec {
            name: "weft.ipip".into(),
            local: "192.168.77.1".parse().unwrap(),
            underlay: 5,
            mtu: 1480,
            address: "10.244.1.0/32".parse().unwrap(),
        };
        let msg = ipip_link_message(&spec);
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes);
        // IFLA_IFNAME (3) with the name, IFLA_MTU (4) with 1480, and inside IFLA_LINKINFO
        // the kind "ipip" must be present as raw attributes on the wire.
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"weft.ipip\0"));
        assert!(has(b"ipip"));
        assert!(has(&[8, 0, 4, 0, 0xc8, 0x05, 0, 0]), "IFLA_MTU 1480");
        assert!(has(&[8, 0, 2, 0, 192, 168, 77, 1]), "IFLA_IPTUN_LOCAL");
        assert!(has(&[8, 0, 1, 0, 5, 0, 0, 0]), "IFLA_IPTUN_LINK");
        assert!(has(&[5, 0, 4, 0, 0, 0, 0, 0]), "IFLA_IPTUN_TTL 0 (inherit)");
        assert!(has(&[5, 0, 10, 0, 1, 0, 0, 0]), "IFLA_IPTUN_PMTUDISC on");

        let parsed = LinkMessage::parse(&bytes[..]).unwrap();
        assert!(parsed.header.flags.contains(LinkFlags::Up));
        assert!(ipip_matches(&parsed, &spec));
        let moved = IpipSpec {
            local: "192.168.77.9".parse().unwrap(),
            ..spec
        };
        assert!(
            !ipip_matches(&parsed, &moved),
            "another local address means recreate"
        );
    }
}
