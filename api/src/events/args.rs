//! Hook arguments (`KprobeArgument`): one typed value plus an optional label.
//!
//! On the wire the value is an object with a single key naming its type next to `label`,
//! e.g. `{"file_arg":{"path":"/etc/passwd"},"label":"file"}` or `{"size_arg":"4096"}`.

use super::codec::{B64, I64Str, U64Str, is_zero_u32, is_zero_u64, u64_str};
use super::process::{Namespace, ProcessCredentials, UserNamespace};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One argument (or return value, or data item) of a hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KprobeArgument {
    /// The value; `None` encodes as an object without a value key.
    pub arg: Option<ArgValue>,
    /// Label from the policy's `args[].label`, empty when none.
    pub label: String,
}

impl KprobeArgument {
    /// An unlabelled argument.
    pub fn new(arg: ArgValue) -> Self {
        KprobeArgument {
            arg: Some(arg),
            label: String::new(),
        }
    }

    /// The same argument with a label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn file(&self) -> Option<&KprobeFile> {
        match &self.arg {
            Some(ArgValue::File(f)) => Some(f),
            _ => None,
        }
    }

    pub fn path(&self) -> Option<&KprobePath> {
        match &self.arg {
            Some(ArgValue::Path(p)) => Some(p),
            _ => None,
        }
    }

    pub fn sock(&self) -> Option<&KprobeSock> {
        match &self.arg {
            Some(ArgValue::Sock(s)) => Some(s),
            _ => None,
        }
    }

    pub fn string(&self) -> Option<&str> {
        match &self.arg {
            Some(ArgValue::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i32> {
        match &self.arg {
            Some(ArgValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn uint(&self) -> Option<u32> {
        match &self.arg {
            Some(ArgValue::Uint(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn size(&self) -> Option<u64> {
        match &self.arg {
            Some(ArgValue::Size(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn long(&self) -> Option<i64> {
        match &self.arg {
            Some(ArgValue::Long(v)) => Some(*v),
            _ => None,
        }
    }
}

/// The typed value of a [`KprobeArgument`]; each variant names its JSON key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// `string_arg`: string, filename.
    String(String),
    /// `int_arg`: int32 (also `int`, `fd` numbers, return codes).
    Int(i32),
    /// `skb_arg`.
    Skb(KprobeSkb),
    /// `size_arg`: uint64, written as a JSON string.
    Size(u64),
    /// `bytes_arg`: char_buf, base64 on the wire.
    Bytes(Vec<u8>),
    /// `path_arg`.
    Path(KprobePath),
    /// `file_arg`: fd, file.
    File(KprobeFile),
    /// `truncated_bytes_arg`.
    TruncatedBytes(KprobeTruncatedBytes),
    /// `sock_arg`.
    Sock(KprobeSock),
    /// `cred_arg`.
    Cred(KprobeCred),
    /// `long_arg`: int64, written as a JSON string.
    Long(i64),
    /// `bpf_attr_arg`.
    BpfAttr(KprobeBpfAttr),
    /// `perf_event_arg`.
    PerfEvent(KprobePerfEvent),
    /// `bpf_map_arg`.
    BpfMap(KprobeBpfMap),
    /// `uint_arg`: uint32.
    Uint(u32),
    /// `user_namespace_arg` (deprecated by Tetragon in favour of `user_ns_arg`).
    UserNamespace(KprobeUserNamespace),
    /// `capability_arg`.
    Capability(KprobeCapability),
    /// `process_credentials_arg`.
    ProcessCredentials(ProcessCredentials),
    /// `user_ns_arg`.
    UserNs(UserNamespace),
    /// `module_arg`.
    Module(KernelModule),
    /// `kernel_cap_t_arg`: capability mask in hexadecimal.
    KernelCapT(String),
    /// `cap_inheritable_arg`: hexadecimal.
    CapInheritable(String),
    /// `cap_permitted_arg`: hexadecimal.
    CapPermitted(String),
    /// `cap_effective_arg`: hexadecimal.
    CapEffective(String),
    /// `linux_binprm_arg`.
    LinuxBinprm(KprobeLinuxBinprm),
    /// `net_dev_arg`.
    NetDev(KprobeNetDev),
    /// `bpf_cmd_arg`: the `BPF_*` command name.
    BpfCmd(String),
    /// `syscall_id`.
    SyscallId(SyscallId),
    /// `sockaddr_arg`.
    Sockaddr(KprobeSockaddr),
    /// `bpf_prog_arg`.
    BpfProg(KprobeBpfProg),
    /// `error_arg`: the argument could not be read.
    Error(KprobeError),
}

/// Every JSON key a [`KprobeArgument`] accepts.
pub const ARGUMENT_FIELDS: &[&str] = &[
    "label",
    "string_arg",
    "int_arg",
    "skb_arg",
    "size_arg",
    "bytes_arg",
    "path_arg",
    "file_arg",
    "truncated_bytes_arg",
    "sock_arg",
    "cred_arg",
    "long_arg",
    "bpf_attr_arg",
    "perf_event_arg",
    "bpf_map_arg",
    "uint_arg",
    "user_namespace_arg",
    "capability_arg",
    "process_credentials_arg",
    "user_ns_arg",
    "module_arg",
    "kernel_cap_t_arg",
    "cap_inheritable_arg",
    "cap_permitted_arg",
    "cap_effective_arg",
    "linux_binprm_arg",
    "net_dev_arg",
    "bpf_cmd_arg",
    "syscall_id",
    "sockaddr_arg",
    "bpf_prog_arg",
    "error_arg",
];

impl ArgValue {
    /// The JSON key of this variant (`file_arg`, `int_arg`, …).
    pub fn field_name(&self) -> &'static str {
        match self {
            ArgValue::String(_) => "string_arg",
            ArgValue::Int(_) => "int_arg",
            ArgValue::Skb(_) => "skb_arg",
            ArgValue::Size(_) => "size_arg",
            ArgValue::Bytes(_) => "bytes_arg",
            ArgValue::Path(_) => "path_arg",
            ArgValue::File(_) => "file_arg",
            ArgValue::TruncatedBytes(_) => "truncated_bytes_arg",
            ArgValue::Sock(_) => "sock_arg",
            ArgValue::Cred(_) => "cred_arg",
            ArgValue::Long(_) => "long_arg",
            ArgValue::BpfAttr(_) => "bpf_attr_arg",
            ArgValue::PerfEvent(_) => "perf_event_arg",
            ArgValue::BpfMap(_) => "bpf_map_arg",
            ArgValue::Uint(_) => "uint_arg",
            ArgValue::UserNamespace(_) => "user_namespace_arg",
            ArgValue::Capability(_) => "capability_arg",
            ArgValue::ProcessCredentials(_) => "process_credentials_arg",
            ArgValue::UserNs(_) => "user_ns_arg",
            ArgValue::Module(_) => "module_arg",
            ArgValue::KernelCapT(_) => "kernel_cap_t_arg",
            ArgValue::CapInheritable(_) => "cap_inheritable_arg",
            ArgValue::CapPermitted(_) => "cap_permitted_arg",
            ArgValue::CapEffective(_) => "cap_effective_arg",
            ArgValue::LinuxBinprm(_) => "linux_binprm_arg",
            ArgValue::NetDev(_) => "net_dev_arg",
            ArgValue::BpfCmd(_) => "bpf_cmd_arg",
            ArgValue::SyscallId(_) => "syscall_id",
            ArgValue::Sockaddr(_) => "sockaddr_arg",
            ArgValue::BpfProg(_) => "bpf_prog_arg",
            ArgValue::Error(_) => "error_arg",
        }
    }
}

impl Serialize for KprobeArgument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = usize::from(self.arg.is_some()) + usize::from(!self.label.is_empty());
        let mut m = s.serialize_map(Some(len))?;
        if let Some(arg) = &self.arg {
            let k = arg.field_name();
            match arg {
                ArgValue::String(v)
                | ArgValue::KernelCapT(v)
                | ArgValue::CapInheritable(v)
                | ArgValue::CapPermitted(v)
                | ArgValue::CapEffective(v)
                | ArgValue::BpfCmd(v) => m.serialize_entry(k, v)?,
                ArgValue::Int(v) => m.serialize_entry(k, v)?,
                ArgValue::Skb(v) => m.serialize_entry(k, v)?,
                ArgValue::Size(v) => m.serialize_entry(k, &U64Str(*v))?,
                ArgValue::Bytes(v) => m.serialize_entry(k, &B64(v.clone()))?,
                ArgValue::Path(v) => m.serialize_entry(k, v)?,
                ArgValue::File(v) => m.serialize_entry(k, v)?,
                ArgValue::TruncatedBytes(v) => m.serialize_entry(k, v)?,
                ArgValue::Sock(v) => m.serialize_entry(k, v)?,
                ArgValue::Cred(v) => m.serialize_entry(k, v)?,
                ArgValue::Long(v) => m.serialize_entry(k, &I64Str(*v))?,
                ArgValue::BpfAttr(v) => m.serialize_entry(k, v)?,
                ArgValue::PerfEvent(v) => m.serialize_entry(k, v)?,
                ArgValue::BpfMap(v) => m.serialize_entry(k, v)?,
                ArgValue::Uint(v) => m.serialize_entry(k, v)?,
                ArgValue::UserNamespace(v) => m.serialize_entry(k, v)?,
                ArgValue::Capability(v) => m.serialize_entry(k, v)?,
                ArgValue::ProcessCredentials(v) => m.serialize_entry(k, v)?,
                ArgValue::UserNs(v) => m.serialize_entry(k, v)?,
                ArgValue::Module(v) => m.serialize_entry(k, v)?,
                ArgValue::LinuxBinprm(v) => m.serialize_entry(k, v)?,
                ArgValue::NetDev(v) => m.serialize_entry(k, v)?,
                ArgValue::SyscallId(v) => m.serialize_entry(k, v)?,
                ArgValue::Sockaddr(v) => m.serialize_entry(k, v)?,
                ArgValue::BpfProg(v) => m.serialize_entry(k, v)?,
                ArgValue::Error(v) => m.serialize_entry(k, v)?,
            }
        }
        if !self.label.is_empty() {
            m.serialize_entry("label", &self.label)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for KprobeArgument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ArgumentVisitor)
    }
}

struct ArgumentVisitor;

impl<'de> Visitor<'de> for ArgumentVisitor {
    type Value = KprobeArgument;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an argument object with at most one value key and an optional label")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KprobeArgument, A::Error> {
        let mut label: Option<String> = None;
        let mut arg: Option<ArgValue> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "label" {
                if label.is_some() {
                    return Err(de::Error::duplicate_field("label"));
                }
                label = Some(map.next_value()?);
                continue;
            }
            if let Some(prev) = &arg {
                return Err(de::Error::custom(format!(
                    "argument has two values: `{}` and `{key}`",
                    prev.field_name()
                )));
            }
            let v = match key.as_str() {
                "string_arg" => ArgValue::String(map.next_value()?),
                "int_arg" => ArgValue::Int(map.next_value()?),
                "skb_arg" => ArgValue::Skb(map.next_value()?),
                "size_arg" => ArgValue::Size(map.next_value::<U64Str>()?.0),
                "bytes_arg" => ArgValue::Bytes(map.next_value::<B64>()?.0),
                "path_arg" => ArgValue::Path(map.next_value()?),
                "file_arg" => ArgValue::File(map.next_value()?),
                "truncated_bytes_arg" => ArgValue::TruncatedBytes(map.next_value()?),
                "sock_arg" => ArgValue::Sock(map.next_value()?),
                "cred_arg" => ArgValue::Cred(map.next_value()?),
                "long_arg" => ArgValue::Long(map.next_value::<I64Str>()?.0),
                "bpf_attr_arg" => ArgValue::BpfAttr(map.next_value()?),
                "perf_event_arg" => ArgValue::PerfEvent(map.next_value()?),
                "bpf_map_arg" => ArgValue::BpfMap(map.next_value()?),
                "uint_arg" => ArgValue::Uint(map.next_value()?),
                "user_namespace_arg" => ArgValue::UserNamespace(map.next_value()?),
                "capability_arg" => ArgValue::Capability(map.next_value()?),
                "process_credentials_arg" => ArgValue::ProcessCredentials(map.next_value()?),
                "user_ns_arg" => ArgValue::UserNs(map.next_value()?),
                "module_arg" => ArgValue::Module(map.next_value()?),
                "kernel_cap_t_arg" => ArgValue::KernelCapT(map.next_value()?),
                "cap_inheritable_arg" => ArgValue::CapInheritable(map.next_value()?),
                "cap_permitted_arg" => ArgValue::CapPermitted(map.next_value()?),
                "cap_effective_arg" => ArgValue::CapEffective(map.next_value()?),
                "linux_binprm_arg" => ArgValue::LinuxBinprm(map.next_value()?),
                "net_dev_arg" => ArgValue::NetDev(map.next_value()?),
                "bpf_cmd_arg" => ArgValue::BpfCmd(map.next_value()?),
                "syscall_id" => ArgValue::SyscallId(map.next_value()?),
                "sockaddr_arg" => ArgValue::Sockaddr(map.next_value()?),
                "bpf_prog_arg" => ArgValue::BpfProg(map.next_value()?),
                "error_arg" => ArgValue::Error(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, ARGUMENT_FIELDS)),
            };
            arg = Some(v);
        }
        Ok(KprobeArgument {
            arg,
            label: label.unwrap_or_default(),
        })
    }
}

/// A socket (`struct sock`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeSock {
    /// `AF_INET`, `AF_INET6`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    /// `SOCK_STREAM`, …
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub sock_type: String,
    /// `IPPROTO_TCP`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub mark: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub priority: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub saddr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub daddr: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub sport: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub dport: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub cookie: u64,
    /// `TCP_ESTABLISHED`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
}

/// A socket buffer (`struct sk_buff`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeSkb {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub hash: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub len: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub priority: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub mark: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub saddr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub daddr: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub sport: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub dport: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub proto: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub sec_path_len: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub sec_path_olen: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
}

/// A `struct path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobePath {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// `ls -l` style mode, e.g. `-rw-r--r--`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permission: String,
}

/// A `struct file` (or an fd resolved to one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeFile {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// `ls -l` style mode, e.g. `-rw-r--r--`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permission: String,
}

/// A buffer cut to the configured size; `orig_size` is the real length.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeTruncatedBytes {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "super::codec::base64_bytes"
    )]
    pub bytes_arg: Vec<u8>,
    #[serde(default, skip_serializing_if = "is_zero_u64", with = "u64_str")]
    pub orig_size: u64,
}

