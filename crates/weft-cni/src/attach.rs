//! Attaching a container: a veth pair whose peer is created directly inside the
//! container's network namespace under its final name, then either plugged into a host
//! bridge that holds the gateway (bridge mode) or given a /32 host route and proxy ARP
//! (routed mode, Calico's layout).
//!
//! Everything goes through a [`Dataplane`]: the host's, and the container namespace's
//! view of it ([`Dataplane::enter`]). The plugin hands in the Linux one; the tests the
//! in-memory fake, so attach and detach are tested without root.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_kernel::netns::{self, NetnsError};
use weft_kernel::{Attach, KernelError, LinkSetting, LinkUpdate, VethPair};
use weft_plan::iface::LinkInfo;
use weft_plan::{MacAddr, Neighbour, Route};

use crate::spec::{CniError, CniResult, Code, Interface, Mode};

/// The routed mode's gateway inside every container (Calico's convention).
pub const ROUTED_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The routed mode's host-side MAC (Calico's convention).
pub const ROUTED_HOST_MAC: MacAddr = MacAddr([0xee; 6]);
/// The routed mode's IPv6 gateway inside every container: the link-local address the
/// host side's MAC gives by EUI-64 (Calico's), which the host side holds from the start
/// (added without duplicate address detection, so the first packet need not wait).
pub const ROUTED_GATEWAY6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

pub use weft_plan::iface::host_veth_name;

impl From<KernelError> for CniError {
    fn from(e: KernelError) -> Self {
        let code = match &e {
            KernelError::Netns(_) => Code::InvalidEnvironment,
            _ => Code::Kernel,
        };
        let msg = match &e {
            KernelError::Netns(NetnsError::Open { path, .. }) => {
                format!("cannot open network namespace {path}")
            }
            KernelError::Netns(NetnsError::Enter { path, .. }) => {
                format!("{path} is not a network namespace")
            }
            _ => "the kernel refused a change".to_owned(),
        };
        CniError::new(code, msg).with_details(e.to_string())
    }
}

/// Names what was being done when the kernel said no.
fn doing(what: impl Into<String>) -> impl FnOnce(KernelError) -> CniError {
    let what = what.into();
    move |e| {
        let mut err = CniError::from(e);
        if err.code == Code::Kernel {
            err.msg = what;
        }
        err
    }
}

fn mac_of(link: &LinkInfo) -> String {
    link.mac.map(|m| m.to_string()).unwrap_or_default()
}

/// Refuses a CNI_NETNS that is not a network namespace file (on nsfs), before anything
/// is allocated or created.
pub fn validate_netns(path: &Path) -> CniResult<()> {
    let bad = |why: String| {
        CniError::new(
            Code::InvalidEnvironment,
            format!("CNI_NETNS {} is not a network namespace", path.display()),
        )
        .with_details(why)
    };
    match netns::is_namespace(path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(bad(
            "the file is not on nsfs (expected e.g. /run/netns/NAME or /proc/PID/ns/net)".into(),
        )),
        Err(e) => Err(bad(e.to_string())),
    }
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
    /// The IPv6 side in a dual-stack network.
    pub ipv6: Option<Ipv6Side>,
}

/// A container's IPv6 address and the bridge's IPv6 gateway, each with the node's IPv6
/// subnet's prefix length (routed mode: the address as a /128, the gateway
/// [`ROUTED_GATEWAY6`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Side {
    pub address: Ipv6Net,
    pub gateway: Ipv6Net,
}

/// Makes sure the bridge exists, is up and holds the gateway address (both families'
/// in a dual-stack network).
async fn ensure_bridge(host: &dyn Attach, req: &Request<'_>) -> CniResult<LinkInfo> {
    let name = req.bridge;
    let br = host
        .ensure_bridge(name, req.mtu)
        .await
        .map_err(doing(format!("cannot create bridge {name}")))?;
    let gateways =
        std::iter::once(IpNet::V4(req.gateway)).chain(req.ipv6.map(|v6| IpNet::V6(v6.gateway)));
    for gateway in gateways {
        host.ensure_address(br.index, gateway)
            .await
            .map_err(doing(format!("cannot give {name} the gateway {gateway}")))?;
    }
    Ok(br)
}

