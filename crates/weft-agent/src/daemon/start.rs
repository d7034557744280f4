//! Start-up: from options to an agent that holds its lease and has set up the host.

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::{info, warn};
use weft_alloc::registry::{Previous, RegistryError};
use weft_alloc::{hostfiles, LeaseAttrs, Registry};
use weft_backends::NodeContext;
use weft_kernel::Dataplane;
use weft_store::Revision;

use super::{public_ipv6, settings, with_backoff, Agent, Last, Runtime, View};
use crate::bgp::BgpRuntime;
use crate::bigtcp;
use crate::error::AgentError;
use crate::health::Metrics;
use crate::options::IpipMode;
use crate::AgentOptions;

impl Agent {
    /// Connects to the store, claims the subnet and sets up the host; returns the agent
    /// and the store revision its picture of the leases is consistent at (the watch
    /// starts right after it). Nothing is planned or applied yet.
    pub(super) async fn start(
        opts: AgentOptions,
        dp: Arc<dyn Dataplane>,
        metrics: Arc<Metrics>,
    ) -> Result<(Agent, Revision), AgentError> {
        let store = with_backoff(
            &format!("{} unreachable", opts.store.describe()),
            async || opts.store.connect().await,
            |e| e.is_transient(),
        )
        .await
        .map_err(|source| AgentError::Store {
            store: opts.store.describe(),
            source: Box::new(source),
        })?;
        info!(store = %opts.store.describe(), prefix = %opts.store.etcd_prefix, "connected to the store");
        let registry = Registry::new(store, &opts.store.etcd_prefix);

        let config = with_backoff(
            "waiting for a valid network config",
            async || registry.config().await,
            |_: &RegistryError| true,
        )
        .await
        .expect("retried until valid");
        info!(network = %config.network, subnet_len = config.subnet_len, backend = %config.backend, "network config");

        let external = dp.external_interface(&opts.iface).await?;
        let public_ip = opts.public_ip.unwrap_or(external.addr);
        info!(iface = %external.name, addr = %external.addr, public_ip = %public_ip, mtu = external.mtu, "external interface");
        let ipip_user_space = opts.ipip_mode == IpipMode::UserSpace;
        let public_ipv6 = public_ipv6(&opts, &config, &external);
        let backend = weft_backends::build(
            &config,
            &settings(&opts, public_ip, public_ipv6, ipip_user_space),
        );
        let big_tcp = if opts.big_tcp {
            bigtcp::check(backend.as_ref())?;
            bigtcp::enable(dp.as_ref(), &external).await?
        } else {
            None
        };

        match (&config.ipv6, public_ipv6) {
            (Some(_), Some(ip)) => info!(public_ipv6 = %ip, "dual stack"),
            (Some(_), None) => {
                warn!(iface = %external.name, consequence = "peers route to this node's IPv6 subnet only where their backend carries IPv6 over IPv4", "dual stack, but the external interface has no global IPv6 address and no --public-ipv6 was given")
            }
            (None, _) => {}
        }
        let attrs = LeaseAttrs {
            labels: opts.node_labels.clone(),
            public_ip,
            public_ipv6,
            backend_type: backend.kind().name().to_owned(),
            backend_data: backend.backend_data(),
            backend_v6_data: backend.backend_v6_data(),
        };
        let env = std::fs::read_to_string(&opts.subnet_file).unwrap_or_default();
        let previous = Previous {
            v4: hostfiles::subnet_from_env(&env),
            v6: hostfiles::ipv6_subnet_from_env(&env),
        };
        let lease = with_backoff(
            "claiming a subnet",
            async || {
                registry
                    .acquire(&config, &attrs, previous, opts.subnet_lease_ttl)
                    .await
            },
            |e| e.is_transient(),
        )
        .await
        .map_err(|e| AgentError::Acquire(Box::new(e)))?;
        match lease.ipv6_subnet {
            None => {
                info!(subnet = %lease.subnet, reused = previous.v4 == Some(lease.subnet), reservation = lease.is_reservation(), "subnet lease held")
            }
            Some(v6) => {
                info!(subnet = %lease.subnet, ipv6_subnet = %v6, reused = previous.v4 == Some(lease.subnet), reservation = lease.is_reservation(), "subnet lease held")
            }
        }

        let snapshot = with_backoff(
            "listing leases",
            async || registry.leases().await,
            |e| e.is_transient(),
        )
        .await
        .map_err(|e| AgentError::Leases(Box::new(e)))?;
        for s in &snapshot.skipped {
            warn!(key = %s.key, reason = %s.reason, "skipping unreadable lease");
        }
        let mut agent = Agent {
            view: View {
                config,
                attrs,
                node: NodeContext {
                    external,
                    lease,
                    overlay: None,
                    overlay6: None,
                    learned: Vec::new(),
                },
                peers: snapshot.leases.into_iter().map(|l| (l.subnet, l)).collect(),
                held: BTreeSet::new(),
                named: Default::default(),
                blocks: Default::default(),
                pools: Default::default(),
            },
            runtime: Runtime {
                backend,
                ipip_user_space,
                big_tcp,
                tunnel: None,
                bgp: None,
            },
            last: Last::default(),
            status: super::publish::StatusPublisher::spawn(registry.clone()),
            policy: super::policy::PolicyManager::new(metrics.clone()),
            routes: Default::default(),
            firewall: Default::default(),
            overlay: Default::default(),
            releasing: None,
            registry,
            dp,
            metrics,
            opts,
            block_feed: None,
            api_listener: None,
            docker_nudge: Default::default(),
            names: tokio::sync::watch::channel(Default::default()).0,
            names_dirty: true,
        };
        if !agent.opts.api_socket.as_os_str().is_empty() {
            let path = agent.opts.api_socket.clone();
            let bound =
                crate::api::bind(&path).map_err(|source| AgentError::ApiSocket { path, source })?;
            agent.api_listener = Some(bound);
        }
        if let Err(e) = agent.write_host_files() {
            if agent.api_listener.take().is_some() {
                let _ = std::fs::remove_file(&agent.opts.api_socket);
            }
            return Err(e);
        }
        agent.load_addresses().await;
        agent.load_named_now().await;
        agent.load_policy_now().await;
        agent.start_bgp().await?;
        // After the leases: the firewall's member list must be whole from its first load.
        agent.setup_host()?;
        Ok((agent, snapshot.revision))
    }

