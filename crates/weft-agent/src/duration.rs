//! Durations on the command line: `90s`, `5m`, `24h`, `1h30m`, or plain seconds.

use std::time::Duration;

use thiserror::Error;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("bad duration {0:?}: unknown unit {1:?} (use s, m, h, d)")]
    Unit(String, char),
    #[error("bad duration {0:?}: a number must precede {1:?}")]
    NoNumber(String, char),
    #[error("bad duration {0:?}: use e.g. 90s, 5m, 24h")]
    Shape(String),
}

pub fn parse(s: &str) -> Result<Duration, DurationError> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(DurationError::Unit(s.to_owned(), c)),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| DurationError::NoNumber(s.to_owned(), c))?;
        total += n * unit;
        num.clear();
    }
    if !num.is_empty() || s.is_empty() {
        return Err(DurationError::Shape(s.to_owned()));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn units() {
        assert_eq!(super::parse("24h").unwrap().as_secs(), 86400);
        assert_eq!(super::parse("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(super::parse("45").unwrap().as_secs(), 45);
        assert!(
            super::parse("5x").is_err()
                && super::parse("h").is_err()
                && super::parse("5m3").is_err()
        );
    }
}
