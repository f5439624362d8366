//! Converts kernel boot-clock nanoseconds (what the BPF programs and /proc use) to wall time.

/// Wall-clock nanoseconds at boot, captured once: `realtime - boottime`.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    boot_wall_ns: u64,
}

impl BootClock {
    pub fn now() -> Self {
        let real = clock_ns(rustix::time::ClockId::Realtime);
        let boot = clock_ns(rustix::time::ClockId::Boottime);
        Self {
            boot_wall_ns: real.saturating_sub(boot),
        }
    }

    /// Wall-clock nanoseconds since the Unix epoch for a boot-clock timestamp.
    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        self.boot_wall_ns.saturating_add(boot_ns)
    }

    /// Current boot-clock nanoseconds.
    pub fn boot_now() -> u64 {
        clock_ns(rustix::time::ClockId::Boottime)
    }
}

fn clock_ns(id: rustix::time::ClockId) -> u64 {
    let ts = rustix::time::clock_gettime(id);
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_of_now_is_close_to_realtime() {
        let c = BootClock::now();
        let wall = c.wall_ns(BootClock::boot_now());
        let real = clock_ns(rustix::time::ClockId::Realtime);
        assert!(
            wall.abs_diff(real) < 1_000_000_000,
            "wall {wall} real {real}"
        );
    }
}