    /// The single addresses held outside subnets, as the store has them now.
    async fn load_addresses(&mut self) {
        match self.registry.addresses().await {
            Ok(claims) => {
                for (ip, c) in claims {
                    self.on_address(ip, Some(c));
                }
            }
            Err(e) => warn!(error = %e, "cannot list held addresses; will follow the store watch"),
        }
    }

    /// The named networks, their endpoints and block IPAM's pools and blocks, as the
    /// store has them now.
    async fn load_named_now(&mut self) {
        let mut kvs = Vec::new();
        for prefix in [
            self.registry.keys().networks(),
            self.registry.keys().endpoints(),
            self.registry.keys().ipam(),
        ] {
            match self.registry.store().list(&prefix).await {
                Ok(listing) => kvs.extend(listing.kvs),
                Err(e) => {
                    warn!(error = %e, "cannot list named networks; will follow the store watch");
                    return;
                }
            }
        }
        self.load_named(&kvs);
        self.load_blocks(&kvs);
    }

    /// The BGP speaker and its external peers, for the bgp backend.
    async fn start_bgp(&mut self) -> Result<(), AgentError> {
        let Some(bgp) = self.runtime.backend.bgp() else {
            return Ok(());
        };
        let mut rt = BgpRuntime::start(
            bgp,
            self.view.attrs.public_ip,
            self.opts.bgp_status_file.clone(),
        )
        .await
        .map_err(AgentError::Bgp)?;
        let prefix = self.registry.keys().bgp_peers();
        match self.registry.store().list(&prefix).await {
            Ok(listing) => {
                for kv in listing.kvs {
                    rt.on_put(&kv.key, &kv.value);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot list external BGP peers; will follow the store watch")
            }
        }
        self.runtime.bgp = Some(rt);
        Ok(())
    }
}
