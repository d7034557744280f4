//! `weftctl network create|list|show NAME|delete`: named networks (see
//! [`weft_alloc::named`]), the networks Docker's `weft` driver uses.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::json;
use weft_alloc::named::{Endpoint, Mode, NamedNetwork, NetworkRequest};
use weft_alloc::Registry;

use crate::leases::Output;
use crate::CliError;

pub async fn create(
    registry: &Registry,
    req: NetworkRequest,
    output: Output,
) -> Result<i32, CliError> {
    let net = registry
        .create_network(&req)
        .await
        .map_err(CliError::Named)?;
    match output {
        Output::Json => println!("{}", network_json(&net, &[])),
        Output::Table => println!(
            "created network {} ({}, {}{}, gateway {})",
            net.name,
            net.subnet,
            net.mode,
            vni(&net),
            gateway(&net)
        ),
    }
    Ok(0)
}

/// The gateway its containers use: the network's own (overlay), or Calico's link-local
/// one answered by the host's proxy ARP (routed).
fn gateway(net: &NamedNetwork) -> String {
    match net.mode {
        Mode::Overlay => net.gateway.to_string(),
        Mode::Routed => ROUTED_GATEWAY.to_owned(),
    }
}

/// What `weftctl` shows as a routed network's gateway (as the driver hands it to Docker).
pub const ROUTED_GATEWAY: &str = "169.254.1.1";

fn vni(net: &NamedNetwork) -> String {
    if net.mode == Mode::Overlay {
        format!(", VNI {}", net.vni)
    } else {
        String::new()
    }
}

/// A network as `-o json` shows it (snake_case, as every weftctl JSON output).
fn network_json(net: &NamedNetwork, eps: &[(Ipv4Addr, Endpoint)]) -> serde_json::Value {
    json!({
        "name": net.name,
        "subnet": net.subnet.to_string(),
        "mode": net.mode.to_string(),
        "vni": (net.mode == Mode::Overlay).then_some(net.vni),
        "gateway": gateway(net),
        "internal": net.internal,
        "endpoints": eps.iter().map(|(ip, e)| json!({
            "address": ip.to_string(),
            "node": e.node.to_string(),
            "endpoint_id": e.endpoint_id,
            "mac": e.mac,
            "host_iface": e.host_iface,
            "container": e.container,
            "names": e.names,
            "ports": e.ports.iter().map(|p| json!({
                "proto": p.proto.to_string(),
                "host_ip": p.host_ip.map(|h| h.to_string()),
                "host_port": p.host_port,
                "port": p.port,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn list(registry: &Registry, output: Output) -> Result<i32, CliError> {
    let mut nets = registry.networks().await?;
    nets.sort_by_key(|n| (n.subnet.network(), n.subnet.prefix_len()));
    let mut rows = Vec::new();
    for n in &nets {
        rows.push((n, registry.endpoints(&n.name).await?));
    }
    match output {
        Output::Json => {
            let all: Vec<_> = rows.iter().map(|(n, e)| network_json(n, e)).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("serializes")
            );
        }
        Output::Table => {
            println!(
                "{:<16} {:<18} {:<8} {:>8} {:<15} {:>9}  INTERNAL",
                "NAME", "SUBNET", "MODE", "VNI", "GATEWAY", "ENDPOINTS"
            );
            for (n, e) in &rows {
                let vni = if n.mode == Mode::Overlay {
                    n.vni.to_string()
                } else {
                    "-".into()
                };
                println!(
                    "{:<16} {:<18} {:<8} {:>8} {:<15} {:>9}  {}",
                    n.name,
                    n.subnet.to_string(),
                    n.mode.to_string(),
                    vni,
                    gateway(n),
                    e.len(),
                    if n.internal { "yes" } else { "no" }
                );
            }
        }
    }
    Ok(0)
}

pub async fn show(registry: &Registry, name: &str, output: Output) -> Result<i32, CliError> {
    let net = registry
        .network(name)
        .await?
        .ok_or_else(|| CliError::Named(weft_alloc::named::NamedError::Unknown(name.to_owned())))?;
    let eps = registry.endpoints(name).await?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&network_json(&net, &eps)).expect("serializes")
        ),
        Output::Table => {
            println!("name:     {}", net.name);
            println!("subnet:   {}", net.subnet);
            println!("mode:     {}{}", net.mode, vni(&net));
            println!("gateway:  {}", gateway(&net));
            println!("internal: {}", if net.internal { "yes" } else { "no" });
            println!(
                "{:<15} {:<15} {:<17} {:<15} {:<14} PORTS",
                "ADDRESS", "NODE", "MAC", "HOST IFACE", "ENDPOINT"
            );
            for (ip, e) in &eps {
                let id = if e.endpoint_id.is_empty() {
                    "(address held)"
                } else {
                    weft_alloc::named::short(&e.endpoint_id)
                };
                // As `docker ps` writes them: 0.0.0.0:8080->80/tcp.
                let ports: Vec<String> = e
                    .ports
                    .iter()
                    .map(|p| {
                        let host = p.host_ip.map_or("0.0.0.0".into(), |h| h.to_string());
                        format!("{host}:{}->{}/{}", p.host_port, p.port, p.proto)
                    })
                    .collect();
                println!(
                    "{:<15} {:<15} {:<17} {:<15} {id:<14} {}",
                    ip.to_string(),
                    e.node.to_string(),
                    e.mac.as_deref().unwrap_or("-"),
                    if e.host_iface.is_empty() {
                        "-"
                    } else {
                        &e.host_iface
                    },
                    if ports.is_empty() {
                        "-".to_owned()
                    } else {
                        ports.join(", ")
                    },
                );
            }
        }
    }
    Ok(0)
}

pub async fn delete(registry: &Registry, name: &str) -> Result<i32, CliError> {
    let net = registry
        .delete_network(name)
        .await
        .map_err(CliError::Named)?;
    println!("deleted network {} ({})", net.name, net.subnet);
    Ok(0)
}

/// The arguments of `network create`, made a request.
pub fn request(
    name: String,
    subnet: Ipv4Net,
    mode: Mode,
    vni: Option<u32>,
    gateway: Option<Ipv4Addr>,
    internal: bool,
) -> NetworkRequest {
    NetworkRequest {
        name,
        subnet,
        gateway,
        mode,
        vni,
        internal,
    }
}
