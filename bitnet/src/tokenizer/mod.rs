//! Tokenizer from the GGUF vocabulary.
//!
//! Supported so far: the byte-level GPT-2 vocabulary *without merges* that the fixture
//! models carry (one token per byte, plus specials). Real BPE merges and SentencePiece
//! vocabularies are rejected with a clear error until they are implemented; raw ids
//! (`--prompt-tokens`) work with every model.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::gguf::Gguf;

/// ggml token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;

#[derive(Debug)]
pub struct Tokenizer {
    /// (vocab,) token texts as stored (byte-level unicode for GPT-2 vocabularies).
    tokens: Vec<String>,
    /// (vocab,) whether the token is a control token (hidden on output).
    control: Vec<bool>,
    /// byte value -> token id.
    byte_token: [u32; 256],
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub add_bos: bool,
}

/// GPT-2's byte <-> unicode map: printable Latin-1 bytes stand for themselves, the rest
/// are shifted to U+0100 and up so every byte has a visible character.
pub fn byte_to_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('\u{FFFD}')
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, String> {
        let model = g
            .get_str("tokenizer.ggml.model")
            .map_err(|e| format!("{e}"))?;
        let merges = match g.get("tokenizer.ggml.merges") {
            Some(_) => g
                .get_str_array("tokenizer.ggml.merges")
                .map_err(|e| format!("{e}"))?
                .len(),
            None => 0,
        };
        if model != "gpt2" || merges > 0 {
            return Err(format!(
                "tokenizer.ggml.model '{model}' with {merges} merges is not supported yet \
                 (only byte-level vocabularies without merges); pass token ids with --prompt-tokens"
            ));
        }
        let tokens: Vec<String> = g
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(|e| format!("{e}"))?
            .to_vec();
        let control = match g.get("tokenizer.ggml.token_type") {
            Some(_) => {
                let types = g
                    .get_i32_array("tokenizer.ggml.token_type")
                    .map_err(|e| format!("{e}"))?;
                if types.len() != tokens.len() {
                    return Err(format!(
                        "tokenizer.ggml.token_type has {} entries, expected {} (one per token)",
                        types.len(),
                        tokens.len()
                    ));
                }
                types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect()
            }
            None => alloc::vec![false; tokens.len()],
        };
        let index: BTreeMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let mut byte_token = [0u32; 256];
        for b in 0..=255u8 {
            let mut buf = [0u8; 4];
            let s: &str = byte_to_char(b).encode_utf8(&mut buf);
            byte_token[b as usize] = *index.get(s).ok_or_else(|| {
                format!("tokenizer.ggml.tokens has no token for byte 0x{b:02X} ('{s}'); a byte-level vocabulary needs all 256")
            })?;
        }
        let id = |key: &str| -> Result<Option<u32>, String> {
            match g.get(key) {
                None => Ok(None),
                Some(_) => {
                    let v = g.get_u32(key).map_err(|e| format!("{e}"))?;
                    if v as usize >= tokens.len() {
                        return Err(format!(
                            "{key}: {v} is outside the vocabulary (0..{})",
                            tokens.len()
                        ));
                    }
                    Ok(Some(v))
                }
            }
        };
        let add_bos = match g.get("tokenizer.ggml.add_bos_token") {
            Some(_) => g
                .get_bool("tokenizer.ggml.add_bos_token")
                .map_err(|e| format!("{e}"))?,
            None => false,
        };
        Ok(Tokenizer {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            add_bos,
            tokens,
            control,
            byte_token,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() + 1);
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend(text.bytes().map(|b| self.byte_token[b as usize]));
        ids
    }

    /// Whether generation stops at this token.
    pub fn is_end(&self, id: u32) -> bool {
        Some(id) == self.eos || Some(id) == self.eot
    }

    /// The raw bytes a token stands for; control tokens give their text only if `special`.
    pub fn token_bytes(&self, id: u32, special: bool, out: &mut Vec<u8>) {
        let Some(text) = self.tokens.get(id as usize) else {
            return;
        };
        if self.control[id as usize] {
            if special {
                out.extend_from_slice(text.as_bytes());
            }
            return;
        }
        for ch in text.chars() {
            match (0..=255u8).find(|&b| byte_to_char(b) == ch) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(ch.encode_utf8(&mut [0u8; 4]).as_bytes()),
            }
        }
    }
}

/// Turns a stream of token bytes into text without ever emitting a broken UTF-8 sequence:
/// an incomplete trailing sequence is held back until the next token completes it.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match core::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(core::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete sequence at the end: hold it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of generation (invalid bytes become U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_map_is_a_bijection() {
        let chars: alloc::collections::BTreeSet<char> = (0..=255u8).map(byte_to_char).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(b' '), '\u{120}'); // GPT-2's 'Ġ'
        assert_eq!(byte_to_char(b'\n'), '\u{10A}'); // 'Ċ'
    }

    #[test]
    fn stream_decoder_holds_back_partial_utf8() {
        let mut d = StreamDecoder::default();
        let euro = "€".as_bytes(); // 3 bytes
        assert_eq!(d.push(&euro[..1]), "");
        assert_eq!(d.push(&euro[1..2]), "");
        assert_eq!(d.push(&euro[2..]), "€");
        assert_eq!(d.push(b"ok"), "ok");
        assert_eq!(d.push(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(d.push(&euro[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
