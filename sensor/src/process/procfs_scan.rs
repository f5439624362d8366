//! The /proc scan at start: processes that were running before the sensor attached.

use std::fs;
use std::path::Path;

use vigil_sensor_bpf::abi::NS_COUNT;

/// What /proc tells about one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScannedProc {
    pub pid: u32,
    pub ppid: u32,
    /// Boot-clock ns at the process's start (clock-tick resolution).
    pub start_ns: u64,
    pub binary: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub auid: u32,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub ns: [u32; NS_COUNT],
    pub cgroup_name: String,
    /// The pid in the process's own PID namespace (last `NSpid` of its status).
    pub nspid: u32,
    pub kernel_thread: bool,
}

/// /proc/<pid>/ns entries in the ABI's namespace slot order.
pub const NS_NAMES: [&str; NS_COUNT] = [
    "uts",
    "ipc",
    "mnt",
    "pid",
    "pid_for_children",
    "net",
    "time",
    "time_for_children",
    "cgroup",
    "user",
];

const PF_KTHREAD: u64 = 0x0020_0000;

/// Every process in `proc_root` (normally `/proc`), oldest first. Processes that vanish while
/// being read are skipped.
pub fn scan(proc_root: &Path) -> Vec<ScannedProc> {
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let mut out: Vec<ScannedProc> = match fs::read_dir(proc_root) {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| read_proc(&proc_root.join(pid.to_string()), pid, ticks))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort_by_key(|p| (p.start_ns, p.pid));
    out
}

/// The namespace inodes of a process (0 where unreadable).
pub fn namespaces(dir: &Path) -> [u32; NS_COUNT] {
    let mut ns = [0u32; NS_COUNT];
    for (slot, name) in NS_NAMES.iter().enumerate() {
        if let Ok(link) = fs::read_link(dir.join("ns").join(name)) {
            ns[slot] = parse_ns_link(&link.to_string_lossy()).unwrap_or(0);
        }
    }
    ns
}

/// The host's namespaces: pid 1's, and where a sandbox forbids reading those, the sensor's own
/// (the sensor runs in the host namespaces: `hostPID` and host mounts in the chart).
pub fn host_namespaces(proc_root: &Path) -> [u32; NS_COUNT] {
    let init = namespaces(&proc_root.join("1"));
    let own = namespaces(&proc_root.join("self"));
    let mut out = init;
    for (slot, v) in out.iter_mut().enumerate() {
        if *v == 0 {
            *v = own[slot];
        }
    }
    out
}

/// One process of `proc_root`, or `None` when it is gone (or unreadable).
pub fn read_one(proc_root: &Path, pid: u32) -> Option<ScannedProc> {
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    read_proc(&proc_root.join(pid.to_string()), pid, ticks)
}

