//! Builds the event contract's `Process` values and events from kernel records and /proc.

use vigil_api::events::{
    AUID_UNSET, Capabilities, GetEventsResponse, Namespace, Namespaces, Process,
    ProcessCredentials, ProcessExec, ProcessExit, ProcessFlags, exec_id, format_arguments,
    format_time_ns, securebits_names, signal_name,
};
use vigil_sensor_bpf::abi::{self, NS_COUNT, kflags, ns_slot as abi_ns};

use crate::kernel::clock::BootClock;
use crate::kernel::decode::ExecRecord;
use crate::process::container::docker_field;
use crate::process::procfs_scan::ScannedProc;

/// Boot-clock ns used as the identity of the `<kernel>` pseudo-process (pid 0).
pub const KERNEL_KTIME: u64 = 1;

/// Everything that shapes a `Process` besides the record itself.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    pub node_name: String,
    pub clock: BootClock,
    pub enable_cred: bool,
    pub enable_ns: bool,
    /// Namespace inodes of pid 1, to tell `is_host`.
    pub host_ns: [u32; NS_COUNT],
}

impl EventBuilder {
    pub fn exec_id(&self, pid: u32, ktime: u64) -> String {
        exec_id(&self.node_name, ktime, pid)
    }

    fn time(&self, boot_ns: u64) -> String {
        format_time_ns(self.clock.wall_ns(boot_ns))
    }

    fn namespaces(&self, ns: &[u32; NS_COUNT]) -> Option<Namespaces> {
        if !self.enable_ns {
            return None;
        }
        let one = |i: usize| {
            Some(Namespace {
                inum: ns[i],
                is_host: ns[i] != 0 && ns[i] == self.host_ns[i],
            })
        };
        Some(Namespaces {
            uts: one(abi_ns::UTS),
            ipc: one(abi_ns::IPC),
            mnt: one(abi_ns::MNT),
            pid: one(abi_ns::PID),
            pid_for_children: one(abi_ns::PID_FOR_CHILDREN),
            net: one(abi_ns::NET),
            time: one(abi_ns::TIME),
            time_for_children: one(abi_ns::TIME_FOR_CHILDREN),
            cgroup: one(abi_ns::CGROUP),
            user: one(abi_ns::USER),
        })
    }

    fn with_creds(&self, p: &mut Process, c: &abi::Creds) {
        if !self.enable_cred {
            return;
        }
        let caps = Capabilities::from_masks(c.cap_permitted, c.cap_effective, c.cap_inheritable);
        p.cap = Some(caps);
        p.process_credentials = Some(ProcessCredentials {
            uid: Some(c.uid),
            gid: Some(c.gid),
            euid: Some(c.euid),
            egid: Some(c.egid),
            suid: Some(c.suid),
            sgid: Some(c.sgid),
            fsuid: Some(c.fsuid),
            fsgid: Some(c.fsgid),
            securebits: securebits_names(c.securebits),
            ..Default::default()
        });
    }

    /// The process an exec record describes. `parent_exec_id` is empty when the parent is
    /// unknown (then the `miss` flag is set).
    pub fn exec_process(&self, r: &ExecRecord, parent_exec_id: Option<String>) -> Process {
        let mut flags = ProcessFlags::EXECVE;
        if r.kflags & kflags::CLONE != 0 {
            flags.insert(ProcessFlags::CLONE);
        }
        if r.kflags & kflags::TRUNC_ARGS != 0 {
            flags.insert(ProcessFlags::TRUNC_ARGS);
        }
        if r.kflags & kflags::ERR_ARGS != 0 {
            flags.insert(ProcessFlags::ERROR_ARGS);
        }
        if r.kflags & kflags::TRUNC_BINARY != 0 || r.binary.is_empty() {
            flags.insert(ProcessFlags::ERROR_FILENAME);
        }
        if r.kflags & kflags::TRUNC_CWD != 0 {
            flags.insert(ProcessFlags::ERROR_PATH_RESOLUTION_CWD);
        }
        if r.cwd == "/" {
            flags.insert(ProcessFlags::ROOTCWD);
        }
        if parent_exec_id.is_none() {
            flags.insert(ProcessFlags::MISS);
        }
        let mut p = Process {
            exec_id: self.exec_id(r.pid, r.ktime),
            pid: Some(r.pid),
            uid: Some(r.creds.euid),
            cwd: r.cwd.clone(),
            binary: r.binary.clone(),
            arguments: format_arguments(&r.argv),
            flags: flags.to_string(),
            start_time: self.time(r.ktime),
            auid: Some(r.creds.auid),
            docker: docker_field(&r.cgroup_name),
            parent_exec_id: parent_exec_id.unwrap_or_default(),
            ns: self.namespaces(&r.ns),
            tid: Some(r.tid),
            ..Default::default()
        };
        self.with_creds(&mut p, &r.creds);
        p
    }