/// Builds the host side and the container side; on failure removes what it made.
pub async fn add(host: &dyn Attach, req: &Request<'_>) -> CniResult<(HostSide, Interface)> {
    let bridge = match req.mode {
        Mode::Bridge => Some(ensure_bridge(host, req).await?),
        Mode::Routed => None,
    };
    let veth_name = host_veth_name(req.container_id, req.ifname);
    if let Some(stale) = host.link(&veth_name).await? {
        // An earlier ADD for this container interface died half-way: start over.
        let _ = host.del_link(stale.index).await;
    }
    let pair = VethPair {
        host: veth_name.clone(),
        host_mac: (req.mode == Mode::Routed).then_some(ROUTED_HOST_MAC),
        peer: req.ifname.to_owned(),
        peer_netns: req.netns.to_owned(),
        mtu: req.mtu,
        gso_max_size: req.gso_max_size,
    };
    host.add_veth(&pair).await.map_err(|e| match e {
        KernelError::Exists(_) => CniError::new(
            Code::Kernel,
            format!("interface {} already exists in the container", req.ifname),
        )
        .with_details(e.to_string()),
        e => doing(format!(
            "cannot create the veth pair {veth_name} / {}",
            req.ifname
        ))(e),
    })?;
    let result = finish(host, req, &veth_name, bridge.as_ref()).await;
    if result.is_err() {
        if let Ok(Some(l)) = host.link(&veth_name).await {
            let _ = host.del_link(l.index).await;
        }
    }
    result
}

async fn finish(
    host: &dyn Attach,
    req: &Request<'_>,
    veth_name: &str,
    bridge: Option<&LinkInfo>,
) -> CniResult<(HostSide, Interface)> {
    let veth = host
        .link(veth_name)
        .await?
        .ok_or_else(|| CniError::new(Code::Kernel, format!("{veth_name} vanished")))?;
    if let (Mode::Routed, Some(_)) = (req.mode, req.ipv6) {
        // Before it is up: held at once, never tentative.
        let gw = Ipv6Net::new(ROUTED_GATEWAY6, 64).expect("/64");
        host.ensure_address(veth.index, gw.into())
            .await
            .map_err(doing(format!("cannot give {veth_name} {ROUTED_GATEWAY6}")))?;
    }
    let update = LinkUpdate {
        up: true,
        controller: bridge.map(|b| b.index),
    };
    host.set_link(veth.index, update)
        .await
        .map_err(doing(format!("cannot set up {veth_name}")))?;
    if let (Some(br), Some(size)) = (bridge, req.gso_max_size) {
        // Every container's traffic crosses the bridge, which needs the BIG TCP limit as
        // much as the veths; it can take it only once it has a port that can.
        host.ensure_big_tcp(br.index, size)
            .await
            .map_err(doing(format!("cannot raise {}'s GSO limit", req.bridge)))?;
    }
    match req.mode {
        Mode::Bridge if req.hairpin => {
            host.set_link_setting(&LinkSetting::Hairpin(veth_name.to_owned()))?
        }
        Mode::Bridge => {}
        Mode::Routed => {
            host.set_link_setting(&LinkSetting::ProxyArp(veth_name.to_owned()))?;
            host.set_link_setting(&LinkSetting::ProxyDelayZero(veth_name.to_owned()))?;
            let to_container = Route::device(Ipv4Net::from(req.address.addr()), veth.index);
            host.add_route(&to_container).await.map_err(doing(format!(
                "cannot route {}/32 to {veth_name}",
                req.address.addr()
            )))?;
            if let Some(v6) = req.ipv6 {
                let ip = v6.address.addr();
                host.add_route(&Route::device(Ipv6Net::from(ip), veth.index))
                    .await
                    .map_err(doing(format!("cannot route {ip}/128 to {veth_name}")))?;
            }
        }
    }
    let container = host.enter(req.netns)?;
    let ctr_link = configure_container(container.as_ref(), req).await?;
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
        mac: mac_of(&ctr_link),
        sandbox: Some(req.netns.display().to_string()),
    };
    Ok((host_side, ctr))
}

/// Inside the container: loopback and the interface up, the address, the routes.
async fn configure_container(ctr: &dyn Attach, req: &Request<'_>) -> CniResult<LinkInfo> {
    let ifname = req.ifname;
    let up = LinkUpdate {
        up: true,
        controller: None,
    };
    if let Some(lo) = ctr.link("lo").await? {
        ctr.set_link(lo.index, up)
            .await
            .map_err(doing("cannot bring lo up"))?;
    }
    let link = ctr.link(ifname).await?.ok_or_else(|| {
        CniError::new(
            Code::Kernel,
            format!("{ifname} is missing in the container"),
        )
    })?;
    let index = link.index;
    ctr.set_link(index, up)
        .await
        .map_err(doing(format!("cannot bring {ifname} up")))?;
    let routed = req.mode == Mode::Routed;
    let v4 = match req.mode {
        Mode::Bridge => (IpNet::V4(req.address), req.gateway.addr().into()),
        Mode::Routed => (IpNet::V4(req.address.addr().into()), ROUTED_GATEWAY.into()),
    };
    let v6 = req.ipv6.map(|v6| match req.mode {
        Mode::Bridge => (IpNet::V6(v6.address), v6.gateway.addr().into()),
        Mode::Routed => (IpNet::V6(v6.address.addr().into()), ROUTED_GATEWAY6.into()),
    });
    for (address, gateway) in std::iter::once(v4).chain(v6) {
        configure_family(ctr, ifname, index, address, gateway, routed).await?;
    }
    Ok(link)
}

