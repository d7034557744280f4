//! A loaded table read back into [`weft_plan::nft`] values, from `nft -j list table`,
//! so what the kernel kept can be compared with what was meant, value for value.
//!
//! Only the subset Weft writes is read; anything else (a rule someone added by hand
//! with an expression Weft never writes) is an error naming it, never skipped.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use thiserror::Error;
use weft_plan::nft::{
    AddrMatch, Chain, Hook, IfaceSide, Match, PortRange, Proto, Rule, Set, SetKey, Side, Table,
    TableId, Verdict, ICMPV6_TYPES, ICMP_TYPES,
};

use crate::nft::NftError;

/// A part of a listing that is not something Weft writes.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("table {table}: cannot read {what}: {json}")]
pub struct Unreadable {
    pub table: String,
    pub what: &'static str,
    pub json: String,
}

/// `id` as loaded (comment included); `None` if there is none.
pub fn table(id: &TableId) -> Result<Option<Table>, NftError> {
    let Some(json) = crate::nft_sets::listing(id)? else {
        return Ok(None);
    };
    let mut t = parse(id, &json).map_err(|e| NftError::Refused {
        cmd: "nft",
        stderr: e.to_string(),
    })?;
    t.comment = crate::nft_netlink::table_comment(id)
        .map_err(|e| crate::nft_netlink::refused("cannot read the table's comment", e))?
        .unwrap_or_default();
    Ok(Some(t))
}

/// The sets, chains and rules of `nft -j list table` (the listing has no table
/// comment: [`table`] reads it apart). Address matches are on `id`'s family's header.
pub fn parse(id: &TableId, json: &Value) -> Result<Table, Unreadable> {
    let bad = |what: &'static str, v: &Value| Unreadable {
        table: id.to_string(),
        what,
        json: v.to_string(),
    };
    let family = id.family.keyword();
    let mut t = Table::in_family(id.family, id.name.clone());
    for item in json["nftables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if let Some(s) = item.get("set") {
            let key = match s["type"].as_str() {
                Some("ipv4_addr") => SetKey::Ipv4Addr,
                Some("ipv6_addr") => SetKey::Ipv6Addr,
                Some("ifname") => SetKey::Ifname,
                _ => return Err(bad("a set's type", s)),
            };
            let name = s["name"].as_str().ok_or_else(|| bad("a set's name", s))?;
            t.sets.push(Set {
                name: name.to_owned(),
                key,
            });
        } else if let Some(c) = item.get("chain") {
            t.chains.push(chain(c).ok_or_else(|| bad("a chain", c))?);
        } else if let Some(r) = item.get("rule") {
            let chain = r["chain"].as_str().unwrap_or_default();
            let rule = rule(r, family).map_err(|v| bad("a rule's expression", &v))?;
            t.chains
                .iter_mut()
                .find(|c| c.name == chain)
                .ok_or_else(|| bad("a rule of no chain", r))?
                .rules
                .push(rule);
        } else if item.get("map").is_some() {
            return Err(bad("a map", item));
        }
    }
    Ok(t)
}

fn chain(c: &Value) -> Option<Chain> {
    let name = c["name"].as_str()?;
    if c.get("hook").is_none() {
        return Some(Chain::regular(name));
    }
    if c["policy"] != "accept" {
        return None;
    }
    let prio = c["prio"].as_i64()?;
    let hook = match (c["type"].as_str()?, c["hook"].as_str()?, prio) {
        ("filter", "forward", p) => Hook::Forward {
            offset: i32::try_from(p).ok()?,
        },
        ("filter", "input", 0) => Hook::Input,
        ("nat", "postrouting", 100) => Hook::Postrouting,
        ("nat", "prerouting", -100) => Hook::Prerouting,
        ("nat", "output", -100) => Hook::Output,
        _ => return None,
    };
    Some(Chain::base(name, hook))
}

