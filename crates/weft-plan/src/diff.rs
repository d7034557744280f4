//! The one diff every kernel object goes through: routes, neighbours, FDB entries,
//! addresses.
//!
//! Objects are keyed (a route by destination, a neighbour by IP, an FDB entry by MAC):
//! the kernel holds one per key. Equal objects produce no change, which is what makes
//! restarts churn-free.

/// One change to make in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<T> {
    Add(T),
    /// Same key, different content: replaced in one atomic step.
    Replace(T),
    Remove(T),
}

impl<T> Change<T> {
    pub fn item(&self) -> &T {
        match self {
            Change::Add(t) | Change::Replace(t) | Change::Remove(t) => t,
        }
    }
}

/// The changes that turn `current` into `desired`: removals, then replacements, then
/// additions, each in key order. If a key repeats, its last object counts.
///
/// Sorted vectors merged in one pass rather than two maps: the agent diffs 10,000
/// learned routes for every burst of them, and both sides usually come in key order
/// already, which a stable sort takes in linear time.
pub fn diff<K: Ord, T: PartialEq + Clone>(
    desired: impl IntoIterator<Item = (K, T)>,
    current: impl IntoIterator<Item = (K, T)>,
) -> Vec<Change<T>> {
    let want = sorted_unique(desired);
    let have = sorted_unique(current);
    let (mut removed, mut replaced, mut added) = (Vec::new(), Vec::new(), Vec::new());
    let (mut w, mut h) = (want.iter().peekable(), have.iter().peekable());
    loop {
        match (w.peek(), h.peek()) {
            (None, None) => break,
            (Some((_, t)), None) => {
                added.push(Change::Add(t.clone()));
                w.next();
            }
            (None, Some((_, t))) => {
                removed.push(Change::Remove(t.clone()));
                h.next();
            }
            (Some((kw, tw)), Some((kh, th))) => match kw.cmp(kh) {
                std::cmp::Ordering::Less => {
                    added.push(Change::Add(tw.clone()));
                    w.next();
                }
                std::cmp::Ordering::Greater => {
                    removed.push(Change::Remove(th.clone()));
                    h.next();
                }
                std::cmp::Ordering::Equal => {
                    if tw != th {
                        replaced.push(Change::Replace(tw.clone()));
                    }
                    w.next();
                    h.next();
                }
            },
        }
    }
    removed.extend(replaced);
    removed.extend(added);
    removed
}

/// `items` in key order, one per key (the last given).
fn sorted_unique<K: Ord, T>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, T)> {
    let mut v: Vec<(K, T)> = items.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(K, T)> = Vec::with_capacity(v.len());
    for item in v {
        match out.last_mut() {
            Some(last) if last.0 == item.0 => *last = item,
            _ => out.push(item),
        }
    }
    out
}

/// Why the kernel refused one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel's error number (`EEXIST`, `ENETUNREACH`, ...).
    Errno(i32),
    /// Anything else on the way (a reply that could not be read, a closed socket).
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Errno(n) => write!(f, "{}", std::io::Error::from_raw_os_error(*n)),
            Refusal::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Refusal {}

/// What applying a diff did.
#[derive(Debug, Clone)]
pub struct Applied<T> {
    pub added: usize,
    pub replaced: usize,
    pub removed: usize,
    /// Changes the kernel refused, with its reason; the rest were still applied.
    pub failed: Vec<(Change<T>, Refusal)>,
}

impl<T> Default for Applied<T> {
    fn default() -> Self {
        Applied {
            added: 0,
            replaced: 0,
            removed: 0,
            failed: Vec::new(),
        }
    }
}

impl<T> Applied<T> {
    pub fn changed(&self) -> bool {
        self.added + self.replaced + self.removed > 0 || !self.failed.is_empty()
    }

    pub fn record(&mut self, change: Change<T>, result: Result<(), Refusal>) {
        match (&change, result) {
            (_, Err(e)) => self.failed.push((change, e)),
            (Change::Add(_), Ok(())) => self.added += 1,
            (Change::Replace(_), Ok(())) => self.replaced += 1,
            (Change::Remove(_), Ok(())) => self.removed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn keyed_diff() {
        let cur = [(1, "a"), (2, "b"), (3, "c")];
        let want = [(2, "b"), (3, "C"), (4, "d")];
        assert_eq!(
            diff(want, cur),
            [Change::Remove("a"), Change::Replace("C"), Change::Add("d")]
        );
        assert!(diff(cur, cur).is_empty());
    }

    #[test]
    fn unordered_input_and_repeated_keys() {
        let cur = [(3, "c"), (1, "a"), (1, "x")];
        let want = [(4, "d"), (1, "x"), (3, "c"), (3, "C")];
        assert_eq!(diff(want, cur), [Change::Replace("C"), Change::Add("d")]);
    }

    /// The same answer as the obvious implementation over two maps.
    fn reference(want: &[(u8, u8)], have: &[(u8, u8)]) -> Vec<Change<u8>> {
        let want: BTreeMap<u8, u8> = want.iter().copied().collect();
        let have: BTreeMap<u8, u8> = have.iter().copied().collect();
        let mut out: Vec<Change<u8>> = have
            .iter()
            .filter(|(k, _)| !want.contains_key(k))
            .map(|(_, t)| Change::Remove(*t))
            .collect();
        out.extend(
            want.iter()
                .filter(|(k, t)| have.get(k).is_some_and(|h| h != *t))
                .map(|(_, t)| Change::Replace(*t)),
        );
        out.extend(
            want.iter()
                .filter(|(k, _)| !have.contains_key(k))
                .map(|(_, t)| Change::Add(*t)),
        );
        out
    }

    proptest::proptest! {
        #[test]
        fn matches_the_map_diff(
            want in proptest::collection::vec((0u8..40, 0u8..3), 0..60),
            have in proptest::collection::vec((0u8..40, 0u8..3), 0..60),
        ) {
            proptest::prop_assert_eq!(diff(want.clone(), have.clone()), reference(&want, &have));
        }
    }
}
