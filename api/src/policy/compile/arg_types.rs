//! Argument types: their IR names, value groups and the operators each group accepts.

use crate::policy::ir;
use crate::policy::types::*;
use crate::policy::values::*;

pub(super) fn arg_type_ir(t: ArgTypeName) -> ir::ArgType {
    use ArgTypeName as A;
    use ir::ArgType as I;
    match t {
        A::Auto => I::Auto,
        A::Int8 => I::Int8,
        A::Uint8 => I::Uint8,
        A::Int16 => I::Int16,
        A::Uint16 => I::Uint16,
        A::Int | A::Int32 => I::Int32,
        A::Uint32 => I::Uint32,
        A::Int64 | A::Long => I::Int64,
        A::Uint64 | A::Ulong => I::Uint64,
        A::SizeT => I::SizeT,
        A::String => I::String,
        A::CharBuf => I::CharBuf,
        A::CharIovec => I::CharIovec,
        A::Filename => I::Filename,
        A::Fd => I::Fd,
        A::File => I::File,
        A::Path => I::Path,
        A::Dentry => I::Dentry,
        A::LinuxBinprm => I::LinuxBinprm,
        A::Sock => I::Sock,
        A::Socket => I::Socket,
        A::Skb => I::Skb,
        A::Sockaddr => I::Sockaddr,
        A::SockaddrUn => I::SockaddrUn,
        A::NetDevice => I::NetDevice,
        A::Cred => I::Cred,
        A::UserNamespace => I::UserNamespace,
        A::Capability => I::Capability,
        A::KernelCapT => I::KernelCapT,
        A::CapInheritable => I::CapInheritable,
        A::CapPermitted => I::CapPermitted,
        A::CapEffective => I::CapEffective,
        A::BpfAttr => I::BpfAttr,
        A::BpfCmd => I::BpfCmd,
        A::BpfMap => I::BpfMap,
        A::BpfProg => I::BpfProg,
        A::PerfEvent => I::PerfEvent,
        A::Kiocb => I::Kiocb,
        A::IovIter => I::IovIter,
        A::LoadInfo => I::LoadInfo,
        A::Module => I::Module,
        A::Syscall64 => I::Syscall64,
        A::DataLoc => I::DataLoc,
        A::ConstBuf => I::ConstBuf,
        A::Nop => I::Nop,
    }
}

pub(super) fn type_name(t: ArgTypeName) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn op_name(o: ArgOperatorName) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How values of an argument type are filtered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Group {
    Int(IntKind),
    Capability,
    CapMask,
    Syscall,
    Str,
    File {
        file_type: bool,
    },
    Sock,
    Sockaddr,
    SockaddrUn,
    /// A network device, compared by its name.
    DevName,
    Opaque,
    Auto,
}

pub(super) fn group(t: ArgTypeName) -> Group {
    use ArgTypeName as A;
    let s = |min: i64, max: i64| Group::Int(IntKind::Signed { min, max });
    let u = |max: u64| Group::Int(IntKind::Unsigned { max });
    match t {
        A::Int8 => s(i8::MIN.into(), i8::MAX.into()),
        A::Uint8 => u(u8::MAX.into()),
        A::Int16 => s(i16::MIN.into(), i16::MAX.into()),
        A::Uint16 => u(u16::MAX.into()),
        A::Int | A::Int32 => s(i32::MIN.into(), i32::MAX.into()),
        A::Uint32 | A::BpfCmd => u(u32::MAX.into()),
        A::Int64 | A::Long => s(i64::MIN, i64::MAX),
        A::Uint64 | A::Ulong | A::SizeT => u(u64::MAX),
        A::Capability => Group::Capability,
        A::KernelCapT | A::CapInheritable | A::CapPermitted | A::CapEffective => Group::CapMask,
        A::Syscall64 => Group::Syscall,
        A::String | A::CharBuf | A::CharIovec | A::Filename | A::DataLoc | A::ConstBuf => {
            Group::Str
        }
        A::File | A::Path => Group::File { file_type: true },
        A::Fd | A::Dentry | A::LinuxBinprm => Group::File { file_type: false },
        A::Sock | A::Socket | A::Skb => Group::Sock,
        A::Sockaddr => Group::Sockaddr,
        A::SockaddrUn => Group::SockaddrUn,
        A::Auto => Group::Auto,
        A::NetDevice => Group::DevName,
        A::Cred
        | A::UserNamespace
        | A::BpfAttr
        | A::BpfMap
        | A::BpfProg
        | A::PerfEvent
        | A::Kiocb
        | A::IovIter
        | A::LoadInfo
        | A::Module
        | A::Nop => Group::Opaque,
    }
}

