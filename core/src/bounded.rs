//! A bounded map that forgets the least recently used entries: recency is a tick per access, and
//! when the map is full the oldest tenth is evicted in one sweep, keeping inserts amortised O(1).

use std::collections::HashMap;
use std::hash::Hash;

pub struct BoundedIndex<K, V> {
    entries: HashMap<K, (V, u64)>,
    capacity: usize,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedIndex<K, V> {
    pub fn new(capacity: usize) -> Self {
        BoundedIndex {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            tick: 0,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(v, t)| {
            *t = tick;
            &*v
        })
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.evict();
        }
        self.entries.insert(key, (value, self.tick));
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(v, _)| v)
    }

    /// Every entry, in no particular order, without touching recency.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (v, _))| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn evict(&mut self) {
        let mut ticks: Vec<u64> = self.entries.values().map(|(_, t)| *t).collect();
        let cut = (self.capacity / 10).max(1).min(ticks.len() - 1);
        let (_, threshold, _) = ticks.select_nth_unstable(cut);
        let threshold = *threshold;
        self.entries.retain(|_, (_, t)| *t > threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_recent_entries() {
        let mut idx = BoundedIndex::new(100);
        for i in 0..1000 {
            idx.insert(i, i);
            assert!(idx.get(&0).is_some(), "entry 0 is touched every round and must survive (round {i})");
        }
        assert!(idx.len() <= 100);
        assert!(idx.get(&999).is_some());
        assert!(idx.get(&500).is_none());
    }
}
