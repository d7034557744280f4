//! Who may see which name: a container resolves the names of the containers on the
//! networks it is on (all of them, as Docker's own embedded DNS does), and no other.
//! A name that exists only on networks the querier is not on is answered NXDOMAIN, not
//! forwarded, so nothing about another network leaks out or waits on an upstream.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use weft_model::named::Endpoint;

/// One container's address on one network, and the names it goes by there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    network: String,
    ip: Ipv4Addr,
    container: String,
    /// Lower case: DNS names compare without regard to case (RFC 4343).
    names: Vec<String>,
}

/// Every endpoint of every named network, as the store has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    entries: Vec<Entry>,
}

/// What a name is to a querier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A container on one of the querier's networks: its addresses, sorted.
    Found(Vec<Ipv4Addr>),
    /// A container's name, but only on networks the querier is not on: NXDOMAIN.
    Hidden,
    /// Not a container's name: for the host's resolvers.
    Unknown,
}

impl Directory {
    /// From the store's endpoint records: (network, address, endpoint).
    pub fn new<'a>(endpoints: impl IntoIterator<Item = (&'a str, Ipv4Addr, &'a Endpoint)>) -> Self {
        let entries = endpoints
            .into_iter()
            .map(|(network, ip, e)| Entry {
                network: network.to_owned(),
                ip,
                container: e.container.clone(),
                names: e.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            })
            .collect();
        Directory { entries }
    }

    /// The networks the container at `from` is on: the network of that address, and
    /// of every other endpoint of the same container. None for an address that is no
    /// container's (the host itself, another machine).
    pub fn networks_of(&self, from: IpAddr) -> BTreeSet<&str> {
        let IpAddr::V4(from) = from else {
            return BTreeSet::new();
        };
        let mut nets = BTreeSet::new();
        for e in self.entries.iter().filter(|e| e.ip == from) {
            nets.insert(e.network.as_str());
            if e.container.is_empty() {
                continue;
            }
            for other in self.entries.iter().filter(|o| o.container == e.container) {
                nets.insert(other.network.as_str());
            }
        }
        nets
    }

    /// `name` (as asked: any case, with or without the final dot) as the container at
    /// `from` may see it. A container answers to each of its names, and to each name
    /// followed by its network's name (`web.blue`), as in Docker.
    pub fn lookup(&self, name: &str, from: IpAddr) -> Lookup {
        self.lookup_in(name, &self.networks_of(from))
    }

    /// [`Directory::lookup`] for a querier whose networks are known already.
    pub fn lookup_in(&self, name: &str, visible: &BTreeSet<&str>) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Lookup::Unknown;
        }
        let answers = |e: &Entry| {
            e.names.iter().any(|n| {
                *n == name
                    || name
                        .strip_prefix(n.as_str())
                        .and_then(|rest| rest.strip_prefix('.'))
                        .is_some_and(|net| net.eq_ignore_ascii_case(&e.network))
            })
        };
        let mut found: Vec<Ipv4Addr> = self
            .entries
            .iter()
            .filter(|e| visible.contains(e.network.as_str()) && answers(e))
            .map(|e| e.ip)
            .collect();
        found.sort();
        found.dedup();
        if !found.is_empty() {
            Lookup::Found(found)
        } else if self.entries.iter().any(answers) {
            Lookup::Hidden
        } else {
            Lookup::Unknown
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(container: &str, names: &[&str]) -> Endpoint {
        Endpoint {
            node: "192.168.77.1".parse().unwrap(),
            endpoint_id: format!("ep-{container}"),
            mac: None,
            host_iface: String::new(),
            ports: Vec::new(),
            container: container.to_owned(),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// blue: a1 (alias web), a2; red: r1; b1 is on blue and red.
    fn directory() -> Directory {
        let eps = [
            ("blue", ip("10.1.0.2"), ep("c-a1", &["a1", "web"])),
            ("blue", ip("10.1.0.3"), ep("c-a2", &["a2", "Web"])),
            ("red", ip("10.2.0.2"), ep("c-r1", &["r1"])),
            ("blue", ip("10.1.0.4"), ep("c-b1", &["b1"])),
            ("red", ip("10.2.0.4"), ep("c-b1", &["b1"])),
            // Address held, container not known yet.
            ("red", ip("10.2.0.9"), ep("", &[])),
        ];
        Directory::new(eps.iter().map(|(n, i, e)| (*n, *i, e)))
    }

    #[test]
    fn names_and_aliases_on_the_querier_s_network() {
        let d = directory();
        let from = IpAddr::V4(ip("10.1.0.3"));
        assert_eq!(d.lookup("a1", from), Lookup::Found(vec![ip("10.1.0.2")]));
        assert_eq!(d.lookup("A1.", from), Lookup::Found(vec![ip("10.1.0.2")]));
        // An alias two containers share answers with both (Compose's scaled services).
        assert_eq!(
            d.lookup("web", from),
            Lookup::Found(vec![ip("10.1.0.2"), ip("10.1.0.3")])
        );
        assert_eq!(
            d.lookup("a1.blue", from),
            Lookup::Found(vec![ip("10.1.0.2")])
        );
        assert_eq!(d.lookup("a1.red", from), Lookup::Unknown);
    }

    #[test]
    fn other_networks_names_are_hidden_and_the_rest_unknown() {
        let d = directory();
        let from = IpAddr::V4(ip("10.1.0.2"));
        assert_eq!(d.lookup("r1", from), Lookup::Hidden);
        assert_eq!(d.lookup("example.org", from), Lookup::Unknown);
        assert_eq!(d.lookup("", from), Lookup::Unknown);
        // Not a container (the host, another machine): sees no container's name.
        let host = IpAddr::V4(ip("192.168.77.1"));
        assert_eq!(d.lookup("a1", host), Lookup::Hidden);
        assert_eq!(d.lookup("a1", "::1".parse().unwrap()), Lookup::Hidden);
    }

    #[test]
    fn a_container_on_two_networks_sees_both_from_either_address() {
        let d = directory();
        for from in ["10.1.0.4", "10.2.0.4"] {
            let from = IpAddr::V4(ip(from));
            assert_eq!(d.networks_of(from), BTreeSet::from(["blue", "red"]));
            assert_eq!(d.lookup("r1", from), Lookup::Found(vec![ip("10.2.0.2")]));
            assert_eq!(d.lookup("a2", from), Lookup::Found(vec![ip("10.1.0.3")]));
        }
        // An endpoint whose container is not known yet sees its own network only.
        let d2 = d.networks_of(IpAddr::V4(ip("10.2.0.9")));
        assert_eq!(d2, BTreeSet::from(["red"]));
    }
}
