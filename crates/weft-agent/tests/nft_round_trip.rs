//! The typed nftables model against the real kernel: Weft's two tables, built as values
//! (the firewall from a plan with every kind of rule, the policy table from policies
//! that use every match), are loaded into a namespace of the test's own and read back
//! from the kernel's own listing; what the kernel kept equals what was meant, value for
//! value. A renderer that wrote something the kernel reads differently (a bare address
//! for a set, a dropped match, a wrong priority) fails here. Needs root.

use weft_kernel::nft_sets::{self, Elements, Family, SetTable};
use weft_plan::firewall::{self, EncapFilter, FirewallPlan, IsolatedNet, PoolRule, Published};
use weft_plan::nft::Table;
use weft_testkit::netns::in_netns;
use weft_testkit::require_root;

fn firewall_plan() -> FirewallPlan {
    let net = |s: &str| s.parse().unwrap();
    FirewallPlan {
        network: net("10.244.0.0/16"),
        local_subnet: net("10.244.3.0/24"),
        ip_masq: true,
        encap: Some(EncapFilter {
            port: 8472,
            members: vec![
                "192.168.1.1".parse().unwrap(),
                "192.168.1.2".parse().unwrap(),
            ],
        }),
        isolated: vec![
            IsolatedNet {
                subnet: net("10.50.0.0/24"),
                internal: false,
                masquerade: true,
            },
            IsolatedNet {
                subnet: net("10.52.0.0/24"),
                internal: true,
                masquerade: false,
            },
        ],
        pools: vec![
            PoolRule {
                cidr: net("10.248.0.0/16"),
                nat_outgoing: true,
            },
            PoolRule {
                cidr: net("10.249.0.0/24"),
                nat_outgoing: false,
            },
        ],
        published: vec![
            Published {
                proto: weft_plan::nft::Proto::Tcp,
                host_ip: None,
                host_port: 8080,
                to: "10.50.0.2".parse().unwrap(),
                port: 80,
                subnet: net("10.50.0.0/24"),
            },
            Published {
                proto: weft_plan::nft::Proto::Udp,
                host_ip: Some("192.168.1.1".parse().unwrap()),
                host_port: 5353,
                to: "10.50.0.3".parse().unwrap(),
                port: 53,
                subnet: net("10.50.0.0/24"),
            },
        ],
        ipv6: None,
    }
}

const POLICIES: &str = r#"
apiVersion: weft.dev/v1
kind: ClusterPolicy
metadata: {name: first}
spec:
  order: 10
  selector: {matchLabels: {tier: web}}
  ingress:
  - action: Log
  - action: Deny
    protocol: ICMP
    icmpType: 8
  - action: Allow
    protocol: TCP
    source: {nets: [10.9.0.0/16, 10.8.0.5/32], namespaceSelector: {matchLabels: {team: a}}}
    destination: {ports: ["80", "8000:8080"]}
  - action: Deny
    protocol: UDP
    destination: {ports: ["53"]}
  - action: Pass
  egress:
  - action: Deny
    protocol: SCTP
    destination: {nets: [169.254.169.254/32]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.3.0.0/16, 10.4.0.0/16]}
    - ipBlock: {cidr: 172.16.0.0/12, except: [172.16.1.0/24]}
    - podSelector: {matchLabels: {app: client}}
      namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [a, b]}]}
    ports:
    - {protocol: TCP, port: 80, endPort: 90}
    - {protocol: UDP, port: 53}
    - {protocol: SCTP}
  egress:
  - to: [{podSelector: {}}]
  - ports: [{port: 443}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: y}
spec: {podSelector: {}}
"#;

fn assert_reads_back(meant: &Table) {
    let read = weft_kernel::nft_read::table(&meant.id())
        .unwrap()
        .expect("the table is loaded");
    let meant = meant.as_loaded();
    for (m, r) in meant.chains.iter().zip(&read.chains) {
        for (mr, rr) in m.rules.iter().zip(&r.rules) {
            assert_eq!(mr, rr, "chain {}: meant\n  {mr}\nread\n  {rr}", m.name);
        }
    }
    assert_eq!(read, meant);
}

#[test]
fn weft_tables_read_back_from_the_kernel_as_built() {
    require_root!("weft_tables_read_back_from_the_kernel_as_built");
    in_netns("nftrt", |_| async move {
        let fw = firewall::table(&firewall_plan());
        assert!(weft_kernel::nft::load_table(&fw).unwrap(), "loaded");
        assert_reads_back(&fw);
        assert!(
            !weft_kernel::nft::load_table(&fw).unwrap(),
            "the same table is not loaded again"
        );

        let policies = weft_policy::parse_documents(POLICIES).unwrap();
        let compiled = weft_policy::render::compile(&policies);
        nft_sets::load(&SetTable {
            table: compiled.table.clone(),
            elements: Elements::new(),
        })
        .unwrap();
        assert_reads_back(&compiled.table);
        // The rule ids are the agent's: every rule a user wrote has one.
        assert!(compiled.table.rule_ids().len() >= 8);
    });
}