pub(super) fn ops_for(g: Group) -> Vec<ArgOperatorName> {
    use ArgOperatorName as O;
    let strs = [
        O::Equal,
        O::NotEqual,
        O::Prefix,
        O::NotPrefix,
        O::Postfix,
        O::NotPostfix,
    ];
    match g {
        Group::Int(_) => vec![
            O::Equal,
            O::NotEqual,
            O::GreaterThan,
            O::Gt,
            O::LessThan,
            O::Lt,
            O::Mask,
            O::InRange,
            O::NotInRange,
            O::InMap,
            O::NotInMap,
        ],
        Group::Capability => vec![O::Equal, O::NotEqual, O::InMap, O::NotInMap],
        Group::CapMask => vec![O::Equal, O::NotEqual, O::Mask, O::CapabilitiesGained],
        Group::Syscall => vec![O::Equal, O::NotEqual, O::InMap, O::NotInMap],
        Group::Str => {
            let mut v = strs.to_vec();
            v.extend([O::SubString, O::SubStringIgnCase]);
            v
        }
        Group::File { file_type } => {
            let mut v = strs.to_vec();
            if file_type {
                v.extend([O::FileType, O::NotFileType]);
            }
            v
        }
        Group::SockaddrUn | Group::DevName => strs.to_vec(),
        Group::Sock => vec![
            O::SAddr,
            O::NotSAddr,
            O::DAddr,
            O::NotDAddr,
            O::SPort,
            O::NotSPort,
            O::SPortPriv,
            O::NotSPortPriv,
            O::NotSportPriv,
            O::DPort,
            O::NotDPort,
            O::DPortPriv,
            O::NotDPortPriv,
            O::Protocol,
            O::Family,
            O::State,
        ],
        Group::Sockaddr => vec![
            O::SAddr,
            O::NotSAddr,
            O::SPort,
            O::NotSPort,
            O::SPortPriv,
            O::NotSPortPriv,
            O::NotSportPriv,
            O::Family,
        ],
        Group::Opaque | Group::Auto => vec![],
    }
}

pub(super) fn op_ir(o: ArgOperatorName) -> ir::ArgOperator {
    use ArgOperatorName as O;
    use ir::ArgOperator as I;
    match o {
        O::Equal => I::Equal,
        O::NotEqual => I::NotEqual,
        O::Prefix => I::Prefix,
        O::NotPrefix => I::NotPrefix,
        O::Postfix => I::Postfix,
        O::NotPostfix => I::NotPostfix,
        O::GreaterThan | O::Gt => I::GreaterThan,
        O::LessThan | O::Lt => I::LessThan,
        O::Mask => I::Mask,
        O::InRange => I::InRange,
        O::NotInRange => I::NotInRange,
        O::InMap => I::InMap,
        O::NotInMap => I::NotInMap,
        O::SubString => I::Substring,
        O::SubStringIgnCase => I::SubstringIgnoreCase,
        O::FileType => I::FileType,
        O::NotFileType => I::NotFileType,
        O::SAddr => I::Saddr,
        O::NotSAddr => I::NotSaddr,
        O::DAddr => I::Daddr,
        O::NotDAddr => I::NotDaddr,
        O::SPort => I::Sport,
        O::NotSPort => I::NotSport,
        O::SPortPriv => I::SportPriv,
        O::NotSportPriv | O::NotSPortPriv => I::NotSportPriv,
        O::DPort => I::Dport,
        O::NotDPort => I::NotDport,
        O::DPortPriv => I::DportPriv,
        O::NotDPortPriv => I::NotDportPriv,
        O::Protocol => I::Protocol,
        O::Family => I::Family,
        O::State => I::State,
        O::CapabilitiesGained => I::CapabilitiesGained,
        O::CelExpr => I::Unspecified,
    }
}
