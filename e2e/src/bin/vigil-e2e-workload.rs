//! Workloads for the system tests that a shell cannot express exactly: a fork without exec, a
//! many-threaded process, an exec storm that records every child's pid.

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
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: vigil-e2e-workload fork-exit CODE | threads N | exec-storm N PROGRAM [ARGS…]"
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
