//! Splitting text at special tokens (`<|eot_id|>`) before the model's tokenizer sees it.
//!
//! llama.cpp's order: specials longest first; each one splits every stretch of text not yet
//! claimed, at its leftmost non-overlapping occurrences. Overlapping candidates (rare) then
//! resolve to the longer token even when a shorter one starts earlier; matching that order
//! keeps our ids identical to llama.cpp's.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A text range or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    Text(usize, usize),
    Token(u32),
}

#[derive(Default)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// (rank in longest-first order, token id) of the special ending here.
    token: Option<(u32, u32)>,
}

/// A byte trie over the special tokens' texts.
pub struct Specials {
    nodes: Vec<Node>,
}

impl Specials {
    /// `tokens`: (id, text) of every token that is matched in raw text.
    pub fn new<'a>(tokens: impl Iterator<Item = (u32, &'a str)>) -> Specials {
        let mut list: Vec<(u32, &str)> = tokens.filter(|(_, t)| !t.is_empty()).collect();
        // Longest first; equal lengths by id so the order is total.
        list.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let mut nodes = alloc::vec![Node::default()];
        for (rank, (id, text)) in list.into_iter().enumerate() {
            let mut n = 0usize;
            for &b in text.as_bytes() {
                n = match nodes[n].children.binary_search_by_key(&b, |c| c.0) {
                    Ok(k) => nodes[n].children[k].1 as usize,
                    Err(k) => {
                        let new = nodes.len() as u32;
                        nodes[n].children.insert(k, (b, new));
                        nodes.push(Node::default());
                        new as usize
                    }
                };
            }
            nodes[n].token = Some((rank as u32, id));
        }
        Specials { nodes }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes[0].children.is_empty()
    }

    /// Splits `text` into text ranges and special tokens.
    pub fn partition(&self, text: &str, out: &mut Vec<Fragment>) {
        out.clear();
        let bytes = text.as_bytes();
        // Every occurrence of every special: (rank, start, end, id).
        let mut hits: Vec<(u32, usize, usize, u32)> = Vec::new();
        if !self.is_empty() {
            for start in 0..bytes.len() {
                let mut n = 0usize;
                for (k, &b) in bytes[start..].iter().enumerate() {
                    let node = &self.nodes[n];
                    match node.children.binary_search_by_key(&b, |c| c.0) {
                        Ok(i) => n = node.children[i].1 as usize,
                        Err(_) => break,
                    }
                    if let Some((rank, id)) = self.nodes[n].token {
                        hits.push((rank, start, start + k + 1, id));
                    }
                }
            }
        }
        hits.sort_unstable();
        // Claimed ranges: start -> (end, id).
        let mut claimed: BTreeMap<usize, (usize, u32)> = BTreeMap::new();
        for (_, start, end, id) in hits {
            let before_ok = claimed
                .range(..=start)
                .next_back()
                .is_none_or(|(_, &(e, _))| e <= start);
            let after_ok = claimed.range(start..end).next().is_none();
            if before_ok && after_ok {
                claimed.insert(start, (end, id));
            }
        }
        let mut pos = 0;
        for (start, (end, id)) in claimed {
            if start > pos {
                out.push(Fragment::Text(pos, start));
            }
            out.push(Fragment::Token(id));
            pos = end;
        }
        if pos < text.len() {
            out.push(Fragment::Text(pos, text.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_special_wins_even_when_a_shorter_one_starts_first() {
        let s = Specials::new([(1, "ab"), (2, "bcd"), (3, "<x>")].into_iter());
        let mut out = Vec::new();
        s.partition("abcd<x>ab<x", &mut out);
        use Fragment::*;
        assert_eq!(out, [Text(0, 1), Token(2), Token(3), Token(1), Text(9, 11)]);
    }
}
