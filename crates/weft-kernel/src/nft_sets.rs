//! nftables tables whose rules stay while their named sets and maps change: loaded
//! whole when their structure changes (one transaction, fingerprint in a comment),
//! and otherwise changed element by element, so adding an address to a set never
//! reloads a rule.
//!
//! Elements are nft text: an address (`10.248.0.5`), a quoted interface
//! (`"weft0123456789a"`), or a map entry (`KEY : jump CHAIN`). What the kernel has is
//! read back (`nft -j list table`) in the same form, so the agent compares like with
//! like at start and resync.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::nft::{run, NftError};

/// The elements of each named set and map of a table, by name.
pub type Elements = BTreeMap<String, BTreeSet<String>>;

/// A table to load: the script that deletes and recreates it with its sets empty, the
/// fingerprint the first rule of its `forward` chain carries as its comment (nft's
/// JSON listing shows rule comments, not table comments), and the elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTable {
    pub name: String,
    pub structure: String,
    pub fingerprint: String,
    pub elements: Elements,
}

/// What a loaded table has: its fingerprint, its elements and its rules' counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedSets {
    pub fingerprint: String,
    pub elements: Elements,
    /// Each rule with a counter and a comment (none in a table to load).
    pub counters: Vec<RuleCounter>,
}

/// A rule's counter, with the rule's chain, comment and verdict (`drop`, `accept`,
/// `return`, `jump`, `goto`, or `""` for none, as a `log` rule has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    pub chain: String,
    pub comment: String,
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

/// What to add and what to remove to go from `old` to `new` (sets and maps with no
/// change are left out).
pub fn changes(old: &Elements, new: &Elements) -> (Elements, Elements) {
    let only = |a: &Elements, b: &Elements| -> Elements {
        a.iter()
            .map(|(name, elems)| {
                let other = b.get(name);
                let only: BTreeSet<String> = elems
                    .iter()
                    .filter(|e| other.is_none_or(|o| !o.contains(*e)))
                    .cloned()
                    .collect();
                (name.clone(), only)
            })
            .filter(|(_, e)| !e.is_empty())
            .collect()
    };
    (only(new, old), only(old, new))
}

/// `add element ip TABLE SET { … }`, or `delete` with the keys alone, for each set or
/// map with elements.
pub fn statements(table: &str, verb: &str, elements: &Elements) -> String {
    let mut s = String::new();
    for (name, elems) in elements.iter().filter(|(_, e)| !e.is_empty()) {
        let items: Vec<&str> = elems
            .iter()
            .map(|e| match verb {
                "delete" => e.split_once(" : ").map_or(e.as_str(), |(k, _)| k),
                _ => e.as_str(),
            })
            .collect();
        s += &format!(
            "{verb} element ip {table} {name} {{ {} }}\n",
            items.join(", ")
        );
    }
    s
}

/// Loads the whole table (structure, then elements) in one transaction.
pub fn load(t: &SetTable) -> Result<(), NftError> {
    let script = t.structure.clone() + &statements(&t.name, "add", &t.elements);
    script_run(&script)
}

/// Up to this many elements change over netlink ([`crate::nft_netlink`]); more go
/// through `nft -f`, whose cache fill is then small beside the change.
const NETLINK_MOST: usize = 1000;

/// Removes `remove` and adds `add` in one transaction.
pub fn update(table: &str, add: &Elements, remove: &Elements) -> Result<(), NftError> {
    let count = |e: &Elements| e.values().map(BTreeSet::len).sum::<usize>();
    if count(add) + count(remove) <= NETLINK_MOST {
        match crate::nft_netlink::update(table, add, remove) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                return Err(crate::nft_netlink::refused(
                    "the kernel refused the element changes",
                    e,
                ))
            }
        }
    }
    let script = statements(table, "delete", remove) + &statements(table, "add", add);
    if script.is_empty() {
        return Ok(());
    }
    script_run(&script)
}

