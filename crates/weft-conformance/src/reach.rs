//! The expected reachability between the nine pods, built the way the upstream suite
//! builds it (`NewReachability(..., true)` then `Expect…` calls).

use std::fmt;

/// The pods, in the order rows and columns are printed.
pub const PODS: [&str; 9] = [
    "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c",
];

/// Whether each pod reaches each other (row: from, column: to).
#[derive(Clone, PartialEq, Eq)]
pub struct Reach([[bool; 9]; 9]);

/// Whether `pod` (`x/a`) is one `pattern` names: `*` every pod, `x` (or `x/*`) namespace
/// x, `*/a` pod a of every namespace, `x/a` that pod.
fn matches(pattern: &str, pod: &str) -> bool {
    let (ns, name) = pod.split_once('/').expect("pods are ns/name");
    let (pns, pname) = pattern.split_once('/').unwrap_or((pattern, "*"));
    (pns == "*" || pns == ns) && (pname == "*" || pname == name)
}

fn index(pod: &str) -> usize {
    PODS.iter()
        .position(|p| *p == pod)
        .unwrap_or_else(|| panic!("no pod {pod}"))
}

impl Reach {
    /// Every pair `v` (`NewReachability(pods, v)`).
    pub fn all(v: bool) -> Reach {
        Reach([[v; 9]; 9])
    }

    /// Every pair from a pod `from` names to a pod `to` names is `v` (upstream's
    /// `Expect`, `ExpectPeer`, `ExpectAllIngress` and `ExpectAllEgress`; see [`matches`]
    /// for the patterns).
    pub fn peer(mut self, from: &str, to: &str, v: bool) -> Reach {
        let mut hit = false;
        for (f, row) in self.0.iter_mut().enumerate() {
            for (t, cell) in row.iter_mut().enumerate() {
                if matches(from, PODS[f]) && matches(to, PODS[t]) {
                    *cell = v;
                    hit = true;
                }
            }
        }
        assert!(hit, "{from} -> {to} names no pair");
        self
    }

    /// The expectation for `from` -> `to` (pods as `x/a`).
    pub fn get(&self, from: &str, to: &str) -> bool {
        self.0[index(from)][index(to)]
    }

    /// The pairs (self pairs left out) where `got` differs from this, as `from -> to`.
    pub fn differences(&self, got: &Reach) -> Vec<String> {
        let mut out = Vec::new();
        for (f, from) in PODS.iter().enumerate() {
            for (t, to) in PODS.iter().enumerate() {
                if f != t && self.0[f][t] != got.0[f][t] {
                    out.push(format!(
                        "{from} -> {to}: expected {}, got {}",
                        word(self.0[f][t]),
                        word(got.0[f][t])
                    ));
                }
            }
        }
        out
    }

    /// Sets one pair (for a matrix being measured).
    pub fn set(&mut self, from: &str, to: &str, v: bool) {
        self.0[index(from)][index(to)] = v;
    }

    /// How many pairs (self pairs left out) are reachable.
    pub fn open(&self) -> usize {
        (0..9)
            .flat_map(|f| (0..9).map(move |t| (f, t)))
            .filter(|&(f, t)| f != t && self.0[f][t])
            .count()
    }
}

fn word(v: bool) -> &'static str {
    if v {
        "reachable"
    } else {
        "blocked"
    }
}

/// Upstream's notation: `.` reachable, `X` not, `-` self.
impl fmt::Debug for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "     ")?;
        for p in PODS {
            write!(f, "{p:>5}")?;
        }
        writeln!(f)?;
        for (i, row) in self.0.iter().enumerate() {
            write!(f, "{:>5}", PODS[i])?;
            for (j, ok) in row.iter().enumerate() {
                let mark = match (i == j, ok) {
                    (true, _) => "-",
                    (false, true) => ".",
                    (false, false) => "X",
                };
                write!(f, "{mark:>5}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_what_upstreams_peers_name() {
        let r = Reach::all(true).peer("*", "x/a", false);
        assert!(!r.get("z/c", "x/a") && r.get("x/a", "z/c"));
        let r = Reach::all(true).peer("x", "*", false);
        assert!(!r.get("x/b", "z/c") && r.get("y/b", "x/a"));
        let r = Reach::all(true).peer("*/c", "y", false);
        assert!(!r.get("z/c", "y/a") && r.get("z/b", "y/a"));
        assert_eq!(r.differences(&Reach::all(true)).len(), 8);
        assert_eq!(Reach::all(true).open(), 72);
    }

    #[test]
    #[should_panic(expected = "names no pair")]
    fn a_pattern_naming_nothing_is_a_mistake() {
        let _ = Reach::all(true).peer("q", "*", false);
    }
}
