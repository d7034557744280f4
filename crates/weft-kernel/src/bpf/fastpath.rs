//! The forwarding fast path: a `tc` ingress program that forwards pod-to-pod packets
//! itself instead of handing them to the host's IP stack.
//!
//! A packet between two containers on different hosts normally crosses each host's
//! routing, netfilter hooks and (in bridge mode) the bridge; that per-packet work is most
//! of what host-gw costs over a direct link. The program does what the stack would do
//! for such a packet, with the kernel's own route and neighbour tables
//! (`bpf_fib_lookup`): decrement the TTL, write the next hop's MAC addresses and send
//! the packet out of the route's device (`bpf_redirect`), or, for a container of this
//! host in routed mode, straight into the container's namespace (`bpf_redirect_peer`,
//! which also skips the veth's queue). Anything it is not sure of it passes to the stack
//! unchanged: other protocols, IP options, TTL 1, addresses outside the cluster network,
//! no route, no resolved neighbour yet, a packet too big for the next hop. Routes stay
//! the truth; the program only takes a shortcut the routes already describe, so removing
//! it changes nothing but speed.
//!
//! The shortcut skips netfilter: pod-to-pod packets are neither filtered nor tracked by
//! the host's firewall. That is why it is an option (`weftd --fast-path`).

use ipnet::Ipv4Net;

use super::insn::{Alu, Asm, Cond, Insn, Size, FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9};

// Kernel helper numbers (`enum bpf_func_id`).
const SKB_STORE_BYTES: i32 = 9;
const L3_CSUM_REPLACE: i32 = 10;
const REDIRECT: i32 = 23;
const SKB_LOAD_BYTES: i32 = 26;
const FIB_LOOKUP: i32 = 69;
const REDIRECT_PEER: i32 = 155;

// `struct __sk_buff` fields.
const SKB_PKT_TYPE: i16 = 4;
const SKB_PROTOCOL: i16 = 16;
const SKB_INGRESS_IFINDEX: i16 = 36;

// Return codes.
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

// Stack layout. `struct bpf_fib_lookup` (64 bytes) at FIB, the IPv4 header copy at IP.
const FIB: i16 = -64;
const FIB_FAMILY: i16 = FIB;
const FIB_L4_PROTO: i16 = FIB + 1;
const FIB_IFINDEX: i16 = FIB + 8;
const FIB_TOS: i16 = FIB + 12;
const FIB_SRC: i16 = FIB + 16;
const FIB_DST: i16 = FIB + 32;
const FIB_SMAC: i16 = FIB + 52;
const FIB_DMAC: i16 = FIB + 58;
const IP: i16 = -88;
const IP_VER_IHL: i16 = IP;
const IP_TOS: i16 = IP + 1;
const IP_TTL: i16 = IP + 8;
const IP_PROTO: i16 = IP + 9;
const IP_SRC: i16 = IP + 12;
const IP_DST: i16 = IP + 16;

const ETH_HLEN: i32 = 14;
/// Offsets in the packet of the IPv4 header's TTL and checksum.
const PKT_TTL: i32 = ETH_HLEN + 8;
const PKT_CHECK: i32 = ETH_HLEN + 10;

/// What one attached copy of the program forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPath {
    /// Only packets whose source and destination are both inside take the shortcut.
    pub cluster: Ipv4Net,
    /// Destinations here are this host's containers on their own veth (routed mode):
    /// they are handed into the container's namespace directly. `None` (bridge mode, or
    /// no local containers): every destination is sent out of its route's device.
    pub peer_subnet: Option<Ipv4Net>,
}

