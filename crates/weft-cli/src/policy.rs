//! `weftctl policy apply|list|show|delete|explain`, `endpoint label|list` and
//! `namespace label`: network policies and the identities they select, in the store.
//! `apply` and `delete` return once every node enforces the change (see
//! [`crate::enforced`]); `explain` answers from the policies and identities as stored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use weft_alloc::policies::{Identity, PolicyState};
use weft_alloc::Registry;
use weft_policy::verdict::{selected_by, Side};
use weft_policy::{explain, Flow, Labels, Policy, Protocol};

use crate::output::{print_json, Output};
use crate::CliError;

/// Whether a change waits until every node enforces it.
#[derive(Debug, Clone, clap::Args)]
pub struct Wait {
    /// Return once the change is written, without waiting for the nodes to enforce it.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for every node with a lease to enforce the change, in seconds;
    /// past it, the nodes that do not are named (exit 1).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

impl Wait {
    async fn for_nodes(&self, registry: &Registry) -> Result<(), CliError> {
        if self.no_wait {
            return Ok(());
        }
        crate::enforced::wait(registry, std::time::Duration::from_secs(self.timeout)).await
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Apply the policies in FILE (YAML or JSON, several documents; `-` reads stdin):
    /// Kubernetes NetworkPolicy and Weft's ClusterPolicy. Checked whole first: one bad
    /// object applies nothing, and every problem is named.
    #[command(
        after_help = "Example:\n  weftctl policy apply -f deny-all.yaml\n  kubectl get networkpolicy -A -o yaml | weftctl policy apply -f -"
    )]
    Apply {
        #[arg(short = 'f', long)]
        file: PathBuf,
        #[command(flatten)]
        wait: Wait,
    },
    /// List policies: kind, namespace/name, order (cluster), selector, directions.
    #[command(after_help = "Example:\n  weftctl policy list -o json")]
    List {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Print a policy as stored (NAMESPACE/NAME, or NAME with --cluster).
    #[command(
        after_help = "Example:\n  weftctl policy show x/allow-a\n  weftctl policy show --cluster no-ping"
    )]
    Show {
        id: String,
        #[arg(long)]
        cluster: bool,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a policy (NAMESPACE/NAME, or NAME with --cluster).
    #[command(after_help = "Example:\n  weftctl policy delete x/allow-a")]
    Delete {
        id: String,
        #[arg(long)]
        cluster: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Which policies select each side of a flow, which rule decides egress and
    /// ingress, and the verdict. Endpoints by NAMESPACE/NAME or address.
    #[command(after_help = "Example:\n  weftctl policy explain y/b x/a --port 80 --protocol tcp")]
    Explain {
        from: String,
        to: String,
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// tcp, udp, sctp, icmp or icmpv6 (then --port is the ICMP type; icmpv6 is an
        /// IPv6 flow's).
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "sctp", "icmp", "icmpv6"])]
        protocol: String,
        /// The flow over IPv6, between the endpoints' IPv6 addresses (a dual-stack
        /// network); implied when FROM or TO is an IPv6 address.
        #[arg(long)]
        ipv6: bool,
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Set (k=v) or remove (k-) labels of an endpoint (NAMESPACE/NAME or address). An
    /// address with no identity yet needs --name and --node.
    #[command(
        after_help = "Example:\n  weftctl endpoint label x/a tier=web\n  weftctl endpoint label 10.248.0.5 pod=a --name x/a --node 192.168.77.1"
    )]
    Label {
        endpoint: String,
        labels: Vec<String>,
        /// NAMESPACE/NAME, for an address with no identity yet.
        #[arg(long)]
        name: Option<String>,
        /// The node it runs on, for an address with no identity yet.
        #[arg(long)]
        node: Option<Ipv4Addr>,
    },
    /// Endpoints: name, address, node, namespace, labels, the policies selecting them.
    #[command(after_help = "Example:\n  weftctl endpoint list -o json")]
    List {
        /// Output format: a table for people, or json for scripts.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCmd {
    /// Set (k=v) or remove (k-) labels of a namespace.
    #[command(after_help = "Example:\n  weftctl namespace label y team=blue")]
    Label {
        namespace: String,
        labels: Vec<String>,
    },
}

/// Applies `k=v` and `k-` edits to `labels`, checked.
fn edit_labels(labels: &mut Labels, edits: &[String]) -> Result<(), CliError> {
    for e in edits {
        if let Some(k) = e.strip_suffix('-') {
            labels.remove(k);
        } else if let Some((k, v)) = e.split_once('=') {
            labels.insert(k.to_owned(), v.to_owned());
        } else {
            return Err(CliError::Usage(format!(
                "{e:?}: give labels as key=value, or key- to remove one"
            )));
        }
    }
    let problems = weft_policy::selector::label_problems(labels);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(problems.join("; ")))
    }
}

