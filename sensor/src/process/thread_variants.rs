//! The process of a hook event as its thread sees it.
//!
//! Hook events share the cached process (no copy per event), but each carries the id of the
//! thread that hit the hook. A thread other than the one cached needs its own copy; making it
//! per event would copy the whole process (arguments, paths, pod) every time, and would leave
//! the JSON encoder comparing those copies field by field. So the copy is made once per thread
//! and kept, and every later event of that thread shares it — as long as the cached process it
//! was made from is still the one in the cache (checked by pointer: a changed process is a new
//! one).

use std::collections::HashMap;
use std::sync::Arc;

use vigil_api::events::Process;

/// Thread copies kept; past this the table starts over (it holds copies of processes that
/// may have exited, so it stays small: ~1 KiB each).
pub const MAX_THREAD_COPIES: usize = 1024;

/// Per (pid, tid): the cached process a copy was made from, and the copy.
#[derive(Debug, Default)]
pub struct ThreadVariants {
    copies: HashMap<(u32, u32), (Arc<Process>, Arc<Process>)>,
}

impl ThreadVariants {
    /// `base` as thread `tid` sees it: `base` itself when it names that thread already, else
    /// the kept copy (made now when missing or made from another version of the process).
    pub fn for_thread(&mut self, base: &Arc<Process>, tid: u32) -> Arc<Process> {
        if base.tid == Some(tid) {
            return base.clone();
        }
        let key = (base.pid.unwrap_or(0), tid);
        if let Some((from, copy)) = self.copies.get(&key)
            && Arc::ptr_eq(from, base)
        {
            return copy.clone();
        }
        let mut p = (**base).clone();
        p.tid = Some(tid);
        let copy = Arc::new(p);
        if self.copies.len() >= MAX_THREAD_COPIES && !self.copies.contains_key(&key) {
            self.copies.clear();
        }
        self.copies.insert(key, (base.clone(), copy.clone()));
        copy
    }

    /// Copies kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.copies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, binary: &str) -> Arc<Process> {
        Arc::new(Process {
            exec_id: format!("id-{pid}"),
            pid: Some(pid),
            tid: Some(pid),
            binary: binary.into(),
            ..Default::default()
        })
    }

    #[test]
    fn the_cached_thread_gets_the_cached_process_itself() {
        let mut t = ThreadVariants::default();
        let p = process(10, "/bin/a");
        assert!(Arc::ptr_eq(&t.for_thread(&p, 10), &p));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn another_thread_gets_one_copy_shared_by_its_events() {
        let mut t = ThreadVariants::default();
        let p = process(10, "/bin/a");
        let a = t.for_thread(&p, 11);
        assert_eq!(a.tid, Some(11));
        assert_eq!(a.binary, "/bin/a");
        assert_eq!(p.tid, Some(10), "the cached process is left as it was");
        let b = t.for_thread(&p, 11);
        assert!(Arc::ptr_eq(&a, &b));
        let c = t.for_thread(&p, 12);
        assert_eq!(c.tid, Some(12));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_changed_process_gets_a_new_copy() {
        let mut t = ThreadVariants::default();
        let old = process(10, "/bin/a");
        let a = t.for_thread(&old, 11);
        let new = process(10, "/bin/b"); // the same pid after an exec
        let b = t.for_thread(&new, 11);
        assert_eq!(b.binary, "/bin/b");
        assert_eq!(b.tid, Some(11));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut t = ThreadVariants::default();
        let procs: Vec<_> = (0..(MAX_THREAD_COPIES as u32 + 10))
            .map(|i| process(i * 2, "/bin/x"))
            .collect();
        for p in &procs {
            t.for_thread(p, p.pid.unwrap() + 1);
            assert!(t.len() <= MAX_THREAD_COPIES);
        }
        // A copy made after the table started over is still found again.
        let last = procs.last().unwrap();
        let a = t.for_thread(last, last.pid.unwrap() + 1);
        let b = t.for_thread(last, last.pid.unwrap() + 1);
        assert!(Arc::ptr_eq(&a, &b));
    }
}