fn script_run(script: &str) -> Result<(), NftError> {
    let (ok, _, stderr) = run("nft", &["-f", "-"], Some(script))?;
    if !ok {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(())
}

/// The loaded table's fingerprint and elements; `None` if there is no such table.
pub fn read(table: &str) -> Result<Option<LoadedSets>, NftError> {
    let (ok, out, stderr) = run("nft", &["-j", "list", "table", "ip", table], None)?;
    if !ok {
        if stderr.contains("No such file") {
            return Ok(None);
        }
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    let json: Value = serde_json::from_str(&out).map_err(|e| NftError::Refused {
        cmd: "nft",
        stderr: format!("unreadable JSON listing: {e}"),
    })?;
    Ok(Some(parse_listing(&json)))
}

/// A rule's counter, if it has one and a comment.
fn rule_counter(rule: &Value) -> Option<RuleCounter> {
    let comment = rule["comment"].as_str()?;
    let exprs = rule["expr"].as_array()?;
    let counter = exprs.iter().find_map(|e| e.get("counter"))?;
    let verdict = exprs
        .iter()
        .filter_map(|e| e.as_object()?.keys().next().cloned())
        .find(|k| matches!(k.as_str(), "drop" | "accept" | "return" | "jump" | "goto"))
        .unwrap_or_default();
    Some(RuleCounter {
        chain: rule["chain"].as_str().unwrap_or_default().to_owned(),
        comment: comment.to_owned(),
        verdict,
        packets: counter["packets"].as_u64().unwrap_or(0),
        bytes: counter["bytes"].as_u64().unwrap_or(0),
    })
}

/// The fingerprint, elements and counters in `nft -j list table`'s output.
fn parse_listing(json: &Value) -> LoadedSets {
    let mut loaded = LoadedSets::default();
    let items = json["nftables"].as_array().cloned().unwrap_or_default();
    for item in &items {
        if let Some(rule) = item.get("rule") {
            if rule["chain"] == "forward" && loaded.fingerprint.is_empty() {
                if let Some(c) = rule["comment"].as_str() {
                    loaded.fingerprint = c.to_owned();
                }
            }
            loaded.counters.extend(rule_counter(rule));
            continue;
        }
        let Some(set) = item.get("set").or_else(|| item.get("map")) else {
            continue;
        };
        let Some(name) = set["name"].as_str() else {
            continue;
        };
        let quoted = set["type"] == "ifname";
        let key = |v: &Value| -> String {
            let k = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            if quoted {
                format!("\"{k}\"")
            } else {
                k
            }
        };
        let elems = set["elem"]
            .as_array()
            .map(|elems| {
                elems
                    .iter()
                    .map(|e| match e.as_array() {
                        // A map entry: [key, {"jump": {"target": chain}}].
                        Some(kv) if kv.len() == 2 => {
                            let verdict = kv[1]
                                .as_object()
                                .and_then(|o| o.iter().next())
                                .map(|(v, t)| {
                                    format!("{v} {}", t["target"].as_str().unwrap_or_default())
                                })
                                .unwrap_or_default();
                            format!("{} : {verdict}", key(&kv[0]))
                        }
                        _ => key(e),
                    })
                    .collect()
            })
            .unwrap_or_default();
        loaded.elements.insert(name.to_owned(), elems);
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn els(pairs: &[(&str, &[&str])]) -> Elements {
        pairs
            .iter()
            .map(|(n, e)| (n.to_string(), e.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn changes_are_the_differences_and_deletes_name_keys_alone() {
        let old = els(&[("s", &["10.0.0.1", "10.0.0.2"]), ("m", &["\"a\" : jump x"])]);
        let new = els(&[("s", &["10.0.0.2", "10.0.0.3"]), ("m", &["\"a\" : jump y"])]);
        let (add, remove) = changes(&old, &new);
        assert_eq!(
            add,
            els(&[("m", &["\"a\" : jump y"]), ("s", &["10.0.0.3"])])
        );
        assert_eq!(
            remove,
            els(&[("m", &["\"a\" : jump x"]), ("s", &["10.0.0.1"])])
        );
        assert_eq!(
            statements("t", "delete", &remove),
            "delete element ip t m { \"a\" }\ndelete element ip t s { 10.0.0.1 }\n"
        );
        assert!(changes(&new, &new).0.is_empty() && changes(&new, &new).1.is_empty());
    }

    #[test]
    fn a_json_listing_reads_back_as_the_elements_written() {
        let json: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"t"}},
            {"set":{"name":"s_1","type":"ipv4_addr","elem":["10.0.0.1","10.0.0.2"]}},
            {"set":{"name":"s_2","type":"ipv4_addr"}},
            {"map":{"name":"to_endpoint","type":"ifname","map":"verdict","elem":[["weft1",{"jump":{"target":"in_ns_x"}}]]}},
            {"map":{"name":"to_address","type":"ipv4_addr","map":"verdict","elem":[["10.0.0.9",{"goto":{"target":"in_default"}}]]}},
            {"chain":{"name":"forward"}},
            {"rule":{"chain":"forward","comment":"weftpol 00ff","expr":[]}},
            {"rule":{"chain":"forward","comment":"other","expr":[]}},
            {"rule":{"chain":"in_ns_x_np","comment":"isolated by x/a","expr":[{"match":{}},{"counter":{"packets":3,"bytes":180}},{"drop":null}]}}]}"#,
        )
        .unwrap();
        let l = parse_listing(&json);
        assert_eq!(l.fingerprint, "weftpol 00ff");
        assert_eq!(
            l.counters,
            [RuleCounter {
                chain: "in_ns_x_np".into(),
                comment: "isolated by x/a".into(),
                verdict: "drop".into(),
                packets: 3,
                bytes: 180
            }]
        );
        assert_eq!(
            l.elements,
            els(&[
                ("s_1", &["10.0.0.1", "10.0.0.2"]),
                ("s_2", &[]),
                ("to_endpoint", &["\"weft1\" : jump in_ns_x"]),
                ("to_address", &["10.0.0.9 : goto in_default"]),
            ])
        );
    }
}
