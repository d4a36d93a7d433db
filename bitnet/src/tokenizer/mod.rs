//! Tokenizer from the GGUF vocabulary, with llama.cpp's semantics.
//!
//! Two models, chosen by `tokenizer.ggml.model`:
//! * `gpt2`: byte-level BPE with ranked merges, after a regex pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` (`llama-bpe` for Llama 3 and BitNet b1.58 2B4T, or `gpt-2`).
//! * `llama`: SentencePiece-style BPE by token score, spaces as `▁`, a leading space added,
//!   and `<0xXX>` byte tokens for characters outside the vocabulary (1bitLLM models).
//!
//! Special tokens written in the text (`<|eot_id|>`) become their ids when the caller asks
//! for it (`parse_special`), as llama.cpp does for prompts.

mod bytelevel;
mod chat;
mod merge;
mod pretok;
mod special;
mod stream;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::gguf::{Gguf, Metadata, Value};

pub use bytelevel::byte_to_char;
pub use chat::{ChatFormat, Role};
pub use pretok::PreTokenizer;
pub use stream::StreamDecoder;

use merge::{Merger, NO_ID};
use special::{Fragment, Specials};

/// ggml's token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i32(t: i32) -> TokenType {
        match t {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Tokens that text may be merged into.
    fn is_text(self) -> bool {
        matches!(self, TokenType::Normal | TokenType::UserDefined)
    }
}

enum Model {
    Bpe {
        pre: PreTokenizer,
        /// Llama 3: a word that is itself a token is emitted whole, merges or not.
        ignore_merges: bool,
        /// (left id << 32 | right id) -> (rank, merged id).
        merges: HashMap<u64, (u32, u32)>,
        /// (byte,) -> the token of its byte-level character.
        byte_token: Box<[u32; 256]>,
    },
    Spm {
        /// (vocab,)
        scores: Vec<f32>,
        add_space_prefix: bool,
        /// (byte,) -> `<0xXX>` token, for characters the vocabulary lacks.
        byte_token: Box<[Option<u32>; 256]>,
        /// No token has `▁` after another character (SentencePiece's default
        /// split_by_whitespace), so each `▁word` can be merged on its own.
        word_split: bool,
    },
}

pub struct Tokenizer {
    model: Model,
    /// (vocab,) token texts as stored.
    tokens: Vec<String>,
    /// (vocab,)
    types: Vec<TokenType>,
    index: HashMap<String, u32>,
    /// Control, unknown and user-defined tokens: split out of text when parsing specials.
    specials: Specials,
    /// User-defined tokens only: split out of text always, as llama.cpp does.
    user_defined: Specials,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// Tokens that end generation.
    eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    chat_template: Option<String>,
    /// What loading had to decide for itself, one line each (`note: ...`, `warning: ...`),
    /// for the CLI to print: e.g. the pre-tokenizer of a file without `tokenizer.ggml.pre`.
    pub notes: Vec<String>,
}

impl core::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model_name())
            .field("vocab", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .finish_non_exhaustive()
    }
}

fn err(e: crate::gguf::GgufError) -> String {
    format!("{e}")
}

fn opt_bool(m: &Metadata, key: &str) -> Result<Option<bool>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(_) => m.get_bool(key).map(Some).map_err(err),
    }
}

/// Pre-tokenizer and whether whole-word vocabulary hits skip the merges, by llama.cpp's
/// names for `tokenizer.ggml.pre`.
fn pre_tokenizer(name: &str) -> Option<(PreTokenizer, bool)> {
    match name {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => Some((PreTokenizer::Llama3, true)),
        "dbrx" | "smaug-bpe" => Some((PreTokenizer::Llama3, false)),
        "gpt-2" | "phi-2" | "mpt" | "olmo" | "jina-es" | "jina-de" | "jina-v2-es"
        | "jina-v2-de" | "gigachat" => Some((PreTokenizer::Gpt2, false)),
        "default" => Some((PreTokenizer::Default, false)),
        _ => None,
    }
}