/// An address or mask as a 32-bit load of its four bytes from a packet yields it.
fn wire(addr: std::net::Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

impl FastPath {
    /// The program's instructions. Pure: the same parameters give the same bytes, so the
    /// agent can tell an attached program from the one it wants by the kernel's tag.
    pub fn program(&self) -> Vec<Insn> {
        let mut a = Asm::new();
        let pass = a.label();
        let drop = a.label();
        let eth_p_ip = u32::from(u16::from_ne_bytes([0x08, 0x00]));

        a.mov(R6, R1);
        // IPv4 frames addressed to this host only.
        a.load(Size::W, R2, R6, SKB_PROTOCOL)
            .jump32_imm(Cond::Ne, R2, eth_p_ip, pass)
            .load(Size::W, R2, R6, SKB_PKT_TYPE)
            .jump32_imm(Cond::Ne, R2, 0, pass);
        // Copy the IPv4 header to the stack.
        a.mov(R1, R6)
            .mov_imm(R2, ETH_HLEN)
            .mov(R3, FP)
            .alu_imm(Alu::Add, R3, IP.into())
            .mov_imm(R4, 20)
            .call(SKB_LOAD_BYTES)
            .jump_imm(Cond::Ne, R0, 0, pass);
        // Version 4 without options, TTL above 1.
        a.load(Size::B, R2, FP, IP_VER_IHL)
            .jump32_imm(Cond::Ne, R2, 0x45, pass)
            .load(Size::B, R7, FP, IP_TTL)
            .jump32_imm(Cond::Le, R7, 1, pass);
        // Both addresses inside the cluster network.
        let (net, mask) = (wire(self.cluster.network()), wire(self.cluster.netmask()));
        a.load(Size::W, R8, FP, IP_SRC)
            .load(Size::W, R9, FP, IP_DST);
        for addr in [R8, R9] {
            a.mov(R2, addr)
                .alu32_imm(Alu::And, R2, mask)
                .jump32_imm(Cond::Ne, R2, net, pass);
        }
        // The route lookup, as the stack would do it for this packet.
        for i in 0..8 {
            a.store_imm(Size::DW, FP, FIB + 8 * i, 0);
        }
        a.store_imm(Size::B, FP, FIB_FAMILY, libc::AF_INET)
            .load(Size::B, R2, FP, IP_PROTO)
            .store(Size::B, FP, FIB_L4_PROTO, R2)
            .load(Size::W, R2, R6, SKB_INGRESS_IFINDEX)
            .store(Size::W, FP, FIB_IFINDEX, R2)
            .load(Size::B, R2, FP, IP_TOS)
            .store(Size::B, FP, FIB_TOS, R2)
            .store(Size::W, FP, FIB_SRC, R8)
            .store(Size::W, FP, FIB_DST, R9);
        a.mov(R1, R6)
            .mov(R2, FP)
            .alu_imm(Alu::Add, R2, FIB.into())
            .mov_imm(R3, 64)
            .mov_imm(R4, 0)
            .call(FIB_LOOKUP)
            .jump_imm(Cond::Ne, R0, 0, pass);
        // Out of the device it came in by: the stack decides (and may send a redirect).
        a.load(Size::W, R2, FP, FIB_IFINDEX)
            .load(Size::W, R3, R6, SKB_INGRESS_IFINDEX)
            .jump32(Cond::Eq, R2, R3, pass);
        // TTL - 1 with the checksum adjusted (the TTL is the low byte of the 16-bit word
        // it shares with the protocol, as loaded on a little-endian machine).
        a.load(Size::H, R3, FP, IP_TTL)
            .mov(R4, R3)
            .alu_imm(Alu::Add, R4, -1)
            .store(Size::H, FP, IP_TTL, R4)
            .mov(R1, R6)
            .mov_imm(R2, PKT_CHECK)
            .mov_imm(R5, 2)
            .call(L3_CSUM_REPLACE)
            .jump_imm(Cond::Ne, R0, 0, drop);
        // Once the packet is being changed, a failure drops it rather than pass it on
        // half-rewritten.
        for (at, from, len) in [(PKT_TTL, IP_TTL, 1), (0, FIB_DMAC, 6), (6, FIB_SMAC, 6)] {
            a.mov(R1, R6)
                .mov_imm(R2, at)
                .mov(R3, FP)
                .alu_imm(Alu::Add, R3, from.into())
                .mov_imm(R4, len)
                .mov_imm(R5, 0)
                .call(SKB_STORE_BYTES)
                .jump_imm(Cond::Ne, R0, 0, drop);
        }
        a.load(Size::W, R1, FP, FIB_IFINDEX);
        if let Some(peer) = self.peer_subnet {
            let out = a.label();
            a.mov(R2, R9)
                .alu32_imm(Alu::And, R2, wire(peer.netmask()))
                .jump32_imm(Cond::Ne, R2, wire(peer.network()), out)
                .mov_imm(R2, 0)
                .call(REDIRECT_PEER)
                .exit();
            a.bind(out);
        }
        a.mov_imm(R2, 0).call(REDIRECT).exit();
        a.bind(pass);
        a.mov_imm(R0, TC_ACT_OK).exit();
        a.bind(drop);
        a.mov_imm(R0, TC_ACT_SHOT).exit();
        a.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(peer: Option<&str>) -> FastPath {
        FastPath {
            cluster: "10.244.0.0/16".parse().unwrap(),
            peer_subnet: peer.map(|p| p.parse().unwrap()),
        }
    }

    #[test]
    fn the_same_parameters_give_the_same_program() {
        assert_eq!(fp(None).program(), fp(None).program());
        assert_ne!(fp(None).program(), fp(Some("10.244.3.0/24")).program());
    }

    #[test]
    fn the_cluster_network_is_compared_as_packet_bytes() {
        let p = fp(None).program();
        let net = u32::from_ne_bytes([10, 244, 0, 0]) as i32;
        let mask = u32::from_ne_bytes([255, 255, 0, 0]) as i32;
        // Two masked compares, one per address.
        assert_eq!(
            p.iter().filter(|i| i.imm == mask && i.code == 0x54).count(),
            2
        );
        assert_eq!(
            p.iter().filter(|i| i.imm == net && i.code == 0x56).count(),
            2
        );
    }

    #[test]
    fn peer_redirect_only_when_asked() {
        let calls = |p: &[Insn]| -> Vec<i32> {
            p.iter().filter(|i| i.code == 0x85).map(|i| i.imm).collect()
        };
        assert!(!calls(&fp(None).program()).contains(&REDIRECT_PEER));
        let routed = calls(&fp(Some("10.244.3.0/24")).program());
        assert!(routed.contains(&REDIRECT_PEER) && routed.contains(&REDIRECT));
    }

    #[test]
    fn every_path_ends_in_exit() {
        let p = fp(Some("10.244.3.0/24")).program();
        assert_eq!(p.last().unwrap().code, 0x95);
        // No jump leaves the program.
        for (i, insn) in p.iter().enumerate() {
            if matches!(insn.code & 0x07, 0x05 | 0x06) && !matches!(insn.code, 0x85 | 0x95) {
                let to = i as isize + 1 + insn.off as isize;
                assert!((0..p.len() as isize).contains(&to), "jump at {i} to {to}");
            }
        }
    }
}
