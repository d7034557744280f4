//! `weftctl ipam show`: the container addresses the `weft` CNI plugin handed out on a
//! node (read from its data directory), or on every host of a lab with `--lab`.

use std::path::PathBuf;

use clap::Subcommand;
use weft_cni::ipam::Ipam;

#[derive(Debug, Subcommand)]
pub enum IpamCmd {
    /// Every block of block IPAM, the node that holds it, addresses used and free.
    #[command(after_help = "Example:\n  weftctl ipam blocks -o json")]
    Blocks {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: crate::output::Output,
    },
    /// Without ADDRESS: list the CNI plugin's allocations on this node (node, subnet,
    /// or `blocks` / `outside` for block IPAM's and held addresses, address, container,
    /// interface, network). With ADDRESS (block IPAM): its block
    /// and which node, container and interface hold it, from the store.
    #[command(
        after_help = "Examples:\n  weftctl ipam show --data-dir /var/lib/cni/weft -o json\n  weftctl ipam show 10.248.0.5"
    )]
    Show {
        address: Option<std::net::Ipv4Addr>,
        /// The plugin's data directory (its `dataDir`).
        #[arg(long, default_value = "/var/lib/cni/weft")]
        data_dir: PathBuf,
        /// The node's subnet file: in a dual-stack network, each address's IPv6 twin
        /// (the same offset in the node's IPv6 subnet) is shown beside it.
        #[arg(long, default_value = "/run/flannel/subnet.env")]
        subnet_file: PathBuf,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: crate::output::Output,
        /// As JSON (the same as `-o json`).
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Block IPAM: addresses whose node or container is gone, blocks whose node is gone,
    /// blocks a node has no route for. Exit 1 if anything is found.
    #[command(after_help = "Example:\n  weftctl ipam check -o json")]
    Check {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: crate::output::Output,
    },
    /// Block IPAM: release an address or a block that `ipam check` lists; anything in
    /// use is refused.
    #[command(
        after_help = "Example:\n  weftctl ipam release 10.248.0.5\n  weftctl ipam release 10.248.0.64/26"
    )]
    Release {
        /// An address or a block (CIDR).
        target: String,
    },
}

pub fn run(cmd: IpamCmd, lab: Option<&str>) -> Result<i32, crate::CliError> {
    let IpamCmd::Show {
        address: None,
        data_dir,
        subnet_file,
        output,
        json,
    } = cmd
    else {
        unreachable!("the other ipam commands read the store")
    };
    let json = json || output == crate::output::Output::Json;
    let nodes: Vec<(String, PathBuf, PathBuf)> = match lab {
        Some(name) => crate::lab_host_paths(name, |s, i| (s.cni_data_dir(i), s.subnet_file(i)))?
            .into_iter()
            .map(|(node, (dir, file))| (node, dir, file))
            .collect(),
        None => vec![("local".into(), data_dir, subnet_file)],
    };
    let mut rows = Vec::new();
    for (node, dir, file) in &nodes {
        // The node's network, where its subnet file can be read: the IPv6 twin of each
        // address of its subnet in a dual-stack network.
        let network = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| weft_alloc::hostfiles::parse_subnet_env(&t));
        for (from, pool) in Ipam::all_records(dir)? {
            for a in pool.list()? {
                let v6 = network.as_ref().and_then(|n| {
                    n.ipv6
                        .and_then(|v6| v6.mirror(&n.subnet, a.ip))
                        .map(|m| m.addr())
                });
                rows.push((node.clone(), from.clone(), a, v6));
            }
        }
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(node, subnet, a, v6)| {
                serde_json::json!({"node": node, "subnet": subnet, "address": a.ip.to_string(),
                    "ipv6_address": v6.map(|v| v.to_string()),
                    "container": a.container_id, "ifname": a.ifname, "network": a.network})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializes")
        );
    } else {
        // Dual stack: an IPv6 column; an IPv4-only node's table is as it always was.
        let dual = rows.iter().any(|r| r.3.is_some());
        let v6_column = |v: &str| match dual {
            true => format!("{v:<24} "),
            false => String::new(),
        };
        println!(
            "{:<8} {:<18} {:<16} {}{:<24} {:<8} NETWORK",
            "NODE",
            "SUBNET",
            "ADDRESS",
            v6_column("IPV6 ADDRESS"),
            "CONTAINER",
            "IFNAME"
        );
        for (node, subnet, a, v6) in &rows {
            let v6 = v6.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "{node:<8} {subnet:<18} {:<16} {}{:<24} {:<8} {}",
                a.ip.to_string(),
                v6_column(&v6),
                a.container_id,
                a.ifname,
                a.network
            );
        }
    }
    Ok(0)
}
