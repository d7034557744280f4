//! Which route changes are Weft's own: the port ids of the sockets it changed routes
//! through. The kernel names the requesting socket in each route notification, so the
//! event monitor can tell an echo of Weft's own change from someone else's edit.
//!
//! One [`OwnPorts`] is shared by a dataplane and the monitor it starts; there is no
//! process-global list.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many recent sockets are remembered (each batch of changes opens one).
const KEPT: usize = 16;

#[derive(Debug, Default)]
pub struct OwnPorts(Mutex<VecDeque<u32>>);

impl OwnPorts {
    /// Records a socket Weft changes routes through: its notifications are not news.
    pub fn note(&self, port: u32) {
        let mut ports = self.0.lock().expect("own ports lock");
        if ports.len() == KEPT {
            ports.pop_front();
        }
        ports.push_back(port);
    }

    pub fn contains(&self, port: u32) -> bool {
        port != 0 && self.0.lock().expect("own ports lock").contains(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_ports_are_remembered_for_a_while() {
        let own = OwnPorts::default();
        own.note(77_001);
        assert!(own.contains(77_001));
        for p in 0..KEPT as u32 {
            own.note(80_000 + p);
        }
        assert!(!own.contains(77_001));
        assert!(!own.contains(0));
    }
}