/// One family inside the container: the address, then the default route through
/// `gateway`. In routed mode the gateway lies in no subnet the container holds, so it
/// first gets a route of its own and a permanent neighbour entry: its MAC is fixed,
/// which spares the container an ARP (or neighbour solicitation) that only the host
/// side could answer.
async fn configure_family(
    ctr: &dyn Attach,
    ifname: &str,
    index: u32,
    address: IpNet,
    gateway: IpAddr,
    routed: bool,
) -> CniResult<()> {
    ctr.ensure_address(index, address)
        .await
        .map_err(doing(format!("cannot add {address} to {ifname}")))?;
    if routed {
        let entry = Neighbour {
            ip: gateway,
            mac: ROUTED_HOST_MAC,
        };
        ctr.add_neighbour(index, entry)
            .await
            .map_err(doing(format!(
                "cannot add the neighbour entry for {gateway}"
            )))?;
        ctr.add_route(&Route::device(IpNet::from(gateway), index))
            .await
            .map_err(doing(format!("cannot add the route to {gateway}")))?;
    }
    let default = match gateway {
        IpAddr::V4(_) => IpNet::V4(Ipv4Net::default()),
        IpAddr::V6(_) => IpNet::V6(Ipv6Net::default()),
    };
    ctr.add_route(&Route::via(default, gateway, index))
        .await
        .map_err(doing(format!("cannot add the default route via {gateway}")))?;
    Ok(())
}

/// Removes the container interface's host side (its peer goes with it). Absent is fine.
pub async fn del(host: &dyn Attach, container_id: &str, ifname: &str) -> CniResult<()> {
    if let Some(l) = host.link(&host_veth_name(container_id, ifname)).await? {
        host.del_link(l.index)
            .await
            .map_err(doing("cannot delete the veth pair"))?;
    }
    Ok(())
}

