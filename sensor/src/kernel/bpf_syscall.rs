//! The bpf(2) system call, for the few commands aya 0.14 does not offer: fmod_ret programs,
//! links with BPF cookies, and pinned objects the sensor makes itself (its hand-over stamp and
//! state).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_OBJ_PIN: libc::c_long = 6;
pub const BPF_OBJ_GET: libc::c_long = 7;
pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
pub const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
pub const BPF_LINK_CREATE: libc::c_long = 28;

/// Runs `cmd` with `attr` (a zero-padded repr(C) prefix of `union bpf_attr`); returns what the
/// kernel returned (0, or a new descriptor for the commands that make one).
pub fn call<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, initialised repr(C) struct of the size passed; the kernel reads
    // at most that many bytes and writes only into memory it points to that the caller owns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// [`call`] for a command that returns a new file descriptor.
pub fn call_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = call(cmd, attr)?;
    // SAFETY: a non-negative return of these commands is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn c_path(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt as _;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("{} contains NUL", path.display())))
}

#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: u32,
}

/// Pins the BPF object behind `fd` (map, program, link) at `path` on bpffs.
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let p = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: p.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    call(BPF_OBJ_PIN, &mut attr)
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("pinning {}: {e}", path.display())))
}

/// Opens the BPF object pinned at `path`.
pub fn get(path: &Path) -> io::Result<OwnedFd> {
    let p = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: p.as_ptr() as u64,
        ..Default::default()
    };
    call_fd(BPF_OBJ_GET, &mut attr)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    /// map_ifindex, btf_fd, … : zero. u32s, so that there is no padding (whose bytes would be
    /// uninitialised, and the kernel reads them).
    rest: [u32; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The start of `struct bpf_map_info`: enough to read a map's value size.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// Stores `bytes` as a pinned single-entry array map at `path`, replacing what was there in one
/// step (a new map is pinned beside it and renamed over it). `name` names the map in
/// `bpftool map show`. The value is the length (8 bytes) and the bytes.
pub fn write_blob(path: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let size = (8 + bytes.len()).next_multiple_of(8);
    let value_size = u32::try_from(size)
        .map_err(|_| io::Error::other(format!("{name}: {} bytes is too large", bytes.len())))?;
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size,
        max_entries: 1,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.map_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let map = call_fd(BPF_MAP_CREATE, &mut attr)
        .map_err(|e| io::Error::new(e.kind(), format!("creating the {name} map: {e}")))?;
    let mut value = vec![0u8; size];
    value[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    value[8..8 + bytes.len()].copy_from_slice(bytes);
    let key = 0u32;
    let mut update = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    call(BPF_MAP_UPDATE_ELEM, &mut update)
        .map_err(|e| io::Error::new(e.kind(), format!("writing the {name} map: {e}")))?;
    // bpffs refuses names with a dot.
    let staged = path.with_file_name(format!(
        "{}_new",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob")
    ));
    let _ = std::fs::remove_file(&staged);
    pin(std::os::fd::AsFd::as_fd(&map), &staged)?;
    std::fs::rename(&staged, path)
        .map_err(|e| io::Error::new(e.kind(), format!("renaming {}: {e}", staged.display())))
}

/// The kernel id of the program, map or link behind `fd`: the second u32 of each of
/// `bpf_prog_info`, `bpf_map_info` and `bpf_link_info` (the kernel fills as much of the info as
/// the length asks for).
pub fn object_id(fd: std::os::fd::RawFd) -> io::Result<u32> {
    let mut info = [0u32; 2];
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    call(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[1])
}

/// Reads a blob written by [`write_blob`].
pub fn read_blob(path: &Path) -> io::Result<Vec<u8>> {
    let map = get(path)?;
    let mut info = MapInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: map.as_raw_fd() as u32,
        info_len: std::mem::size_of::<MapInfo>() as u32,
        info: &mut info as *mut MapInfo as u64,
    };
    call(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    if info.map_type != BPF_MAP_TYPE_ARRAY || info.key_size != 4 || info.value_size < 8 {
        return Err(io::Error::other(format!(
            "{} is not a blob written by this sensor",
            path.display()
        )));
    }
    let mut value = vec![0u8; info.value_size as usize];
    let key = 0u32;
    let mut lookup = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    call(BPF_MAP_LOOKUP_ELEM, &mut lookup)?;
    let len = u64::from_le_bytes(value[..8].try_into().expect("8 bytes")) as usize;
    if 8 + len > value.len() {
        return Err(io::Error::other(format!(
            "{}: recorded length {len} exceeds the map",
            path.display()
        )));
    }
    Ok(value[8..8 + len].to_vec())
}

/// The id of the BPF object (map, program or link) behind `fd`: every kind's info starts with
/// a `u32` type and the `u32` id.
pub fn obj_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // Zeroed: the kernel checks that what lies past its own struct is zero.
    let mut info = [0u32; 16];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    call(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[1])
}
