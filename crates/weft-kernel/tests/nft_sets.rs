//! Set tables against the real kernel, in a namespace of the test's own: a table loaded
//! whole reads back as written; element changes over netlink (addresses, interface and
//! address verdict maps) land in one transaction, and one the kernel refuses changes
//! nothing; a big change goes through `nft`. Needs root; skipped with one line otherwise.

use std::collections::BTreeSet;

use weft_kernel::nft_sets::{self, Elements, SetTable};
use weft_testkit::netns::in_netns;
use weft_testkit::require_root;

fn els(pairs: &[(&str, &[&str])]) -> Elements {
    pairs
        .iter()
        .map(|(n, e)| (n.to_string(), e.iter().map(|s| s.to_string()).collect()))
        .collect()
}

const STRUCTURE: &str = "table ip tsets\ndelete table ip tsets\ntable ip tsets {\n  comment \"tsets f1\"\n  set s_a {\n    type ipv4_addr\n  }\n  map to_if {\n    type ifname : verdict\n  }\n  map to_ip {\n    type ipv4_addr : verdict\n  }\n  chain c1 {\n    counter accept comment \"c1\"\n  }\n  chain c2 {\n    counter drop comment \"c2\"\n  }\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n    ct state established accept comment \"tsets f1\"\n    ip saddr @s_a oifname vmap @to_if\n    ip daddr vmap @to_ip\n  }\n}\n";

#[test]
fn elements_change_in_place_and_a_refused_change_changes_nothing() {
    require_root!("elements_change_in_place_and_a_refused_change_changes_nothing");
    in_netns("nsets", |_| async move {
        let first = els(&[
            ("s_a", &["10.0.0.1"]),
            ("to_if", &["\"weft1\" : jump c1"]),
            ("to_ip", &[]),
        ]);
        nft_sets::load(&SetTable {
            name: "tsets".into(),
            structure: STRUCTURE.into(),
            fingerprint: "tsets f1".into(),
            elements: first.clone(),
        })
        .unwrap();
        let read = nft_sets::read("tsets").unwrap().expect("loaded");
        assert_eq!(read.fingerprint, "tsets f1");
        assert_eq!(read.elements, first);
        assert!(read
            .counters
            .iter()
            .any(|c| c.comment == "c2" && c.verdict == "drop"));

        // Over netlink: add and remove, a map entry's verdict changed.
        let second = els(&[
            ("s_a", &["10.0.0.2", "10.0.0.3"]),
            ("to_if", &["\"weft1\" : jump c2", "\"weft2\" : jump c1"]),
            ("to_ip", &["10.1.0.1 : goto c2"]),
        ]);
        let (add, remove) = nft_sets::changes(&first, &second);
        nft_sets::update("tsets", &add, &remove).unwrap();
        assert_eq!(nft_sets::read("tsets").unwrap().unwrap().elements, second);

        // Removing what is not there: refused, and the additions with it.
        let bad_remove = els(&[("s_a", &["10.9.9.9"])]);
        let more = els(&[("s_a", &["10.0.0.4"])]);
        let e = nft_sets::update("tsets", &more, &bad_remove).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(nft_sets::read("tsets").unwrap().unwrap().elements, second);

        // A big change goes through nft -f, in one transaction too.
        let many: BTreeSet<String> = (0..1500)
            .map(|i| format!("10.2.{}.{}", i / 250, i % 250 + 1))
            .collect();
        let big: Elements = [("s_a".to_string(), many.clone())].into();
        nft_sets::update("tsets", &big, &Elements::new()).unwrap();
        let now = nft_sets::read("tsets").unwrap().unwrap().elements;
        assert_eq!(now["s_a"].len(), 1502);
        assert!(nft_sets::read("absent").unwrap().is_none());
        // The rules' counters over netlink (what /metrics reads) equal nft's listing.
        let mut counters = weft_kernel::nft_netlink::rule_counters("tsets").unwrap();
        let mut listed = nft_sets::read("tsets").unwrap().unwrap().counters;
        let key = |c: &nft_sets::RuleCounter| (c.chain.clone(), c.comment.clone());
        counters.sort_by_key(key);
        listed.sort_by_key(key);
        assert!(!counters.is_empty());
        assert_eq!(counters, listed);
        assert!(counters
            .iter()
            .any(|c| c.comment == "c2" && c.verdict == "drop"));
        assert!(weft_kernel::nft_netlink::rule_counters("absent")
            .unwrap()
            .is_empty());
        // The table's comment, read alone (what a resync checks).
        assert_eq!(
            weft_kernel::nft_netlink::table_comment("tsets")
                .unwrap()
                .as_deref(),
            Some("tsets f1")
        );
        assert_eq!(
            weft_kernel::nft_netlink::table_comment("absent").unwrap(),
            None
        );
    });
}
