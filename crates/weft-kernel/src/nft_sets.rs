//! nftables tables whose rules stay while their named sets change: loaded whole when
//! their structure changes (one transaction, fingerprint in a comment), and otherwise
//! changed element by element, so adding an address to a set never reloads a rule.
//!
//! Tables and elements are [`weft_plan::nft`] values. What the kernel has is read back
//! (`nft -j list table`) into the same values, so the agent compares like with like at
//! start and resync.

use serde_json::Value;
pub use weft_plan::nft::{changes, count, Element, Elements, Family, Table, TableId};

use crate::nft::{run, NftError};

/// A table to load: its structure (sets declared empty) and the sets' elements. Its
/// comment carries the fingerprint, and so does the first rule of its `forward` chain
/// (nft's JSON listing shows rule comments, not table comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTable {
    pub table: Table,
    pub elements: Elements,
}

impl SetTable {
    pub fn name(&self) -> &str {
        &self.table.name
    }

    pub fn id(&self) -> TableId {
        self.table.id()
    }

    pub fn fingerprint(&self) -> &str {
        &self.table.comment
    }
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

/// `add element ip TABLE SET { … }` (or `delete`) for each set with elements.
pub fn statements(table: &TableId, verb: &str, elements: &Elements) -> String {
    let mut s = String::new();
    for (name, elems) in elements.iter().filter(|(_, e)| !e.is_empty()) {
        let items: Vec<String> = elems.iter().map(Element::to_string).collect();
        s += &format!("{verb} element {table} {name} {{ {} }}\n", items.join(", "));
    }
    s
}

/// Loads the whole table (structure, then elements) in one transaction.
pub fn load(t: &SetTable) -> Result<(), NftError> {
    let script = t.table.script() + &statements(&t.id(), "add", &t.elements);
    script_run(&script)
}

/// Up to this many elements change over netlink ([`crate::nft_netlink`]); more go
/// through `nft -f`, whose cache fill is then small beside the change.
const NETLINK_MOST: usize = 1000;

/// Removes `remove` and adds `add` in one transaction.
pub fn update(table: &TableId, add: &Elements, remove: &Elements) -> Result<(), NftError> {
    if count(add) + count(remove) <= NETLINK_MOST {
        return crate::nft_netlink::update(table, add, remove)
            .map_err(|e| crate::nft_netlink::refused("the kernel refused the element changes", e));
    }
    let script = statements(table, "delete", remove) + &statements(table, "add", add);
    if script.is_empty() {
        return Ok(());
    }
    script_run(&script)
}

/// Removes `table` if it is loaded.
pub fn remove(table: &TableId) -> Result<(), NftError> {
    let (family, name) = (table.family.keyword(), table.name.as_str());
    let (ok, _, stderr) = run("nft", &["delete", "table", family, name], None)?;
    if !ok && !stderr.contains("No such file") {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(())
}

fn script_run(script: &str) -> Result<(), NftError> {
    let (ok, _, stderr) = run("nft", &["-f", "-"], Some(script))?;
    if !ok {
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    Ok(())
}

/// `nft -j list table FAMILY TABLE`, parsed; `None` if there is no such table.
pub(crate) fn listing(table: &TableId) -> Result<Option<Value>, NftError> {
    let args = ["-j", "list", "table", table.family.keyword(), &table.name];
    let (ok, out, stderr) = run("nft", &args, None)?;
    if !ok {
        if stderr.contains("No such file") {
            return Ok(None);
        }
        return Err(NftError::Refused { cmd: "nft", stderr });
    }
    serde_json::from_str(&out)
        .map(Some)
        .map_err(|e| NftError::Refused {
            cmd: "nft",
            stderr: format!("unreadable JSON listing: {e}"),
        })
}

/// The loaded table's fingerprint and elements; `None` if there is no such table.
pub fn read(table: &TableId) -> Result<Option<LoadedSets>, NftError> {
    listing(table)?.map(|json| parse_listing(&json)).transpose()
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

/// The fingerprint, elements and counters in `nft -j list table`'s output. An element
/// that is neither an address nor an interface name is refused: Weft's sets hold no
/// other.
fn parse_listing(json: &Value) -> Result<LoadedSets, NftError> {
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
        let Some(set) = item.get("set") else {
            continue;
        };
        let Some(name) = set["name"].as_str() else {
            continue;
        };
        let ifname = set["type"] == "ifname";
        let elems = set["elem"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let elems = elems
            .iter()
            .map(|v| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                let text = if ifname { format!("\"{text}\"") } else { text };
                text.parse::<Element>().map_err(|e| NftError::Refused {
                    cmd: "nft",
                    stderr: format!("set {name}: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        loaded.elements.insert(name.to_owned(), elems);
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn changes_are_written_as_nft_statements() {
        let remove = els(&[("i", &["\"a\""]), ("s", &["10.0.0.1"])]);
        assert_eq!(
            statements(&TableId::new(Family::Ip, "t"), "delete", &remove),
            "delete element ip t i { \"a\" }\ndelete element ip t s { 10.0.0.1 }\n"
        );
    }

    #[test]
    fn a_json_listing_reads_back_as_the_elements_written() {
        let json: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"t"}},
            {"set":{"name":"s_1","type":"ipv4_addr","elem":["10.0.0.1","10.0.0.2"]}},
            {"set":{"name":"s_2","type":"ipv4_addr"}},
            {"set":{"name":"in_default_if","type":"ifname","elem":["weft1"]}},
            {"chain":{"name":"forward"}},
            {"rule":{"chain":"forward","comment":"weftpol 00ff","expr":[]}},
            {"rule":{"chain":"forward","comment":"other","expr":[]}},
            {"rule":{"chain":"in_ns_x_np","comment":"isolated by x/a","expr":[{"match":{}},{"counter":{"packets":3,"bytes":180}},{"drop":null}]}}]}"#,
        )
        .unwrap();
        let l = parse_listing(&json).unwrap();
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
                ("in_default_if", &["\"weft1\""]),
            ])
        );
        let odd: Value = serde_json::from_str(
            r#"{"nftables":[{"set":{"name":"s","type":"ipv4_addr","elem":[{"prefix":{"addr":"10.0.0.0","len":8}}]}}]}"#,
        )
        .unwrap();
        let e = parse_listing(&odd).unwrap_err().to_string();
        assert!(e.contains("set s"), "{e}");
    }
}