fn summary(p: &Policy) -> serde_json::Value {
    match p {
        Policy::Namespaced(n) => json!({
            "kind": "NetworkPolicy", "id": p.id(), "order": null,
            "selector": n.spec.pod_selector.describe(),
            "types": n.types().iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(),
        }),
        Policy::Cluster(c) => json!({
            "kind": "ClusterPolicy", "id": p.id(), "order": c.spec.order,
            "selector": match &c.spec.namespace_selector {
                Some(ns) => format!("{} in namespaces {}", c.spec.selector.describe(), ns.describe()),
                None => c.spec.selector.describe(),
            },
            "types": c.types().iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(),
        }),
    }
}

/// No policy `id` of the kind asked for; where the other kind has one by that name,
/// the flag that finds it.
fn not_found(st: &PolicyState, id: &str, cluster: bool) -> CliError {
    let (kind, other, hint) = if cluster {
        ("ClusterPolicy", "NetworkPolicy", "drop --cluster")
    } else {
        ("NetworkPolicy", "ClusterPolicy", "add --cluster")
    };
    let other_has_it = st
        .policies
        .iter()
        .any(|p| p.id() == id && matches!(p, Policy::Cluster(_)) != cluster);
    CliError::Usage(if other_has_it {
        format!("no {kind} {id}; there is a {other} {id}: {hint}")
    } else {
        format!("no {kind} {id} (see weftctl policy list)")
    })
}

fn unreadable_warning(st: &PolicyState) {
    for (key, why) in &st.unreadable {
        eprintln!("weftctl: skipping unreadable {key}: {why}");
    }
}

pub async fn run(registry: &Registry, cmd: PolicyCmd) -> Result<i32, CliError> {
    match cmd {
        PolicyCmd::Apply { file, wait } => {
            let code = apply(registry, &file).await?;
            wait.for_nodes(registry).await?;
            Ok(code)
        }
        PolicyCmd::List { output } => list(registry, output).await,
        PolicyCmd::Show {
            id,
            cluster,
            output,
        } => show(registry, &id, cluster, output).await,
        PolicyCmd::Delete { id, cluster, wait } => {
            if registry.delete_policy(cluster, &id).await? {
                println!("deleted {id}");
                wait.for_nodes(registry).await?;
                Ok(0)
            } else {
                Err(not_found(&registry.policy_state().await?, &id, cluster))
            }
        }
        PolicyCmd::Explain {
            from,
            to,
            port,
            protocol,
            ipv6,
            output,
        } => {
            let ipv6 = ipv6
                || protocol == "icmpv6"
                || [&from, &to].iter().any(|a| a.parse::<Ipv6Addr>().is_ok());
            if ipv6 && protocol == "icmp" {
                return Err(CliError::Usage(
                    "ICMP is IPv4's: an IPv6 flow's is --protocol icmpv6".into(),
                ));
            }
            let flow = FlowArgs {
                port,
                protocol: &protocol,
                ipv6,
            };
            explain_flow(registry, &from, &to, flow, output).await
        }
    }
}

/// `weftctl policy apply FILE`: every document checked before any is written.
async fn apply(registry: &Registry, file: &std::path::Path) -> Result<i32, CliError> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(CliError::io(format!("cannot read {}", file.display())))?;
    let ps = weft_policy::parse_documents(&text).map_err(|e| {
        CliError::Usage(format!("{} refused, nothing applied:\n{e}", file.display()))
    })?;
    let new = registry.apply_policies(&ps).await?;
    for (p, new) in ps.iter().zip(new) {
        println!(
            "{} {} {}",
            p.kind(),
            p.id(),
            if new { "created" } else { "configured" }
        );
    }
    Ok(0)
}

