//! The elements of a table's named sets, and the difference between two versions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use thiserror::Error;

/// An element of a named set: an address or an interface name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Addr(IpAddr),
    Iface(String),
}

/// Interface names are at most 15 bytes (`IFNAMSIZ` less the NUL).
const IFNAME_MOST: usize = 15;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ElementError {
    #[error("{0:?} is neither an IP address nor a quoted interface name of 1 to 15 bytes")]
    Unreadable(String),
}

impl Element {
    /// An interface's element; `None` if the name cannot be one (empty or too long).
    pub fn iface(name: &str) -> Option<Element> {
        (!name.is_empty() && name.len() <= IFNAME_MOST && !name.contains('"'))
            .then(|| Element::Iface(name.to_owned()))
    }
}

/// nft's syntax: an address bare, an interface name quoted.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Addr(a) => write!(f, "{a}"),
            Element::Iface(n) => write!(f, "\"{n}\""),
        }
    }
}

impl FromStr for Element {
    type Err = ElementError;

    fn from_str(s: &str) -> Result<Element, ElementError> {
        let bad = || ElementError::Unreadable(s.to_owned());
        match s.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
            Some(name) => Element::iface(name).ok_or_else(bad),
            None => s.parse().map(Element::Addr).map_err(|_| bad()),
        }
    }
}

/// The elements of each named set of a table, by set name.
pub type Elements = BTreeMap<String, BTreeSet<Element>>;

/// How many elements, over all sets.
pub fn count(e: &Elements) -> usize {
    e.values().map(BTreeSet::len).sum()
}

/// What to add and what to remove to go from `old` to `new` (sets with no change are
/// left out).
pub fn changes(old: &Elements, new: &Elements) -> (Elements, Elements) {
    let only = |a: &Elements, b: &Elements| -> Elements {
        a.iter()
            .map(|(name, elems)| {
                let other = b.get(name);
                let only: BTreeSet<Element> = elems
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