/// Capability sets of a `struct cred`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeCred {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
}

/// `union bpf_attr` for program loads (JSON keys are capitalised, as in Tetragon's proto).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeBpfAttr {
    #[serde(rename = "ProgType", default, skip_serializing_if = "String::is_empty")]
    pub prog_type: String,
    #[serde(rename = "InsnCnt", default, skip_serializing_if = "is_zero_u32")]
    pub insn_cnt: u32,
    #[serde(rename = "ProgName", default, skip_serializing_if = "String::is_empty")]
    pub prog_name: String,
}

/// A loaded BPF program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeBpfProg {
    #[serde(rename = "ProgType", default, skip_serializing_if = "String::is_empty")]
    pub prog_type: String,
    #[serde(rename = "InsnCnt", default, skip_serializing_if = "is_zero_u32")]
    pub insn_cnt: u32,
    #[serde(rename = "ProgName", default, skip_serializing_if = "String::is_empty")]
    pub prog_name: String,
}

/// A `struct perf_event`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobePerfEvent {
    #[serde(
        rename = "KprobeFunc",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub kprobe_func: String,
    #[serde(rename = "Type", default, skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    #[serde(
        rename = "Config",
        default,
        skip_serializing_if = "is_zero_u64",
        with = "u64_str"
    )]
    pub config: u64,
    #[serde(
        rename = "ProbeOffset",
        default,
        skip_serializing_if = "is_zero_u64",
        with = "u64_str"
    )]
    pub probe_offset: u64,
}

