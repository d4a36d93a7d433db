//! Pre-tokenizers: split text into the words BPE merges within, as the vocabulary's regex
//! would, written out as hand-made matchers (Rust's `regex` has no lookahead, and a
//! backtracking engine is many times slower than a direct scan).
//!
//! Each matcher returns the end of the regex match at a position; the alternatives are
//! tried in the regex's order with its greedy-then-backtrack semantics. The unit tests
//! check both against `fancy-regex` running the original patterns on random text.
//!
//! Character classes follow Unicode, as in llama.cpp and Hugging Face tokenizers: `\p{L}`
//! and `\p{N}` are general-category groups, `\s` is the White_Space property. (ECMAScript's
//! `\s`, used by the JavaScript reference tokenizers, differs on U+0085, which it lacks,
//! and U+FEFF, which it adds.)

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Which regex splits the text (`tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// `llama-bpe` (Llama 3, BitNet b1.58 2B4T):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// `gpt-2`: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// llama.cpp's `default`, for byte-level vocabularies without `tokenizer.ggml.pre`: four
    /// regexes applied in turn, each splitting the pieces of the one before (matches and the
    /// text between them both become pieces): `[\p{P}\$\+<=>\^~\|]+`, then the GPT-2
    /// pattern, then `\p{N}+`, then `[0-9][0-9][0-9]`.
    Default,
}

impl PreTokenizer {
    /// Calls `word` with each piece of `text`, in order; the pieces cover all of `text`.
    pub fn split<'t>(self, text: &'t str, mut word: impl FnMut(&'t str)) {
        match self {
            PreTokenizer::Llama3 => split_with(text, llama3_match, &mut word),
            PreTokenizer::Gpt2 => split_with(text, gpt2_match, &mut word),
            PreTokenizer::Default => {
                split_runs(text, is_default_punct, &mut |p1| {
                    split_with(p1, gpt2_match, &mut |p2| {
                        split_runs(p2, is_number, &mut |p3| split_digit_triples(p3, &mut word))
                    })
                });
            }
        }
    }
}

/// `text` cut at the ends `next_end` gives, from the start.
fn split_with<'t>(
    text: &'t str,
    next_end: fn(&str, usize) -> usize,
    word: &mut dyn FnMut(&'t str),
) {
    let mut i = 0;
    while i < text.len() {
        let end = next_end(text, i);
        debug_assert!(end > i);
        word(&text[i..end]);
        i = end;
    }
}

/// Split by a regex `[class]+`: each maximal run of `class`, and each stretch between runs.
fn split_runs<'t>(text: &'t str, class: fn(char) -> bool, word: &mut dyn FnMut(&'t str)) {
    let mut i = 0;
    while i < text.len() {
        let inside = char_at(text, i).is_some_and(class);
        let end = run(text, i, |c| class(c) == inside);
        word(&text[i..end]);
        i = end;
    }
}

/// Split by `[0-9][0-9][0-9]`: leftmost non-overlapping triples of ASCII digits, and the
/// stretches between them.
fn split_digit_triples<'t>(text: &'t str, word: &mut dyn FnMut(&'t str)) {
    let b = text.as_bytes();
    let (mut gap, mut i) = (0, 0);
    while i + 3 <= b.len() {
        if b[i..i + 3].iter().all(u8::is_ascii_digit) {
            if gap < i {
                word(&text[gap..i]);
            }
            word(&text[i..i + 3]);
            i += 3;
            gap = i;
        } else {
            i += 1;
        }
    }
    if gap < text.len() {
        word(&text[gap..]);
    }
}

/// `[\p{P}\$\+<=>\^~\|]`: Unicode punctuation and eight ASCII symbols.
fn is_default_punct(c: char) -> bool {
    matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
        || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        c.general_category_group() == GeneralCategoryGroup::Letter
    }
}

pub fn is_number(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        c.general_category_group() == GeneralCategoryGroup::Number
    }
}

/// The Unicode White_Space property.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// `[^\s\p{L}\p{N}]`
fn is_other(c: char) -> bool {
    !is_space(c) && !is_letter(c) && !is_number(c)
}

fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|t| t.chars().next())
}

/// End of the run of characters satisfying `f` starting at byte `i`.
fn run(s: &str, i: usize, f: impl Fn(char) -> bool) -> usize {
    s[i..]
        .char_indices()
        .find(|&(_, c)| !f(c))
        .map_or(s.len(), |(k, _)| i + k)
}

/// `'s|'t|'re|'ve|'m|'ll|'d`, ASCII case-insensitive when `fold`.
fn contraction(s: &str, i: usize, fold: bool) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'\'') {
        return None;
    }
    let low = |k: usize| {
        b.get(k)
            .map(|&c| if fold { c.to_ascii_lowercase() } else { c })
    };
    match (low(i + 1), low(i + 2)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => Some(i + 2),
        (Some(b'r' | b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => Some(i + 3),
        _ => None,
    }
}

/// Whitespace alternatives shared by both patterns: `\s+(?!\S)|\s+`, with Llama 3's
/// `\s*[\r\n]+` tried first when `newlines`.
fn whitespace(s: &str, i: usize, newlines: bool) -> usize {
    let end = run(s, i, is_space);
    if newlines {
        // \s*[\r\n]+ : the greedy \s* backs off to the last line break of the run.
        if let Some(p) = s[i..end].rfind(['\r', '\n']) {
            return i + p + 1;
        }
    }
    if end == s.len() {
        return end;
    }
    // \s+(?!\S) : give back the last whitespace character, which precedes a non-space.
    let last = s[i..end].char_indices().next_back().map_or(0, |(k, _)| k);
    if last > 0 {
        i + last
    } else {
        end
    }
}

fn llama3_match(s: &str, i: usize) -> usize {
    let Some(c0) = char_at(s, i) else {
        return s.len();
    };
    if let Some(end) = contraction(s, i, true) {
        return end;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if is_letter(c0) {
        return run(s, i, is_letter);
    }
    let i1 = i + c0.len_utf8();
    if c0 != '\r' && c0 != '\n' && !is_number(c0) && char_at(s, i1).is_some_and(is_letter) {
        return run(s, i1, is_letter);
    }
    // \p{N}{1,3}
    if is_number(c0) {
        let mut end = i;
        for c in s[i..].chars().take(3).take_while(|&c| is_number(c)) {
            end += c.len_utf8();
        }
        return end;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    let j = if c0 == ' ' { i1 } else { i };
    if char_at(s, j).is_some_and(is_other) {
        let end = run(s, j, is_other);
        return run(s, end, |c| c == '\r' || c == '\n');
    }
    whitespace(s, i, true)
}

fn gpt2_match(s: &str, i: usize) -> usize {
    let Some(c0) = char_at(s, i) else {
        return s.len();
    };
    if let Some(end) = contraction(s, i, false) {
        return end;
    }
    // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+' : the optional space only helps when a class
    // character follows, since the space itself is in none of the three classes.
    let j = if c0 == ' ' { i + 1 } else { i };
    if let Some(c) = char_at(s, j) {
        for class in [is_letter as fn(char) -> bool, is_number, is_other] {
            if class(c) {
                return run(s, j, class);
            }
        }
    }
    whitespace(s, i, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn pieces(p: PreTokenizer, s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        p.split(s, |w| v.push(w));
        v
    }

    #[test]
    fn llama3_examples() {
        let p = PreTokenizer::Llama3;
        assert_eq!(
            pieces(p, "Hello world's  1234 ok!!\n\n  x"),
            ["Hello", " world", "'s", " ", " ", "123", "4", " ok", "!!\n\n", " ", " x"]
        );
        assert_eq!(pieces(p, "a  \n  b"), ["a", "  \n", " ", " b"]);
        assert_eq!(pieces(p, "don'T"), ["don", "'T"]);
        assert_eq!(pieces(p, "  "), ["  "]);
        assert_eq!(pieces(p, "\tx"), ["\tx"]);
    }

    #[test]
    fn gpt2_examples() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(
            pieces(p, "Hello world's  1234 ok!!\n\n  x"),
            ["Hello", " world", "'s", " ", " 1234", " ok", "!!", "\n\n ", " x"]
        );
        assert_eq!(pieces(p, "don'T"), ["don", "'", "T"]);
    }

    /// Our matchers against the original regexes (fancy-regex has lookahead) on random
    /// strings over characters from every class the patterns distinguish.
    #[test]
    fn matches_the_regexes_on_random_text() {
        const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        const GPT2: &str =
            r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
        let alphabet: Vec<char> =
            "aZsStTrReEvVmMlLdD'''   \t\n\r\r\n\u{b}\u{85}\u{a0}\u{3000}\u{2028}\
             0123٣Ⅻ²é中ßΩ\u{301}.,!?-_(🦙\u{200d}\u{feff}"
                .chars()
                .collect();
        let mut rng = crate::rng::Rng::new(7);
        for (pre, pattern) in [(PreTokenizer::Llama3, LLAMA3), (PreTokenizer::Gpt2, GPT2)] {
            let re = fancy_regex::Regex::new(pattern).unwrap();
            for _ in 0..5000 {
                let len = 1 + rng.below(16) as usize;
                let s: String = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect();
                // The regex used as a splitter: its matches, and whatever lies between them.
                let mut want = Vec::new();
                let mut last = 0;
                for m in re.find_iter(&s) {
                    let m = m.unwrap();
                    if m.start() > last {
                        want.push(&s[last..m.start()]);
                    }
                    want.push(m.as_str());
                    last = m.end();
                }
                if last < s.len() {
                    want.push(&s[last..]);
                }
                assert_eq!(pieces(pre, &s), want, "{pre:?} on {s:?}");
            }
        }
    }

    #[test]
    fn default_examples() {
        let p = PreTokenizer::Default;
        assert_eq!(
            pieces(p, "Hello world's  12345 ok!!\n\n  x+=y"),
            [
                "Hello", " world", "'", "s", " ", " ", "123", "45", " ok", "!!", "\n\n ", " x",
                "+=", "y"
            ]
        );
    }

    /// llama.cpp's `default` as it runs it: each regex splits every piece of the previous
    /// one, keeping matches and the text between them.
    #[test]
    fn default_matches_the_staged_regexes_on_random_text() {
        const STAGES: [&str; 4] = [
            r"[\p{P}\$\+<=>\^~\|]+",
            r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
            r"\p{N}+",
            r"[0-9][0-9][0-9]",
        ];
        let stages: Vec<fancy_regex::Regex> = STAGES
            .iter()
            .map(|p| fancy_regex::Regex::new(p).unwrap())
            .collect();
        let alphabet: Vec<char> = "aZsStTrReEvVmMlLdD'''   \t\n\r\u{b}\u{a0}\u{3000}\
             0123456789٣Ⅻ²é中ß.,!?-_($+<=>^~|`«»🦙"
            .chars()
            .collect();
        let mut rng = crate::rng::Rng::new(11);
        for _ in 0..5000 {
            let len = 1 + rng.below(20) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            let mut want: Vec<&str> = alloc::vec![&s];
            for re in &stages {
                let mut next = Vec::new();
                for piece in want {
                    let mut last = 0;
                    for m in re.find_iter(piece) {
                        let m = m.unwrap();
                        if m.start() > last {
                            next.push(&piece[last..m.start()]);
                        }
                        next.push(m.as_str());
                        last = m.end();
                    }
                    if last < piece.len() {
                        next.push(&piece[last..]);
                    }
                }
                want = next;
            }
            assert_eq!(pieces(PreTokenizer::Default, &s), want, "on {s:?}");
        }
    }

    #[test]
    fn classes() {
        assert!(is_letter('é') && is_letter('中') && is_letter('ß') && !is_letter('\u{301}'));
        assert!(is_number('٣') && is_number('Ⅻ') && is_number('²') && !is_number('a'));
        assert!(is_space('\u{85}') && is_space('\u{3000}') && !is_space('\u{FEFF}'));
        let _ = String::new();
    }
}
