//! matchArgs / matchReturnArgs: operator checks and typed value parsing per argument group.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::{quote, suggest};
use crate::policy::types::*;
use crate::policy::values::*;

use super::arg_types::{Group, arg_type_ir, group, op_ir, op_name, ops_for, type_name};
use super::value_sets::bucketize;
use super::{Cx, TEMPLATE_HINT};

use ArgOperatorName as O;

/// The filter being checked, as its values are parsed one by one.
struct ValueCx<'f> {
    /// Path of the filter (matchArgs[i]).
    p: &'f str,
    f: &'f ArgSelector,
    ty: ArgTypeName,
    g: Group,
    allowed: &'f [ArgOperatorName],
}

/// The values of one filter, collected by kind: sets are sorted and de-duplicated.
#[derive(Default)]
struct ArgValues {
    signed: BTreeSet<i64>,
    unsigned: BTreeSet<u64>,
    sranges: BTreeSet<(i64, i64)>,
    uranges: BTreeSet<(u64, u64)>,
    strings: BTreeSet<String>,
    addrs: BTreeMap<(u32, Vec<u8>, u32), ir::Cidr>,
    ports: Vec<(u32, u32)>,
    small: BTreeSet<u32>,
    syscalls: BTreeSet<String>,
    list_name: Option<String>,
}

