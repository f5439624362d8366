//! Workloads for the system tests that a shell cannot express exactly: a fork without exec, a
//! many-threaded process, an exec storm that records every child's pid, file and socket
//! operations with known sizes, and a function for uprobes.

use std::io::Write;
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    match arg(0) {
        "fork-exit" => fork_exit(arg(1).parse().unwrap_or_else(|_| usage())),
        "threads" => threads(arg(1).parse().unwrap_or_else(|_| usage())),
        "exec-storm" => exec_storm(
            arg(1).parse().unwrap_or_else(|_| usage()),
            arg(2),
            &args[3..],
        ),
        "files" => files(arg(1)),
        "connect" => connect(arg(1).parse().unwrap_or_else(|_| usage())),
        "open" => open_file(arg(1)),
        "probe-me" => {
            let n: u64 = arg(1).parse().unwrap_or_else(|_| usage());
            println!("{}", vigil_e2e_probe_me(n));
        }
        "fork-open" => fork_open(arg(1)),
        "drop-cap-open" => drop_cap_open(arg(1)),
        "open-storm" => open_storm(arg(1).parse().unwrap_or_else(|_| usage()), arg(2)),
        "getppid-storm" => getppid_storm(arg(1).parse().unwrap_or_else(|_| usage())),
        "set-mtu" => set_mtu(arg(1)),
        "open-list" => open_list(arg(1)),
        "exit" => std::process::exit(arg(1).parse().unwrap_or_else(|_| usage())),
        _ => usage(),
    }
}

/// In `dir`: create `data.txt`, write 11 bytes, close; open it, read (up to 64 bytes), close.
fn files(dir: &str) {
    use std::io::Read;
    let path = std::path::Path::new(dir).join("data.txt");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(b"hello vigil").expect("write");
    drop(f);
    let mut f = std::fs::File::open(&path).expect("open");
    let mut buf = [0u8; 64];
    let n = f.read(&mut buf).expect("read");
    assert_eq!(n, 11);
    drop(f);
    println!("{}", std::process::id());
}

/// Sets the MTU of network device `name` to the value it has (SIOCGIFMTU, then SIOCSIFMTU):
/// the kernel calls dev_set_mtu(dev, mtu) and nothing changes. Prints the MTU.
fn set_mtu(name: &str) {
    assert!(name.len() < libc::IFNAMSIZ, "device name too long");
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: a datagram socket for the ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: SIOCGIFMTU/SIOCSIFMTU read and write the ifreq we own.
    unsafe {
        assert_eq!(
            libc::ioctl(fd, libc::SIOCGIFMTU, &mut req),
            0,
            "SIOCGIFMTU {name}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFMTU, &mut req),
            0,
            "SIOCSIFMTU {name}: {}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
        println!("{}", req.ifr_ifru.ifru_mtu);
    }
}

/// Connects to 127.0.0.1:`port`, sends 6 bytes, closes. Prints the local port.
fn connect(port: u16) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let local = s.local_addr().expect("local addr").port();
    s.write_all(b"hello\n").expect("send");
    drop(s);
    println!("{local}");
}

/// Opens `path` (creating it), then exits 0. Prints "opened" first, so a kill before the open
/// returns is visible as a missing line.
fn open_file(path: &str) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if f.is_ok() {
        println!("opened");
    }
}

/// Forks; the child opens `path` and exits; the parent waits. Prints the child's pid.
fn fork_open(path: &str) {
    // SAFETY: single-threaded here; the child only opens a file and _exits.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => panic!("fork failed"),
        0 => {
            let c = std::ffi::CString::new(path).expect("path");
            // SAFETY: a valid NUL-terminated path; the fd is left to _exit.
            unsafe {
                libc::open(c.as_ptr(), libc::O_RDONLY);
                libc::_exit(0)
            }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out pointer.
            unsafe { libc::waitpid(child, &mut status, 0) };
            println!("{child}");
        }
    }
}

/// Drops CAP_SYS_ADMIN from the effective set (capset, no exec), then opens `path`.
fn drop_cap_open(path: &str) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_ADMIN: u32 = 21;
    let mut hdr = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as capget(2) documents.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_SYS_ADMIN);
        assert_eq!(libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()), 0);
    }
    open_file(path);
}

/// Opens and closes `path` `n` times; prints the elapsed nanoseconds.
fn open_storm(n: u64, path: &str) {
    let c = std::ffi::CString::new(path).expect("path");
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: a valid NUL-terminated path; the descriptor is closed right away.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
    println!("{}", t0.elapsed().as_nanos());
}

/// Each line of `list` is `FLAGS PATH` (FLAGS in hex): openat(AT_FDCWD, PATH, FLAGS), in order,
/// closing what opens. The paths need not exist: the call is what the tests watch.
fn open_list(list: &str) {
    let text = std::fs::read_to_string(list).expect("open list");
    for line in text.lines() {
        let (flags, path) = line.split_once(' ').expect("FLAGS PATH");
        let flags = i32::from_str_radix(flags, 16).expect("hex flags");
        let c = std::ffi::CString::new(path).expect("path");
        // SAFETY: a valid NUL-terminated path; a descriptor that opens is closed right away.
        unsafe {
            let fd = libc::openat(libc::AT_FDCWD, c.as_ptr(), flags);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
}

/// `n` getppid(2) calls, a syscall no test policy watches. Prints the nanoseconds taken.
fn getppid_storm(n: u64) {
    let t0 = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    println!("{}", t0.elapsed().as_nanos());
}

/// A function for uprobe tests: its symbol stays in the binary.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn vigil_e2e_probe_me(n: u64) -> u64 {
    std::hint::black_box(n.wrapping_mul(3).wrapping_add(1))
}

fn usage() -> ! {
    eprintln!(
        "usage: vigil-e2e-workload fork-exit CODE | threads N | exec-storm N PROGRAM [ARGS…] | files DIR | connect PORT | open PATH | fork-open PATH | probe-me N | open-storm N PATH | getppid-storm N | drop-cap-open PATH | set-mtu DEVICE | open-list FILE | exit CODE"
    );
    std::process::exit(2)
}

/// Forks; the child exits with `code` without exec. Prints the child's pid.
fn fork_exit(code: i32) {
    // SAFETY: this program is single-threaded here; the child only calls _exit.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => panic!("fork failed"),
        0 => {
            // SAFETY: _exit is async-signal-safe and ends the child immediately.
            unsafe { libc::_exit(code) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out pointer.
            unsafe { libc::waitpid(child, &mut status, 0) };
            println!("{child}");
        }
    }
}

/// Starts `n` threads that live together for a moment, then exits.
fn threads(n: usize) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                std::thread::sleep(std::time::Duration::from_millis(100));
            })
        })
        .collect();
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
}

/// Runs `program` `n` times, one after the other, printing each child's pid.
fn exec_storm(n: usize, program: &str, args: &[String]) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for _ in 0..n {
        let mut child = Command::new(program).args(args).spawn().expect("spawn");
        writeln!(out, "{}", child.id()).unwrap();
        child.wait().expect("wait");
    }
}