fn read_proc(dir: &Path, pid: u32, ticks: u64) -> Option<ScannedProc> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let (ppid, flags, start_ticks) = parse_stat(&stat)?;
    let kernel_thread = flags & PF_KTHREAD != 0;
    let mut p = ScannedProc {
        pid,
        ppid,
        start_ns: start_ticks.saturating_mul(1_000_000_000) / ticks,
        kernel_thread,
        auid: u32::MAX,
        ..Default::default()
    };
    if kernel_thread {
        return Some(p);
    }
    p.binary = fs::read_link(dir.join("exe"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(cmdline) = fs::read(dir.join("cmdline")) {
        p.argv = crate::kernel::decode::split_argv(&cmdline);
    }
    p.cwd = fs::read_link(dir.join("cwd"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(status) = fs::read_to_string(dir.join("status")) {
        parse_status(&status, &mut p);
    }
    if let Ok(l) = fs::read_to_string(dir.join("loginuid")) {
        p.auid = l.trim().parse().unwrap_or(u32::MAX);
    }
    p.ns = namespaces(dir);
    if let Ok(cg) = fs::read_to_string(dir.join("cgroup")) {
        p.cgroup_name = parse_cgroup_v2_name(&cg);
    }
    Some(p)
}

/// `(ppid, flags, starttime)` from /proc/<pid>/stat. The command name may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(u32, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(0) ppid(1) … flags(6) … starttime(19).
    Some((
        f.get(1)?.parse().ok()?,
        f.get(6)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

fn parse_status(status: &str, p: &mut ScannedProc) {
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let ids = || -> [u32; 4] {
            let mut out = [0u32; 4];
            for (i, v) in value.split_whitespace().take(4).enumerate() {
                out[i] = v.parse().unwrap_or(0);
            }
            out
        };
        let hex = || u64::from_str_radix(value.trim(), 16).unwrap_or(0);
        match key {
            "Uid" => p.uid = ids(),
            "Gid" => p.gid = ids(),
            "CapInh" => p.cap_inheritable = hex(),
            "CapPrm" => p.cap_permitted = hex(),
            "CapEff" => p.cap_effective = hex(),
            "NSpid" => {
                p.nspid = value
                    .split_whitespace()
                    .last()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
}

fn parse_ns_link(link: &str) -> Option<u32> {
    link.split_once('[')?.1.strip_suffix(']')?.parse().ok()
}

/// Last component of the cgroup v2 path (`0::/a/b/c` → `c`), as the kernel side reports it.
pub fn parse_cgroup_v2_name(cgroup: &str) -> String {
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|path| path.rsplit('/').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {

    #[test]
    fn host_namespaces_fall_back_to_our_own_where_pid_1_is_unreadable() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("1/ns")).unwrap();
        std::fs::create_dir_all(root.path().join("self/ns")).unwrap();
        std::os::unix::fs::symlink("net:[111]", root.path().join("1/ns/net")).unwrap();
        std::os::unix::fs::symlink("net:[999]", root.path().join("self/ns/net")).unwrap();
        std::os::unix::fs::symlink("mnt:[222]", root.path().join("self/ns/mnt")).unwrap();
        let ns = host_namespaces(root.path());
        assert_eq!(
            ns[vigil_sensor_bpf::abi::ns_slot::NET],
            111,
            "pid 1's when readable"
        );
        assert_eq!(
            ns[vigil_sensor_bpf::abi::ns_slot::MNT],
            222,
            "ours otherwise"
        );
        assert_eq!(ns[vigil_sensor_bpf::abi::ns_slot::UTS], 0);
    }

    use super::*;

    #[test]
    fn stat_with_awkward_comm() {
        let stat =
            "1234 (a) b (c) S 77 1234 1234 0 -1 4194560 0 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(stat), Some((77, 4194560, 98765)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_ids_and_caps() {
        let mut p = ScannedProc::default();
        parse_status(
            "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000200000\n",
            &mut p,
        );
        assert_eq!(p.uid, [1, 2, 3, 4]);
        assert_eq!(p.gid, [5, 6, 7, 8]);
        assert_eq!(p.cap_permitted, 0x1ff_ffff_ffff);
        assert_eq!(p.cap_effective, 1 << 21);
    }

    #[test]
    fn cgroup_and_ns_parsing() {
        assert_eq!(
            parse_cgroup_v2_name("0::/system.slice/ssh.service\n"),
            "ssh.service"
        );
        assert_eq!(parse_cgroup_v2_name("0::/\n"), "");
        assert_eq!(parse_cgroup_v2_name("12:cpu:/x\n"), "");
        assert_eq!(parse_ns_link("uts:[4026531838]"), Some(4026531838));
        assert_eq!(parse_ns_link("bad"), None);
    }

    #[test]
    fn ns_names_follow_the_abi_slots() {
        use vigil_sensor_bpf::abi::ns_slot;
        for (slot, name) in [
            (ns_slot::UTS, "uts"),
            (ns_slot::IPC, "ipc"),
            (ns_slot::MNT, "mnt"),
            (ns_slot::PID, "pid"),
            (ns_slot::PID_FOR_CHILDREN, "pid_for_children"),
            (ns_slot::NET, "net"),
            (ns_slot::TIME, "time"),
            (ns_slot::TIME_FOR_CHILDREN, "time_for_children"),
            (ns_slot::CGROUP, "cgroup"),
            (ns_slot::USER, "user"),
        ] {
            assert_eq!(NS_NAMES[slot], name);
        }
    }

    #[test]
    fn scan_sees_this_process() {
        let me = std::process::id();
        let all = scan(Path::new("/proc"));
        let p = all.iter().find(|p| p.pid == me).expect("own pid in scan");
        assert!(!p.kernel_thread);
        assert_eq!(p.binary, std::env::current_exe().unwrap().to_string_lossy());
        assert!(p.ns[0] != 0 && p.ns[9] != 0, "{:?}", p.ns);
        assert!(all.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));
    }
}
