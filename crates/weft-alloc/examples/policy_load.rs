//! `bench/policy.sh`'s programming half, run inside a lab host's namespace against the
//! lab's embedded store and that host's agent.
//!
//! - `populate STORE NODE ENDPOINTS POLICIES`: writes ENDPOINTS identities (1 in 50 on
//!   NODE, the host the agent runs on; the rest on other nodes) and POLICIES
//!   NetworkPolicies of 10 ingress rules each, every one selecting other endpoints, and
//!   times the writes; then waits until the agent's `/metrics` says its policy table
//!   reflects the last write (`weft_policy_enforced_revision`): "from empty to
//!   enforced".
//! - `identify SOCKET N`: N new local endpoints, one after another, through the agent's
//!   socket as the CNI plugin records them (the agent answers once the endpoint's rules
//!   are loaded), each timed; then forgets them. Prints p50 and p99 in ms.
//!
//! With `ipv6` last, every endpoint also has an IPv6 address (a dual-stack network,
//! whose agents keep both policy tables).
//!
//! Usage: policy_load populate STORE NODE ENDPOINTS POLICIES [ipv6] | identify SOCKET N [ipv6]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_alloc::agent_api::{ask, Request};
use weft_alloc::policies::{Attachment, Identity};
use weft_alloc::Registry;
use weft_store::embedded::EmbeddedStore;

fn labels(kv: &[(&str, String)]) -> std::collections::BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Endpoint `i`'s address: 10.250.0.0/16, away from the lab's own containers.
fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// An IPv6 address for endpoint `i` of a block (`0xfa` for the populated ones, `0xfb`
/// for the identified ones), when `ipv6`.
fn address6(ipv6: bool, block: u16, i: usize) -> Option<std::net::Ipv6Addr> {
    ipv6.then(|| std::net::Ipv6Addr::new(0xfd00, 0x10, block, 0, 0, 0, (i >> 16) as u16, i as u16))
}

fn enforced_revision() -> Option<i64> {
    let mut s = TcpStream::connect("127.0.0.1:9462").ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("weft_policy_enforced_revision "))
        .and_then(|v| v.trim().parse().ok())
}

async fn populate(store: &str, node: Ipv4Addr, endpoints: usize, policies: usize, ipv6: bool) {
    let registry = Registry::new(
        Arc::new(EmbeddedStore::open(store).unwrap()),
        "/coreos.com/network",
    );
    let start = Instant::now();
    let mut yaml = String::new();
    for p in 0..policies {
        let rules: Vec<String> = (0..10)
            .map(|r| format!("{{from: [{{podSelector: {{matchLabels: {{app: c{p}-{r}}}}}}}], ports: [{{port: {}}}]}}", 8000 + r))
            .collect();
        yaml += &format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{p}, namespace: x}}\nspec: {{podSelector: {{matchLabels: {{app: s{p}}}}}, ingress: [{}]}}\n",
            rules.join(", ")
        );
    }
    let ps = weft_policy::parse_documents(&yaml).unwrap();
    registry.apply_policies(&ps).await.unwrap();
    let mut last = 0;
    for i in 0..endpoints {
        let local = i % 50 == 0;
        let app = if i % 5 == 0 {
            format!("s{}", (i / 5) % policies.max(1))
        } else {
            format!("c{}-{}", i % policies.max(1), i % 10)
        };
        let id = Identity {
            name: format!("x/e{i}"),
            namespace: "x".into(),
            labels: labels(&[("app", app)]),
            ipv6: address6(ipv6, 0xfa, i),
            node: if local {
                node
            } else {
                Ipv4Addr::new(192, 0, 2, (i % 200 + 1) as u8)
            },
            interface: format!("weftb{i:010x}"),
            attachment: Attachment::Routed,
            pending: false,
        };
        last = registry.put_identity(address(i), &id).await.unwrap();
    }
    let written = start.elapsed();
    loop {
        if enforced_revision().is_some_and(|r| r >= last) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the agent never enforced revision {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{endpoints} endpoints and {policies} policies: written in {:.2} s, enforced {:.2} s after the first write",
        written.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
}

fn identify(socket: &str, n: usize, ipv6: bool) {
    let mut times = Vec::new();
    for i in 0..n {
        let ip = Ipv4Addr::new(10, 251, (i / 250) as u8, (i % 250 + 1) as u8);
        let req = Request::Identify {
            ip,
            ipv6: address6(ipv6, 0xfb, i),
            namespace: "x".into(),
            name: format!("new{i}"),
            labels: labels(&[("app", format!("c{}-{}", i % 7, i % 10))]),
            interface: format!("weftn{i:010x}"),
            attachment: Attachment::Routed,
        };
        let t = Instant::now();
        ask(std::path::Path::new(socket), &req).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for i in 0..n {
        let ip = Ipv4Addr::new(10, 251, (i / 250) as u8, (i % 250 + 1) as u8);
        ask(std::path::Path::new(socket), &Request::Forget { ip }).unwrap();
    }
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!("p50 {:.2} p99 {:.2}", pct(0.5), pct(0.99));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ipv6 = a.last().is_some_and(|l| l == "ipv6");
    match a.get(1).map(String::as_str) {
        Some("populate") => {
            populate(
                &a[2],
                a[3].parse().unwrap(),
                a[4].parse().unwrap(),
                a[5].parse().unwrap(),
                ipv6,
            )
            .await
        }
        Some("identify") => identify(&a[2], a[3].parse().unwrap(), ipv6),
        _ => eprintln!(
            "usage: policy_load populate STORE NODE ENDPOINTS POLICIES [ipv6] | identify SOCKET N [ipv6]"
        ),
    }
}
