//! The one diff every kernel object goes through: routes, neighbours, FDB entries.
//!
//! Objects are keyed (a route by destination, a neighbour by IP, an FDB entry by MAC):
//! the kernel holds one per key. Equal objects produce no change, which is what makes
//! restarts churn-free.

use std::collections::BTreeMap;

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
/// additions, each in key order.
pub fn diff<K: Ord, T: PartialEq + Clone>(
    desired: impl IntoIterator<Item = (K, T)>,
    current: impl IntoIterator<Item = (K, T)>,
) -> Vec<Change<T>> {
    let want: BTreeMap<K, T> = desired.into_iter().collect();
    let have: BTreeMap<K, T> = current.into_iter().collect();
    let mut changes: Vec<Change<T>> = have
        .iter()
        .filter(|(k, _)| !want.contains_key(k))
        .map(|(_, t)| Change::Remove(t.clone()))
        .collect();
    for (k, t) in &want {
        match have.get(k) {
            Some(h) if h != t => changes.push(Change::Replace(t.clone())),
            _ => {}
        }
    }
    changes.extend(
        want.iter()
            .filter(|(k, _)| !have.contains_key(k))
            .map(|(_, t)| Change::Add(t.clone())),
    );
    changes
}

/// What applying a diff did.
#[derive(Debug, Clone)]
pub struct Applied<T> {
    pub added: usize,
    pub replaced: usize,
    pub removed: usize,
    /// Changes the kernel refused, with its reason; the rest were still applied.
    pub failed: Vec<(Change<T>, String)>,
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

    pub fn record<E: std::fmt::Display>(&mut self, change: Change<T>, result: Result<(), E>) {
        match (&change, result) {
            (_, Err(e)) => self.failed.push((change, e.to_string())),
            (Change::Add(_), Ok(())) => self.added += 1,
            (Change::Replace(_), Ok(())) => self.replaced += 1,
            (Change::Remove(_), Ok(())) => self.removed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
