//! Session authentication: the TCP MD5 key of a peer (RFC 2385), as a value that never
//! prints itself.

use std::fmt;

use crate::sys::MAX_KEY;

/// A TCP MD5 key: 1 to 80 bytes. Its `Debug` shows neither the key nor its length, so
/// no log line, status or panic message can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Vec<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("an MD5 password must not be empty")]
    Empty,
    #[error("an MD5 password is at most {MAX_KEY} bytes (RFC 2385 keys as Linux takes them)")]
    TooLong,
}

impl Md5Key {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Md5Key, BadKey> {
        let bytes = bytes.into();
        match bytes.len() {
            0 => Err(BadKey::Empty),
            n if n > MAX_KEY => Err(BadKey::TooLong),
            _ => Ok(Md5Key(bytes)),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Md5Key(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints_itself() {
        let k = Md5Key::new("hunter2").unwrap();
        assert_eq!(format!("{k:?}"), "Md5Key(<secret>)");
        assert!(!format!("{:?}", Some(k)).contains("hunter2"));
    }

    #[test]
    fn lengths_are_checked() {
        assert_eq!(Md5Key::new(""), Err(BadKey::Empty));
        assert_eq!(Md5Key::new(vec![b'x'; 81]), Err(BadKey::TooLong));
        assert!(Md5Key::new(vec![b'x'; 80]).is_ok());
    }
}
