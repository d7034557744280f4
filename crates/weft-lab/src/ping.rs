//! The all-pairs container ping matrix: one per address family the lab's containers
//! have (IPv4 always, IPv6 in a dual-stack lab).

use std::fmt::Write;
use std::net::IpAddr;
use std::thread;

use crate::state::LabState;
use crate::topology;

/// Every pair of containers over one address family.
pub struct Family {
    /// (host number, container address) per container; `None` if its host has no
    /// address of this family yet.
    pub containers: Vec<(u32, Option<IpAddr>)>,
    /// `ok[i][j]`: container i reached container j. Diagonal is true.
    pub ok: Vec<Vec<bool>>,
}

/// The matrices of every family the lab has.
pub struct Matrix {
    pub families: Vec<Family>,
}

impl Matrix {
    pub fn all_ok(&self) -> bool {
        self.families.iter().all(Family::all_ok)
    }

    /// The IPv4 matrix, then the IPv6 one where there is one.
    pub fn render(&self) -> String {
        self.families.iter().map(Family::render).collect()
    }
}

impl Family {
    pub fn all_ok(&self) -> bool {
        self.ok.iter().all(|row| row.iter().all(|&b| b))
    }

    pub fn render(&self) -> String {
        let names: Vec<String> = self
            .containers
            .iter()
            .map(|(i, _)| format!("c{i}"))
            .collect();
        let width = self
            .containers
            .iter()
            .map(|(i, a)| {
                format!("c{i} {}", a.map(|a| a.to_string()).unwrap_or_default()).len() + 2
            })
            .max()
            .unwrap_or(0)
            .max(20);
        let mut s = format!("{:<width$}", "from \\ to");
        for n in &names {
            let _ = write!(s, "{n:>6}");
        }
        s.push('\n');
        for (row, (i, addr)) in self.containers.iter().enumerate() {
            let a = addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
            let _ = write!(s, "{:<width$}", format!("c{i} {a}"));
            for col in 0..self.containers.len() {
                let cell = if row == col {
                    "-"
                } else if self.ok[row][col] {
                    "ok"
                } else {
                    "FAIL"
                };
                let _ = write!(s, "{cell:>6}");
            }
            s.push('\n');
        }
        let pairs = self.containers.len() * self.containers.len().saturating_sub(1);
        let failed = self.ok.iter().flatten().filter(|b| !**b).count();
        let _ = writeln!(s, "{} of {pairs} pairs reachable", pairs - failed);
        s
    }
}

/// Pings every container from every other one, in parallel, one packet each, over
/// each family the lab's containers have.
pub fn matrix(lab: &LabState) -> Matrix {
    let v4: Vec<(u32, Option<IpAddr>)> = lab
        .hosts
        .iter()
        .map(|&i| (i, lab.containers.get(&i).map(|a| IpAddr::V4(*a))))
        .collect();
    let mut families = vec![family(lab, v4)];
    if lab.dual_stack() {
        let v6 = lab
            .hosts
            .iter()
            .map(|&i| (i, lab.containers6.get(&i).map(|a| IpAddr::V6(*a))))
            .collect();
        families.push(family(lab, v6));
    }
    Matrix { families }
}

fn family(lab: &LabState, containers: Vec<(u32, Option<IpAddr>)>) -> Family {
    let n = containers.len();
    let mut ok = vec![vec![true; n]; n];
    thread::scope(|scope| {
        let mut jobs = Vec::new();
        for (r, (from, _)) in containers.iter().enumerate() {
            for (c, (_, to)) in containers.iter().enumerate() {
                if r == c {
                    continue;
                }
                let ns = topology::container_ns(&lab.name, *from);
                let to = *to;
                jobs.push((r, c, scope.spawn(move || ping(&ns, to))));
            }
        }
        for (r, c, job) in jobs {
            ok[r][c] = job.join().unwrap_or(false);
        }
    });
    Family { containers, ok }
}

fn ping(ns: &str, to: Option<IpAddr>) -> bool {
    let Some(to) = to else { return false };
    let to = to.to_string();
    // Up to 3 tries: the first packet may wait for ARP (or neighbour discovery) on a
    // fresh path.
    (0..3).any(|_| {
        crate::sh::output(&[
            "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-q", &to,
        ])
        .map(|o| o.status.success())
        .unwrap_or(false)
    })
}