impl Cx<'_> {
    pub(super) fn arg_filter(
        &mut self,
        p: &str,
        f: &ArgSelector,
        ty: ArgTypeName,
    ) -> Option<ir::ArgFilter> {
        let (g, allowed) = self.arg_operator(p, f, ty)?;
        let mut out = ir::ArgFilter {
            index: f.index,
            arg_type: arg_type_ir(ty) as i32,
            operator: op_ir(f.operator) as i32,
            ..Default::default()
        };
        let no_values = matches!(
            f.operator,
            O::SPortPriv | O::NotSportPriv | O::NotSPortPriv | O::DPortPriv | O::NotDPortPriv
        );
        if no_values {
            if !f.values.is_empty() {
                self.err(PolicyError::invalid(
                    format!("{p}.values"),
                    format!("{} values", f.values.len()),
                    format!(
                        "{} takes no values (it matches ports below 1024)",
                        op_name(f.operator)
                    ),
                    "no values",
                ));
                return None;
            }
            return Some(out);
        }
        if self.empty_values(p, f.values.len(), "values") || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let before = self.errs.len();
        let mut acc = ArgValues::default();
        let single = matches!(f.operator, O::GreaterThan | O::Gt | O::LessThan | O::Lt);
        if single && f.values.len() != 1 {
            self.err(PolicyError::invalid(
                format!("{p}.values"),
                format!("{} values", f.values.len()),
                format!("{} compares against one value", op_name(f.operator)),
                "exactly one value",
            ));
            return None;
        }
        let cx = ValueCx {
            p,
            f,
            ty,
            g,
            allowed: &allowed,
        };
        for (i, v) in f.values.iter().enumerate() {
            self.arg_value(&cx, format!("{p}.values[{i}]"), v, &mut acc);
        }
        if self.errs.len() != before {
            return None;
        }
        acc.fill(&mut out);
        Some(out)
    }

    /// Reject what cannot be filtered at all; on success, the argument's group and the
    /// operators it accepts.
    fn arg_operator(
        &mut self,
        p: &str,
        f: &ArgSelector,
        ty: ArgTypeName,
    ) -> Option<(Group, Vec<ArgOperatorName>)> {
        if f.args.is_some() {
            self.err(PolicyError::not_supported(
                format!("{p}.args"),
                "selecting arguments by position in `args` (matchArgs.args)",
                "index (the function argument index)",
            ));
            return None;
        }
        if f.operator == O::CelExpr {
            self.err(PolicyError::not_supported(
                format!("{p}.operator"),
                "CEL expressions (operator CelExpr)",
                "the typed operators (Equal, Prefix, InRange, DAddr, …)",
            ));
            return None;
        }
        let g = group(ty);
        if g == Group::Auto {
            self.err(PolicyError::invalid(
                format!("{p}.index"),
                f.index.to_string(),
                "the argument has type auto, so its values cannot be checked",
                "declare the argument's type in args (int, string, file, sock, …)",
            ));
            return None;
        }
        let allowed = ops_for(g);
        if !allowed.contains(&f.operator) {
            self.err(PolicyError::invalid(
                format!("{p}.operator"),
                quote(&op_name(f.operator)),
                format!("operator does not apply to arg type {}", type_name(ty)),
                if allowed.is_empty() {
                    format!(
                        "none: arg type {} cannot be filtered (filter on another argument)",
                        type_name(ty)
                    )
                } else {
                    allowed
                        .iter()
                        .map(|o| op_name(*o))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ));
            return None;
        }
        Some((g, allowed))
    }

    /// Parse one value of the filter into `acc`, reporting errors at `vp`.
    fn arg_value(&mut self, cx: &ValueCx<'_>, vp: String, v: &str, acc: &mut ArgValues) {
        let f = cx.f;
        let g = cx.g;
        if is_template(v) {
            self.err(PolicyError::not_supported(
                vp,
                format!("template variable in {}", quote(v)),
                TEMPLATE_HINT,
            ));
            return;
        }
        if let (Group::Int(_), O::InMap | O::NotInMap) = (g, f.operator)
            && let Some(name) = v.strip_prefix("list:")
        {
            if f.values.len() != 1 {
                self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    "a list reference must be the only value",
                    "either one list:NAME or integers",
                ));
            } else if let Some(vals) = self.syscall_list(&vp, name) {
                acc.syscalls.extend(vals);
                acc.list_name = Some(name.to_string());
            }
            return;
        }
        match g {
            Group::Int(_) | Group::Capability | Group::CapMask => {
                self.numeric_value(cx, vp, v, acc)
            }
            Group::Syscall => self.syscall_value(cx, vp, v, acc),
            Group::Str | Group::File { .. } | Group::SockaddrUn | Group::DevName => {
                self.text_value(cx, vp, v, acc)
            }
            Group::Sock | Group::Sockaddr => self.socket_value(cx, vp, v, acc),
            Group::Opaque | Group::Auto => self.wrong_operator(cx),
        }
    }

    /// Integers, ranges, masks, capabilities and capability sets.
    fn numeric_value(&mut self, cx: &ValueCx<'_>, vp: String, v: &str, acc: &mut ArgValues) {
        let ty = cx.ty;
        match (cx.g, cx.f.operator) {
                (Group::Int(k), O::InRange | O::NotInRange) => {
                    let (a, b) = v.split_once(':').unwrap_or((v, v));
                    match (typed_int(a, k), typed_int(b, k)) {
                        (Some(TypedInt::Signed(x)), Some(TypedInt::Signed(y))) if x <= y => {
                            acc.sranges.insert((x, y));
                        }
                        (Some(TypedInt::Unsigned(x)), Some(TypedInt::Unsigned(y))) if x <= y => {
                            acc.uranges.insert((x, y));
                        }
                        _ => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!("not a range for arg type {}", type_name(ty)),
                            format!("MIN:MAX with MIN <= MAX, each {}", k.describe()),
                        )),
                    }
                }
                (Group::Int(_) | Group::CapMask, O::Mask)
                | (Group::CapMask, O::CapabilitiesGained) => {
                    match parse_int(v).or_else(|| capability(v).map(|c| Int::Unsigned(1u64 << c))) {
                        Some(Int::Unsigned(u)) => {
                            acc.unsigned.insert(u);
                        }
                        _ => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            "not a bit mask",
                            "an unsigned integer (decimal, 0x hex, 0 octal) or, for capability sets, a CAP_* name",
                        )),
                    }
                }
                (Group::Int(k), _) => match typed_int(v, k) {
                    Some(TypedInt::Signed(x)) => {
                        acc.signed.insert(x);
                    }
                    Some(TypedInt::Unsigned(x)) => {
                        acc.unsigned.insert(x);
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        format!("not a value of arg type {}", type_name(ty)),
                        format!("{} (decimal, 0x hex, 0 octal)", k.describe()),
                    )),
                },
                (Group::Capability, _) => {
                    let n = capability(v).map(u64::from).or(match parse_int(v) {
                        Some(Int::Unsigned(u)) if u < 64 => Some(u),
                        _ => None,
                    });
                    match n {
                        Some(n) => {
                            acc.unsigned.insert(n);
                        }
                        None => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!("not a capability{}", suggest(v, CAPABILITIES)),
                            "a CAP_* name or a capability number from 0 to 63",
                        )),
                    }
                }
                (Group::CapMask, _) => {
                    match parse_int(v).or_else(|| capability(v).map(|c| Int::Unsigned(1u64 << c))) {
                        Some(Int::Unsigned(u)) => {
                            acc.unsigned.insert(u);
                        }
                        _ => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            "not a capability set",
                            "an unsigned 64-bit mask or a CAP_* name",
                        )),
                    }
                }
            _ => self.wrong_operator(cx),
        }
    }

    fn syscall_value(&mut self, cx: &ValueCx<'_>, vp: String, v: &str, acc: &mut ArgValues) {
        let f = cx.f;
        if let Some(name) = v.strip_prefix("list:") {
            if f.values.len() != 1 {
                self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    "a list reference must be the only value",
                    "either one list:NAME or syscall names/numbers",
                ));
            } else if let Some(vals) = self.syscall_list(&vp, name) {
                acc.syscalls.extend(vals);
                acc.list_name = Some(name.to_string());
            }
        } else if let Some(Int::Unsigned(u)) = parse_int(v) {
            acc.unsigned.insert(u);
        } else if is_identifier(v, b"") && v.len() <= MAX_SYMBOL_LEN {
            acc.syscalls.insert(v.to_string());
        } else {
            self.err(PolicyError::invalid(
                vp,
                quote(v),
                "not a syscall",
                "a syscall name (e.g. sys_dup), a syscall number, or list:NAME",
            ));
        }
    }

    /// Strings, paths and file types.
    fn text_value(&mut self, cx: &ValueCx<'_>, vp: String, v: &str, acc: &mut ArgValues) {
        match (cx.g, cx.f.operator) {
            (Group::File { .. }, O::FileType | O::NotFileType) => {
                match FILE_TYPES.iter().find(|(n, _)| *n == v) {
                    Some((_, t)) => {
                        acc.small.insert(*t);
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        format!(
                            "unknown file type{}",
                            suggest(v, FILE_TYPES.iter().map(|(n, _)| *n))
                        ),
                        names(&FILE_TYPES),
                    )),
                }
            }
            (Group::Str | Group::File { .. } | Group::SockaddrUn | Group::DevName, op) => {
                let max = match op {
                    // A device name is an IFNAMSIZ array: 15 bytes and its NUL.
                    _ if cx.g == Group::DevName => MAX_DEVICE_NAME_LEN,
                    O::Equal | O::NotEqual => MAX_STRING_EQUAL_LEN,
                    O::SubString | O::SubStringIgnCase => MAX_SUBSTRING_LEN,
                    _ => MAX_STRING_AFFIX_LEN,
                };
                if v.is_empty() {
                    self.err(PolicyError::invalid(
                        vp,
                        "\"\"",
                        "empty value",
                        "a non-empty string",
                    ));
                } else if v.len() > max {
                    self.err(PolicyError::over_limit(
                        vp,
                        format!("{} ({} bytes)", quote(v), v.len()),
                        if cx.g == Group::DevName {
                            format!("a network device name has at most {max} bytes")
                        } else {
                            format!("{} values have at most {max} bytes", op_name(op))
                        },
                    ));
                } else if op == O::SubStringIgnCase {
                    acc.strings.insert(v.to_lowercase());
                } else {
                    acc.strings.insert(v.to_string());
                }
            }
            _ => self.wrong_operator(cx),
        }
    }

    /// Addresses, ports, protocols, families and TCP states of sockets.
    fn socket_value(&mut self, cx: &ValueCx<'_>, vp: String, v: &str, acc: &mut ArgValues) {
        match (cx.g, cx.f.operator) {
            (Group::Sock | Group::Sockaddr, O::SAddr | O::NotSAddr | O::DAddr | O::NotDAddr) => {
                match parse_cidr(v) {
                    Some((ver, bytes, prefix)) => {
                        acc.addrs.insert(
                            (ver, bytes.clone(), prefix),
                            ir::Cidr {
                                ip_version: ver,
                                text: cidr_text(ver, &bytes, prefix),
                                address: bytes,
                                prefix_len: prefix,
                            },
                        );
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        "not an IP address or CIDR",
                        "an IPv4/IPv6 address or CIDR, e.g. 10.0.0.0/8, 127.0.0.1, ::1/128",
                    )),
                }
            }
            (Group::Sock | Group::Sockaddr, O::SPort | O::NotSPort | O::DPort | O::NotDPort) => {
                match parse_port_range(v) {
                    Some(r) => acc.ports.push(r),
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        "not a port or port range",
                        "a port from 0 to 65535, or MIN:MAX with MIN <= MAX",
                    )),
                }
            }
            (Group::Sock | Group::Sockaddr, O::Protocol) => {
                match symbolic(v, &PROTOCOLS, MAX_PROTOCOL) {
                    Some(n) => {
                        acc.small.insert(n);
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        format!(
                            "unknown protocol{}",
                            suggest(v, PROTOCOLS.iter().map(|(n, _)| *n))
                        ),
                        format!("{} or a number from 0 to {MAX_PROTOCOL}", names(&PROTOCOLS)),
                    )),
                }
            }
            (Group::Sock | Group::Sockaddr, O::Family) => {
                match symbolic(v, &FAMILIES, MAX_FAMILY) {
                    Some(n) => {
                        acc.small.insert(n);
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        format!(
                            "unknown address family{}",
                            suggest(v, FAMILIES.iter().map(|(n, _)| *n))
                        ),
                        format!("{} or a number from 0 to {MAX_FAMILY}", names(&FAMILIES)),
                    )),
                }
            }
            (Group::Sock, O::State) => match symbolic(v, &TCP_STATES, 12).filter(|n| *n >= 1) {
                Some(n) => {
                    acc.small.insert(n);
                }
                None => self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    format!(
                        "unknown TCP state{}",
                        suggest(v, TCP_STATES.iter().map(|(n, _)| *n))
                    ),
                    format!("{} or a number from 1 to 12", names(&TCP_STATES)),
                )),
            },
            _ => self.wrong_operator(cx),
        }
    }

    fn wrong_operator(&mut self, cx: &ValueCx<'_>) {
        let (p, f, ty, allowed) = (cx.p, cx.f, cx.ty, cx.allowed);
        self.err(PolicyError::invalid(
            format!("{p}.operator"),
            quote(&op_name(f.operator)),
            format!("operator does not apply to arg type {}", type_name(ty)),
            allowed
                .iter()
                .map(|o| op_name(*o))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
}

impl ArgValues {
    /// Move the collected values into the filter.
    fn fill(self, out: &mut ir::ArgFilter) {
        let ArgValues {
            signed,
            unsigned,
            sranges,
            uranges,
            strings,
            addrs,
            mut ports,
            small,
            syscalls,
            list_name,
        } = self;
        if let Some(name) = list_name {
            out.list_name = name;
        }
        out.signed_values = signed.into_iter().collect();
        out.unsigned_values = unsigned.into_iter().collect();
        out.signed_ranges = sranges
            .into_iter()
            .map(|(min, max)| ir::SignedRange { min, max })
            .collect();
        out.unsigned_ranges = uranges
            .into_iter()
            .map(|(min, max)| ir::UnsignedRange { min, max })
            .collect();
        if !strings.is_empty() {
            out.strings = Some(bucketize(strings));
        }
        out.addresses = addrs.into_values().collect();
        ports.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (a, b) in ports {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        out.ports = merged
            .into_iter()
            .map(|(min, max)| ir::PortRange { min, max })
            .collect();
        out.small_values = small.into_iter().collect();
        out.syscalls = syscalls.into_iter().collect();
    }
}
