//! The BGP message header (RFC 4271 section 4.1) and the five message types.

use crate::notification::{code, header, Notification};
use crate::open::Open;
use crate::update::Update;

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended message capability (RFC 8654, not offered).
pub const MAX_LEN: usize = 4096;

const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;
const ROUTE_REFRESH: u8 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Box<Update>),
    Notification(Notification),
    Keepalive,
    /// RFC 2918.
    RouteRefresh {
        afi: u16,
        safi: u8,
    },
}

/// What a session negotiated that changes how messages are read and written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Codec {
    /// Both sides sent the 4-octet AS capability: AS_PATH and AGGREGATOR carry 4 octets.
    pub four_octet_as: bool,
}

/// Decodes one message from the front of `buf`: `Ok(None)` if more bytes are needed,
/// else the message and how many bytes it took. A malformed message is the
/// NOTIFICATION to send back (and then close).
pub fn decode(buf: &[u8], codec: Codec) -> Result<Option<(Message, usize)>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(Notification::new(
            code::HEADER,
            header::NOT_SYNCHRONIZED,
            vec![],
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let kind = buf[18];
    let bad_len =
        || Notification::new(code::HEADER, header::BAD_LENGTH, (len as u16).to_be_bytes());
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(bad_len());
    }
    let min = match kind {
        OPEN => 29,
        UPDATE => 23,
        NOTIFICATION => 21,
        KEEPALIVE => 19,
        ROUTE_REFRESH => 23,
        other => {
            return Err(Notification::new(
                code::HEADER,
                header::BAD_TYPE,
                vec![other],
            ))
        }
    };
    if len < min || (kind == KEEPALIVE && len != 19) || (kind == ROUTE_REFRESH && len != 23) {
        return Err(bad_len());
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[HEADER_LEN..len];
    let msg = match kind {
        OPEN => Message::Open(Open::decode(body)?),
        UPDATE => Message::Update(Box::new(Update::decode(body, codec.four_octet_as)?)),
        NOTIFICATION => Message::Notification(Notification::new(body[0], body[1], &body[2..])),
        KEEPALIVE => Message::Keepalive,
        _ => Message::RouteRefresh {
            afi: u16::from_be_bytes([body[0], body[1]]),
            safi: body[3],
        },
    };
    Ok(Some((msg, len)))
}

impl Message {
    /// The message on the wire. An UPDATE that would exceed 4,096 bytes is the caller's
    /// to split (see `weft_bgp::update` packing); this never truncates.
    pub fn encode(&self, codec: Codec) -> Vec<u8> {
        let mut out = MARKER.to_vec();
        out.extend([0, 0, 0]);
        let kind = match self {
            Message::Open(o) => {
                o.encode(&mut out);
                OPEN
            }
            Message::Update(u) => {
                u.encode(codec.four_octet_as, &mut out);
                UPDATE
            }
            Message::Notification(n) => {
                out.extend([n.code, n.subcode]);
                out.extend(&n.data);
                NOTIFICATION
            }
            Message::Keepalive => KEEPALIVE,
            Message::RouteRefresh { afi, safi } => {
                out.extend(afi.to_be_bytes());
                out.extend([0, *safi]);
                ROUTE_REFRESH
            }
        };
        let len = out.len() as u16;
        out[16..18].copy_from_slice(&len.to_be_bytes());
        out[18] = kind;
        out
    }
}