    /// A process found in /proc at start (flag `procFS`).
    pub fn scanned_process(&self, s: &ScannedProc, parent_exec_id: String) -> Process {
        let mut flags = ProcessFlags::PROCFS;
        if s.cwd == "/" {
            flags.insert(ProcessFlags::ROOTCWD);
        }
        let creds = abi::Creds {
            uid: s.uid[0],
            euid: s.uid[1],
            suid: s.uid[2],
            fsuid: s.uid[3],
            gid: s.gid[0],
            egid: s.gid[1],
            sgid: s.gid[2],
            fsgid: s.gid[3],
            securebits: 0,
            auid: s.auid,
            cap_permitted: s.cap_permitted,
            cap_effective: s.cap_effective,
            cap_inheritable: s.cap_inheritable,
        };
        let mut p = Process {
            exec_id: self.exec_id(s.pid, s.start_ns),
            pid: Some(s.pid),
            uid: Some(creds.euid),
            cwd: s.cwd.clone(),
            binary: s.binary.clone(),
            arguments: format_arguments(&s.argv),
            flags: flags.to_string(),
            start_time: self.time(s.start_ns),
            auid: Some(s.auid),
            docker: docker_field(&s.cgroup_name),
            parent_exec_id,
            ns: self.namespaces(&s.ns),
            tid: Some(s.pid),
            ..Default::default()
        };
        self.with_creds(&mut p, &creds);
        p
    }

    /// The `<kernel>` pseudo-process: the root of every process tree (pid 0).
    pub fn kernel_process(&self) -> Process {
        let id = self.exec_id(0, KERNEL_KTIME);
        Process {
            exec_id: id.clone(),
            pid: Some(0),
            uid: Some(0),
            binary: "<kernel>".into(),
            flags: ProcessFlags::PROCFS.to_string(),
            start_time: self.time(0),
            auid: Some(AUID_UNSET),
            parent_exec_id: id,
            tid: Some(0),
            ..Default::default()
        }
    }

    /// A process born by fork/clone: its parent's image under a new identity (flag `clone`).
    pub fn forked_process(&self, parent: &Process, pid: u32, ktime: u64) -> Process {
        Process {
            exec_id: self.exec_id(pid, ktime),
            pid: Some(pid),
            tid: Some(pid),
            flags: ProcessFlags::CLONE.to_string(),
            start_time: self.time(ktime),
            parent_exec_id: parent.exec_id.clone(),
            refcnt: 0,
            ..parent.clone()
        }
    }

    /// A process the cache does not know (it started while records were lost, or the cache
    /// evicted it): what the exit record tells, flagged `miss`.
    pub fn unknown_process(&self, pid: u32, ktime: u64) -> Process {
        Process {
            exec_id: self.exec_id(pid, ktime),
            pid: Some(pid),
            tid: Some(pid),
            flags: ProcessFlags::MISS.to_string(),
            ..Default::default()
        }
    }

    pub fn exec_event(
        &self,
        process: Process,
        parent: Option<Process>,
        boot_ns: u64,
    ) -> GetEventsResponse {
        let exec = ProcessExec {
            process: Some(process.into()),
            parent: parent.map(Into::into),
            ..Default::default()
        };
        GetEventsResponse::new(exec, self.node_name.clone(), self.time(boot_ns))
    }

