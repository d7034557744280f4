//! Set elements changed over netlink, in one nf_tables transaction.
//!
//! `nft -f` reads the table's sets into its cache before it changes an element, which
//! with thousands of named sets costs tens of milliseconds; a container's ADD waits for
//! its elements, so the agent writes them itself: a batch (`NFNL_MSG_BATCH_BEGIN`,
//! `NFT_MSG_DELSETELEM`/`NFT_MSG_NEWSETELEM` per set, `NFNL_MSG_BATCH_END`) that the
//! kernel applies whole or not at all. No crate of the rust-netlink family speaks
//! nf_tables yet, so the few messages are built here by hand from
//! `linux/netfilter/nf_tables.h`. Elements are [`weft_plan::nft::Element`]s: an
//! address (4 or 16 bytes) or an interface name (`IFNAMSIZ` bytes, zero-padded).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use weft_plan::nft::{Element, Elements, Family, TableId};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

fn nfproto(family: Family) -> u8 {
    match family {
        Family::Ip => NFPROTO_IPV4,
        Family::Ip6 => NFPROTO_IPV6,
    }
}

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const IFNAMSIZ: usize = 16;

/// A netlink failure as the firewall's error, saying what was being done.
pub fn refused(what: &str, e: io::Error) -> crate::nft::NftError {
    crate::nft::NftError::Refused {
        cmd: "nf_tables (netlink)",
        stderr: format!("{what}: {e}"),
    }
}

