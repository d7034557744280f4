//! Who is where: the tunnel's forwarding table, computed by the agent from the leases
//! and swapped in whole (readers never lock; a batch uses one consistent table).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The peers and this node's place among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The cluster network the TUN carries.
    pub network: Ipv4Net,
    /// This node's subnet: packets arriving through the tunnel must be for it.
    pub local: Ipv4Net,
    /// This node's public IP (source of outer IP-in-IP headers).
    pub public_ip: Ipv4Addr,
    /// Peer subnet (all of one length) -> the peer's public IP.
    peers: HashMap<u32, Ipv4Addr>,
    prefix_len: u8,
    /// Every node's public IP, sorted: encapsulated packets are accepted only from these.
    members: Vec<Ipv4Addr>,
}

impl Table {
    pub fn new(network: Ipv4Net, local: Ipv4Net, public_ip: Ipv4Addr) -> Self {
        Table {
            network,
            local,
            public_ip,
            peers: HashMap::new(),
            prefix_len: local.prefix_len(),
            members: vec![public_ip],
        }
    }

    /// Adds a peer node: its subnet (same length as ours) and public IP.
    pub fn add_peer(&mut self, subnet: Ipv4Net, public_ip: Ipv4Addr) {
        if subnet.prefix_len() == self.prefix_len && subnet != self.local {
            self.peers.insert(u32::from(subnet.network()), public_ip);
        }
        if let Err(at) = self.members.binary_search(&public_ip) {
            self.members.insert(at, public_ip);
        }
    }

    /// The public IP of the node holding `dst`, if any node does.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let mask = u32::MAX
            .checked_shl(32 - self.prefix_len as u32)
            .unwrap_or(0);
        self.peers.get(&(u32::from(dst) & mask)).copied()
    }

    /// Where ICMP errors come from: the cluster network's own address, as if from a
    /// router inside the tunnel. Not one of this host's addresses (the kernel drops a
    /// packet arriving with a local source as a martian) and routed back through the TUN
    /// (so reverse-path filtering accepts it); no node holds it (`SubnetMin` is the
    /// network's second subnet).
    pub fn icmp_source(&self) -> Ipv4Addr {
        self.network.network()
    }

    pub fn is_member(&self, ip: Ipv4Addr) -> bool {
        self.members.binary_search(&ip).is_ok()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_subnet_and_membership() {
        let mut t = Table::new(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.1.0/24".parse().unwrap(),
            "192.168.77.1".parse().unwrap(),
        );
        t.add_peer(
            "10.244.2.0/24".parse().unwrap(),
            "192.168.77.2".parse().unwrap(),
        );
        t.add_peer(
            "10.244.1.0/24".parse().unwrap(),
            "192.168.77.1".parse().unwrap(),
        );
        assert_eq!(
            t.lookup("10.244.2.77".parse().unwrap()),
            Some("192.168.77.2".parse().unwrap())
        );
        assert_eq!(t.lookup("10.244.1.5".parse().unwrap()), None);
        assert_eq!(t.lookup("10.244.9.5".parse().unwrap()), None);
        assert!(t.is_member("192.168.77.2".parse().unwrap()));
        assert!(t.is_member("192.168.77.1".parse().unwrap()));
        assert!(!t.is_member("192.168.77.9".parse().unwrap()));
        assert_eq!(t.peer_count(), 1);
    }
}
