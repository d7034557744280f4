//! What in the kernel's notifications is Weft's own: the port ids of the sockets it
//! changed routes through (the kernel names the requesting socket in each route
//! notification, so an echo of Weft's own change is not mistaken for someone else's
//! edit), and the indices of its overlay devices (a neighbour entry deleted by hand on
//! one of them is reported with its state already gone, so the index is what tells).
//!
//! One [`Owned`] is shared by a dataplane and the monitor it starts; there is no
//! process-global list.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

/// How many recent sockets are remembered (each batch of changes opens one).
const KEPT: usize = 16;

#[derive(Debug, Default)]
pub struct Owned {
    ports: Mutex<VecDeque<u32>>,
    links: Mutex<BTreeSet<u32>>,
}

impl Owned {
    /// Records a socket Weft changes routes through: its notifications are not news.
    pub fn note_port(&self, port: u32) {
        let mut ports = self.ports.lock().expect("own ports lock");
        if ports.len() == KEPT {
            ports.pop_front();
        }
        ports.push_back(port);
    }

    pub fn is_own_port(&self, port: u32) -> bool {
        port != 0 && self.ports.lock().expect("own ports lock").contains(&port)
    }

    /// Records one of Weft's overlay devices: every neighbour change on it matters.
    pub fn note_link(&self, index: u32) {
        self.links.lock().expect("own links lock").insert(index);
    }

    pub fn is_own_link(&self, index: u32) -> bool {
        self.links.lock().expect("own links lock").contains(&index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ports_are_remembered_for_a_while_and_links_for_good() {
        let own = Owned::default();
        own.note_port(77_001);
        assert!(own.is_own_port(77_001));
        for p in 0..KEPT as u32 {
            own.note_port(80_000 + p);
        }
        assert!(!own.is_own_port(77_001));
        assert!(!own.is_own_port(0));
        own.note_link(9);
        assert!(own.is_own_link(9) && !own.is_own_link(10));
    }
}
