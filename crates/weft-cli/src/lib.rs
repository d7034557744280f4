//! `weftctl`, the operator's command line.
//!
//! - [`network`]: `network init|show`, the flannel-format config; [`networks`]: named
//!   networks (`network create|list|show NAME|delete`), Docker's.
//! - [`leases`]: `leases` (table or JSON), `leases delete`, `leases reserve`.
//! - [`store`]: raw key access, like `etcdctl`.
//! - [`ipam`]: the CNI plugin's allocations on a node.
//! - [`block_ipam`]: block IPAM's show, check and release.
//! - [`policy`]: network policies, endpoint identities and namespace labels.
//! - [`node`]: `node status`, the BGP sessions of a node.
//! - [`diagnose`]: `diagnose`, this node's state checked against the plan, read-only.
//! - `lab ...`: handed to [`weft_lab`].
//!
//! `--lab NAME` points the store commands at a lab's store; for an etcd lab, whose etcd
//! lives in the lab's underlay namespace, weftctl re-runs itself inside that namespace.

pub mod addresses;
pub mod bgp;
pub mod block_ipam;
pub mod diagnose;
pub mod enforced;
pub mod error;
pub mod ipam;
pub mod lab_probe;
pub mod leases;
pub mod network;
pub mod networks;
pub mod node;
pub mod output;
pub mod policy;
pub mod pools;
pub mod prefix;
pub mod reference;
pub mod store;

use std::process::Command;

use clap::{Parser, Subcommand};
use weft_alloc::Registry;
use weft_lab::{LabCommand, LabState};
use weft_store::options::{StoreKind, StoreOptions};

pub use error::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "weftctl",
    version,
    about = "Operate a Weft container network: config, leases and the local lab"
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreOptions,
    /// The lab called NAME (see `weftctl lab up`): store commands use its store, lab
    /// commands act on it (as their --name).
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Write or show the network config; create, list, show and delete named networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// List subnet leases, or delete / reserve one.
    Leases(leases::LeasesArgs),
    /// Container addresses handed out by the `weft` CNI plugin; the blocks nodes hold.
    #[command(subcommand)]
    Ipam(ipam::IpamCmd),
    /// Block IPAM's address pools: create, list, show, delete.
    #[command(subcommand)]
    Pool(pools::PoolCmd),
    /// Network policies (Kubernetes NetworkPolicy, Weft ClusterPolicy): apply, list,
    /// show, delete, explain.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Endpoints' identities for policy: label, list.
    #[command(subcommand)]
    Endpoint(policy::EndpointCmd),
    /// Namespaces' labels for policy.
    #[command(subcommand)]
    Namespace(policy::NamespaceCmd),
    /// Single addresses held outside any node's subnet, and which node holds each.
    #[command(after_help = "Example:\n  weftctl addresses -o json")]
    Addresses(output::OutputArg),
    /// This node's BGP sessions (bgp backend).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// The bgp backend's external peers: add, list, delete.
    #[command(subcommand)]
    Bgp(bgp::BgpCmd),
    /// Raw keys: get, put, del, ls (like etcdctl).
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// Check this node against the plan: lease, agent, routes, neighbours, FDB,
    /// device, forwarding, firewall, subnet file. Changes nothing; exits 1 on a problem.
    Diagnose(diagnose::DiagnoseArgs),
    /// A multi-host lab in network namespaces on this machine.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  weftctl completions bash > /etc/bash_completion.d/weftctl"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write weftctl's man pages (one per command) into DIR.
    #[command(after_help = "Example:\n  weftctl man /usr/local/share/man/man1")]
    Man { dir: std::path::PathBuf },
}

