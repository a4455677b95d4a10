//! A bounded set of recently stored object-span emissions (hashes of their encoded bytes), so
//! that the span builder re-emitting an unchanged object span costs a hash lookup instead of a
//! read-merge-write. Two generations: when the young one fills up, the old one is dropped and
//! the young one becomes old, which approximates LRU without per-entry bookkeeping.

use std::collections::HashSet;

pub(crate) struct SeenSet {
    young: HashSet<u64>,
    old: HashSet<u64>,
    capacity: usize,
}

impl SeenSet {
    /// Holds at least `capacity / 2` and at most `capacity` hashes.
    pub(crate) fn new(capacity: usize) -> SeenSet {
        SeenSet { young: HashSet::new(), old: HashSet::new(), capacity: (capacity / 2).max(1) }
    }

    pub(crate) fn contains(&mut self, hash: u64) -> bool {
        if self.young.contains(&hash) {
            return true;
        }
        if self.old.remove(&hash) {
            self.insert(hash);
            return true;
        }
        false
    }

    pub(crate) fn insert(&mut self, hash: u64) {
        if self.young.len() >= self.capacity {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(hash);
    }

    pub(crate) fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_entries_and_stays_bounded() {
        let mut s = SeenSet::new(4);
        for h in 0..10 {
            s.insert(h);
        }
        assert!(s.contains(9) && s.contains(8));
        assert!(!s.contains(0));
        assert!(s.young.len() + s.old.len() <= 4);
    }
}
