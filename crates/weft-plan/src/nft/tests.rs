use std::collections::BTreeSet;

use super::*;

fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn rules_read_as_nft_writes_them() {
    let r = Rule::new(
        vec![
            Match::daddr(AddrMatch::Set("s_a".into())),
            Match::not_addr(
                Side::Source,
                AddrMatch::nets([net("10.2.0.5/32"), net("10.1.0.0/16")]),
            ),
            Match::dports(Proto::Tcp, [PortRange::new(90, 95), PortRange::one(80)]),
        ],
        Verdict::Accept,
    )
    .counted()
    .comment("say \"hi\"");
    assert_eq!(
        r.to_string(),
        "ip daddr @s_a ip saddr != { 10.1.0.0/16, 10.2.0.5 } tcp dport { 80, 90-95 } counter accept comment \"say 'hi'\""
    );
    // One network or port is written bare: the kernel lists a one-element set so.
    let one = Rule::new(
        vec![
            Match::saddr(AddrMatch::nets([net("10.3.0.9/16")])),
            Match::dports(Proto::Udp, [PortRange::new(53, 53)]),
            Match::Iface {
                side: IfaceSide::Out,
                set: "held_if".into(),
            },
        ],
        Verdict::Jump("in_x".into()),
    );
    assert_eq!(
        one.to_string(),
        "ip saddr 10.3.0.0/16 udp dport 53 oifname @held_if jump in_x"
    );
    let log = Rule::new(
        vec![Match::IcmpType(8), Match::Protocol(Proto::Number(255))],
        Verdict::Log {
            prefix: "weft a: ".into(),
        },
    );
    assert_eq!(
        log.to_string(),
        "icmp type 8 meta l4proto 255 log prefix \"weft a: \""
    );
}

#[test]
fn a_table_is_replaced_whole_and_its_fingerprint_follows_its_rules() {
    let mut t = Table::new("tx");
    t.sets.push(Set {
        name: "held_if".into(),
        key: SetKey::Ifname,
    });
    let mut fwd = Chain::base("forward", Hook::Forward { offset: -5 });
    fwd.push(Rule::new(
        vec![Match::EstablishedOrRelated],
        Verdict::Accept,
    ));
    t.chains.push(fwd);
    t.comment = format!("tx {}", t.fingerprint());
    let s = t.script();
    assert!(
        s.starts_with("table ip tx\ndelete table ip tx\ntable ip tx {\n  comment \"tx "),
        "{s}"
    );
    assert!(s.contains("  set held_if {\n    type ifname\n  }\n"), "{s}");
    assert!(s.contains("    type filter hook forward priority filter - 5; policy accept;\n    ct state established,related accept\n"), "{s}");
    let before = t.fingerprint();
    t.chains[0].rules[0].verdict = Verdict::Drop;
    assert_ne!(t.fingerprint(), before);
    t.comment = "other".into();
    assert_eq!(t.fingerprint(), t.fingerprint(), "the comment is not in it");
}

#[test]
fn rule_ids_are_found_by_chain_and_comment_and_not_loaded() {
    let id = RuleId {
        kind: "NetworkPolicy".into(),
        object: "x/a".into(),
        rule: "ingress[0]".into(),
    };
    let mut c = Chain::regular("in_ns_x_np");
    c.push(
        Rule::new(vec![], Verdict::Accept)
            .comment("NetworkPolicy x/a ingress[0]")
            .id(id.clone()),
    );
    c.push(Rule::new(vec![], Verdict::Accept).comment("not isolated"));
    let mut t = Table::new("p");
    t.chains.push(c);
    let ids = t.rule_ids();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        ids[&("in_ns_x_np".into(), "NetworkPolicy x/a ingress[0]".into())],
        id
    );
    assert!(t.as_loaded().rule_ids().is_empty());
}

#[test]
fn elements_read_back_and_differ_by_set() {
    let e: Element = "\"weft0123\"".parse().unwrap();
    assert_eq!(e, Element::Iface("weft0123".into()));
    assert_eq!(e.to_string(), "\"weft0123\"");
    assert_eq!(
        "10.0.0.1".parse::<Element>().unwrap().to_string(),
        "10.0.0.1"
    );
    assert!("\"this-name-is-too-long\"".parse::<Element>().is_err());
    assert!("10.0.0".parse::<Element>().is_err());
    let a = |s: &str| Element::Addr(s.parse().unwrap());
    let old: Elements = [(
        "s".to_string(),
        BTreeSet::from([a("10.0.0.1"), a("10.0.0.2")]),
    )]
    .into();
    let new: Elements = [
        (
            "s".to_string(),
            BTreeSet::from([a("10.0.0.2"), a("10.0.0.3")]),
        ),
        ("t".to_string(), BTreeSet::new()),
    ]
    .into();
    let (add, remove) = changes(&old, &new);
    assert_eq!(
        add,
        [("s".to_string(), BTreeSet::from([a("10.0.0.3")]))].into()
    );
    assert_eq!(
        remove,
        [("s".to_string(), BTreeSet::from([a("10.0.0.1")]))].into()
    );
    assert_eq!(count(&new), 2);
}
