//! The files other programs read to learn this node's network, in flannel's formats:
//!
//! - the subnet file (`/run/flannel/subnet.env`), read by flannel's CNI plugin and by
//!   `mk-docker-opts.sh`, and by Weft itself after a restart to ask for the same subnet;
//! - the Docker options file, for `dockerd $DOCKER_NETWORK_OPTIONS`.
//!
//! Both are written atomically (temporary file, then rename) and only when their
//! content changes.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};

/// What the files say.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeNetwork {
    pub network: Ipv4Net,
    pub subnet: Ipv4Net,
    pub mtu: u32,
    pub ip_masq: bool,
    /// With BIG TCP on: the IPv4 GSO/GRO limit for container links (`WEFT_GSO_MAX_SIZE`,
    /// a key of Weft's own that flannel's plugin ignores).
    pub gso_max_size: Option<u32>,
    /// Containers' addresses come from blocks, through the agent (`WEFT_IPAM=blocks`,
    /// a key of Weft's own): the CNI plugin asks the agent instead of using the subnet.
    pub ipam_blocks: bool,
    /// The IPv6 side of a dual-stack network (`FLANNEL_IPV6_NETWORK`,
    /// `FLANNEL_IPV6_SUBNET`).
    pub ipv6: Option<NodeNetworkV6>,
}

/// The IPv6 network and this node's IPv6 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeNetworkV6 {
    pub network: Ipv6Net,
    pub subnet: Ipv6Net,
}

/// The subnet's first usable address with its length: `10.244.3.1/24`, as flannel writes.
pub fn gateway(subnet: &Ipv4Net) -> Ipv4Net {
    let first = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    Ipv4Net::new(first, subnet.prefix_len()).expect("same prefix length")
}

impl NodeNetworkV6 {
    /// The IPv6 address of the container holding `ip` in the IPv4 `subnet`: the same
    /// offset in this node's IPv6 subnet (`10.244.3.5` in `10.244.3.0/24` is
    /// `fd00:10:244:3::5` in `fd00:10:244:3::/64`). One allocation serves both families
    /// (the IPv6 address comes and goes with the IPv4 one), and an operator reads one
    /// from the other. The config guarantees the IPv6 subnet is at least as large.
    pub fn mirror(&self, subnet: &Ipv4Net, ip: Ipv4Addr) -> Option<Ipv6Net> {
        if !subnet.contains(&ip) {
            return None;
        }
        let offset = u128::from(u32::from(ip) - u32::from(subnet.network()));
        let host_bits = 128 - u32::from(self.subnet.prefix_len());
        if host_bits < 128 && offset >> host_bits != 0 {
            return None;
        }
        let addr = Ipv6Addr::from(u128::from(self.subnet.network()) + offset);
        Ipv6Net::new(addr, self.subnet.prefix_len()).ok()
    }
}

/// The IPv6 subnet's first address after the subnet's own with its length:
/// `fd00:10:244:3::1/64`, as flannel writes.
pub fn gateway_v6(subnet: &Ipv6Net) -> Ipv6Net {
    let first = Ipv6Addr::from(u128::from(subnet.network()) + 1);
    Ipv6Net::new(first, subnet.prefix_len()).expect("same prefix length")
}

/// The subnet file, in flannel's order: the IPv4 keys, the IPv6 ones, MTU and
/// masquerade, then Weft's own.
pub fn render_subnet_env(n: &NodeNetwork) -> String {
    let mut s = format!(
        "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}\n",
        n.network,
        gateway(&n.subnet)
    );
    if let Some(v6) = &n.ipv6 {
        s += &format!(
            "FLANNEL_IPV6_NETWORK={}\nFLANNEL_IPV6_SUBNET={}\n",
            v6.network,
            gateway_v6(&v6.subnet)
        );
    }
    s += &format!("FLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n", n.mtu, n.ip_masq);
    if let Some(size) = n.gso_max_size {
        s += &format!("WEFT_GSO_MAX_SIZE={size}\n");
    }
    if n.ipam_blocks {
        s += "WEFT_IPAM=blocks\n";
    }
    s
}

