//! Published ports (`docker run -p`): Docker hands a remote driver the container's port
//! bindings in ProgramExternalConnectivity, after Join, and takes them back in
//! RevokeExternalConnectivity. A binding is checked against every other binding on this
//! node (Docker's own "port is already allocated" when two want one host port), a host
//! port left to Docker's choice (`-p 80`) or given as a range is picked here, and the
//! result is written into the endpoint's record: the agent forwards what the records say
//! (DNAT in its firewall table, `weft_plan::firewall::Published`), so the rules come
//! back by themselves after an agent or dockerd restart, once each.

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use tracing::{info, warn};
use weft_alloc::named::{PortProto, PublishedPort};

use super::{Answer, Driver};
use crate::error::DriverError;
use crate::protocol::*;

/// libnetwork's key for the port bindings in the options it passes.
const PORT_MAP: &str = "com.docker.network.portmap";
/// Where a host port left to the driver is taken from (Docker's own dynamic range).
const DYNAMIC: std::ops::RangeInclusive<u16> = 49153..=65535;

/// One binding as libnetwork passes it (`types.PortBinding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub proto: PortProto,
    pub host_ip: Option<Ipv4Addr>,
    pub port: u16,
    /// The host ports it may take: one, a range, or Docker's dynamic range.
    pub host_ports: (u16, u16),
}

/// The bindings in a request's options; an IPv6 one (Docker adds `::` beside `0.0.0.0`
/// where the daemon has IPv6) is left out, Weft's networks being IPv4.
pub fn wanted(options: &Value) -> Result<Vec<Wanted>, DriverError> {
    let Some(list) = options.get(PORT_MAP) else {
        return Ok(Vec::new());
    };
    let bad = |b: &Value| DriverError::BadPortBinding(b.to_string());
    let mut out = Vec::new();
    for b in list.as_array().ok_or_else(|| bad(list))? {
        let num = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0);
        let proto = PortProto::from_number(num("Proto")).ok_or_else(|| bad(b))?;
        let host_ip = match b.get("HostIP").and_then(Value::as_str).unwrap_or("") {
            "" | "0.0.0.0" => None,
            s if s.contains(':') => {
                warn!(binding = %b, "an IPv6 port binding is not published: Weft networks are IPv4");
                continue;
            }
            s => Some(s.parse().map_err(|_| bad(b))?),
        };
        let port = u16::try_from(num("Port")).ok().filter(|p| *p > 0);
        let port = port.ok_or_else(|| bad(b))?;
        let first = u16::try_from(num("HostPort")).map_err(|_| bad(b))?;
        let last = u16::try_from(num("HostPortEnd")).map_err(|_| bad(b))?;
        let host_ports = match (first, last) {
            (0, _) => (*DYNAMIC.start(), *DYNAMIC.end()),
            (f, l) if l > f => (f, l),
            (f, _) => (f, f),
        };
        out.push(Wanted {
            proto,
            host_ip,
            port,
            host_ports,
        });
    }
    Ok(out)
}

/// Picks each binding's host port, the first free one in its range, against `taken`
/// (every other binding on this node) and the ones picked before it.
pub fn pick(wanted: &[Wanted], taken: &[PublishedPort]) -> Result<Vec<PublishedPort>, DriverError> {
    let mut picked: Vec<PublishedPort> = Vec::new();
    for w in wanted {
        let free = (w.host_ports.0..=w.host_ports.1)
            .map(|host_port| PublishedPort {
                proto: w.proto,
                host_ip: w.host_ip,
                host_port,
                port: w.port,
            })
            .find(|p| !taken.iter().chain(&picked).any(|t| t.collides(p)));
        let Some(p) = free else {
            let host = w.host_ip.map_or("0.0.0.0".to_owned(), |ip| ip.to_string());
            let ports = match w.host_ports {
                (f, l) if f == l => f.to_string(),
                (f, l) => format!("{f}-{l}"),
            };
            return Err(DriverError::PortTaken { host, ports });
        };
        picked.push(p);
    }
    Ok(picked)
}

impl Driver {
    /// Every port published on this node, but the endpoint `except`'s (one listing of
    /// every network's endpoints).
    async fn ports_in_use(&self, except: &str) -> Result<Vec<PublishedPort>, DriverError> {
        Ok(self
            .registry
            .all_endpoints()
            .await?
            .into_iter()
            .filter(|(_, _, e)| e.node == self.host.public_ip && e.endpoint_id != except)
            .flat_map(|(_, _, e)| e.ports)
            .collect())
    }

