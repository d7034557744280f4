//! NOTIFICATION (RFC 4271 section 4.5) and the error codes the codec produces.

use std::fmt;

/// Error codes (RFC 4271 section 4.5, RFC 4486 for Cease subcodes).
pub mod code {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
}

/// Subcodes of [`code::HEADER`].
pub mod header {
    pub const NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_LENGTH: u8 = 2;
    pub const BAD_TYPE: u8 = 3;
}

/// Subcodes of [`code::OPEN`].
pub mod open {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// Subcodes of [`code::UPDATE`].
pub mod update {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Subcodes of [`code::CEASE`] (RFC 4486).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
}

/// A NOTIFICATION: sent before closing a session, and what every fatal decode error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// The name of the error, for logs and `weftctl node status`.
    pub fn describe(&self) -> String {
        let c = match self.code {
            code::HEADER => "message header error",
            code::OPEN => "OPEN message error",
            code::UPDATE => "UPDATE message error",
            code::HOLD_TIMER_EXPIRED => "hold timer expired",
            code::FSM => "finite state machine error",
            code::CEASE => "cease",
            _ => "unknown error",
        };
        let s = match (self.code, self.subcode) {
            (code::HEADER, header::NOT_SYNCHRONIZED) => "connection not synchronized",
            (code::HEADER, header::BAD_LENGTH) => "bad message length",
            (code::HEADER, header::BAD_TYPE) => "bad message type",
            (code::OPEN, open::UNSUPPORTED_VERSION) => "unsupported version number",
            (code::OPEN, open::BAD_PEER_AS) => "bad peer AS",
            (code::OPEN, open::BAD_BGP_ID) => "bad BGP identifier",
            (code::OPEN, open::UNSUPPORTED_OPTIONAL_PARAMETER) => "unsupported optional parameter",
            (code::OPEN, open::UNACCEPTABLE_HOLD_TIME) => "unacceptable hold time",
            (code::OPEN, open::UNSUPPORTED_CAPABILITY) => "unsupported capability",
            (code::UPDATE, update::MALFORMED_ATTRIBUTE_LIST) => "malformed attribute list",
            (code::UPDATE, update::UNRECOGNIZED_WELL_KNOWN) => "unrecognized well-known attribute",
            (code::UPDATE, update::MISSING_WELL_KNOWN) => "missing well-known attribute",
            (code::UPDATE, update::ATTRIBUTE_FLAGS) => "attribute flags error",
            (code::UPDATE, update::ATTRIBUTE_LENGTH) => "attribute length error",
            (code::UPDATE, update::INVALID_ORIGIN) => "invalid ORIGIN attribute",
            (code::UPDATE, update::INVALID_NEXT_HOP) => "invalid NEXT_HOP attribute",
            (code::UPDATE, update::OPTIONAL_ATTRIBUTE) => "optional attribute error",
            (code::UPDATE, update::INVALID_NETWORK_FIELD) => "invalid network field",
            (code::UPDATE, update::MALFORMED_AS_PATH) => "malformed AS_PATH",
            (code::CEASE, cease::MAX_PREFIXES) => "maximum number of prefixes reached",
            (code::CEASE, cease::ADMIN_SHUTDOWN) => "administrative shutdown",
            (code::CEASE, cease::PEER_DECONFIGURED) => "peer de-configured",
            (code::CEASE, cease::ADMIN_RESET) => "administrative reset",
            (code::CEASE, cease::CONNECTION_REJECTED) => "connection rejected",
            (code::CEASE, cease::OTHER_CONFIGURATION_CHANGE) => "other configuration change",
            (code::CEASE, cease::COLLISION_RESOLUTION) => "connection collision resolution",
            (code::CEASE, cease::OUT_OF_RESOURCES) => "out of resources",
            _ => "",
        };
        if s.is_empty() {
            format!("{c} (code {}, subcode {})", self.code, self.subcode)
        } else {
            format!("{c}: {s}")
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for Notification {}
