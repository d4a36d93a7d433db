//! The merge loop BPE and SentencePiece share: repeatedly merge the adjacent pair with the
//! best priority (lowest key), the leftmost pair first among equals, until no pair merges.
//!
//! Symbols live in a doubly linked list over a vector; candidate pairs wait in a min-heap
//! and are checked for staleness when popped, so a word of n symbols costs O(n log n).

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

/// No token (yet): a SentencePiece symbol whose character is not in the vocabulary.
pub const NO_ID: u32 = u32::MAX;
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub struct Symbol {
    /// Byte range in the text being tokenized.
    pub start: u32,
    pub end: u32,
    pub id: u32,
    prev: u32,
    next: u32,
}

/// A candidate merge: (priority << 32 | left index) orders the heap, lowest first.
type Candidate = Reverse<(u64, u32, u32, u32)>; // (key, right, right.end, merged id)

#[derive(Default)]
pub struct Merger {
    syms: Vec<Symbol>,
    heap: BinaryHeap<Candidate>,
}

impl Merger {
    pub fn clear(&mut self) {
        self.syms.clear();
        self.heap.clear();
    }

    /// Appends a symbol after the last one.
    pub fn push(&mut self, start: usize, end: usize, id: u32) {
        let n = self.syms.len() as u32;
        if let Some(last) = self.syms.last_mut() {
            last.next = n;
        }
        self.syms.push(Symbol {
            start: start as u32,
            end: end as u32,
            id,
            prev: if n == 0 { NIL } else { n - 1 },
            next: NIL,
        });
    }

    /// Runs the merges. `pair(left, right)` gives `(priority, merged id)` when the two may
    /// merge; lower priorities merge first.
    pub fn run(&mut self, pair: impl Fn(&Symbol, &Symbol) -> Option<(u32, u32)>) {
        self.heap.clear();
        for i in 1..self.syms.len() {
            self.offer(i as u32 - 1, i as u32, &pair);
        }
        while let Some(Reverse((key, right, right_end, id))) = self.heap.pop() {
            let left = key as u32;
            let (l, r) = (self.syms[left as usize], self.syms[right as usize]);
            // Stale: the left symbol was absorbed or absorbed its neighbour, or the right one
            // grew. (A dead symbol has an empty range, start == end.)
            if l.start == l.end || l.next != right || r.start == r.end || r.end != right_end {
                continue;
            }
            let ls = &mut self.syms[left as usize];
            ls.end = r.end;
            ls.id = id;
            ls.next = r.next;
            let rs = &mut self.syms[right as usize];
            rs.start = rs.end;
            if r.next != NIL {
                self.syms[r.next as usize].prev = left;
            }
            if l.prev != NIL {
                self.offer(l.prev, left, &pair);
            }
            if r.next != NIL {
                self.offer(left, r.next, &pair);
            }
        }
    }

    fn offer(
        &mut self,
        left: u32,
        right: u32,
        pair: &impl Fn(&Symbol, &Symbol) -> Option<(u32, u32)>,
    ) {
        let (l, r) = (&self.syms[left as usize], &self.syms[right as usize]);
        if let Some((prio, id)) = pair(l, r) {
            self.heap.push(Reverse((
                (u64::from(prio) << 32) | u64::from(left),
                right,
                r.end,
                id,
            )));
        }
    }

    /// The surviving symbols, in text order.
    pub fn symbols(&self) -> impl Iterator<Item = &Symbol> {
        let mut i = if self.syms.is_empty() { NIL } else { 0 };
        core::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let s = &self.syms[i as usize];
            i = s.next;
            Some(s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_best_pair_first_then_leftmost() {
        // Symbols a a a a; merging any "aa" pair has priority 1 -> leftmost pairs first.
        let mut m = Merger::default();
        for i in 0..4 {
            m.push(i, i + 1, 0);
        }
        m.run(|l, r| (l.end - l.start == 1 && r.end - r.start == 1).then_some((1, 7)));
        let got: Vec<(u32, u32, u32)> = m.symbols().map(|s| (s.start, s.end, s.id)).collect();
        assert_eq!(got, [(0, 2, 7), (2, 4, 7)]);
    }
}