    /// An exit event; `exit_code` is the wait status (`status << 8 | signal`).
    pub fn exit_event(
        &self,
        process: Process,
        parent: Option<Process>,
        exit_code: u32,
        boot_ns: u64,
    ) -> GetEventsResponse {
        let sig = (exit_code & 0x7f) as i32;
        let exit = ProcessExit {
            process: Some(process.into()),
            parent: parent.map(Into::into),
            signal: if sig != 0 {
                signal_name(sig)
            } else {
                String::new()
            },
            status: if sig != 0 { 0 } else { (exit_code >> 8) & 0xff },
            time: self.time(boot_ns),
            ..Default::default()
        };
        GetEventsResponse::new(exit, self.node_name.clone(), self.time(boot_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(cred: bool, ns: bool) -> EventBuilder {
        EventBuilder {
            node_name: "n1".into(),
            clock: BootClock::now(),
            enable_cred: cred,
            enable_ns: ns,
            host_ns: [7; NS_COUNT],
        }
    }

    fn record() -> ExecRecord {
        ExecRecord {
            pid: 10,
            tid: 11,
            ppid: 1,
            kflags: kflags::CLONE,
            ktime: 1234,
            parent_ktime: 99,
            creds: abi::Creds {
                euid: 1000,
                auid: 1000,
                cap_effective: 1 << 21,
                ..Default::default()
            },
            ns: [7, 7, 7, 8, 8, 7, 7, 7, 7, 7],
            cgroup_id: 1,
            nspid: 1,
            binary: "/usr/bin/echo".into(),
            argv: vec!["echo".into(), "a b".into(), "c".into()],
            args_total: 12,
            cwd: "/".into(),
            cgroup_name: "session-1.scope".into(),
        }
    }

    #[test]
    fn exec_process_fields() {
        let p = builder(false, false).exec_process(&record(), Some("PARENT".into()));
        assert_eq!(p.exec_id, exec_id("n1", 1234, 10));
        assert_eq!(p.arguments, "\"a b\" c");
        assert_eq!(p.flags, "execve rootcwd clone");
        assert_eq!(p.uid, Some(1000));
        assert_eq!(p.tid, Some(11));
        assert_eq!(p.parent_exec_id, "PARENT");
        assert!(p.cap.is_none() && p.ns.is_none() && p.process_credentials.is_none());
        let p = builder(false, false).exec_process(&record(), None);
        assert!(p.flags.contains("miss"), "{}", p.flags);
    }

    #[test]
    fn cred_and_ns_only_when_enabled() {
        let p = builder(true, true).exec_process(&record(), None);
        let cap = p.cap.as_ref().unwrap();
        assert_eq!(cap.effective, vec!["CAP_SYS_ADMIN".to_string()]);
        assert_eq!(p.process_credentials.as_ref().unwrap().euid, Some(1000));
        let ns = p.ns.as_ref().unwrap();
        assert!(ns.uts.as_ref().unwrap().is_host);
        assert!(!ns.pid.as_ref().unwrap().is_host);
        assert_eq!(ns.pid.as_ref().unwrap().inum, 8);
    }

    #[test]
    fn exit_status_and_signal() {
        let b = builder(false, false);
        let p = b.exec_process(&record(), None);
        let e = b.exit_event(p.clone(), None, 3 << 8, 5000);
        let x = e.process_exit.unwrap();
        assert_eq!((x.status, x.signal.as_str()), (3, ""));
        let e = b.exit_event(p, None, 9, 5000);
        let x = e.process_exit.unwrap();
        assert_eq!((x.status, x.signal.as_str()), (0, "SIGKILL"));
    }

    #[test]
    fn fork_keeps_image_new_identity() {
        let b = builder(false, false);
        let parent = b.exec_process(&record(), Some("X".into()));
        let child = b.forked_process(&parent, 20, 5555);
        assert_eq!(child.binary, parent.binary);
        assert_eq!(child.parent_exec_id, parent.exec_id);
        assert_eq!(child.exec_id, exec_id("n1", 5555, 20));
        assert_eq!(child.flags, "clone");
        let k = b.kernel_process();
        assert_eq!(k.exec_id, k.parent_exec_id);
    }
}