    pub(super) async fn program_external(&self, req: ProgramExternal) -> Answer {
        let wanted = wanted(&req.options)?;
        let net = self.network_of(&req.network_id).await?;
        let (ip, ep) = self.endpoint(&net, &req.endpoint_id).await?;
        if wanted.is_empty() && ep.ports.is_empty() {
            return Ok(json!({}));
        }
        let taken = self.ports_in_use(&req.endpoint_id).await?;
        let ports = pick(&wanted, &taken)?;
        self.registry
            .modify_endpoint(&net.name, ip, |e| e.ports = ports.clone())
            .await?;
        for p in &ports {
            info!(network = %net.name, %ip, proto = %p.proto, host_port = p.host_port, port = p.port, "port published");
        }
        Ok(json!({}))
    }

    pub(super) async fn revoke_external(&self, req: EndpointRef) -> Answer {
        let net = self.network_of(&req.network_id).await?;
        let (ip, ep) = self.endpoint(&net, &req.endpoint_id).await?;
        if !ep.ports.is_empty() {
            self.registry
                .modify_endpoint(&net.name, ip, |e| e.ports.clear())
                .await?;
            info!(network = %net.name, %ip, "published ports withdrawn");
        }
        Ok(json!({}))
    }

    /// The endpoint's published ports as libnetwork reads operational data.
    pub(super) async fn endpoint_oper_info(&self, req: EndpointRef) -> Answer {
        let Ok(net) = self.network_of(&req.network_id).await else {
            return Ok(json!({"Value": {}}));
        };
        let Ok((ip, ep)) = self.endpoint(&net, &req.endpoint_id).await else {
            return Ok(json!({"Value": {}}));
        };
        let bindings: Vec<Value> = ep
            .ports
            .iter()
            .map(|p| {
                json!({
                    "Proto": p.proto.number(),
                    "IP": ip.to_string(),
                    "Port": p.port,
                    "HostIP": p.host_ip.map_or("0.0.0.0".to_owned(), |h| h.to_string()),
                    "HostPort": p.host_port,
                    "HostPortEnd": p.host_port,
                })
            })
            .collect();
        Ok(json!({"Value": {PORT_MAP: bindings}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_read_as_docker_passes_them() {
        let opts = json!({PORT_MAP: [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "192.168.77.1", "HostPort": 0, "HostPortEnd": 0},
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "::", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 6, "IP": "", "Port": 81, "HostIP": "0.0.0.0", "HostPort": 9000, "HostPortEnd": 9005}
        ]});
        let w = wanted(&opts).unwrap();
        assert_eq!(w.len(), 3, "the IPv6 binding left out");
        assert_eq!(w[0].host_ports, (8080, 8080));
        assert_eq!(w[1].host_ip, Some("192.168.77.1".parse().unwrap()));
        assert_eq!(w[1].host_ports, (49153, 65535));
        assert_eq!(w[2].host_ports, (9000, 9005));
        assert!(wanted(&json!({})).unwrap().is_empty());
        for bad in [
            json!({PORT_MAP: "x"}),
            json!({PORT_MAP: [{"Proto": 1, "Port": 80}]}),
            json!({PORT_MAP: [{"Proto": 6, "Port": 0}]}),
            json!({PORT_MAP: [{"Proto": 6, "Port": 80, "HostIP": "nope"}]}),
        ] {
            assert!(wanted(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports_are_picked_free_or_refused_as_docker_does() {
        let tcp = |host_ip: Option<&str>, host_port| PublishedPort {
            proto: PortProto::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port,
            port: 80,
        };
        let taken = [
            tcp(None, 8080),
            tcp(Some("192.168.77.1"), 9000),
            tcp(None, 49153),
        ];
        let want = |host_ip: Option<&str>, host_ports| Wanted {
            proto: PortProto::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            port: 80,
            host_ports,
        };
        let e = pick(&[want(None, (8080, 8080))], &taken).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        // Another address of the host may take the port one address holds.
        let other = pick(&[want(Some("192.168.77.2"), (9000, 9000))], &taken).unwrap();
        assert_eq!(other[0].host_port, 9000);
        assert!(pick(&[want(None, (9000, 9000))], &taken).is_err());
        // A range or Docker's choice: the first free one, none twice in one request.
        let two = pick(
            &[want(None, (49153, 65535)), want(None, (49153, 65535))],
            &taken,
        )
        .unwrap();
        assert_eq!((two[0].host_port, two[1].host_port), (49154, 49155));
        // UDP does not collide with TCP.
        let udp = pick(
            &[Wanted {
                proto: PortProto::Udp,
                ..want(None, (8080, 8080))
            }],
            &taken,
        )
        .unwrap();
        assert_eq!(udp[0].host_port, 8080);
    }
}
