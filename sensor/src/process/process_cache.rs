//! The user-space process cache: every known process incarnation (one per exec, one per fork)
//! with its prebuilt event `Process`, linked to its parent.
//!
//! An entry lives while its process does, and after that while a cached child still points at
//! it (so that children keep their parent for their own events). Capacity is fixed: when full,
//! the oldest exited entry goes first, then the oldest entry of all; every eviction is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use vigil_api::events::Process;

/// The identity of one process incarnation: TGID and boot-clock ns at its exec or fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    pub pid: u32,
    pub ktime: u64,
}

#[derive(Debug)]
pub struct Entry {
    pub process: Arc<Process>,
    pub parent: Option<ProcKey>,
    live: bool,
    children: u32,
    seq: u64,
}

#[derive(Debug)]
pub struct ProcessCache {
    entries: HashMap<ProcKey, Entry>,
    /// The live incarnation of each TGID.
    by_pid: HashMap<u32, ProcKey>,
    /// All entries by insertion order, and the exited ones alone, for eviction.
    order: BTreeMap<u64, ProcKey>,
    exited: BTreeMap<u64, ProcKey>,
    capacity: usize,
    next_seq: u64,
    evictions: u64,
}

impl ProcessCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_pid: HashMap::new(),
            order: BTreeMap::new(),
            exited: BTreeMap::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn get(&self, key: &ProcKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The cached incarnation for `(pid, ktime)`: the exact one when `ktime` is known and
    /// cached, else the live incarnation of `pid`.
    pub fn resolve(&self, pid: u32, ktime: u64) -> Option<ProcKey> {
        let exact = ProcKey { pid, ktime };
        if ktime != 0 && self.entries.contains_key(&exact) {
            return Some(exact);
        }
        self.by_pid.get(&pid).copied()
    }

    /// The live incarnation of `pid`.
    pub fn live(&self, pid: u32) -> Option<ProcKey> {
        self.by_pid.get(&pid).copied()
    }

    /// Every live incarnation.
    pub fn live_keys(&self) -> Vec<ProcKey> {
        self.by_pid.values().copied().collect()
    }

    /// Adds a live incarnation. A previous live incarnation of the same TGID (the process before
    /// this exec) stops being live.
    pub fn insert(&mut self, key: ProcKey, process: Arc<Process>, parent: Option<ProcKey>) {
        if let Some(old) = self.by_pid.insert(key.pid, key)
            && old != key
        {
            self.mark_exited(old);
        }
        if let Some(old) = self.entries.remove(&key) {
            // Same identity seen twice (e.g. /proc scan and ring buffer): replace in place.
            self.order.remove(&old.seq);
            self.exited.remove(&old.seq);
            if let Some(p) = old.parent {
                self.drop_child(p);
            }
        }
        let parent = parent.filter(|p| self.entries.contains_key(p));
        if let Some(p) = parent
            && let Some(e) = self.entries.get_mut(&p)
        {
            e.children += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.entries.insert(
            key,
            Entry {
                process,
                parent,
                live: true,
                children: 0,
                seq,
            },
        );
        while self.entries.len() > self.capacity {
            self.evict_one();
        }
    }

    /// The process exited: it stays only while cached children still need it.
    pub fn exit(&mut self, key: ProcKey) {
        if self.by_pid.get(&key.pid) == Some(&key) {
            self.by_pid.remove(&key.pid);
        }
        self.mark_exited(key);
    }

    fn mark_exited(&mut self, key: ProcKey) {
        if let Some(e) = self.entries.get_mut(&key)
            && e.live
        {
            e.live = false;
            self.exited.insert(e.seq, key);
        }
        self.release(key);
    }

    /// Removes `key` and then its ancestors for as long as they are exited and childless.
    fn release(&mut self, mut key: ProcKey) {
        loop {
            let Some(e) = self.entries.get(&key) else {
                return;
            };
            if e.live || e.children > 0 {
                return;
            }
            let e = self.remove(key);
            match e.parent {
                Some(p) => {
                    if let Some(pe) = self.entries.get_mut(&p) {
                        pe.children = pe.children.saturating_sub(1);
                    }
                    key = p;
                }
                None => return,
            }
        }
    }

    fn drop_child(&mut self, parent: ProcKey) {
        if let Some(pe) = self.entries.get_mut(&parent) {
            pe.children = pe.children.saturating_sub(1);
        }
        self.release(parent);
    }

    fn remove(&mut self, key: ProcKey) -> Entry {
        let e = self.entries.remove(&key).expect("caller checked presence");
        self.order.remove(&e.seq);
        self.exited.remove(&e.seq);
        if self.by_pid.get(&key.pid) == Some(&key) {
            self.by_pid.remove(&key.pid);
        }
        e
    }

    fn evict_one(&mut self) {
        let victim = self
            .exited
            .values()
            .next()
            .or_else(|| self.order.values().next())
            .copied();
        let Some(victim) = victim else { return };
        self.evictions += 1;
        let e = self.remove(victim);
        if let Some(p) = e.parent {
            self.drop_child(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32) -> Arc<Process> {
        Arc::new(Process {
            pid: Some(pid),
            ..Default::default()
        })
    }

    fn k(pid: u32, ktime: u64) -> ProcKey {
        ProcKey { pid, ktime }
    }

    #[test]
    fn parent_kept_while_child_lives() {
        let mut c = ProcessCache::new(100);
        c.insert(k(1, 10), p(1), None);
        c.insert(k(2, 20), p(2), Some(k(1, 10)));
        c.exit(k(1, 10));
        assert!(
            c.get(&k(1, 10)).is_some(),
            "parent must stay for its live child"
        );
        assert_eq!(c.live(1), None);
        c.exit(k(2, 20));
        assert!(c.is_empty(), "both released once the child exited: {c:?}");
    }

    #[test]
    fn exec_replaces_the_live_incarnation() {
        let mut c = ProcessCache::new(100);
        c.insert(k(1, 10), p(1), None);
        c.insert(k(5, 50), p(5), Some(k(1, 10))); // fork
        c.insert(k(5, 60), p(5), Some(k(1, 10))); // exec
        assert_eq!(c.live(5), Some(k(5, 60)));
        assert!(
            c.get(&k(5, 50)).is_none(),
            "the fork incarnation had no children: released"
        );
        assert_eq!(
            c.resolve(5, 50),
            Some(k(5, 60)),
            "unknown ktime falls back to the live one"
        );
        assert_eq!(c.resolve(5, 0), Some(k(5, 60)));
        c.exit(k(5, 60));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn capacity_evicts_exited_first_and_counts() {
        let mut c = ProcessCache::new(3);
        c.insert(k(1, 1), p(1), None);
        c.insert(k(2, 2), p(2), Some(k(1, 1)));
        c.insert(k(3, 3), p(3), Some(k(2, 2)));
        c.exit(k(2, 2)); // kept: child 3 lives
        c.insert(k(4, 4), p(4), None);
        assert_eq!(c.len(), 3);
        assert_eq!(c.evictions(), 1);
        assert!(c.get(&k(2, 2)).is_none(), "the exited entry went first");
        assert!(c.get(&k(1, 1)).is_some());
        c.insert(k(5, 5), p(5), None);
        assert_eq!(c.evictions(), 2);
        assert!(c.get(&k(1, 1)).is_none(), "then the oldest live one");
        assert_eq!(c.live(1), None);
    }

    #[test]
    fn bounded_under_churn() {
        let mut c = ProcessCache::new(1000);
        c.insert(k(1, 1), p(1), None);
        for i in 0..100_000u64 {
            let key = k(1000 + (i % 30000) as u32, 100 + i);
            c.insert(key, p(key.pid), Some(k(1, 1)));
            c.exit(key);
        }
        assert_eq!(c.len(), 1);
        assert_eq!(c.evictions(), 0);
    }
}
