//! The sink both engines render into: a buffer that refuses to grow past a
//! byte budget, so an oversized render stops early instead of filling memory,
//! and refuses any write once the render's time is up.

use std::io;

use super::budget::{self, Exceeded};

/// Why one template failed to render, before it is tied to a message index.
#[derive(Debug)]
pub(super) enum Failure {
    TooLarge,
    /// The steps or the time of the render are used up.
    Limit(Exceeded),
    Message(String),
}

pub(super) struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

/// Room the buffer starts with: a typical prompt's output fits, so a render
/// does not grow it through 8, 16, 32… bytes one write at a time.
const INITIAL_CAPACITY: usize = 512;

impl CappedWriter {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::with_capacity(limit.min(INITIAL_CAPACITY)),
            limit,
            overflowed: false,
        }
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn into_string(self) -> Result<String, Failure> {
        // Both engines write whole `str` pieces and a refused piece is not
        // written at all, so the buffer is always valid UTF-8.
        String::from_utf8(self.buf)
            .map_err(|e| Failure::Message(format!("the output is not valid UTF-8: {e}")))
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        budget::check_time().map_err(|_| io::Error::other("render limit reached"))?;
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn writes_within_the_limit_are_kept() {
        let mut out = CappedWriter::new(5);
        out.write_all(b"ab").expect("fits");
        out.write_all(b"cde").expect("fits exactly");
        assert!(!out.overflowed());
        assert_eq!(out.into_string().expect("utf-8"), "abcde");
    }

    #[test]
    fn a_write_past_the_limit_fails_and_is_remembered() {
        let mut out = CappedWriter::new(3);
        out.write_all(b"ab").expect("fits");
        assert!(out.write_all(b"cd").is_err());
        assert!(out.overflowed());
        assert_eq!(out.into_string().expect("utf-8"), "ab");
    }
}
