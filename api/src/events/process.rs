//! `Process` and the messages it is made of.

use super::codec::{is_false, is_zero_u32, is_zero_u64, u64_str};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A process as events hold it: shared, so that the process cache and every event of the
/// process point at one copy (written once, read many times); changed with `Arc::make_mut`.
pub type SharedProcess = std::sync::Arc<Process>;

/// A process as it appears in every event (`process`, `parent`, `ancestors`).
///
/// Fields typed `Option<_>` are protobuf wrapper types: they are written whenever they are
/// `Some`, even when the value is 0 or `false`. Every other scalar is omitted when zero/empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// base64 of `<node>:<ktime_ns>:<pid>`, see [`super::exec_id`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exec_id: String,
    /// Thread group id in the host PID namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Effective uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cwd: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binary: String,
    /// argv[1..] formatted by [`super::format_arguments`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arguments: String,
    /// Space-separated flags, see [`super::ProcessFlags`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// RFC 3339 timestamp with nanoseconds, see [`super::format_time_ns`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// Audit uid; 4294967295 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    /// Container id taken from the cgroup name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_exec_id: String,
    /// Reference count in the sensor's process cache.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub refcnt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Namespaces>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_credentials: Option<ProcessCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_properties: Option<BinaryProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_init_tree: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables: Vec<EnvVar>,
}

impl Process {
    /// Whether the capability `name` (e.g. `CAP_SYS_ADMIN`) is in the effective set.
    pub fn has_effective_cap(&self, name: &str) -> bool {
        self.cap
            .as_ref()
            .is_some_and(|c| c.effective.iter().any(|n| n == name))
    }
}

/// Kubernetes pod metadata of the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// PID inside the container's PID namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub maybe_exec_probe: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
}

/// Capability sets as `CAP_*` names (see [`super::capability_names`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
}

impl Capabilities {
    /// Builds the three sets from kernel capability bitmasks.
    pub fn from_masks(permitted: u64, effective: u64, inheritable: u64) -> Self {
        Capabilities {
            permitted: super::capability_names(permitted),
            effective: super::capability_names(effective),
            inheritable: super::capability_names(inheritable),
        }
    }
}

/// One Linux namespace: its inode number and whether it is the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub inum: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_host: bool,
}

/// The ten namespaces of a process (sensor option `--enable-process-ns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnt: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_for_children: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_for_children: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Namespace>,
}

/// Full credentials of the process (sensor option `--enable-process-cred`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsuid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsgid: Option<u32>,
    /// Secure bits as names (`SecBitNoRoot`, …), see [`super::securebits_names`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub securebits: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ns: Option<UserNamespace>,
}

/// The user namespace credentials are relative to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserNamespace {
    /// Nesting level; the host user namespace is level 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Namespace>,
}

/// Properties of the executed binary (exec events only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryProperties {
    /// Set when the binary is set-user-ID: the uid it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setuid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setgid: Option<u32>,
    /// `PRIVILEGES_RAISED_EXEC_FILE_CAP`, `PRIVILEGES_RAISED_EXEC_FILE_SETUID`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges_changed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileProperties>,
}

/// Set when the executed file is memfd/shm or was deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<InodeProperties>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InodeProperties {
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub number: u64,
    /// Link count; `Some(0)` means the file only exists in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<u32>,
}

/// User database record for the process uid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// One environment variable (the JSON keys are capitalised, as in Tetragon's proto).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    #[serde(rename = "Key", default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(rename = "Value", default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}