/// CHECK: the container interface exists and holds `address`.
pub async fn check(
    host: &dyn Attach,
    netns: &Path,
    ifname: &str,
    address: Ipv4Addr,
) -> CniResult<()> {
    let ctr = host.enter(netns)?;
    let link = ctr.link(ifname).await?.ok_or_else(|| {
        CniError::new(
            Code::UnknownContainer,
            format!("{ifname} is missing in the container"),
        )
    })?;
    let held = ctr.addresses_of(link.index).await?;
    if held.iter().any(|a| a.addr() == address) {
        Ok(())
    } else {
        Err(CniError::new(
            Code::UnknownContainer,
            format!("{ifname} does not hold {address}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_kernel::fake::FakeNet;
    use weft_kernel::faults::{FaultOp, Faults, Faulty};
    use weft_plan::RouteKind;

    #[test]
    fn host_veth_names_are_stable_and_short() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert!(a.len() <= 15 && a.starts_with("weft"), "{a}");
    }

    const NS: &str = "/run/netns/test-c1";

    fn request(mode: Mode) -> Request<'static> {
        Request {
            mode,
            bridge: "weftbr0",
            hairpin: true,
            netns: Path::new(NS),
            ifname: "eth0",
            container_id: "ctr1",
            address: "10.244.3.5/24".parse().unwrap(),
            gateway: "10.244.3.1/24".parse().unwrap(),
            mtu: 1450,
            gso_max_size: None,
            ipv6: None,
        }
    }

    #[tokio::test]
    async fn a_dual_stack_container_gets_both_families_on_one_bridge() {
        let fake = FakeNet::new();
        let req = Request {
            ipv6: Some(Ipv6Side {
                address: "fd00:10:244:3::5/64".parse().unwrap(),
                gateway: "fd00:10:244:3::1/64".parse().unwrap(),
            }),
            ..request(Mode::Bridge)
        };
        add(&fake.host(), &req).await.unwrap();
        let br = fake.link("weftbr0").expect("the bridge");
        let held: Vec<String> = fake
            .addresses6_in(None, br.info.index)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(held, ["fd00:10:244:3::1/64"]);
        let inside = fake.link_in(ns(), "eth0").expect("the container side");
        let held: Vec<String> = fake
            .addresses6_in(ns(), inside.info.index)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(held, ["fd00:10:244:3::5/64"]);
        let routes: Vec<String> = fake
            .routes_in(ns())
            .iter()
            .map(|r| r.route.to_string())
            .collect();
        assert_eq!(
            routes,
            [
                format!("0.0.0.0/0 via 10.244.3.1 dev #{}", inside.info.index),
                format!("::/0 via fd00:10:244:3::1 dev #{}", inside.info.index)
            ]
        );
    }

    fn ns() -> Option<&'static Path> {
        Some(Path::new(NS))
    }

    #[tokio::test]
    async fn bridge_mode_plugs_the_veth_into_the_bridge_with_the_gateway() {
        let fake = FakeNet::new();
        let (host, ctr) = add(&fake.host(), &request(Mode::Bridge)).await.unwrap();
        let br = fake.link("weftbr0").expect("the bridge");
        assert_eq!(
            fake.addresses_in(None, br.info.index),
            ["10.244.3.1/24".parse::<Ipv4Net>().unwrap()]
        );
        let veth = fake.link(&host.veth.name).expect("the host side");
        assert_eq!(veth.controller, Some(br.info.index));
        assert!(veth.info.up);
        let hairpin = format!("/sys/class/net/{}/brport/hairpin_mode", host.veth.name);
        assert_eq!(fake.setting(&hairpin).as_deref(), Some("1"));
        // Inside: the interface up with its address, and the default route via the gateway.
        let inside = fake.link_in(ns(), "eth0").expect("the container side");
        assert!(inside.info.up);
        assert_eq!(inside.info.mtu, 1450);
        assert_eq!(ctr.mac, inside.info.mac.unwrap().to_string());
        assert_eq!(
            fake.addresses_in(ns(), inside.info.index),
            ["10.244.3.5/24".parse::<Ipv4Net>().unwrap()]
        );
        let routes = fake.routes_in(ns());
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes[0].route.kind,
            RouteKind::Via {
                gateway: "10.244.3.1".parse().unwrap(),
                dev: inside.info.index
            }
        );
        assert!(
            !routes[0].weft,
            "a container's route is not Weft's to reconcile"
        );
    }

    #[tokio::test]
    async fn routed_mode_is_calico_s_layout() {
        let fake = FakeNet::new();
        let (host, _) = add(&fake.host(), &request(Mode::Routed)).await.unwrap();
        assert!(host.bridge.is_none() && fake.link("weftbr0").is_none());
        assert_eq!(host.veth.mac, "ee:ee:ee:ee:ee:ee");
        let veth = fake.link(&host.veth.name).unwrap();
        let proxy = format!("/proc/sys/net/ipv4/conf/{}/proxy_arp", host.veth.name);
        assert_eq!(fake.setting(&proxy).as_deref(), Some("1"));
        // The host routes the container's /32 to its veth, without Weft's mark.
        let to_ctr: Vec<_> = fake.routes().into_iter().filter(|r| !r.weft).collect();
        assert_eq!(to_ctr.len(), 1);
        assert_eq!(
            to_ctr[0].route,
            Route::device(
                "10.244.3.5/32".parse::<ipnet::Ipv4Net>().unwrap(),
                veth.info.index
            )
        );
        // Inside: a /32, 169.254.1.1 as a fixed neighbour and the default route through it.
        let inside = fake.link_in(ns(), "eth0").unwrap();
        let i = inside.info.index;
        assert_eq!(
            fake.addresses_in(ns(), i),
            ["10.244.3.5/32".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(
            fake.neighbours_in(ns(), i),
            [Neighbour {
                ip: ROUTED_GATEWAY.into(),
                mac: ROUTED_HOST_MAC
            }]
        );
        let kinds: Vec<_> = fake.routes_in(ns()).iter().map(|r| r.route).collect();
        assert!(kinds.contains(&Route::via(Ipv4Net::default(), ROUTED_GATEWAY, i)));
        assert!(kinds.contains(&Route::device(Ipv4Net::from(ROUTED_GATEWAY), i)));
    }

    /// Routed and dual stack: a /128 beside the /32, the host side holding Calico's
    /// link-local gateway (never tentative), the container's IPv6 default route through
    /// it with a fixed neighbour entry.
    #[tokio::test]
    async fn routed_mode_dual_stack_uses_a_link_local_gateway() {
        let fake = FakeNet::new();
        let req = Request {
            ipv6: Some(Ipv6Side {
                address: "fd00:10:244:3::5/64".parse().unwrap(),
                gateway: "fd00:10:244:3::1/64".parse().unwrap(),
            }),
            ..request(Mode::Routed)
        };
        let (host, _) = add(&fake.host(), &req).await.unwrap();
        let veth = fake.link(&host.veth.name).unwrap();
        let held: Vec<String> = fake
            .addresses6_in(None, veth.info.index)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(held, ["fe80::ecee:eeff:feee:eeee/64"]);
        let to_ctr: Vec<String> = fake
            .routes()
            .into_iter()
            .filter(|r| !r.weft)
            .map(|r| r.route.to_string())
            .collect();
        assert!(
            to_ctr.contains(&format!("fd00:10:244:3::5/128 dev #{}", veth.info.index)),
            "{to_ctr:?}"
        );
        let inside = fake.link_in(ns(), "eth0").unwrap();
        let i = inside.info.index;
        let held: Vec<String> = fake
            .addresses6_in(ns(), i)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(held, ["fd00:10:244:3::5/128"]);
        assert!(fake.neighbours_in(ns(), i).contains(&Neighbour {
            ip: ROUTED_GATEWAY6.into(),
            mac: ROUTED_HOST_MAC
        }));
        let kinds: Vec<_> = fake.routes_in(ns()).iter().map(|r| r.route).collect();
        assert!(kinds.contains(&Route::via(Ipv6Net::default(), ROUTED_GATEWAY6, i)));
    }

    #[tokio::test]
    async fn a_failure_half_way_leaves_nothing_behind() {
        let fake = FakeNet::new();
        let faults = Faults::new();
        faults.fail(FaultOp::AddRoute, libc::ENETUNREACH);
        let err = add(&Faulty::new(fake.host(), faults), &request(Mode::Routed))
            .await
            .err()
            .expect("the route is refused");
        assert_eq!(err.code, Code::Kernel);
        assert!(err.msg.contains("cannot route 10.244.3.5/32"), "{err}");
        assert!(err.details.contains("Network is unreachable"), "{err}");
        let name = host_veth_name("ctr1", "eth0");
        assert!(fake.link(&name).is_none(), "the veth pair was removed");
        assert!(fake.link_in(ns(), "eth0").is_none(), "and its peer with it");
    }

    #[tokio::test]
    async fn an_interface_name_taken_in_the_container_is_named() {
        let fake = FakeNet::new();
        add(&fake.host(), &request(Mode::Bridge)).await.unwrap();
        let again = Request {
            container_id: "ctr2",
            ..request(Mode::Bridge)
        };
        let err = add(&fake.host(), &again).await.err().unwrap();
        assert!(
            err.msg.contains("eth0 already exists in the container"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_repeated_add_starts_over_and_del_removes_it_all() {
        let fake = FakeNet::new();
        let host = fake.host();
        add(&host, &request(Mode::Bridge)).await.unwrap();
        // The runtime retries ADD (the plugin died after attaching): the pair from the
        // first attempt goes, with its peer, and a new one is made.
        add(&host, &request(Mode::Bridge)).await.unwrap();
        assert_eq!(
            fake.links_in(ns())
                .iter()
                .filter(|l| l.info.name == "eth0")
                .count(),
            1
        );
        del(&host, "ctr1", "eth0").await.unwrap();
        assert!(fake.link(&host_veth_name("ctr1", "eth0")).is_none());
        assert!(
            fake.link_in(ns(), "eth0").is_none(),
            "the peer went with it"
        );
        del(&host, "ctr1", "eth0")
            .await
            .expect("DEL of nothing is fine");
        assert!(
            fake.link("weftbr0").is_some(),
            "the bridge stays for others"
        );
    }

    #[tokio::test]
    async fn check_finds_the_address_or_says_what_is_missing() {
        let fake = FakeNet::new();
        let host = fake.host();
        add(&host, &request(Mode::Bridge)).await.unwrap();
        let ns = Path::new(NS);
        check(&host, ns, "eth0", "10.244.3.5".parse().unwrap())
            .await
            .unwrap();
        let err = check(&host, ns, "eth0", "10.244.3.6".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code, Code::UnknownContainer);
        let err = check(&host, ns, "eth1", "10.244.3.5".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.msg.contains("eth1 is missing"), "{err}");
    }
}
