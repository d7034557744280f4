//! Counters of the user-space data path, shared by the workers and read by `/metrics`.
//! Workers add per batch, not per packet.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// Live counters.
        #[derive(Debug, Default)]
        pub struct Stats { $(#[doc = $help] pub $name: AtomicU64,)* }

        /// A copy of the counters at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot { $(pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Snapshot {
            /// `(name, help, value)` for each counter, for the metrics endpoint.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $help, self.$name),)*]
            }
        }
    };
}

counters! {
    tx_packets: "Packets sent into the tunnel (after segmentation).",
    tx_bytes: "Inner bytes sent into the tunnel.",
    tx_sends: "System calls that sent tunnel packets.",
    rx_packets: "Packets received from the tunnel (before coalescing).",
    rx_bytes: "Inner bytes received from the tunnel.",
    rx_writes: "Packets written to the TUN (after coalescing).",
    dropped_nonmember: "Encapsulated packets dropped because their source is not a node.",
    dropped_malformed: "Packets dropped because they were not well-formed IPv4.",
    dropped_misdirected: "Decapsulated packets dropped because they were not for this node's subnet.",
    unreachable_sent: "ICMP net-unreachable answers for destinations no node holds.",
    errors: "Send or write errors.",
}

pub(crate) fn add(c: &AtomicU64, v: u64) {
    if v != 0 {
        c.fetch_add(v, Ordering::Relaxed);
    }
}