/// A rule; the expression that cannot be read as the error.
fn rule(r: &Value, family: &str) -> Result<Rule, Value> {
    let mut matches = Vec::new();
    let mut counter = false;
    let mut verdict = None;
    let mut mark = None;
    for e in r["expr"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some((kind, body)) = e.as_object().and_then(|o| o.iter().next()) else {
            return Err(e.clone());
        };
        let target = || body["target"].as_str().map(str::to_owned);
        let v = match kind.as_str() {
            "match" => {
                matches.push(matching(body, family).ok_or_else(|| e.clone())?);
                continue;
            }
            "counter" => {
                counter = true;
                continue;
            }
            "mangle" => {
                mark = Some(mark_or(body).ok_or_else(|| e.clone())?);
                continue;
            }
            "accept" => Verdict::Accept,
            "drop" => Verdict::Drop,
            "return" => match mark.take() {
                Some(bit) => Verdict::MarkReturn(bit),
                None => Verdict::Return,
            },
            "jump" => Verdict::Jump(target().ok_or_else(|| e.clone())?),
            "goto" => Verdict::Goto(target().ok_or_else(|| e.clone())?),
            "masquerade" if body["flags"] == "fully-random" => Verdict::Masquerade,
            "dnat" => Verdict::Dnat {
                addr: body["addr"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| e.clone())?,
                port: body["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| e.clone())?,
            },
            "log" => Verdict::Log {
                prefix: body["prefix"].as_str().unwrap_or_default().to_owned(),
            },
            _ => return Err(e.clone()),
        };
        if verdict.replace(v).is_some() || mark.is_some() {
            return Err(e.clone());
        }
    }
    if mark.is_some() {
        return Err(r.clone());
    }
    Ok(Rule {
        matches,
        counter,
        verdict: verdict.ok_or_else(|| r.clone())?,
        comment: r["comment"].as_str().map(str::to_owned),
        id: None,
    })
}

/// `meta mark` as the key (`{"meta": {"key": "mark"}}`).
fn is_mark(v: &Value) -> bool {
    v.get("meta").is_some_and(|m| m["key"] == "mark")
}

/// The bit of `meta mark set meta mark | BIT`.
fn mark_or(body: &Value) -> Option<u32> {
    let [left, bit] = body["value"]["|"].as_array()?.as_slice() else {
        return None;
    };
    (is_mark(&body["key"]) && is_mark(left))
        .then(|| bit.as_u64().and_then(|b| u32::try_from(b).ok()))
        .flatten()
}

fn matching(m: &Value, family: &str) -> Option<Match> {
    let negated = match m["op"].as_str()? {
        "==" | "in" => false,
        "!=" => true,
        _ => return None,
    };
    let (left, right) = (&m["left"], &m["right"]);
    if let Some(fib) = left.get("fib") {
        let daddr = fib["flags"] == "daddr" || fib["flags"] == serde_json::json!(["daddr"]);
        return (fib["result"] == "type" && daddr && right == "local" && !negated)
            .then_some(Match::LocalDestination);
    }
    if let Some([key, mask]) = left.get("&").and_then(Value::as_array).map(Vec::as_slice) {
        let bit = u32::try_from(mask.as_u64()?).ok()?;
        return (is_mark(key) && right.as_u64() == Some(u64::from(bit)) && !negated)
            .then_some(Match::Mark(bit));
    }
    if left.get("ct").is_some_and(|c| c["key"] == "status") {
        let dnat = right == "dnat" || *right == serde_json::json!(["dnat"]);
        return (dnat && !negated).then_some(Match::Dnatted);
    }
    if let Some(p) = left.get("payload") {
        let (proto, field) = (p["protocol"].as_str()?, p["field"].as_str()?);
        return match (proto, field, negated) {
            (p, "saddr" | "daddr", _) if p == family => {
                let side = if field == "saddr" {
                    Side::Source
                } else {
                    Side::Destination
                };
                Some(Match::Addr {
                    side,
                    negated,
                    value: addresses(right)?,
                })
            }
            ("icmp", "type", false) => Some(Match::IcmpType(icmp_type(right, ICMP_TYPES)?)),
            ("icmpv6", "type", false) if family == "ip6" => {
                Some(Match::IcmpType(icmp_type(right, ICMPV6_TYPES)?))
            }
            (_, "dport", false) => Some(Match::DestinationPort {
                proto: Proto::from_name(proto)?,
                ports: ports(right)?,
            }),
            _ => None,
        };
    }
    let key = left.get("meta").or_else(|| left.get("ct"))?["key"].as_str()?;
    match (key, negated) {
        ("iifname" | "oifname", false) => Some(Match::Iface {
            side: if key == "iifname" {
                IfaceSide::In
            } else {
                IfaceSide::Out
            },
            set: right.as_str()?.strip_prefix('@')?.to_owned(),
        }),
        ("l4proto", false) => Some(Match::Protocol(match right {
            Value::String(s) => Proto::from_name(s)?,
            n => Proto::from_number(u8::try_from(n.as_u64()?).ok()?),
        })),
        ("state", false) if left.get("ct").is_some() => {
            let states: BTreeSet<&str> = match right {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                s => s.as_str().into_iter().collect(),
            };
            (states == BTreeSet::from(["established", "related"]))
                .then_some(Match::EstablishedOrRelated)
        }
        _ => None,
    }
}

/// An address, a prefix, a named set or an anonymous set of addresses and prefixes.
fn addresses(v: &Value) -> Option<AddrMatch> {
    if let Some(s) = v.as_str().and_then(|s| s.strip_prefix('@')) {
        return Some(AddrMatch::Set(s.to_owned()));
    }
    let addr = |v: &Value| v.as_str()?.parse::<IpAddr>().ok();
    // An address, a prefix, or a range (what the kernel made of adjacent prefixes).
    let one = |v: &Value| -> Option<Vec<IpNet>> {
        if let Some(p) = v.get("prefix") {
            let len = u8::try_from(p["len"].as_u64()?).ok()?;
            return Some(vec![IpNet::new(addr(&p["addr"])?, len).ok()?]);
        }
        if let Some(Value::Array(r)) = v.get("range") {
            return Some(AddrMatch::range(addr(r.first()?)?, addr(r.get(1)?)?));
        }
        Some(vec![addr(v)?.into()])
    };
    let nets = match v.get("set") {
        Some(Value::Array(items)) => items.iter().map(one).collect::<Option<Vec<_>>>()?,
        _ => vec![one(v)?],
    };
    Some(AddrMatch::nets(nets.into_iter().flatten()))
}

/// A port, a range, or an anonymous set of them.
fn ports(v: &Value) -> Option<BTreeSet<PortRange>> {
    let one = |v: &Value| -> Option<PortRange> {
        let port = |v: &Value| u16::try_from(v.as_u64()?).ok();
        match v.get("range") {
            Some(Value::Array(r)) if r.len() == 2 => {
                Some(PortRange::new(port(&r[0])?, port(&r[1])?))
            }
            _ => Some(PortRange::one(port(v)?)),
        }
    };
    match v.get("set") {
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        _ => Some(BTreeSet::from([one(v)?])),
    }
}

/// An ICMP (or ICMPv6) type, by nft's name for it in `names` or by number.
fn icmp_type(v: &Value, names: &[(u8, &str)]) -> Option<u8> {
    match v {
        Value::String(name) => names.iter().find(|(_, n)| n == name).map(|(t, _)| *t),
        n => u8::try_from(n.as_u64()?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reads_as_values_and_what_weft_never_writes_is_named() {
        let json: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"family":"ip","name":"t"}},
            {"set":{"name":"s_a","type":"ipv4_addr"}},
            {"chain":{"name":"c"}},
            {"chain":{"name":"forward","type":"filter","hook":"forward","prio":-5,"policy":"accept"}},
            {"rule":{"chain":"c","comment":"x","expr":[
              {"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"set":[{"prefix":{"addr":"192.168.0.0","len":16}},{"range":["10.248.0.0","10.249.0.255"]},"10.2.0.5"]}}},
              {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[80,{"range":[90,95]}]}}},
              {"counter":{"packets":0,"bytes":0}},{"goto":{"target":"d"}}]}},
            {"rule":{"chain":"forward","expr":[
              {"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},
              {"match":{"op":"==","left":{"payload":{"protocol":"icmp","field":"type"}},"right":"echo-request"}},{"accept":null}]}}]}"#,
        )
        .unwrap();
        let t = parse(&TableId::new(weft_plan::nft::Family::Ip, "t"), &json).unwrap();
        assert_eq!(t.sets.len(), 1);
        assert_eq!(t.chains[1].hook, Some(Hook::Forward { offset: -5 }));
        let r = &t.chains[0].rules[0];
        assert_eq!(
            r.to_string(),
            "ip daddr != { 10.2.0.5, 10.248.0.0/16, 10.249.0.0/24, 192.168.0.0/16 } tcp dport { 80, 90-95 } counter goto d comment \"x\"",
            "the range is the prefixes it was made of"
        );
        assert_eq!(
            t.chains[1].rules[0].matches,
            [Match::EstablishedOrRelated, Match::IcmpType(8)]
        );
        let odd: Value = serde_json::from_str(
            r#"{"nftables":[{"chain":{"name":"c"}},{"rule":{"chain":"c","expr":[{"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":1}},{"accept":null}]}}]}"#,
        )
        .unwrap();
        let e = parse(&TableId::new(weft_plan::nft::Family::Ip, "t"), &odd)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mark"), "{e}");
    }
}