/// The same policies plus IPv6 blocks, as the IPv6 twin of the policy table: it loads
/// beside the IPv4 one and reads back from the kernel as built (`ip6 saddr`, IPv6
/// prefixes and their exceptions, `ipv6_addr` sets). The IPv4-only rules (ICMP, IPv4
/// nets) are not in it, the IPv6 ones are not in the IPv4 table, and a set element of
/// each family goes in over netlink.
#[test]
fn the_ipv6_policy_table_reads_back_as_built() {
    require_root!("the_ipv6_policy_table_reads_back_as_built");
    in_netns("nftrt6", |_| async move {
        let v6 = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: six, namespace: x}
spec:
  podSelector: {matchLabels: {app: six}}
  ingress:
  - from:
    - ipBlock: {cidr: "fd00:10:244::/56", except: ["fd00:10:244:7::/64"]}
    - ipBlock: {cidr: "10.0.0.0/8"}
---
apiVersion: weft.dev/v1
kind: ClusterPolicy
metadata: {name: six-nets}
spec:
  egress:
  - action: Deny
    protocol: TCP
    destination: {nets: ["2001:db8::/32", "fd00:ec2::254/128"], ports: ["80"]}
  - action: Deny
    protocol: ICMPv6
    icmpType: 128
  - action: Deny
    protocol: ICMPv6
"#;
        let policies = weft_policy::parse_documents(&format!("{POLICIES}{v6}")).unwrap();
        let mut tables = Vec::new();
        for family in [Family::Ip, Family::Ip6] {
            let compiled = weft_policy::render::compile_in(&policies, family);
            nft_sets::load(&SetTable {
                table: compiled.table.clone(),
                elements: Elements::new(),
            })
            .unwrap();
            assert_reads_back(&compiled.table);
            tables.push(compiled.table);
        }
        let text = |t: &weft_plan::nft::Table| t.script();
        let (t4, t6) = (text(&tables[0]), text(&tables[1]));
        assert!(
            t6.contains("ip6 saddr fd00:10:244::/56 ip6 saddr != fd00:10:244:7::/64"),
            "{t6}"
        );
        assert!(
            t6.contains("ip6 daddr { 2001:db8::/32, fd00:ec2::254 }"),
            "{t6}"
        );
        assert!(
            !t6.contains("icmp type") && !t6.contains("10.0.0.0/8"),
            "{t6}"
        );
        assert!(
            t6.contains("icmpv6 type 128 counter drop")
                && t6.contains("meta l4proto ipv6-icmp counter drop"),
            "{t6}"
        );
        assert!(!t4.contains("fd00") && t4.contains("10.0.0.0/8"), "{t4}");
        assert!(!t4.contains("icmpv6") && !t4.contains("ipv6-icmp"), "{t4}");
        let id6 = weft_policy::render::table_id(Family::Ip6);
        let one = |set: &str, e: &str| -> Elements {
            [(set.to_owned(), [e.parse().unwrap()].into())].into()
        };
        weft_kernel::nft_netlink::update(
            &id6,
            &one("held_ip", "fd00:10:244:3::5"),
            &Elements::new(),
        )
        .unwrap();
        let read = nft_sets::read(&id6).unwrap().unwrap();
        assert_eq!(
            read.elements["held_ip"],
            one("held_ip", "fd00:10:244:3::5")["held_ip"]
        );
        let v4_in_v6 =
            weft_kernel::nft_netlink::update(&id6, &one("held_ip", "10.0.0.1"), &Elements::new());
        assert!(
            v4_in_v6.is_err(),
            "an IPv4 element is refused by an IPv6 set"
        );
    });
}

/// The IPv6 table of a dual-stack network: loaded beside the IPv4 one (as nft lists it:
/// forwarding accepted and masquerade for the ULA network), not loaded again when
/// nothing changed, and gone when IPv6 is switched off; its member filter drops
/// encapsulated datagrams over IPv6 from non-members.
#[test]
fn the_ipv6_table_comes_and_goes_with_ipv6() {
    require_root!("the_ipv6_table_comes_and_goes_with_ipv6");
    in_netns("nft6", |_| async move {
        let dual = FirewallPlan {
            ipv6: Some(weft_plan::firewall6::Firewall6Plan {
                network: "fd00:10:244::/56".parse().unwrap(),
                masquerade: true,
                encap: Some(weft_plan::firewall6::EncapFilter6 {
                    port: 8472,
                    members: vec!["fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()],
                }),
            }),
            ..firewall_plan()
        };
        assert!(weft_kernel::nft::apply(&dual).unwrap(), "loaded");
        let listed = std::process::Command::new("nft")
            .args(["list", "table", "ip6", "weft"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.contains("ip6 saddr fd00:10:244::/56 accept")
                && listed.contains("ip6 saddr fd00:10:244::/56 ip6 daddr != { fd00:10:244::/56, ff00::/8 } masquerade")
                && listed.contains("udp dport 8472 ip6 saddr != { fd00::1, fd00::2 } counter packets 0 bytes 0 drop comment \"encapsulated traffic from a non-member\""),
            "{listed}"
        );
        assert!(
            !weft_kernel::nft::apply(&dual).unwrap(),
            "nothing to load again"
        );
        assert!(
            weft_kernel::nft::apply(&firewall_plan()).unwrap(),
            "IPv6 table removed"
        );
        let gone = std::process::Command::new("nft")
            .args(["list", "table", "ip6", "weft"])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "no ip6 weft table left");
    });
}
