//! Reading and changing the kernel over rtnetlink.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};
use thiserror::Error;

use crate::iface::{self, AddrInfo, ExternalInterface, IfaceError, IfaceSpec, LinkInfo};
use crate::route::{plan, Route, RouteChange, WEFT_PROTO};

const MAIN_TABLE: u8 = 254;
/// Route requests in flight at once: the kernel answers each with an ack, and keeping
/// many outstanding avoids one round trip per route.
const PIPELINE: usize = 64;

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink {op}: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(transparent)]
    Iface(#[from] IfaceError),
}

fn nl(op: &'static str) -> impl Fn(rtnetlink::Error) -> KernelError {
    move |source| KernelError::Netlink { op, source }
}

/// What one reconciliation did.
#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    pub added: usize,
    pub replaced: usize,
    pub removed: usize,
    /// Changes the kernel refused, with its reason; the rest were still applied.
    pub failed: Vec<(RouteChange, String)>,
    pub elapsed: Duration,
}

impl ApplyReport {
    pub fn changed(&self) -> bool {
        self.added + self.replaced + self.removed > 0 || !self.failed.is_empty()
    }
}

/// A netlink connection in the caller's network namespace.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

impl Kernel {
    /// Opens a netlink connection; must be called inside a tokio runtime.
    pub fn connect() -> Result<Self, KernelError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Socket)?;
        tokio::spawn(conn);
        Ok(Kernel { handle })
    }

    pub async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        let msgs: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list links"))?;
        Ok(msgs
            .into_iter()
            .map(|m| {
                let mut info = LinkInfo {
                    index: m.header.index,
                    name: String::new(),
                    mtu: 1500,
                    up: m.header.flags.contains(LinkFlags::Up),
                };
                for a in m.attributes {
                    match a {
                        LinkAttribute::IfName(n) => info.name = n,
                        LinkAttribute::Mtu(mtu) => info.mtu = mtu,
                        _ => {}
                    }
                }
                info
            })
            .collect())
    }

    pub async fn ipv4_addresses(&self) -> Result<Vec<AddrInfo>, KernelError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list addresses"))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
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

    async fn ipv4_routes(&self) -> Result<Vec<RouteMessage>, KernelError> {
        let req = RouteMessageBuilder::<Ipv4Addr>::new().build();
        self.handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list routes"))
    }

    /// The output interface of the main table's IPv4 default route, if any.
    pub async fn default_route_dev(&self) -> Result<Option<u32>, KernelError> {
        Ok(self.ipv4_routes().await?.into_iter().find_map(|m| {
            let main = m.header.table == MAIN_TABLE;
            (main && m.header.destination_prefix_length == 0)
                .then(|| oif(&m))
                .flatten()
        }))
    }

    /// Chooses the external interface (see [`iface::choose`]).
    pub async fn external_interface(
        &self,
        specs: &[IfaceSpec],
    ) -> Result<ExternalInterface, KernelError> {
        let (links, addrs, dev) = (
            self.links().await?,
            self.ipv4_addresses().await?,
            self.default_route_dev().await?,
        );
        Ok(iface::choose(specs, &links, &addrs, dev)?)
    }

    /// Weft's routes in the main table: those with protocol [`WEFT_PROTO`].
    pub async fn weft_routes(&self) -> Result<Vec<Route>, KernelError> {
        Ok(self
            .ipv4_routes()
            .await?
            .iter()
            .filter_map(to_route)
            .collect())
    }

    /// Makes Weft's routes equal to `desired`, changing only the difference.
    pub async fn apply_routes(&self, desired: &[Route]) -> Result<ApplyReport, KernelError> {
        let start = Instant::now();
        let changes = plan(desired, &self.weft_routes().await?);
        let mut report = ApplyReport::default();
        let results: Vec<_> = stream::iter(changes)
            .map(|change| async move { (change, self.change(change).await) })
            .buffer_unordered(PIPELINE)
            .collect()
            .await;
        for (change, result) in results {
            match (change, result) {
                (_, Err(e)) => report.failed.push((change, e.to_string())),
                (RouteChange::Add(_), Ok(())) => report.added += 1,
                (RouteChange::Replace(_), Ok(())) => report.replaced += 1,
                (RouteChange::Remove(_), Ok(())) => report.removed += 1,
            }
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    async fn change(&self, change: RouteChange) -> Result<(), rtnetlink::Error> {
        match change {
            RouteChange::Add(r) => self.handle.route().add(message(&r)).execute().await,
            RouteChange::Replace(r) => {
                self.handle
                    .route()
                    .add(message(&r))
                    .replace()
                    .execute()
                    .await
            }
            RouteChange::Remove(r) => self.handle.route().del(message(&r)).execute().await,
        }
    }
}

fn oif(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
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
    let via = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    });
    Some(Route {
        dst: Ipv4Net::new(dst_ip, m.header.destination_prefix_length).ok()?,
        via,
        dev: oif(m)?,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
    })
}

/// The netlink message for a Weft route.
fn message(r: &Route) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .output_interface(r.dev)
        .protocol(RouteProtocol::from(WEFT_PROTO))
        .kind(RouteType::Unicast);
    b = match r.via {
        Some(gw) => b.gateway(gw).scope(RouteScope::Universe),
        None => b.scope(RouteScope::Link),
    };
    if r.onlink {
        b = b.onlink();
    }
    b.build()
}