/// An element's key as the kernel takes it.
fn key(e: &Element) -> Vec<u8> {
    match e {
        Element::Addr(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
        Element::Addr(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
        Element::Iface(name) => {
            let mut b = name.as_bytes().to_vec();
            b.resize(IFNAMSIZ, 0);
            b
        }
    }
}

/// Appends an attribute (padded to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nested(buf: &mut Vec<u8>, kind: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let mut b = Vec::new();
    inner(&mut b);
    attr(buf, kind | NLA_F_NESTED, &b);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// One netlink message: header, nfgenmsg (of `family`'s tables), attributes.
struct Header {
    kind: u16,
    flags: u16,
    seq: u32,
    res_id: u16,
    family: Family,
}

fn message(buf: &mut Vec<u8>, h: Header, attrs: &[u8]) {
    let Header {
        kind,
        flags,
        seq,
        res_id,
        family,
    } = h;
    let len = 16 + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[nfproto(family), 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// One element, and in a verdict map the chain it jumps to.
type Item<'e> = (&'e Element, Option<&'e str>);

fn element_list<'e>(table: &str, set: &str, elems: impl Iterator<Item = Item<'e>>) -> Vec<u8> {
    let mut a = Vec::new();
    attr(&mut a, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
    attr(&mut a, NFTA_SET_ELEM_LIST_SET, &cstr(set));
    nested(&mut a, NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
        for (e, jump) in elems {
            nested(l, NFTA_LIST_ELEM, |el| {
                nested(el, NFTA_SET_ELEM_KEY, |k| attr(k, NFTA_DATA_VALUE, &key(e)));
                if let Some(chain) = jump {
                    nested(el, NFTA_SET_ELEM_DATA, |d| {
                        nested(d, NFTA_DATA_VERDICT, |v| {
                            attr(v, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                            attr(v, NFTA_VERDICT_CHAIN, &cstr(chain));
                        })
                    });
                }
            });
        }
    });
    a
}

/// The batch that removes `remove` and adds `add` in `table`, and how many
/// acknowledgements it asks for.
fn batch(table: &TableId, add: &Elements, remove: &Elements) -> (Vec<u8>, u32) {
    let plain = |e: &Elements| -> Vec<SetItems> {
        e.iter()
            .filter(|(_, e)| !e.is_empty())
            .map(|(set, e)| (set.clone(), e.iter().map(|e| (e.clone(), None)).collect()))
            .collect()
    };
    batch_of(table, &plain(add), &plain(remove))
}

/// One set's element changes, each element with its verdict-map chain (if any).
type SetItems = (String, Vec<(Element, Option<String>)>);
type ByItems = [SetItems];

fn batch_of(table: &TableId, add: &ByItems, remove: &ByItems) -> (Vec<u8>, u32) {
    let mut buf = Vec::new();
    let mut seq = 1;
    let edge = |kind, seq| Header {
        kind,
        flags: NLM_F_REQUEST,
        seq,
        res_id: NFNL_SUBSYS_NFTABLES,
        family: Family::Ip,
    };
    message(&mut buf, edge(NFNL_MSG_BATCH_BEGIN, seq), &[]);
    let mut acks = 0;
    for (verb, flags, elements) in [
        (NFT_MSG_DELSETELEM, 0, remove),
        (NFT_MSG_NEWSETELEM, NLM_F_CREATE, add),
    ] {
        for (set, elems) in elements {
            seq += 1;
            acks += 1;
            let kind = (NFNL_SUBSYS_NFTABLES << 8) | verb;
            let h = Header {
                kind,
                flags: NLM_F_REQUEST | NLM_F_ACK | flags,
                seq,
                res_id: 0,
                family: table.family,
            };
            let items = elems.iter().map(|(e, j)| (e, j.as_deref()));
            message(&mut buf, h, &element_list(&table.name, set, items));
        }
    }
    seq += 1;
    message(&mut buf, edge(NFNL_MSG_BATCH_END, seq), &[]);
    (buf, acks)
}

/// Opens a netfilter socket in the calling thread's namespace and sends `buf`.
fn send(buf: &[u8]) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(buf, 0)?;
    Ok(socket)
}

/// The messages in one datagram: each one's type, its error code if it is an
/// `NLMSG_ERROR` (0: an acknowledgement), and its attributes after the nfgenmsg.
fn messages(data: &[u8]) -> Vec<(u16, Option<i32>, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 20 <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(data[off + 4..off + 6].try_into().expect("2 bytes"));
        if len < 20 || off + len > data.len() {
            break;
        }
        let code = (kind == NLMSG_ERROR)
            .then(|| i32::from_ne_bytes(data[off + 16..off + 20].try_into().expect("4 bytes")));
        out.push((kind, code, &data[off + 20..off + len]));
        off += len.next_multiple_of(4);
    }
    out
}

/// Applies the change in one transaction in the calling thread's namespace.
pub fn update(table: &TableId, add: &Elements, remove: &Elements) -> io::Result<()> {
    let (buf, acks) = batch(table, add, remove);
    transact(&buf, acks)
}

/// Adds `key : jump CHAIN` to verdict map `map`. Weft's tables have no verdict maps
/// (an element that jumps makes the kernel validate the whole table again); this is
/// how `bench/policy.sh` measures that cost beside a plain set's.
pub fn add_jump(table: &TableId, map: &str, key: Element, chain: &str) -> io::Result<()> {
    let add = [(map.to_owned(), vec![(key, Some(chain.to_owned()))])];
    let (buf, acks) = batch_of(table, &add, &[]);
    transact(&buf, acks)
}

/// Sends a batch and waits for its acknowledgements: the first refusal is the error.
fn transact(buf: &[u8], mut acks: u32) -> io::Result<()> {
    if acks == 0 {
        return Ok(());
    }
    let socket = send(buf)?;
    let mut failure = None;
    while acks > 0 {
        let (data, _) = socket.recv_from_full()?;
        for (_, code, _) in messages(&data) {
            let Some(code) = code else { continue };
            acks = acks.saturating_sub(1);
            if code != 0 && failure.is_none() {
                failure = Some(io::Error::from_raw_os_error(-code));
                // The transaction is aborted: no further acknowledgements come.
                acks = 0;
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
/// `NFTNL_UDATA_TABLE_COMMENT`: the comment's type in a table's user data.
const UDATA_TABLE_COMMENT: u8 = 0;

/// Sends one request `msg` (with `flags`) about `table`, named in attribute `name_attr`;
/// the socket to read the answer from.
fn ask_about(table: &TableId, msg: u16, flags: u16, name_attr: u16) -> io::Result<Socket> {
    let mut a = Vec::new();
    attr(&mut a, name_attr, &cstr(&table.name));
    let mut buf = Vec::new();
    let h = Header {
        kind: (NFNL_SUBSYS_NFTABLES << 8) | msg,
        flags: NLM_F_REQUEST | flags,
        seq: 1,
        res_id: 0,
        family: table.family,
    };
    message(&mut buf, h, &a);
    send(&buf)
}

/// The comment of `table` (`None`: no such table, or no comment): one request for
/// one table, where `nft list` would read every set of it first.
pub fn table_comment(table: &TableId) -> io::Result<Option<String>> {
    let socket = ask_about(table, NFT_MSG_GETTABLE, NLM_F_ACK, NFTA_TABLE_NAME)?;
    let mut comment = None;
    loop {
        let (data, _) = socket.recv_from_full()?;
        for (kind, code, attrs) in messages(&data) {
            match code {
                Some(0) => return Ok(comment),
                Some(c) if -c == libc::ENOENT => return Ok(None),
                Some(c) => return Err(io::Error::from_raw_os_error(-c)),
                None if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE => {
                    comment = userdata_comment(attrs);
                }
                None => {}
            }
        }
    }
}

const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWRULE: u16 = 6;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_RETURN: i32 = -5;
/// `NFTNL_UDATA_RULE_COMMENT`, as the table's.
const UDATA_RULE_COMMENT: u8 = 0;

/// The attributes in `buf`: each one's type (flags cleared) and payload.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

/// A comment (type 0) in user data TLVs.
fn udata_comment(mut u: &[u8], kind: u8) -> Option<String> {
    while u.len() >= 2 {
        let (t, l) = (u[0], u[1] as usize);
        let v = u.get(2..2 + l)?;
        if t == kind {
            return Some(text(v));
        }
        u = &u[2 + l..];
    }
    None
}

/// One rule's counter from a `NEWRULE` message's attributes, if it has a counter and
/// a comment.
fn rule_counter(msg: &[u8]) -> Option<crate::nft_sets::RuleCounter> {
    let comment = udata_comment(find(msg, NFTA_RULE_USERDATA)?, UDATA_RULE_COMMENT)?;
    let chain = text(find(msg, NFTA_RULE_CHAIN)?);
    let (mut counter, mut verdict) = (None, String::new());
    for (_, e) in attrs(find(msg, NFTA_RULE_EXPRESSIONS)?) {
        let name = text(find(e, NFTA_EXPR_NAME).unwrap_or_default());
        let data = find(e, NFTA_EXPR_DATA).unwrap_or_default();
        let be64 = |k| {
            find(data, k)
                .and_then(|v| v.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        };
        match name.as_str() {
            "counter" => counter = Some((be64(NFTA_COUNTER_PACKETS), be64(NFTA_COUNTER_BYTES))),
            "immediate" => {
                let code = find(data, NFTA_IMMEDIATE_DATA)
                    .and_then(|d| find(d, NFTA_DATA_VERDICT))
                    .and_then(|v| find(v, NFTA_VERDICT_CODE))
                    .and_then(|c| c.try_into().ok())
                    .map(i32::from_be_bytes);
                verdict = match code {
                    Some(NF_DROP) => "drop",
                    Some(NF_ACCEPT) => "accept",
                    Some(NFT_RETURN) => "return",
                    Some(NFT_JUMP) => "jump",
                    Some(NFT_GOTO) => "goto",
                    _ => "",
                }
                .to_owned();
            }
            _ => {}
        }
    }
    let (packets, bytes) = counter?;
    Some(crate::nft_sets::RuleCounter {
        chain,
        comment,
        verdict,
        packets,
        bytes,
    })
}

/// The counters of `table`'s rules that have a comment, from one rule dump (`nft`
/// would read every set of the table first, seconds at thousands of sets); empty if
/// there is no such table.
pub fn rule_counters(table: &TableId) -> io::Result<Vec<crate::nft_sets::RuleCounter>> {
    let socket = ask_about(table, NFT_MSG_GETRULE, NLM_F_DUMP, NFTA_RULE_TABLE)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        for (kind, code, body) in messages(&data) {
            match code {
                Some(c) if -c == libc::ENOENT => return Ok(Vec::new()),
                Some(0) => return Ok(out),
                Some(c) => return Err(io::Error::from_raw_os_error(-c)),
                None if kind == NLMSG_DONE => return Ok(out),
                None if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                    out.extend(rule_counter(body));
                }
                None => {}
            }
        }
    }
}

/// The comment in a table message's attributes.
fn userdata_comment(msg: &[u8]) -> Option<String> {
    udata_comment(find(msg, NFTA_TABLE_USERDATA)?, UDATA_TABLE_COMMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_keyed_as_the_kernel_takes_them() {
        assert_eq!(key(&"10.0.0.1".parse().unwrap()), [10, 0, 0, 1]);
        let k6 = key(&"fd00::1".parse().unwrap());
        assert_eq!((k6.len(), k6[0], k6[15]), (16, 0xfd, 1));
        let k = key(&"\"weft1\"".parse().unwrap());
        assert_eq!(&k[..5], b"weft1");
        assert_eq!(k.len(), IFNAMSIZ);
        assert!(k[5..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_batch_is_begin_one_message_per_set_end() {
        let set = |n: &str, e: &[&str]| {
            (
                n.to_string(),
                e.iter().map(|s| s.parse().unwrap()).collect(),
            )
        };
        let add: Elements = [set("s_1", &["10.0.0.1"]), set("in_default_if", &["\"w\""])].into();
        let remove: Elements = [set("s_2", &["10.0.0.2"])].into();
        let (buf, acks) = batch(&TableId::new(Family::Ip, "weftpol"), &add, &remove);
        assert_eq!(acks, 3);
        // Walk the messages: their types in order.
        let mut kinds = Vec::new();
        let mut off = 0;
        while off < buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes(
                buf[off + 4..off + 6].try_into().unwrap(),
            ));
            off += len;
        }
        let nft = |m: u16| (NFNL_SUBSYS_NFTABLES << 8) | m;
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                nft(NFT_MSG_DELSETELEM),
                nft(NFT_MSG_NEWSETELEM),
                nft(NFT_MSG_NEWSETELEM),
                NFNL_MSG_BATCH_END
            ]
        );
    }
}
