//! Set tables against the real kernel, in a namespace of the test's own: a table loaded
//! whole reads back as written; element changes over netlink (addresses and interface
//! names) land in one transaction, and one the kernel refuses changes nothing; a big
//! change goes through `nft`. Needs root; skipped with one line otherwise.

use std::collections::BTreeSet;

use weft_kernel::nft_sets::{self, Element, Elements, Family, SetTable, TableId};
use weft_plan::nft::{AddrMatch, Chain, Hook, IfaceSide, Match, Rule, Set, SetKey, Table, Verdict};
use weft_testkit::netns::in_netns;
use weft_testkit::require_root;

fn els(pairs: &[(&str, &[&str])]) -> Elements {
    pairs
        .iter()
        .map(|(n, e)| {
            (
                n.to_string(),
                e.iter().map(|s| s.parse().unwrap()).collect(),
            )
        })
        .collect()
}

fn ts() -> TableId {
    TableId::new(Family::Ip, "tsets")
}

fn absent() -> TableId {
    TableId::new(Family::Ip, "absent")
}

/// Two sets, two counted chains, a forward chain that jumps by both.
fn structure() -> Table {
    let mut t = Table::new("tsets");
    t.comment = "tsets f1".into();
    t.sets = vec![
        Set {
            name: "s_a".into(),
            key: SetKey::Ipv4Addr,
        },
        Set {
            name: "to_if".into(),
            key: SetKey::Ifname,
        },
    ];
    for (name, verdict) in [("c1", Verdict::Accept), ("c2", Verdict::Drop)] {
        let mut c = Chain::regular(name);
        c.push(Rule::new(vec![], verdict).counted().comment(name));
        t.chains.push(c);
    }
    let mut fwd = Chain::base("forward", Hook::Forward { offset: 0 });
    fwd.push(Rule::new(vec![Match::EstablishedOrRelated], Verdict::Accept).comment("tsets f1"));
    fwd.push(Rule::new(
        vec![
            Match::saddr(AddrMatch::Set("s_a".into())),
            Match::Iface {
                side: IfaceSide::Out,
                set: "to_if".into(),
            },
        ],
        Verdict::Jump("c1".into()),
    ));
    t.chains.push(fwd);
    t
}

#[test]
fn elements_change_in_place_and_a_refused_change_changes_nothing() {
    require_root!("elements_change_in_place_and_a_refused_change_changes_nothing");
    in_netns("nsets", |_| async move {
        let first = els(&[("s_a", &["10.0.0.1"]), ("to_if", &["\"weft1\""])]);
        nft_sets::load(&SetTable {
            table: structure(),
            elements: first.clone(),
        })
        .unwrap();
        let read = nft_sets::read(&ts()).unwrap().expect("loaded");
        assert_eq!(read.fingerprint, "tsets f1");
        assert_eq!(read.elements, first);
        assert!(read
            .counters
            .iter()
            .any(|c| c.comment == "c2" && c.verdict == "drop"));

        // Over netlink: add and remove, addresses and interface names.
        let second = els(&[
            ("s_a", &["10.0.0.2", "10.0.0.3"]),
            ("to_if", &["\"weft2\"", "\"weft3\""]),
        ]);
        let (add, remove) = nft_sets::changes(&first, &second);
        nft_sets::update(&ts(), &add, &remove).unwrap();
        assert_eq!(nft_sets::read(&ts()).unwrap().unwrap().elements, second);

        // Removing what is not there: refused, and the additions with it.
        let bad_remove = els(&[("s_a", &["10.9.9.9"])]);
        let more = els(&[("s_a", &["10.0.0.4"])]);
        let e = nft_sets::update(&ts(), &more, &bad_remove).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(nft_sets::read(&ts()).unwrap().unwrap().elements, second);

        // A big change goes through nft -f, in one transaction too.
        let many: BTreeSet<Element> = (0..1500)
            .map(|i| format!("10.2.{}.{}", i / 250, i % 250 + 1).parse().unwrap())
            .collect();
        let big: Elements = [("s_a".to_string(), many.clone())].into();
        nft_sets::update(&ts(), &big, &Elements::new()).unwrap();
        let now = nft_sets::read(&ts()).unwrap().unwrap().elements;
        assert_eq!(now["s_a"].len(), 1502);
        assert!(nft_sets::read(&absent()).unwrap().is_none());
        // The rules' counters over netlink (what /metrics reads) equal nft's listing.
        let mut counters = weft_kernel::nft_netlink::rule_counters(&ts()).unwrap();
        let mut listed = nft_sets::read(&ts()).unwrap().unwrap().counters;
        let key = |c: &nft_sets::RuleCounter| (c.chain.clone(), c.comment.clone());
        counters.sort_by_key(key);
        listed.sort_by_key(key);
        assert!(!counters.is_empty());
        assert_eq!(counters, listed);
        assert!(counters
            .iter()
            .any(|c| c.comment == "c2" && c.verdict == "drop"));
        assert!(weft_kernel::nft_netlink::rule_counters(&absent())
            .unwrap()
            .is_empty());
        // The table's comment, read alone (what a resync checks).
        assert_eq!(
            weft_kernel::nft_netlink::table_comment(&ts())
                .unwrap()
                .as_deref(),
            Some("tsets f1")
        );
        assert_eq!(
            weft_kernel::nft_netlink::table_comment(&absent()).unwrap(),
            None
        );
        // The structure reads back as loaded.
        assert_eq!(
            weft_kernel::nft_read::table(&ts()).unwrap(),
            Some(structure())
        );
    });
}
