//! Returning bytes inside JSON: text when it is UTF-8, base64 otherwise.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Bytes made ready for a JSON result.
#[derive(Debug, PartialEq, Eq)]
pub struct Encoded {
    pub text: String,
    /// `Some("base64")` when `text` is base64, `None` for plain UTF-8.
    pub encoding: Option<&'static str>,
    /// How many of the input bytes `text` stands for (it can drop a partial
    /// UTF-8 character at a cut, so a reader can continue from there).
    pub bytes: usize,
}

/// Encodes `bytes`. When `cut` is true the data was truncated, so an
/// incomplete multi-byte character at the very end is dropped rather than
/// turning the whole text into base64.
pub fn encode(bytes: Vec<u8>, cut: bool) -> Encoded {
    let len = bytes.len();
    match String::from_utf8(bytes) {
        Ok(text) => Encoded {
            text,
            encoding: None,
            bytes: len,
        },
        Err(err) => {
            let utf8 = err.utf8_error();
            let mut bytes = err.into_bytes();
            // error_len() == None: the input ends inside a character.
            if cut && utf8.error_len().is_none() && utf8.valid_up_to() > 0 {
                bytes.truncate(utf8.valid_up_to());
                let n = bytes.len();
                let text = String::from_utf8(bytes).unwrap_or_default();
                return Encoded {
                    text,
                    encoding: None,
                    bytes: n,
                };
            }
            Encoded {
                text: STANDARD.encode(&bytes),
                encoding: Some("base64"),
                bytes: len,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stays_text() {
        let e = encode("héllo".into(), false);
        assert_eq!((e.text.as_str(), e.encoding, e.bytes), ("héllo", None, 6));
    }

    #[test]
    fn binary_becomes_base64() {
        let e = encode(vec![0xff, 0x00], false);
        assert_eq!((e.text.as_str(), e.encoding), ("/wA=", Some("base64")));
    }

    #[test]
    fn a_cut_character_is_dropped() {
        let mut b = "ab".as_bytes().to_vec();
        b.push(0xc3); // first byte of "é"
        let e = encode(b.clone(), true);
        assert_eq!((e.text.as_str(), e.encoding, e.bytes), ("ab", None, 2));
        assert_eq!(encode(b, false).encoding, Some("base64"));
    }
}
