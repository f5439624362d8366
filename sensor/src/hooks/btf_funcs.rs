//! Argument counts of the kernel's BPF-LSM hooks, read from its BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The LSM program reads a hook's arguments straight from its context (kernels before 5.17 have
//! no `bpf_get_func_arg`), and the verifier refuses a read past the hook's last argument: each
//! LSM instance is loaded with the count of `bpf_lsm_<hook>`'s prototype. aya 0.14 does not
//! expose function prototypes of a parsed BTF, so the few bytes needed are read here.

use std::collections::HashMap;
use std::sync::OnceLock;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// The argument count of LSM hook `hook` (`file_open` → 1) on the running kernel.
pub fn lsm_hook_args(hook: &str) -> Result<u32, String> {
    static TABLE: OnceLock<Result<HashMap<String, u32>, String>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
        func_arg_counts(&data, "bpf_lsm_").map_err(|e| format!("{path}: {e}"))
    });
    let table = table.as_ref().map_err(Clone::clone)?;
    table
        .get(&format!("bpf_lsm_{hook}"))
        .copied()
        .ok_or_else(|| {
            format!("the kernel has no LSM hook {hook:?} (no bpf_lsm_{hook} in its BTF)")
        })
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, String> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("BTF truncated at byte {off}"))
}

/// Bytes that follow the 12-byte common header of a type of kind `kind` with `vlen` members.
fn extra_len(kind: u32, vlen: usize) -> Result<usize, String> {
    Ok(match kind {
        1 | 14 | 17 => 4,   // INT, VAR, DECL_TAG
        3 => 12,            // ARRAY
        4 | 5 => 12 * vlen, // STRUCT, UNION
        6 => 8 * vlen,      // ENUM
        13 => 8 * vlen,     // FUNC_PROTO
        15 => 12 * vlen,    // DATASEC
        19 => 12 * vlen,    // ENUM64
        2 | 7..=12 | 16 | 18 => 0,
        k => return Err(format!("unknown BTF kind {k}")),
    })
}

/// Parameter counts of every function whose name starts with `prefix`, from raw BTF
/// (little-endian, as on x86_64).
pub fn func_arg_counts(data: &[u8], prefix: &str) -> Result<HashMap<String, u32>, String> {
    let magic = data
        .get(0..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or("BTF truncated")?;
    if magic != BTF_MAGIC {
        return Err(format!("not BTF (magic {magic:#x}), or not little-endian"));
    }
    let hdr_len = u32_at(data, 4)? as usize;
    let type_off = hdr_len + u32_at(data, 8)? as usize;
    let type_len = u32_at(data, 12)? as usize;
    let str_off = hdr_len + u32_at(data, 16)? as usize;
    let str_len = u32_at(data, 20)? as usize;
    let strings = data
        .get(str_off..str_off + str_len)
        .ok_or("BTF string section out of bounds")?;
    let name = |off: u32| -> &[u8] {
        let s = strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };
    // (kind, vlen, name offset, size/type) by type id; id 0 is void.
    let mut types: Vec<(u32, u32, u32, u32)> = vec![(0, 0, 0, 0)];
    let end = type_off + type_len;
    if end > data.len() {
        return Err("BTF type section out of bounds".into());
    }
    let mut off = type_off;
    while off < end {
        let name_off = u32_at(data, off)?;
        let info = u32_at(data, off + 4)?;
        let size_type = u32_at(data, off + 8)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = info & 0xffff;
        types.push((kind, vlen, name_off, size_type));
        off += 12 + extra_len(kind, vlen as usize)?;
    }
    let prefix = prefix.as_bytes();
    let mut out = HashMap::new();
    for &(kind, _, name_off, proto) in &types {
        if kind != KIND_FUNC || !name(name_off).starts_with(prefix) {
            continue;
        }
        if let Some(&(KIND_FUNC_PROTO, vlen, _, _)) = types.get(proto as usize) {
            out.insert(String::from_utf8_lossy(name(name_off)).into_owned(), vlen);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `int`, a pointer, `int (int, void *, int)` and two functions of that
    /// prototype (`bpf_lsm_x` and `other`).
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0bpf_lsm_x\0other\0a\0".to_vec();
        let (s_int, s_x, s_other, s_a) = (1u32, 5u32, 15u32, 21u32);
        let mut t = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, st: u32, extra: &[u32]| {
            for w in [name, (kind << 24) | vlen, st].iter().chain(extra) {
                t.extend_from_slice(&w.to_le_bytes());
            }
        };
        ty(s_int, 1, 0, 4, &[32]); // 1: int
        ty(0, 2, 0, 0, &[]); // 2: void *
        ty(0, 13, 3, 1, &[s_a, 1, s_a, 2, s_a, 1]); // 3: int (int, void *, int)
        ty(s_x, 12, 0, 3, &[]); // 4: bpf_lsm_x
        ty(s_other, 12, 0, 3, &[]); // 5: other
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn counts_the_parameters_of_prefixed_functions_only() {
        let m = func_arg_counts(&blob(), "bpf_lsm_").unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m["bpf_lsm_x"], 3);
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert!(func_arg_counts(b"\x7fELF....", "x").is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(func_arg_counts(&b, "x").is_err());
    }

    #[test]
    fn the_running_kernel_has_file_open_with_one_argument() {
        // Only where the kernel was built with BPF-LSM (its bpf_lsm_* functions are in BTF).
        match lsm_hook_args("file_open") {
            Ok(n) => assert_eq!(n, 1),
            Err(e) => assert!(e.contains("no LSM hook") || e.contains("reading"), "{e}"),
        }
    }
}
