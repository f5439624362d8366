//! Compiles the BPF C sources in `bpf/` with clang (CO-RE, BTF) and strips debug info so the
//! objects can be embedded in the sensor binary.
use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: &[&str] = &["process", "probe", "hook", "maps", "iter", "protect"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("VIGIL_CLANG").unwrap_or_else(|_| "clang-19".into());
    let strip = std::env::var("VIGIL_LLVM_STRIP").unwrap_or_else(|_| "llvm-strip-19".into());
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=VIGIL_CLANG");
    println!("cargo:rerun-if-env-changed=VIGIL_LLVM_STRIP");
    for name in PROGRAMS {
        let src = format!("bpf/{name}.bpf.c");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Werror"])
            .args(["-Ibpf", "-c", &src, "-o"])
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {clang} ({e}): install clang-19 (apt-get install clang-19 llvm-19 libbpf-dev) or set VIGIL_CLANG")
            });
        assert!(status.success(), "{clang} failed to compile {src}");
        let status = Command::new(&strip)
            .arg("-g")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {strip} ({e}): install llvm-19 or set VIGIL_LLVM_STRIP")
            });
        assert!(status.success(), "{strip} failed on {}", obj.display());
    }
}
