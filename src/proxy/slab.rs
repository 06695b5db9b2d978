//! The loops' tables of connections: a slab whose indices, with a generation, make the
//! `mio` tokens of the client and function connections, so that an event or a result for a
//! connection since closed (its slot reused) is recognised and dropped.

use mio::Token;

/// A slab whose tokens carry a generation, so that a token for a slot since reused is
/// recognised.
pub(super) struct Slab<T> {
    entries: Vec<(u32, Option<T>)>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    pub(super) fn new() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    pub(super) fn insert(&mut self, item: T, gen: u32) -> usize {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push((0, None));
                self.entries.len() - 1
            }
        };
        self.entries[idx] = (gen, Some(item));
        idx
    }

    pub(super) fn get(&mut self, idx: usize) -> Option<&mut T> {
        self.entries.get_mut(idx).and_then(|e| e.1.as_mut())
    }

    pub(super) fn live(&mut self, idx: usize, gen: u32) -> Option<&mut T> {
        match self.entries.get_mut(idx) {
            Some((g, Some(item))) if *g == gen => Some(item),
            _ => None,
        }
    }

    pub(super) fn remove(&mut self, idx: usize) -> Option<T> {
        let item = self.entries.get_mut(idx)?.1.take();
        if item.is_some() {
            self.free.push(idx);
        }
        item
    }

    pub(super) fn indices(&self) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.free.len() == self.entries.len()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// The index the next `insert` takes (a token must be registered before the insert).
    pub(super) fn next_index(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|e| e.1.as_ref())
    }
}

pub(super) fn token(kind: usize, idx: usize, gen: u32) -> Token {
    Token((kind << 62) | ((gen as usize & 0x3fff_ffff) << 32) | (idx & 0xffff_ffff))
}

pub(super) fn untoken(t: Token) -> (usize, usize, u32) {
    (
        t.0 >> 62,
        t.0 & 0xffff_ffff,
        ((t.0 >> 32) & 0x3fff_ffff) as u32,
    )
}

/// The token of the waker (never a connection's).
pub(super) const WAKE: Token = Token(usize::MAX);
pub(super) const KIND_CLIENT: usize = 0;
pub(super) const KIND_FN: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (kind, idx, gen) in [(0, 0, 0), (1, 12345, 0x3fff_ffff), (0, 0xffff_ffff, 7)] {
            assert_eq!(untoken(token(kind, idx, gen)), (kind, idx, gen));
        }
        assert_ne!(token(1, usize::MAX, u32::MAX), WAKE);
    }
}