/// `weftctl policy list`: one row per policy.
async fn list(registry: &Registry, output: Output) -> Result<i32, CliError> {
    let st = registry.policy_state().await?;
    unreadable_warning(&st);
    let mut rows: Vec<serde_json::Value> = st.policies.iter().map(summary).collect();
    rows.sort_by_key(|r| (r["kind"].to_string(), r["id"].to_string()));
    match output {
        Output::Json => print_json(&json!(rows)),
        Output::Table => {
            println!(
                "{:<14} {:<28} {:>5}  {:<16} SELECTOR",
                "KIND", "NAME", "ORDER", "TYPES"
            );
            for r in rows {
                println!(
                    "{:<14} {:<28} {:>5}  {:<16} {}",
                    r["kind"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default(),
                    r["order"]
                        .as_u64()
                        .map(|o| o.to_string())
                        .unwrap_or("-".into()),
                    r["types"]
                        .as_array()
                        .map(|t| t
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default(),
                    r["selector"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(0)
}

/// `weftctl policy show ID`: the policy as stored, as YAML or JSON.
async fn show(
    registry: &Registry,
    id: &str,
    cluster: bool,
    output: Output,
) -> Result<i32, CliError> {
    let st = registry.policy_state().await?;
    let p = st
        .policies
        .iter()
        .find(|p| p.id() == id && matches!(p, Policy::Cluster(_)) == cluster)
        .ok_or_else(|| not_found(&st, id, cluster))?;
    match output {
        Output::Json => print_json(&serde_json::to_value(p).expect("serializes")),
        Output::Table => print!(
            "{}",
            serde_yaml_ng::to_string(p).unwrap_or_else(|e| e.to_string())
        ),
    }
    Ok(0)
}

/// The world the verdict engine looks at: the policy state's endpoints and
/// namespaces, and the named networks' isolation (each network, and the cluster
/// network with the pools). A store without a network config has no cluster side.
pub async fn world(
    registry: &Registry,
    st: &weft_model::policies::PolicyState,
) -> Result<weft_policy::World, CliError> {
    let mut world = st.world();
    world.isolated = registry
        .networks()
        .await?
        .into_iter()
        .map(|n| (n.name, n.subnet))
        .collect();
    if let Ok(cfg) = registry.config().await {
        world.cluster.push(cfg.network);
    }
    world
        .cluster
        .extend(registry.pools().await?.into_iter().map(|p| p.cidr));
    Ok(world)
}

/// What `explain` is asked of a flow besides its ends.
struct FlowArgs<'a> {
    port: u16,
    protocol: &'a str,
    /// Between the endpoints' IPv6 addresses.
    ipv6: bool,
}

/// `weftctl policy explain FROM TO`: which policies decide the flow, each side; exit 3
/// when it is denied.
async fn explain_flow(
    registry: &Registry,
    from: &str,
    to: &str,
    args: FlowArgs<'_>,
    output: Output,
) -> Result<i32, CliError> {
    let FlowArgs {
        port,
        protocol,
        ipv6,
    } = args;
    let st = registry.policy_state().await?;
    unreadable_warning(&st);
    let addr = |what: &str| -> Result<IpAddr, CliError> {
        match (st.find(what), ipv6) {
            (Some((ip, _)), false) => Ok(ip.into()),
            (Some((_, id)), true) => id.ipv6.map(Into::into).ok_or_else(|| {
                CliError::Usage(format!("endpoint {what:?} has no IPv6 address"))
            }),
            (None, _) => what
                .parse::<IpAddr>()
                .ok()
                .filter(|a| a.is_ipv6() == ipv6)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "no endpoint {what:?} (give NAMESPACE/NAME or an address of the flow's family)"
                    ))
                }),
        }
    };
    let flow = Flow {
        src: addr(from)?,
        dst: addr(to)?,
        protocol: Protocol::parse(protocol).expect("clap checked"),
        port,
    };
    let e = explain(&world(registry, &st).await?, &st.policies, &flow);
    match output {
        Output::Json => print_json(&serde_json::to_value(&e).expect("serializes")),
        Output::Table => {
            let side = |what: &str, s: &Side| {
                println!(
                    "{what} at {}:",
                    s.endpoint.as_deref().unwrap_or("(outside the cluster)")
                );
                if !s.selected_by.is_empty() {
                    println!("  selected by: {}", s.selected_by.join(", "));
                }
                for l in &s.logged {
                    println!("  logged by:   {l}");
                }
                println!(
                    "  {}: {}",
                    if s.allowed { "allowed" } else { "denied" },
                    s.decided_by
                );
            };
            println!("{from} -> {to} {protocol}/{port}");
            side("egress", &e.egress);
            side("ingress", &e.ingress);
            if let Some(b) = &e.between {
                println!("between networks {} -> {}:", b.from, b.to);
                println!(
                    "  {}: {}",
                    if b.allowed { "allowed" } else { "denied" },
                    b.decided_by
                );
            }
            println!("verdict: {}", if e.allowed { "allowed" } else { "denied" });
        }
    }
    Ok(if e.allowed { 0 } else { 3 })
}

pub async fn run_endpoint(registry: &Registry, cmd: EndpointCmd) -> Result<i32, CliError> {
    match cmd {
        EndpointCmd::Label {
            endpoint,
            labels,
            name,
            node,
        } => {
            let st = registry.policy_state().await?;
            let (ip, mut id) = match st.find(&endpoint) {
                Some((ip, id)) => (ip, id.clone()),
                None => {
                    let ip: Ipv4Addr = endpoint.parse().map_err(|_| {
                        CliError::Usage(format!("no endpoint {endpoint:?}; give its address with --name and --node to create one"))
                    })?;
                    let (Some(name), Some(node)) = (name, node) else {
                        return Err(CliError::Usage(format!(
                            "{ip} has no identity yet: give --name NAMESPACE/NAME and --node"
                        )));
                    };
                    let Some((ns, _)) = name.split_once('/') else {
                        return Err(CliError::Usage(format!(
                            "--name {name:?}: give NAMESPACE/NAME"
                        )));
                    };
                    let mut problems = Vec::new();
                    weft_policy::parse::check_object_name("namespace", ns, &mut problems);
                    if let Some(p) = problems.pop() {
                        return Err(CliError::Usage(p));
                    }
                    (
                        ip,
                        Identity {
                            namespace: ns.to_owned(),
                            name,
                            labels: Labels::new(),
                            ipv6: None,
                            node,
                            interface: String::new(),
                            attachment: Default::default(),
                            pending: false,
                        },
                    )
                }
            };
            edit_labels(&mut id.labels, &labels)?;
            registry.put_identity(ip, &id).await?;
            println!("{} ({ip}) labelled {}", id.name, fmt_labels(&id.labels));
            Ok(0)
        }
        EndpointCmd::List { output } => {
            let st = registry.policy_state().await?;
            unreadable_warning(&st);
            let world = st.world();
            let rows: Vec<serde_json::Value> = world
                .endpoints
                .iter()
                .map(|e| {
                    let id = st.endpoints.get(&e.ip);
                    json!({
                        "name": e.name, "address": e.ip.to_string(),
                        "ipv6_address": e.ip6.map(|a| a.to_string()),
                        "node": id.map(|i| i.node.to_string()),
                        "namespace": e.namespace, "labels": e.labels,
                        "pending": id.is_some_and(|i| i.pending),
                        "policies": selected_by(&world, &st.policies, e),
                    })
                })
                .collect();
            match output {
                Output::Json => print_json(&json!(rows)),
                Output::Table => {
                    // A dual-stack network's endpoints show their IPv6 address beside.
                    let dual = world.endpoints.iter().any(|e| e.ip6.is_some());
                    let address = |e: &weft_policy::Endpoint| match (dual, e.ip6) {
                        (false, _) => format!("{:<15}", e.ip),
                        (true, v6) => format!(
                            "{:<15} {:<24}",
                            e.ip,
                            v6.map_or("-".to_owned(), |a| a.to_string())
                        ),
                    };
                    let head = if dual {
                        format!("{:<15} {:<24}", "ADDRESS", "IPV6 ADDRESS")
                    } else {
                        format!("{:<15}", "ADDRESS")
                    };
                    println!(
                        "{:<20} {head} {:<15} {:<28} POLICIES",
                        "NAME", "NODE", "LABELS"
                    );
                    for (r, e) in rows.iter().zip(&world.endpoints) {
                        println!(
                            "{:<20} {} {:<15} {:<28} {}",
                            e.name,
                            address(e),
                            r["node"].as_str().unwrap_or("-"),
                            if r["pending"] == true {
                                "(not read yet: held)".to_owned()
                            } else {
                                fmt_labels(&e.labels)
                            },
                            r["policies"]
                                .as_array()
                                .map(|p| p
                                    .iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(0)
        }
    }
}

pub async fn run_namespace(registry: &Registry, cmd: NamespaceCmd) -> Result<i32, CliError> {
    let NamespaceCmd::Label { namespace, labels } = cmd;
    let mut problems = Vec::new();
    weft_policy::parse::check_object_name("namespace", &namespace, &mut problems);
    if let Some(p) = problems.pop() {
        return Err(CliError::Usage(p));
    }
    let st = registry.policy_state().await?;
    let mut current = st.namespaces.get(&namespace).cloned().unwrap_or_default();
    edit_labels(&mut current, &labels)?;
    registry.put_namespace(&namespace, &current).await?;
    println!("namespace {namespace} labelled {}", fmt_labels(&current));
    Ok(0)
}

fn fmt_labels(l: &Labels) -> String {
    if l.is_empty() {
        return "-".into();
    }
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
