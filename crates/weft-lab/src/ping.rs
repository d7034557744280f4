//! The all-pairs container ping matrix.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::thread;

use crate::state::LabState;
use crate::topology;

pub struct Matrix {
    /// (host number, container address) per container; `None` if its host has no subnet yet.
    pub containers: Vec<(u32, Option<Ipv4Addr>)>,
    /// `ok[i][j]`: container i reached container j. Diagonal is true.
    pub ok: Vec<Vec<bool>>,
}

impl Matrix {
    pub fn all_ok(&self) -> bool {
        self.ok.iter().all(|row| row.iter().all(|&b| b))
    }

    pub fn render(&self) -> String {
        let names: Vec<String> = self
            .containers
            .iter()
            .map(|(i, _)| format!("c{i}"))
            .collect();
        let mut s = format!("{:<20}", "from \\ to");
        for n in &names {
            let _ = write!(s, "{n:>6}");
        }
        s.push('\n');
        for (row, (i, addr)) in self.containers.iter().enumerate() {
            let a = addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into());
            let _ = write!(s, "{:<20}", format!("c{i} {a}"));
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

/// Pings every container from every other one, in parallel, one packet each.
pub fn matrix(lab: &LabState) -> Matrix {
    let containers: Vec<(u32, Option<Ipv4Addr>)> = lab
        .hosts
        .iter()
        .map(|&i| (i, lab.containers.get(&i).copied()))
        .collect();
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
    Matrix { containers, ok }
}

fn ping(ns: &str, to: Option<Ipv4Addr>) -> bool {
    let Some(to) = to else { return false };
    let to = to.to_string();
    // Up to 3 tries: the first packet may wait for ARP on a fresh path.
    (0..3).any(|_| {
        crate::sh::output(&[
            "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-q", &to,
        ])
        .map(|o| o.status.success())
        .unwrap_or(false)
    })
}