/// A `struct bpf_map`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeBpfMap {
    #[serde(rename = "MapType", default, skip_serializing_if = "String::is_empty")]
    pub map_type: String,
    #[serde(rename = "KeySize", default, skip_serializing_if = "is_zero_u32")]
    pub key_size: u32,
    #[serde(rename = "ValueSize", default, skip_serializing_if = "is_zero_u32")]
    pub value_size: u32,
    #[serde(rename = "MaxEntries", default, skip_serializing_if = "is_zero_u32")]
    pub max_entries: u32,
    #[serde(rename = "MapName", default, skip_serializing_if = "String::is_empty")]
    pub map_name: String,
}

/// Deprecated user namespace shape (`user_namespace_arg`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeUserNamespace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Namespace>,
}

/// One capability: its number and `CAP_*` name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeCapability {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A kernel module being loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelModule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_ok: Option<bool>,
    /// `TAINT_*` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tainted: Vec<String>,
}

/// A `struct linux_binprm` (the file being executed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeLinuxBinprm {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permission: String,
}

/// A `struct net_device`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeNetDev {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A syscall number with its ABI (`x64`, `i386`, `arm64`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallId {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub abi: String,
}

/// A `struct sockaddr`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeSockaddr {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port: u32,
}

/// Why an argument could not be read (JSON key `Message`, capitalised as in Tetragon's proto).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KprobeError {
    #[serde(rename = "Message", default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
