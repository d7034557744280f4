//! Command-line options. Names follow flannel's where flannel has the same knob
//! (`--etcd-endpoints`, `--iface`, `--public-ip`, `--ip-masq`, `--subnet-file`, ...).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weft_plan::IfaceSpec;
use weft_store::options::StoreOptions;

fn duration(s: &str) -> Result<Duration, crate::duration::DurationError> {
    crate::duration::parse(s)
}

/// Where the ipip backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IpipMode {
    Auto,
    Kernel,
    UserSpace,
}

/// `weftd`'s options.
#[derive(Debug, Clone, Args)]
pub struct AgentOptions {
    #[command(flatten)]
    pub store: StoreOptions,
    /// External interface by name, IPv4 address or pattern; repeat to give fallbacks.
    /// Default: the interface of the default route.
    #[arg(long, value_parser = |s: &str| s.parse::<IfaceSpec>())]
    pub iface: Vec<IfaceSpec>,
    /// The address peers reach this node at, if not the external interface's.
    #[arg(long)]
    pub public_ip: Option<Ipv4Addr>,
    /// The IPv6 address peers reach this node at in a dual-stack network, if not the
    /// external interface's first global one (flannel's `--public-ipv6`).
    #[arg(long)]
    pub public_ipv6: Option<std::net::Ipv6Addr>,
    /// Where to write the subnet file (flannel's CNI plugin reads /run/flannel/subnet.env).
    #[arg(long, default_value = "/run/flannel/subnet.env")]
    pub subnet_file: PathBuf,
    /// Where to write Docker's options (DOCKER_OPT_BIP, ...).
    #[arg(long, default_value = "/run/weft/docker.env")]
    pub docker_opts_file: PathBuf,
    /// Masquerade traffic from the cluster network to the outside (never between pods).
    #[arg(long)]
    pub ip_masq: bool,
    /// Dual stack: masquerade IPv6 traffic leaving the cluster network. `auto` does as
    /// --ip-masq says for a unique local network (fc00::/7) and never for a global one,
    /// which is meant to be reached as it is; `always` or `never` override.
    #[arg(long, default_value = "auto")]
    pub ipv6_masq: weft_plan::firewall6::Masquerade6,
    /// How long a subnet lease lives without renewal.
    #[arg(long, value_parser = duration, default_value = "24h")]
    pub subnet_lease_ttl: Duration,
    /// Renew the lease when this little time is left.
    #[arg(long, value_parser = duration, default_value = "1h")]
    pub subnet_lease_renew_margin: Duration,
    /// Accept encapsulated (VXLAN) traffic only from current nodes' addresses.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub encap_source_filter: bool,
    /// TX checksum offload on the VXLAN device; `false` works around the kernel bug that
    /// delays VXLAN traffic by 63 s on some kernels.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub vxlan_tx_checksum_offload: bool,
    /// BIG TCP: raise the IPv4 GSO/GRO limit to 192 KiB on the external interface and
    /// (through the subnet file) on every container link, so each hop moves a third as
    /// many packets. Only with backends that never encapsulate (host-gw, bgp without
    /// CrossSubnet); every link between nodes must carry it too.
    #[arg(long)]
    pub big_tcp: bool,
    /// Where IP-in-IP runs: `auto` uses the kernel's `ipip` module when it has one and
    /// user space (TUN + raw socket, identical packets) when it does not.
    #[arg(long, value_enum, default_value_t = IpipMode::Auto)]
    pub ipip_mode: IpipMode,
    /// Queues (and worker threads each way) of the user-space tunnel; 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub tunnel_queues: usize,
    /// This node's labels (`rack=r1,route-reflector=true`), published in its lease: BGP
    /// peer records (`NodeSelector`) and the bgp backend (`RouteReflectorSelector`)
    /// choose nodes by them, in Calico's selector syntax.
    #[arg(long, value_parser = |s: &str| weft_model::selector::parse_labels(s), default_value = "")]
    pub node_labels: weft_model::selector::NodeLabels,
    /// Where the bgp backend writes its peers' state (read by `weftctl node status`).
    #[arg(long, default_value = "/run/weft/bgp-status.json")]
    pub bgp_status_file: PathBuf,
    /// The local socket the CNI plugin asks for addresses outside this node's subnet
    /// (routed mode, bgp backend), for every address with block IPAM, and through
    /// which it records containers' identities for network policy; an empty path
    /// turns it off.
    #[arg(long, default_value = "/run/weft/weftd.sock")]
    pub api_socket: PathBuf,
    /// Serve the Docker network and IPAM driver `weft` (a libnetwork remote plugin) and
    /// keep the local dockerd's Weft networks in step with the store.
    #[arg(long)]
    pub docker: bool,
    /// Where dockerd looks for plugin sockets (`weft.sock` is made here).
    #[arg(long, default_value = "/run/docker/plugins")]
    pub docker_plugin_dir: PathBuf,
    /// The local dockerd's API socket.
    #[arg(long, default_value = "/run/docker.sock")]
    pub docker_socket: PathBuf,
    /// Answer DNS queries on this address (`IP` for port 53, or `IP:PORT`): the names
    /// and aliases of the containers on a querier's Docker networks on every host,
    /// everything else forwarded to the resolvers in /etc/resolv.conf. Point dockerd
    /// at it (`--dns IP`, or `"dns"` in daemon.json) and Docker's embedded DNS
    /// forwards the names it does not know here. Off when not given.
    #[arg(long, value_parser = parse_dns_listen)]
    pub dns_listen: Option<std::net::SocketAddr>,
    /// The resolv.conf whose nameservers `--dns-listen` forwards other names to, read
    /// at each forward (kubelet's option name; e.g. systemd-resolved's
    /// /run/systemd/resolve/resolv.conf where /etc/resolv.conf names a local stub).
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Address for `/healthz` and `/metrics` (flannel's option name).
    #[arg(long, default_value = "127.0.0.1")]
    pub healthz_ip: std::net::IpAddr,
    /// Port for `/healthz` and `/metrics`; 0 turns them off (flannel's default).
    #[arg(long, default_value_t = 0)]
    pub healthz_port: u16,
    /// Block IPAM: how long a block this node holds must stay empty before it is given
    /// back to its pool (checked at every resync).
    #[arg(long, value_parser = duration, default_value = "5m")]
    pub block_release_grace: Duration,
    /// How often to re-check the whole host against the plan, repairing drift.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub resync_interval: Duration,
}

/// `IP` (port 53) or `IP:PORT`.
fn parse_dns_listen(s: &str) -> Result<std::net::SocketAddr, std::net::AddrParseError> {
    s.parse::<std::net::SocketAddr>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
}