/// Reads `KEY=value` lines; later keys win, comments and junk are ignored.
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (!k.starts_with('#'))
                .then(|| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// The node subnet recorded in a subnet file, if it has a readable one.
pub fn subnet_from_env(text: &str) -> Option<Ipv4Net> {
    let (_, v) = parse_env(text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == "FLANNEL_SUBNET")?;
    v.parse::<Ipv4Net>().ok().map(|n| n.trunc())
}

/// The node's IPv6 subnet recorded in a subnet file, if it has a readable one.
pub fn ipv6_subnet_from_env(text: &str) -> Option<Ipv6Net> {
    let (_, v) = parse_env(text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == "FLANNEL_IPV6_SUBNET")?;
    v.parse::<Ipv6Net>().ok().map(|n| n.trunc())
}

/// The whole subnet file, for tools (the lab) that read it back.
pub fn parse_subnet_env(text: &str) -> Option<NodeNetwork> {
    let env = parse_env(text);
    let get = |key: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    Some(NodeNetwork {
        network: get("FLANNEL_NETWORK")?.parse().ok()?,
        subnet: get("FLANNEL_SUBNET")?.parse::<Ipv4Net>().ok()?.trunc(),
        mtu: get("FLANNEL_MTU")?.parse().ok()?,
        ip_masq: get("FLANNEL_IPMASQ")? == "true",
        gso_max_size: get("WEFT_GSO_MAX_SIZE").map(str::parse).transpose().ok()?,
        ipam_blocks: get("WEFT_IPAM") == Some("blocks"),
        ipv6: match (get("FLANNEL_IPV6_NETWORK"), get("FLANNEL_IPV6_SUBNET")) {
            (None, None) => None,
            (Some(network), Some(subnet)) => Some(NodeNetworkV6 {
                network: network.parse().ok()?,
                subnet: subnet.parse::<Ipv6Net>().ok()?.trunc(),
            }),
            _ => return None,
        },
    })
}

pub fn render_docker_opts(n: &NodeNetwork) -> String {
    let bip = format!("--bip={}", gateway(&n.subnet));
    // Weft masquerades itself when asked; Docker must not do it twice.
    let masq = format!("--ip-masq={}", !n.ip_masq);
    let mtu = format!("--mtu={}", n.mtu);
    format!(
        "DOCKER_OPT_BIP=\"{bip}\"\nDOCKER_OPT_IPMASQ=\"{masq}\"\nDOCKER_OPT_MTU=\"{mtu}\"\n\
         DOCKER_NETWORK_OPTIONS=\" {bip} {masq} {mtu}\"\n"
    )
}

/// Writes `content` to `path` atomically unless it is already there. Returns whether it wrote.
pub fn write_atomic(path: &Path, content: &str) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> NodeNetwork {
        NodeNetwork {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: "10.244.74.0/24".parse().unwrap(),
            mtu: 1450,
            ip_masq: true,
            gso_max_size: None,
            ipam_blocks: false,
            ipv6: None,
        }
    }

    #[test]
    fn dual_stack_keys_in_flannel_order() {
        let dual = NodeNetwork {
            ipv6: Some(NodeNetworkV6 {
                network: "fd00:10:244::/56".parse().unwrap(),
                subnet: "fd00:10:244:4a::/64".parse().unwrap(),
            }),
            ..net()
        };
        let s = render_subnet_env(&dual);
        assert_eq!(
            s,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.74.1/24\n\
             FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:4a::1/64\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
        assert_eq!(parse_subnet_env(&s), Some(dual));
        assert_eq!(
            ipv6_subnet_from_env(&s),
            Some("fd00:10:244:4a::/64".parse().unwrap())
        );
        assert_eq!(ipv6_subnet_from_env(&render_subnet_env(&net())), None);
    }

    /// The subnet file flanneld v0.20.2 wrote for its dual-stack lease in a mixed lab
    /// (2026-12-07), byte for byte what Weft writes for the same lease.
    #[test]
    fn the_same_subnet_file_as_flanneld_writes() {
        let flanneld = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.96.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:45::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n";
        let ours = NodeNetwork {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: "10.244.96.0/24".parse().unwrap(),
            mtu: 1500,
            ip_masq: true,
            gso_max_size: None,
            ipam_blocks: false,
            ipv6: Some(NodeNetworkV6 {
                network: "fd00:10:244::/56".parse().unwrap(),
                subnet: "fd00:10:244:45::/64".parse().unwrap(),
            }),
        };
        assert_eq!(render_subnet_env(&ours), flanneld);
        assert_eq!(parse_subnet_env(flanneld), Some(ours));
    }

    #[test]
    fn a_container_s_ipv6_address_mirrors_its_ipv4_one() {
        let v6 = NodeNetworkV6 {
            network: "fd00:10:244::/56".parse().unwrap(),
            subnet: "fd00:10:244:4a::/64".parse().unwrap(),
        };
        let v4: Ipv4Net = "10.244.74.0/24".parse().unwrap();
        let m = |ip: &str| v6.mirror(&v4, ip.parse().unwrap()).map(|n| n.to_string());
        assert_eq!(m("10.244.74.5").as_deref(), Some("fd00:10:244:4a::5/64"));
        assert_eq!(m("10.244.74.255").as_deref(), Some("fd00:10:244:4a::ff/64"));
        assert_eq!(m("10.244.75.5"), None, "outside the IPv4 subnet");
        let small = NodeNetworkV6 {
            subnet: "fd00:10:244:4a::/124".parse().unwrap(),
            ..v6
        };
        assert_eq!(
            small
                .mirror(&v4, "10.244.74.15".parse().unwrap())
                .unwrap()
                .to_string(),
            "fd00:10:244:4a::f/124"
        );
        assert_eq!(
            small.mirror(&v4, "10.244.74.16".parse().unwrap()),
            None,
            "no room"
        );
    }

    #[test]
    fn big_tcp_size_only_when_on() {
        let big = NodeNetwork {
            gso_max_size: Some(196_608),
            ..net()
        };
        let s = render_subnet_env(&big);
        assert!(s.ends_with("FLANNEL_IPMASQ=true\nWEFT_GSO_MAX_SIZE=196608\n"));
        assert_eq!(parse_subnet_env(&s), Some(big));
        assert!(!render_subnet_env(&net()).contains("WEFT_"));
        // A garbled size makes the file unreadable rather than silently 64 KiB.
        assert_eq!(
            parse_subnet_env(&format!(
                "{}WEFT_GSO_MAX_SIZE=big\n",
                render_subnet_env(&net())
            )),
            None
        );
    }

    #[test]
    fn block_ipam_is_said_in_a_key_of_weft_own() {
        let blocks = NodeNetwork {
            ipam_blocks: true,
            ..net()
        };
        let s = render_subnet_env(&blocks);
        assert!(
            s.ends_with("FLANNEL_IPMASQ=true\nWEFT_IPAM=blocks\n"),
            "{s}"
        );
        assert_eq!(parse_subnet_env(&s), Some(blocks));
    }

    #[test]
    fn subnet_env_in_flannel_format() {
        let s = render_subnet_env(&net());
        assert_eq!(s, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.74.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
        assert_eq!(subnet_from_env(&s), Some("10.244.74.0/24".parse().unwrap()));
        assert_eq!(parse_subnet_env(&s), Some(net()));
        assert_eq!(subnet_from_env("# nothing\ngarbage\n"), None);
    }

    #[test]
    fn docker_opts_as_mk_docker_opts_writes_them() {
        let s = render_docker_opts(&net());
        assert!(s.contains("DOCKER_OPT_BIP=\"--bip=10.244.74.1/24\"\n"));
        assert!(s.contains("DOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n"));
        assert!(s.contains("DOCKER_OPT_MTU=\"--mtu=1450\"\n"));
        assert!(s.contains(
            "DOCKER_NETWORK_OPTIONS=\" --bip=10.244.74.1/24 --ip-masq=false --mtu=1450\"\n"
        ));
    }

    #[test]
    fn atomic_write_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/subnet.env");
        assert!(write_atomic(&p, "A=1\n").unwrap());
        assert!(!write_atomic(&p, "A=1\n").unwrap());
        assert!(write_atomic(&p, "A=2\n").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "A=2\n");
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temporary left behind"
        );
    }
}
