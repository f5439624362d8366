//! `ProcessFlags`: the `flags` string of a process as a bitset.

use super::EventError;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::str::FromStr;

/// A set of process flags. `Display` writes them space-separated in the fixed order of
/// [`ProcessFlags::ALL`]; `FromStr` accepts any order and rejects unknown names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProcessFlags(u32);

macro_rules! flags {
    ($( $(#[$doc:meta])* $konst:ident = $bit:literal, $name:literal; )*) => {
        impl ProcessFlags {
            $( $(#[$doc])* pub const $konst: ProcessFlags = ProcessFlags(1 << $bit); )*

            /// Every flag with its name, in output order.
            pub const ALL: &'static [(ProcessFlags, &'static str)] = &[
                $( (ProcessFlags::$konst, $name), )*
            ];
        }
    };
}

flags! {
    /// Reported from an execve.
    EXECVE = 0, "execve";
    /// Found in /proc at sensor start rather than seen executing.
    PROCFS = 1, "procFS";
    /// Environment variables could not be read.
    ERROR_ENVS = 2, "errorEnvs";
    /// Arguments were cut to the buffer size.
    TRUNC_ARGS = 3, "truncArgs";
    /// The parent was not in the process cache.
    MISS = 4, "miss";
    /// The binary path could not be read.
    ERROR_FILENAME = 5, "errorFilename";
    /// The arguments could not be read.
    ERROR_ARGS = 6, "errorArgs";
    /// The working directory is not reported.
    NOCWD = 7, "nocwd";
    /// The working directory is `/`.
    ROOTCWD = 8, "rootcwd";
    /// The working directory could not be read.
    ERROR_CWD = 9, "errorCWD";
    /// The process was created by clone/fork before the exec.
    CLONE = 10, "clone";
    /// The cgroup name could not be read.
    ERROR_CGROUP_NAME = 11, "errorCgroupName";
    /// The cgroup id could not be read.
    ERROR_CGROUP_ID = 12, "errorCgroupID";
    /// The cgroup of the tracked subsystem could not be read.
    ERROR_CGROUP_SUBSYS_CGRP = 13, "errorCgroupSubsysCgrp";
    /// The cgroup subsystem could not be read.
    ERROR_CGROUP_SUBSYS = 14, "errorCgroupSubsys";
    /// The cgroups of the task could not be read.
    ERROR_CGROUPS = 15, "errorCgroups";
    /// Resolving the working directory path failed.
    ERROR_PATH_RESOLUTION_CWD = 16, "errorPathResolutionCwd";
    /// The binary path was too long for the event and was sent separately.
    DATA_FILENAME = 17, "dataFilename";
    /// The arguments were too long for the event and were sent separately.
    DATA_ARGS = 18, "dataArgs";
    /// Member of the process tree rooted at its PID namespace's init.
    IN_INIT_TREE = 19, "inInitTree";
    /// Vigil only: the process runs in a container whose pod the sensor did not learn within
    /// the hold bound; the event went out without `pod`.
    POD_UNKNOWN = 20, "podUnknown";
    /// Vigil only: reported by a heal after ring-buffer loss (the sensor re-read the kernel's
    /// view of the running processes), not seen executing; always with `procFS`.
    HEALED = 21, "healed";
}

impl ProcessFlags {
    pub const fn empty() -> Self {
        ProcessFlags(0)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Keeps only known bits.
    pub const fn from_bits_truncate(bits: u32) -> Self {
        ProcessFlags(bits & ((1 << 22) - 1))
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, other: ProcessFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: ProcessFlags) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: ProcessFlags) {
        self.0 &= !other.0;
    }

    /// The name of a single flag.
    pub fn name(self) -> Option<&'static str> {
        Self::ALL.iter().find(|(f, _)| *f == self).map(|(_, n)| *n)
    }
}

impl BitOr for ProcessFlags {
    type Output = ProcessFlags;

    fn bitor(self, rhs: ProcessFlags) -> ProcessFlags {
        ProcessFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for ProcessFlags {
    fn bitor_assign(&mut self, rhs: ProcessFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for ProcessFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Self::ALL {
            if self.contains(*flag) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl FromStr for ProcessFlags {
    type Err = EventError;

    /// Parses a space-separated list; the empty string is the empty set.
    fn from_str(s: &str) -> Result<Self, EventError> {
        let mut flags = ProcessFlags::empty();
        for word in s.split_whitespace() {
            let (flag, _) = Self::ALL
                .iter()
                .find(|(_, n)| *n == word)
                .ok_or_else(|| EventError::UnknownFlag(word.to_string()))?;
            flags |= *flag;
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "execve procFS errorEnvs truncArgs miss errorFilename errorArgs nocwd \
        rootcwd errorCWD clone errorCgroupName errorCgroupID errorCgroupSubsysCgrp \
        errorCgroupSubsys errorCgroups errorPathResolutionCwd dataFilename dataArgs inInitTree podUnknown \
        healed";

    #[test]
    fn all_flags_display_in_fixed_order() {
        let all = ProcessFlags::ALL
            .iter()
            .fold(ProcessFlags::empty(), |acc, (f, _)| acc | *f);
        assert_eq!(all.to_string(), ORDER);
        assert_eq!(ProcessFlags::ALL.len(), 22);
    }

    #[test]
    fn display_ignores_insertion_order() {
        let f = ProcessFlags::CLONE | ProcessFlags::ROOTCWD | ProcessFlags::EXECVE;
        assert_eq!(f.to_string(), "execve rootcwd clone");
        assert_eq!(ProcessFlags::empty().to_string(), "");
    }

    #[test]
    fn parse_round_trips_sample_strings() {
        for s in [
            "procFS",
            "procFS rootcwd",
            "execve rootcwd clone",
            "execve",
            "",
        ] {
            let f: ProcessFlags = s.parse().unwrap();
            assert_eq!(f.to_string(), s);
        }
        let f: ProcessFlags = "clone  execve".parse().unwrap();
        assert!(f.contains(ProcessFlags::EXECVE | ProcessFlags::CLONE));
        assert!(!f.contains(ProcessFlags::PROCFS));
        assert_eq!(f.to_string(), "execve clone");
    }

    #[test]
    fn parse_rejects_unknown_names_and_wrong_case() {
        let err = "execve bogus".parse::<ProcessFlags>().unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert!("procfs".parse::<ProcessFlags>().is_err());
    }

    #[test]
    fn bits_insert_remove() {
        let mut f = ProcessFlags::empty();
        f.insert(ProcessFlags::MISS);
        f.insert(ProcessFlags::IN_INIT_TREE);
        assert_eq!(f.bits(), (1 << 4) | (1 << 19));
        f.remove(ProcessFlags::MISS);
        assert_eq!(f, ProcessFlags::IN_INIT_TREE);
        assert_eq!(
            ProcessFlags::from_bits_truncate(u32::MAX).to_string(),
            ORDER
        );
        assert_eq!(ProcessFlags::TRUNC_ARGS.name(), Some("truncArgs"));
        assert_eq!((ProcessFlags::MISS | ProcessFlags::CLONE).name(), None);
    }
}