/// Runs weftctl; returns the exit code.
pub fn main(cli: Cli) -> i32 {
    let Cli {
        mut store,
        lab,
        command,
    } = cli;
    let (command, lab) = match command {
        Cmd::Lab(mut cmd) => {
            if let Some(name) = lab {
                cmd.lab_mut().name = name;
            }
            if !matches!(cmd, LabCommand::Probe { .. }) {
                return report(weft_lab::run(cmd).map_err(CliError::from));
            }
            // The probe explains each cell from the lab's store: below, with the others.
            let name = cmd.lab_mut().name.clone();
            (Cmd::Lab(cmd), Some(name))
        }
        other => (other, lab),
    };
    let command = match command {
        Cmd::Ipam(cmd @ ipam::IpamCmd::Show { address: None, .. }) => {
            return report(ipam::run(cmd, lab.as_deref()))
        }
        Cmd::Completions { shell } => {
            reference::completions(shell, <Cli as clap::CommandFactory>::command());
            return 0;
        }
        Cmd::Man { dir } => {
            return report(
                reference::man_pages(<Cli as clap::CommandFactory>::command(), &dir)
                    .map(|files| {
                        println!("wrote {} man pages to {}", files.len(), dir.display());
                        0
                    })
                    .map_err(CliError::io(format!(
                        "cannot write man pages to {}",
                        dir.display()
                    ))),
            )
        }
        Cmd::Node(cmd) => return report(node::run(cmd, lab.as_deref())),
        Cmd::Diagnose(args) if lab.is_some() => {
            return report(diagnose::run_lab(lab.as_deref().unwrap_or_default(), &args))
        }
        other => other,
    };
    if let Some(name) = &lab {
        match use_lab_store(name, &mut store) {
            Ok(None) => {}
            Ok(Some(code)) => return code,
            Err(e) => return report(Err(e)),
        }
    }
    // Opening an embedded store creates its file. Only `network init` (and the agent)
    // may do that: any other command against a store that is not there is a mistake
    // (a wrong --store-path), and must say so rather than answer from an empty store.
    if !matches!(command, Cmd::Network(network::NetworkCmd::Init(_)))
        && store.store == StoreKind::Embedded
        && !store.store_path.exists()
    {
        return report(Err(CliError::NoEmbeddedStore(store.store_path.clone())));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    report(rt.block_on(async move {
        let s = match store.connect().await {
            Ok(s) => s,
            // Diagnose still has something to say: what it can check locally.
            Err(e) if matches!(command, Cmd::Diagnose(_)) && e.is_transient() => {
                let Cmd::Diagnose(args) = command else {
                    unreachable!("matched above")
                };
                let why = format!("cannot reach {}: {e}", store.describe());
                return diagnose::run_without_store(args, why).await;
            }
            Err(source) => {
                return Err(CliError::OpenStore {
                    store: store.describe(),
                    source: Box::new(source),
                })
            }
        };
        let registry = Registry::new(s, &store.etcd_prefix);
        match command {
            Cmd::Network(cmd) => network::run(&registry, cmd).await,
            Cmd::Leases(args) => leases::run(&registry, args).await,
            Cmd::Addresses(o) => addresses::run(&registry, o.output).await,
            Cmd::Pool(cmd) => pools::run(&registry, cmd).await,
            Cmd::Policy(cmd) => policy::run(&registry, cmd).await,
            Cmd::Lab(LabCommand::Probe {
                lab,
                ports,
                timeout_ms,
                no_wait,
                ipv6,
                output,
            }) => {
                let wait = (!no_wait).then_some(lab_probe::ENFORCE_WAIT);
                let how = lab_probe::How {
                    timeout_ms,
                    enforced_within: wait,
                    ipv6,
                    output,
                };
                lab_probe::run(&registry, &lab.name, &ports, how).await
            }
            Cmd::Endpoint(cmd) => policy::run_endpoint(&registry, cmd).await,
            Cmd::Namespace(cmd) => policy::run_namespace(&registry, cmd).await,
            Cmd::Ipam(ipam::IpamCmd::Blocks { output }) => pools::blocks(&registry, output).await,
            Cmd::Ipam(ipam::IpamCmd::Show {
                address: Some(ip),
                output,
                ..
            }) => block_ipam::show(&registry, ip, output).await,
            Cmd::Ipam(ipam::IpamCmd::Check { output }) => {
                block_ipam::check(&registry, output).await
            }
            Cmd::Ipam(ipam::IpamCmd::Release { target }) => {
                block_ipam::release(&registry, &target).await
            }
            Cmd::Store(cmd) => store::run(registry.store().as_ref(), cmd).await,
            Cmd::Bgp(cmd) => bgp::run(&registry, cmd).await,
            Cmd::Diagnose(args) => diagnose::run(&registry, args).await,
            Cmd::Lab(_)
            | Cmd::Ipam(ipam::IpamCmd::Show { address: None, .. })
            | Cmd::Node(_)
            | Cmd::Completions { .. }
            | Cmd::Man { .. } => {
                unreachable!("handled above")
            }
        }
    }))
}

fn report(r: Result<i32, CliError>) -> i32 {
    r.unwrap_or_else(|e| {
        eprintln!("weftctl: {e}");
        1
    })
}

/// Points `store` at lab `name`'s store. For an etcd lab run from outside its underlay
/// namespace, re-runs this command inside it and returns the exit code.
fn use_lab_store(name: &str, store: &mut StoreOptions) -> Result<Option<i32>, CliError> {
    let state = LabState::load(name)?;
    match state.store_kind() {
        StoreKind::Embedded => {
            store.store = StoreKind::Embedded;
            store.store_path = state.store_path();
            Ok(None)
        }
        StoreKind::Etcd if std::env::var_os("WEFT_LAB_INSIDE").is_some() => {
            store.store = StoreKind::Etcd;
            store.etcd_endpoints = state
                .etcd_endpoint()
                .split(',')
                .map(str::to_owned)
                .collect();
            Ok(None)
        }
        StoreKind::Etcd => {
            let me = std::env::current_exe().map_err(CliError::io("cannot find weftctl itself"))?;
            let status = Command::new("ip")
                .args(["netns", "exec", &weft_lab::topology::underlay_ns(name)])
                .arg(me)
                .args(std::env::args_os().skip(1))
                .env("WEFT_LAB_INSIDE", "1")
                .status()
                .map_err(CliError::io(format!(
                    "cannot enter lab {name}'s underlay namespace"
                )))?;
            Ok(Some(status.code().unwrap_or(1)))
        }
    }
}

/// One path per host of lab `name`, labelled `h<i>`: `path` says which file or folder.
pub(crate) fn lab_host_paths<T>(
    name: &str,
    path: impl Fn(&weft_lab::LabState, u32) -> T,
) -> Result<Vec<(String, T)>, CliError> {
    let state = weft_lab::LabState::load(name)?;
    Ok(state
        .hosts
        .iter()
        .map(|&i| (format!("h{i}"), path(&state, i)))
        .collect())
}
