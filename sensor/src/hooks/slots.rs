//! Fixed-size slot allocation for the engine's kernel tables (policy slots, hook slots, attach
//! ids): the BPF maps are arrays, so an entry's index is its identity.

#[derive(Debug)]
pub struct Slots {
    used: Vec<bool>,
    first: usize,
}

impl Slots {
    /// `n` slots, handing out indexes from `first` on (attach id 0 means "none").
    pub fn new(n: usize, first: usize) -> Self {
        Slots {
            used: vec![false; n],
            first,
        }
    }

    pub fn alloc(&mut self) -> Option<u32> {
        let i = (self.first..self.used.len()).find(|&i| !self.used[i])?;
        self.used[i] = true;
        Some(i as u32)
    }

    /// Marks `i` as used (taking over state); false when it was in use or out of range.
    pub fn reserve(&mut self, i: u32) -> bool {
        match self.used.get_mut(i as usize) {
            Some(u) if !*u && i as usize >= self.first => {
                *u = true;
                true
            }
            _ => false,
        }
    }

    pub fn free(&mut self, i: u32) {
        if let Some(u) = self.used.get_mut(i as usize) {
            *u = false;
        }
    }

    pub fn available(&self) -> usize {
        self.used[self.first..].iter().filter(|u| !**u).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_free_slots_from_first_and_reuses_freed_ones() {
        let mut s = Slots::new(3, 1);
        assert_eq!((s.alloc(), s.alloc(), s.alloc()), (Some(1), Some(2), None));
        assert_eq!(s.available(), 0);
        s.free(1);
        assert_eq!(s.available(), 1);
        assert_eq!(s.alloc(), Some(1));
    }
}
