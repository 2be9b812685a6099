//! Incremental UTF-8 validation for text messages (RFC 6455 §8.1), failing fast.
//!
//! A text message arrives in pieces (frames, and parts of frames as the socket delivers
//! them); a multi-byte character may be split across pieces. [`TextBuilder`] validates each
//! piece as it arrives with `core::str::from_utf8`, appends the valid part to a `String`
//! (so the bytes are validated once and never re-checked), and carries an incomplete trailing
//! sequence (at most 3 bytes) into the next piece. An invalid byte is reported as soon as it
//! arrives, not when the message ends.

use std::str;

/// A piece of text was not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates text that arrives in pieces without keeping it (streamed messages), carrying
/// an incomplete trailing character (at most 3 bytes) into the next piece.
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Validator {
    /// The start of a character whose remaining bytes have not arrived yet.
    carry: [u8; 4],
    carry_len: u8,
}

impl Utf8Validator {
    /// Bytes of an incomplete trailing character held back.
    pub fn pending(&self) -> usize {
        usize::from(self.carry_len)
    }

    /// Validates `bytes`, passing each complete valid run to `sink`. Fails at the first byte
    /// that cannot be part of valid UTF-8, even if its sequence is not complete yet.
    #[inline]
    pub fn push_with(
        &mut self,
        mut bytes: &[u8],
        mut sink: impl FnMut(&str),
    ) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let need = char_width(self.carry[0]);
            let take = (need - have).min(bytes.len());
            self.carry[have..have + take].copy_from_slice(&bytes[..take]);
            self.carry_len += take as u8;
            bytes = &bytes[take..];
            let len = usize::from(self.carry_len);
            match str::from_utf8(&self.carry[..len]) {
                Ok(s) => {
                    sink(s);
                    self.carry_len = 0;
                }
                // Still a valid prefix; all input is used up.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match str::from_utf8(bytes) {
            Ok(s) => sink(s),
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // from_utf8 only accepted `valid`, so this conversion cannot fail.
                sink(str::from_utf8(valid).map_err(|_| InvalidUtf8)?);
                if e.error_len().is_some() {
                    return Err(InvalidUtf8);
                }
                // `rest` is a proper prefix of a character (1 to 3 bytes).
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len() as u8;
            }
        }
        Ok(())
    }

    /// Validates `bytes` (see [`push_with`](Self::push_with)).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        self.push_with(bytes, |_| {})
    }

    /// The text ended: fails if it ends inside a character.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        if self.carry_len != 0 {
            return Err(InvalidUtf8);
        }
        Ok(())
    }
}

/// Builds a `String` from pieces, validating as it goes.
#[derive(Debug, Default)]
pub struct TextBuilder {
    text: String,
    validator: Utf8Validator,
}

impl TextBuilder {
    /// A builder that appends into `buffer` (cleared; its capacity is reused).
    pub fn with_buffer(mut buffer: String) -> TextBuilder {
        buffer.clear();
        TextBuilder {
            text: buffer,
            validator: Utf8Validator::default(),
        }
    }

    /// Bytes accepted so far, including an incomplete trailing character.
    pub fn len(&self) -> usize {
        self.text.len() + self.validator.pending()
    }

    /// Validates and appends `bytes`. Fails at the first byte that cannot be part of valid
    /// UTF-8, even if the sequence it belongs to is not complete yet.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let text = &mut self.text;
        self.validator.push_with(bytes, |s| text.push_str(s))
    }

    /// Finishes the message: fails if it ends inside a character.
    pub fn finish(&mut self) -> Result<String, InvalidUtf8> {
        self.validator.finish()?;
        Ok(std::mem::take(&mut self.text))
    }
}

/// Width of the character a valid lead byte starts (only called on lead bytes that
/// `from_utf8` accepted as the start of an incomplete sequence, so 2 to 4).
fn char_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(pieces: &[&[u8]]) -> Result<String, InvalidUtf8> {
        let mut b = TextBuilder::default();
        for p in pieces {
            b.push(p)?;
        }
        b.finish()
    }

    #[test]
    fn accepts_text_split_at_every_byte() {
        let text = "κόσμε, hello, 𝄞 music, ascii, \u{10FFFF}\u{FFFD}";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(feed(&[&bytes[..cut], &bytes[cut..]]).unwrap(), text);
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed(&singles).unwrap(), text);
    }

    #[test]
    fn fails_fast_on_first_bad_byte() {
        let mut b = TextBuilder::default();
        b.push("κόσμε".as_bytes()).unwrap();
        // 0xED 0xA0 starts a UTF-16 surrogate: invalid as soon as the 2nd byte arrives.
        b.push(&[0xED]).unwrap();
        assert_eq!(b.push(&[0xA0]), Err(InvalidUtf8));
        let mut b = TextBuilder::default();
        // 0xF4 0x90 would encode above U+10FFFF.
        assert_eq!(b.push(&[0xF4, 0x90]), Err(InvalidUtf8));
        let mut b = TextBuilder::default();
        assert_eq!(b.push(&[b'a', 0xFF, b'b']), Err(InvalidUtf8));
        let mut b = TextBuilder::default();
        b.push(&[0xF0, 0x9F]).unwrap();
        assert_eq!(b.push(&[0x98, 0x41]), Err(InvalidUtf8));
    }

    #[test]
    fn validator_agrees_with_builder_at_every_split() {
        let mut bad = "héllo €".as_bytes().to_vec();
        bad.insert(3, 0xFF);
        for bytes in ["héllo € 𝄞".as_bytes(), &bad[..], &[0xE2, 0x82]] {
            for cut in 0..=bytes.len() {
                let mut v = Utf8Validator::default();
                let ok = v.push(&bytes[..cut]).and_then(|()| v.push(&bytes[cut..]));
                let ok = ok.and_then(|()| v.finish()).is_ok();
                assert_eq!(ok, std::str::from_utf8(bytes).is_ok(), "cut {cut}");
            }
        }
    }

    #[test]
    fn truncated_sequence_fails_at_finish() {
        assert_eq!(feed(&[b"a", &[0xE2, 0x82]]), Err(InvalidUtf8));
        assert_eq!(feed(&[&[0xE2, 0x82], &[0xAC]]).unwrap(), "€");
    }
}
