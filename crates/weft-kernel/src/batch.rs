//! Route changes sent to the kernel in batches, the one way Weft changes routes: up to
//! 256 RTM_NEWROUTE / RTM_DELROUTE requests in one `sendmsg`. Only the last asks for an
//! acknowledgement; the kernel answers every failed request with an error carrying its
//! sequence number, before that last answer, so a change the kernel refuses is reported
//! alone and the rest still apply, without 256 acknowledgements to allocate and read.
//!
//! Written by hand because `rtnetlink` sends one request per message and waits for each
//! answer through a future: fine for a few routes, but installing 10,000 learned BGP
//! routes that way costs about 20 µs each, several times what the kernel itself needs.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use weft_plan::route::RouteChange;
use weft_plan::{Applied, Change, Refusal, Route};

use crate::own::Owned;

/// Requests per `sendmsg`. Each answer (an error, or the closing ack) is its own socket
/// buffer (about 1 KiB of receive buffer accounting however small its bytes), so the
/// answers to a chunk where every request fails must still fit the buffer.
const CHUNK: usize = 256;
/// The receive buffer asked for (root may exceed `rmem_max`).
const RCVBUF: i32 = 4 << 20;

/// Sets a socket's receive buffer to `size`, past `rmem_max` when allowed (root).
pub(crate) fn force_rcvbuf(socket: &mut Socket, size: i32) {
    if crate::sys::set_sockopt(socket, libc::SO_RCVBUFFORCE, &size).is_err() {
        let _ = socket.set_rx_buf_sz(size as usize);
    }
}

/// Applies `changes` in batches; `message` builds each route's netlink message. The
/// socket is noted in `own`, so the kernel's notifications of these changes wake nobody.
pub fn apply(
    changes: &[RouteChange],
    message: fn(&Route) -> RouteMessage,
    own: &Owned,
) -> io::Result<Applied<Route>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    let local = socket.bind_auto()?;
    // The kernel names this socket in the notifications of these changes.
    own.note_port(local.port_number());
    socket.connect(&SocketAddr::new(0, 0))?;
    // Errors come back without the request echoed in them.
    let _ = socket.set_cap_ack(true);
    force_rcvbuf(&mut socket, RCVBUF);
    let mut applied = Applied::default();
    let mut buf = Vec::new();
    for (n, chunk) in changes.chunks(CHUNK).enumerate() {
        let base = (n * CHUNK) as u32 + 1;
        buf.clear();
        for (i, change) in chunk.iter().enumerate() {
            let (payload, flags) = match change {
                Change::Add(r) => (
                    RouteNetlinkMessage::NewRoute(message(r)),
                    NLM_F_CREATE | NLM_F_EXCL,
                ),
                Change::Replace(r) => (
                    RouteNetlinkMessage::NewRoute(message(r)),
                    NLM_F_CREATE | NLM_F_REPLACE,
                ),
                Change::Remove(r) => (RouteNetlinkMessage::DelRoute(message(r)), 0),
            };
            let mut header = NetlinkHeader::default();
            // Only the last request asks for an acknowledgement: the kernel reports
            // every failure anyway, in order, so the last ack closes the chunk and
            // whatever came back before it were the failures.
            let ack = if i + 1 == chunk.len() { NLM_F_ACK } else { 0 };
            header.flags = NLM_F_REQUEST | ack | flags;
            header.sequence_number = base + i as u32;
            let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
            m.finalize();
            let at = buf.len();
            buf.resize(at + m.header.length as usize, 0);
            m.serialize(&mut buf[at..]);
        }
        socket.send(&buf, 0)?;
        let mut results: Vec<Result<(), Refusal>> = vec![Ok(()); chunk.len()];
        let last = chunk.len() - 1;
        let mut closed = false;
        while !closed {
            let (data, _) = socket.recv_from_full()?;
            let mut off = 0;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes(data[off..off + 4].try_into().expect("4 bytes")) as usize;
                if len < 16 || off + len > data.len() {
                    break;
                }
                if let Ok(m) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..off + len])
                {
                    let seq = m.header.sequence_number;
                    if let NetlinkPayload::Error(e) = m.payload {
                        let idx = seq.wrapping_sub(base) as usize;
                        if idx < results.len() {
                            if e.code.is_some() {
                                results[idx] = Err(Refusal::Errno(-e.raw_code()));
                            }
                            closed |= idx == last;
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
        for (change, result) in chunk.iter().zip(results) {
            applied.record(*change, result);
        }
    }
    Ok(applied)
}