/// The pre-tokenizer of a byte-level vocabulary whose file names none (the official BitNet
/// b1.58 2B4T GGUF has no `tokenizer.ggml.pre`; BitNet #373, PR #508): recognised from the
/// vocabulary itself, else llama.cpp's `default`, as llama.cpp falls back. Returns the
/// pre-tokenizer, whether whole-word hits skip the merges, and the line to tell the user.
fn recognise_pre(tokens: &[String]) -> (PreTokenizer, bool, String) {
    // Llama 3's vocabulary: 128000 BPE tokens then 256 specials in a fixed order.
    let at = |i: usize, t: &str| tokens.get(i).is_some_and(|x| x == t);
    let llama3 = tokens.len() == 128256
        && at(128000, "<|begin_of_text|>")
        && at(128001, "<|end_of_text|>")
        && at(128006, "<|start_header_id|>")
        && at(128009, "<|eot_id|>");
    if llama3 {
        let note = "note: the file has no tokenizer.ggml.pre; its 128256-token vocabulary is \
                    Llama 3's (as BitNet b1.58 2B4T's), so the llama-bpe pre-tokenizer is used";
        (PreTokenizer::Llama3, true, note.into())
    } else {
        let warning = format!(
            "warning: the file has no tokenizer.ggml.pre and its {}-token vocabulary is not \
             one this engine recognises: using llama.cpp's default pre-tokenizer, which may \
             split text differently from the model's training",
            tokens.len()
        );
        (PreTokenizer::Default, false, warning)
    }
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, String> {
        Tokenizer::from_metadata(&g.metadata)
    }

    pub fn from_metadata(m: &Metadata) -> Result<Tokenizer, String> {
        let model_name = m.get_str("tokenizer.ggml.model").map_err(err)?;
        let tokens: Vec<String> = m
            .get_str_array("tokenizer.ggml.tokens")
            .map_err(err)?
            .to_vec();
        let n = tokens.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(format!("tokenizer.ggml.tokens has {n} tokens"));
        }
        let per_token = |key: &str, len: usize| -> Result<(), String> {
            if len != n {
                return Err(format!(
                    "{key} has {len} entries, expected {n} (one per token)"
                ));
            }
            Ok(())
        };
        let types: Vec<TokenType> = match m.get("tokenizer.ggml.token_type") {
            Some(_) => {
                let t = m.get_i32_array("tokenizer.ggml.token_type").map_err(err)?;
                per_token("tokenizer.ggml.token_type", t.len())?;
                t.iter().map(|&t| TokenType::from_i32(t)).collect()
            }
            None => alloc::vec![TokenType::Normal; n],
        };
        let mut index: HashMap<String, u32> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            if t.is_empty() {
                continue;
            }
            if let Some(prev) = index.insert(t.clone(), i as u32) {
                return Err(format!(
                    "tokenizer.ggml.tokens: {t:?} appears twice (ids {prev} and {i})"
                ));
            }
        }
        let id = |key: &str| -> Result<Option<u32>, String> {
            match m.get(key) {
                None => Ok(None),
                Some(_) => {
                    let v = m.get_u32(key).map_err(err)?;
                    if v as usize >= n {
                        return Err(format!("{key}: {v} is outside the vocabulary (0..{n})"));
                    }
                    Ok(Some(v))
                }
            }
        };

        let mut notes = Vec::new();
        let (model, default_add_bos, default_bos, default_eos, default_unk) = match model_name {
            "gpt2" => {
                let pre_name = match m.get("tokenizer.ggml.pre") {
                    Some(_) => m.get_str("tokenizer.ggml.pre").map_err(err)?,
                    None => "",
                };
                let (pre, ignore_merges) = if pre_name.is_empty() {
                    let (pre, ignore_merges, note) = recognise_pre(&tokens);
                    notes.push(note);
                    (pre, ignore_merges)
                } else {
                    pre_tokenizer(pre_name).ok_or_else(|| {
                        format!(
                            "tokenizer.ggml.pre '{pre_name}' is not a supported pre-tokenizer \
                             (llama-bpe, llama3, gpt-2, default and their aliases; a file \
                             without the key gets one recognised from its vocabulary)"
                        )
                    })?
                };
                let mut byte_token = Box::new([0u32; 256]);
                for (b, slot) in byte_token.iter_mut().enumerate() {
                    let (u, len) = bytelevel::BYTE_UTF8[b];
                    let s = core::str::from_utf8(&u[..len as usize]).unwrap_or_default();
                    *slot = *index.get(s).ok_or_else(|| {
                        format!(
                            "tokenizer.ggml.tokens has no token for byte 0x{b:02X} ({s:?}); \
                             a byte-level vocabulary needs all 256"
                        )
                    })?;
                }
                let list = m.get_str_array("tokenizer.ggml.merges").map_err(err)?;
                let mut merges = HashMap::with_capacity(list.len());
                for (rank, merge) in list.iter().enumerate() {
                    // As llama.cpp: the separator is the first space after the first byte.
                    let sep = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
                    let parsed = sep.and_then(|p| {
                        let (a, b) = (&merge[..p], &merge[p + 1..]);
                        let joined: String = [a, b].concat();
                        Some((*index.get(a)?, *index.get(b)?, *index.get(joined.as_str())?))
                    });
                    let (a, b, ab) = parsed.ok_or_else(|| {
                        format!(
                            "tokenizer.ggml.merges[{rank}] = {merge:?} is not two tokens \
                             whose concatenation is a token"
                        )
                    })?;
                    // The first (best-ranked) entry of a duplicated pair wins.
                    merges
                        .entry((u64::from(a) << 32) | u64::from(b))
                        .or_insert((rank as u32, ab));
                }
                let model = Model::Bpe {
                    pre,
                    ignore_merges,
                    merges,
                    byte_token,
                };
                (model, false, None, None, None)
            }
            "llama" => {
                let scores = match m.get("tokenizer.ggml.scores") {
                    Some(_) => {
                        let s = m.get_f32_array("tokenizer.ggml.scores").map_err(err)?;
                        per_token("tokenizer.ggml.scores", s.len())?;
                        s.to_vec()
                    }
                    None => alloc::vec![0.0; n],
                };
                let mut byte_token = Box::new([None; 256]);
                for (b, slot) in byte_token.iter_mut().enumerate() {
                    *slot = index.get(format!("<0x{b:02X}>").as_str()).copied();
                }
                let add_space_prefix =
                    opt_bool(m, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                let word_split = tokens
                    .iter()
                    .zip(&types)
                    .all(|(t, ty)| !ty.is_text() || !t.trim_start_matches('▁').contains('▁'));
                let model = Model::Spm {
                    scores,
                    add_space_prefix,
                    byte_token,
                    word_split,
                };
                // llama.cpp's defaults for SentencePiece vocabularies.
                let fit = |i: u32| ((i as usize) < n).then_some(i);
                (model, true, fit(1), fit(2), fit(0))
            }
            other => {
                return Err(format!(
                    "tokenizer.ggml.model '{other}' is not supported (gpt2 or llama)"
                ))
            }
        };

        let bos = id("tokenizer.ggml.bos_token_id")?.or(default_bos);
        let eos = id("tokenizer.ggml.eos_token_id")?.or(default_eos);
        let unk = id("tokenizer.ggml.unknown_token_id")?.or(default_unk);
        let eom = id("tokenizer.ggml.eom_token_id")?;
        let pad = id("tokenizer.ggml.padding_token_id")?;
        // As llama.cpp: without an explicit EOT, a token spelled like one is it.
        let eot = match id("tokenizer.ggml.eot_token_id")? {
            Some(t) => Some(t),
            None => [
                "<|eot_id|>",
                "<|im_end|>",
                "<|end|>",
                "<end_of_turn>",
                "<|endoftext|>",
            ]
            .iter()
            .find_map(|t| index.get(*t).copied()),
        };
        let add_bos = opt_bool(m, "tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos);
        let add_eos = opt_bool(m, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(
                "tokenizer.ggml.add_bos_token is true, but there is no BOS token \
                        (tokenizer.ggml.bos_token_id)"
                    .into(),
            );
        }
        if add_eos && eos.is_none() {
            return Err(
                "tokenizer.ggml.add_eos_token is true, but there is no EOS token \
                        (tokenizer.ggml.eos_token_id)"
                    .into(),
            );
        }
        if let (Model::Spm { byte_token, .. }, None) = (&model, unk) {
            if byte_token.iter().any(Option::is_none) {
                return Err(
                    "a llama (SentencePiece) vocabulary needs all 256 byte tokens \
                            <0x00>..<0xFF> or an unknown token for characters it lacks"
                        .into(),
                );
            }
        }
        let mut eog: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        eog.sort_unstable();
        eog.dedup();

        let (tokens_ref, types_ref) = (&tokens, &types);
        let pick = |f: fn(TokenType) -> bool| {
            tokens_ref
                .iter()
                .enumerate()
                .filter(move |&(i, _)| f(types_ref[i]))
                .map(|(i, t)| (i as u32, t.as_str()))
        };
        let specials = Specials::new(pick(|t| {
            matches!(
                t,
                TokenType::Control | TokenType::Unknown | TokenType::UserDefined
            )
        }));
        let user_defined = Specials::new(pick(|t| t == TokenType::UserDefined));
        let chat_template = match m.get("tokenizer.chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => Some(String::from(
                m.get_str("tokenizer.chat_template").map_err(err)?,
            )),
            None => None,
        };
        if chat_template
            .as_deref()
            .is_some_and(ChatFormat::is_older_bitnet)
        {
            notes.push(String::from(
                "note: tokenizer.chat_template is an older BitNet template (turns not closed by \
                 <|eot_id|>); chat uses the format BitNet b1.58 2B4T was tuned on: \
                 'User: text<|eot_id|>Assistant: '",
            ));
        }
        Ok(Tokenizer {
            model,
            tokens,
            types,
            index,
            specials,
            user_defined,
            bos,
            eos,
            eot,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            chat_template,
            notes,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// `gpt2` or `llama`, as in `tokenizer.ggml.model`.
    pub fn model_name(&self) -> &'static str {
        match self.model {
            Model::Bpe { .. } => "gpt2",
            Model::Spm { .. } => "llama",
        }
    }

    /// The token's text as the vocabulary stores it (`Ġworld`, `▁world`, `<0x0A>`).
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The id of a token spelled exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }

    /// Whether generation stops at this token (EOS, EOT, EOM).
    pub fn is_end(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// A prompt: BOS (and EOS) as the vocabulary asks, special tokens in the text parsed.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_with(text, true, true)
    }

    /// `add_special`: add BOS/EOS when `tokenizer.ggml.add_{bos,eos}_token` say so.
    /// `parse_special`: text spelling a control token becomes that token.
    pub fn encode_with(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut frags = Vec::new();
        let specials = if parse_special {
            &self.specials
        } else {
            &self.user_defined
        };
        specials.partition(text, &mut frags);
        let mut work = Work::default();
        // Pre-token -> its ids' range in `out`, so repeated words are merged once.
        let mut cache: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut prev_special = true;
        for f in frags {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(a, b) => {
                    let t = &text[a..b];
                    match &self.model {
                        Model::Bpe { .. } => self.encode_bpe(t, &mut work, &mut cache, &mut out),
                        Model::Spm { .. } => self.encode_spm(t, prev_special, &mut work, &mut out),
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    fn encode_bpe<'t>(
        &self,
        text: &'t str,
        work: &mut Work,
        cache: &mut HashMap<&'t str, (usize, usize)>,
        out: &mut Vec<u32>,
    ) {
        let Model::Bpe {
            pre,
            ignore_merges,
            merges,
            byte_token,
        } = &self.model
        else {
            return;
        };
        let Work { merger, buf } = work;
        pre.split(text, |word| {
            if *ignore_merges {
                buf.clear();
                for b in word.bytes() {
                    let (u, n) = &bytelevel::BYTE_UTF8[b as usize];
                    buf.push_str(core::str::from_utf8(&u[..*n as usize]).unwrap_or_default());
                }
                if let Some(&id) = self.index.get(buf.as_str()) {
                    out.push(id);
                    return;
                }
            }
            if let Some(&(start, len)) = cache.get(word) {
                out.extend_from_within(start..start + len);
                return;
            }
            merger.clear();
            for (k, b) in word.bytes().enumerate() {
                merger.push(k, k + 1, byte_token[b as usize]);
            }
            merger.run(|l, r| {
                merges
                    .get(&((u64::from(l.id) << 32) | u64::from(r.id)))
                    .copied()
            });
            let start = out.len();
            out.extend(merger.symbols().map(|s| s.id));
            cache.insert(word, (start, out.len() - start));
        });
    }

    fn encode_spm(&self, text: &str, prev_special: bool, work: &mut Work, out: &mut Vec<u32>) {
        let Model::Spm {
            scores,
            add_space_prefix,
            byte_token,
            word_split,
        } = &self.model
        else {
            return;
        };
        let Work { merger, buf } = work;
        buf.clear();
        if *add_space_prefix && prev_special {
            buf.push('▁');
        }
        for c in text.chars() {
            buf.push(if c == ' ' { '▁' } else { c });
        }
        let text_token = |s: &str| {
            self.index
                .get(s)
                .copied()
                .filter(|&id| self.types[id as usize].is_text())
        };
        let text: &str = buf;
        // Where no token joins a word to the space that follows it, words merge apart: the
        // same result as one merge loop over the whole text, without a heap as long as it.
        let mut cache: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut start = 0;
        while start < text.len() {
            let end = if *word_split {
                let after_spaces =
                    start + text[start..].len() - text[start..].trim_start_matches('▁').len();
                text[after_spaces..]
                    .find('▁')
                    .map_or(text.len(), |p| after_spaces + p)
            } else {
                text.len()
            };
            let word = &text[start..end];
            if let Some(&(at, len)) = cache.get(word) {
                out.extend_from_within(at..at + len);
                start = end;
                continue;
            }
            merger.clear();
            for (k, c) in word.char_indices() {
                let (a, b) = (start + k, start + k + c.len_utf8());
                merger.push(a, b, text_token(&text[a..b]).unwrap_or(NO_ID));
            }
            merger.run(|l, r| {
                let id = text_token(&text[l.start as usize..r.end as usize])?;
                Some((score_key(scores[id as usize]), id))
            });
            let at = out.len();
            for s in merger.symbols() {
                if s.id != NO_ID {
                    out.push(s.id);
                    continue;
                }
                for b in text[s.start as usize..s.end as usize].bytes() {
                    out.extend(byte_token[b as usize].or(self.unk));
                }
            }
            cache.insert(word, (at, out.len() - at));
            start = end;
        }
    }

    /// The bytes a token stands for. Control and unknown tokens give their text only if
    /// `special`; unused ones give nothing.
    pub fn token_bytes(&self, id: u32, special: bool, out: &mut Vec<u8>) {
        let Some(text) = self.tokens.get(id as usize) else {
            return;
        };
        match self.types[id as usize] {
            TokenType::Control | TokenType::Unknown => {
                if special {
                    out.extend_from_slice(text.as_bytes());
                }
            }
            TokenType::UserDefined => out.extend_from_slice(text.as_bytes()),
            TokenType::Byte => out.extend(byte_token_value(text)),
            TokenType::Unused | TokenType::Undefined => {}
            TokenType::Normal => match self.model {
                Model::Bpe { .. } => {
                    for ch in text.chars() {
                        match bytelevel::char_to_byte(ch) {
                            Some(b) => out.push(b),
                            None => out.extend_from_slice(ch.encode_utf8(&mut [0u8; 4]).as_bytes()),
                        }
                    }
                }
                Model::Spm { .. } => {
                    for ch in text.chars() {
                        let ch = if ch == '▁' { ' ' } else { ch };
                        out.extend_from_slice(ch.encode_utf8(&mut [0u8; 4]).as_bytes());
                    }
                }
            },
        }
    }

    /// The bytes of a whole sequence, as [`Tokenizer::token_bytes`]; a SentencePiece
    /// vocabulary's added leading space is removed again.
    pub fn decode(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let strip = matches!(
            self.model,
            Model::Spm {
                add_space_prefix: true,
                ..
            }
        );
        let mut first_text = true;
        for &id in ids {
            let start = out.len();
            self.token_bytes(id, special, &mut out);
            if strip && first_text && self.token_type(id) == Some(TokenType::Normal) {
                if out.get(start) == Some(&b' ') {
                    out.remove(start);
                }
                first_text = false;
            }
        }
        out
    }

    /// The chat format `tokenizer.chat_template` describes, checked against the vocabulary.
    pub fn chat_format(&self) -> Result<ChatFormat, String> {
        let template = self.chat_template.as_deref().ok_or(
            "the model file has no tokenizer.chat_template, so its chat format is unknown",
        )?;
        let format = ChatFormat::detect(template)?;
        let needs: &[&str] = match format {
            ChatFormat::Bitnet => &["<|eot_id|>"],
            ChatFormat::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            ChatFormat::ChatMl => &["<|im_start|>", "<|im_end|>"],
        };
        for t in needs {
            let special = self
                .token_id(t)
                .is_some_and(|id| self.types[id as usize] == TokenType::Control);
            if !special {
                return Err(format!(
                    "the {} chat format needs the control token {t}, which the vocabulary lacks",
                    format.name()
                ));
            }
        }
        Ok(format)
    }

    /// One chat turn as prompt tokens: BOS, an optional system message, the user's message
    /// and the assistant's prefix.
    pub fn chat_prompt(&self, system: Option<&str>, user: &str) -> Result<Vec<u32>, String> {
        let text = self.chat_format()?.prompt(system, user);
        Ok(self.encode_with(&text, true, true))
    }
}

/// Reusable buffers of one encode call.
#[derive(Default)]
struct Work {
    merger: Merger,
    buf: String,
}

/// Higher scores merge first: map the score to a key that sorts the other way.
fn score_key(score: f32) -> u32 {
    let bits = score.to_bits();
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    !ascending
}

/// `<0xXX>` -> the byte.
fn byte_token_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_keys_sort_high_scores_first() {
        let scores = [3.0f32, 0.5, 0.0, -0.0, -1.0, -1e9, f32::NEG_INFINITY];
        for w in scores.windows(2) {
            assert!(score_key(w[0]) <= score_key(w[1]), "{w:?}");
        }
        assert!(score_key(1.0) < score_key(-1.0));
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(byte_token_value("<0x0A>"), Some(10));
        assert_eq!(byte_token_value("<0xff>"), Some(255));
        assert_eq!(byte_token_value("<0x0A"), None);
        assert_eq!(byte_token_value("<0x>"), None);
    }
}
