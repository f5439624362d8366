//! Argument filters (matchArgs) and return filters (matchReturnArgs), with the kernel's value
//! rules: integers extended by the declared size and sign, strings compared as bytes (exact
//! equality needs the full length; Postfix looks at the end of what was read), sockets by
//! family, address sets and port ranges, and unreadable values failing every filter except the
//! negated string ones.

use std::net::IpAddr;

use super::process::set_values;
use super::verdict::Decision;
use super::view::{ArgView, EventView, SockView, SockaddrView};
use crate::policy::ir::{ArgFilter, ArgOperator, ArgSpec, ArgType, Cidr, Hook};
use crate::syscalls;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// How the kernel reads a declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An integer of `size` bytes, sign- or zero-extended to 64 bits.
    Int {
        size: u8,
        signed: bool,
    },
    /// Bytes: strings, buffers, resolved paths.
    Text,
    Sock,
    Sockaddr,
    /// Credentials: read, never compared (every filter fails).
    Cred,
    /// Read by the sensor but not compared by anything the evaluator models.
    Other,
}

fn kind(t: ArgType) -> Kind {
    use ArgType as T;
    let int = |size, signed| Kind::Int { size, signed };
    match t {
        T::Int8 => int(1, true),
        T::Uint8 => int(1, false),
        T::Int16 => int(2, true),
        T::Uint16 => int(2, false),
        T::Int32 | T::Capability => int(4, true),
        T::Uint32 | T::BpfCmd => int(4, false),
        T::Int64 | T::Syscall64 => int(8, true),
        T::Uint64
        | T::SizeT
        | T::KernelCapT
        | T::CapInheritable
        | T::CapPermitted
        | T::CapEffective => int(8, false),
        T::String
        | T::CharBuf
        | T::CharIovec
        | T::Filename
        | T::DataLoc
        | T::ConstBuf
        | T::Fd
        | T::File
        | T::Path
        | T::Dentry
        | T::LinuxBinprm
        | T::SockaddrUn
        | T::NetDevice => Kind::Text,
        T::Sock | T::Socket | T::Skb => Kind::Sock,
        T::Sockaddr => Kind::Sockaddr,
        T::Cred => Kind::Cred,
        _ => Kind::Other,
    }
}

/// `v` as the kernel holds an integer of the declared type: sign- or zero-extended from its size.
pub(crate) fn extend(raw: u64, t: ArgType) -> u64 {
    match kind(t) {
        Kind::Int { size, signed } => match (size, signed) {
            (1, true) => raw as i8 as i64 as u64,
            (1, false) => raw as u8 as u64,
            (2, true) => raw as i16 as i64 as u64,
            (2, false) => raw as u16 as u64,
            (4, true) => raw as i32 as i64 as u64,
            (4, false) => raw as u32 as u64,
            _ => raw,
        },
        _ => raw,
    }
}

fn type_name(t: ArgType) -> String {
    t.as_str_name()
        .trim_start_matches("ARG_TYPE_")
        .to_lowercase()
}

fn op_name(o: ArgOperator) -> &'static str {
    o.as_str_name().trim_start_matches("ARG_OPERATOR_")
}

/// The arguments a hook reads, in order (`nop` ones are declared but not read).
pub(crate) fn read_args(h: &Hook) -> Vec<&ArgSpec> {
    h.args
        .iter()
        .filter(|a| a.r#type() != ArgType::Nop)
        .collect()
}

/// The matchArgs of one selector, ANDed.
pub(crate) fn check_args(h: &Hook, filters: &[ArgFilter], ev: &EventView) -> Decision {
    let specs = read_args(h);
    let mut d = Decision::Yes;
    for (i, f) in filters.iter().enumerate() {
        d = d.and(|| {
            let name = format!(
                "matchArgs[{i}] (index {} {})",
                f.index,
                op_name(f.operator())
            );
            match arg_decision(&specs, f, ev) {
                Decision::Yes => Decision::Yes,
                Decision::No(why) => Decision::No(format!("{name}: {why}")),
                Decision::Unknown(why) => Decision::Unknown(format!("{name}: {why}")),
            }
        });
    }
    d
}

fn arg_decision(specs: &[&ArgSpec], f: &ArgFilter, ev: &EventView) -> Decision {
    let Some(pos) = specs.iter().position(|a| a.index == f.index) else {
        return Decision::Unknown(format!(
            "the hook reads no argument {} (the sensor refuses this selector)",
            f.index
        ));
    };
    let spec = specs[pos];
    let declared = spec.r#type();
    let Some(value) = ev.args.get(pos) else {
        return Decision::Unknown(format!(
            "event has {} argument(s); the hook reads index {} as argument {pos}",
            ev.args.len(),
            f.index
        ));
    };
    // A buffer copied at return is empty when the (entry) filters run.
    let empty;
    let value = if spec.return_copy && kind(declared) == Kind::Text {
        empty = ArgView::text(Vec::new());
        &empty
    } else {
        value
    };
    let k = kind(declared);
    let compatible = matches!(
        (k, value),
        (_, ArgView::Unreadable)
            | (Kind::Int { .. }, ArgView::Int(_))
            | (Kind::Text, ArgView::Text { .. })
            | (Kind::Sock, ArgView::Sock(_))
            | (Kind::Sockaddr, ArgView::Sockaddr(_))
            | (Kind::Cred, ArgView::Opaque(_))
    );
    if !compatible {
        return Decision::Unknown(format!(
            "event argument {pos} is {}, the hook declares {}",
            value.describe(),
            type_name(declared)
        ));
    }
    match (k, value) {
        (Kind::Int { .. }, ArgView::Int(raw)) => int_match(f, extend(*raw, declared)),
        (Kind::Int { .. }, _) => Decision::No("the value could not be read".into()),
        (
            Kind::Text,
            ArgView::Text {
                bytes,
                full_len,
                file_type,
            },
        ) => text_match(f, bytes, *full_len, *file_type),
        (Kind::Text, _) => unreadable_text(f),
        (Kind::Sock, ArgView::Sock(s)) => sock_match(f, s),
        (Kind::Sockaddr, ArgView::Sockaddr(s)) => sockaddr_match(f, s),
        (Kind::Sock | Kind::Sockaddr, _) => {
            Decision::No("the socket could not be read: every socket filter fails".into())
        }
        (Kind::Cred, _) => Decision::No("credentials are not compared".into()),
        (Kind::Other, _) => Decision::Unknown(format!(
            "arguments of type {} are not compared",
            type_name(declared)
        )),
    }
}

/// The matchReturnArgs of one selector, ANDed. The kernel compares the full 64-bit return
/// value, whatever the declared return type.
pub(crate) fn check_return(filters: &[ArgFilter], ev: &EventView) -> Decision {
    if filters.is_empty() {
        return Decision::Yes;
    }
    let Some(ret) = ev.ret else {
        return Decision::Unknown("matchReturnArgs: event has no return value".into());
    };
    let mut d = Decision::Yes;
    for (i, f) in filters.iter().enumerate() {
        d = d.and(|| match int_match(f, ret as u64) {
            Decision::No(why) => Decision::No(format!(
                "matchReturnArgs[{i}] ({}): {why}",
                op_name(f.operator())
            )),
            Decision::Unknown(why) => Decision::Unknown(format!("matchReturnArgs[{i}]: {why}")),
            yes => yes,
        });
    }
    d
}

/// Integer operators, as `match_int` in the kernel: sets for Equal/InMap, the first value for
/// GreaterThan/LessThan/Mask, up to the given ranges for InRange.
fn int_match(f: &ArgFilter, v: u64) -> Decision {
    let signed = !f.signed_values.is_empty() || !f.signed_ranges.is_empty();
    let shown = || {
        if signed {
            (v as i64).to_string()
        } else {
            v.to_string()
        }
    };
    let in_set = || -> Result<bool, String> {
        if f.signed_values.iter().any(|s| *s as u64 == v) || f.unsigned_values.contains(&v) {
            return Ok(true);
        }
        for name in &f.syscalls {
            let bare = name
                .trim_start_matches("__x64_sys_")
                .trim_start_matches("sys_");
            match syscalls::x86_64_number(bare) {
                Some(nr) if u64::from(nr) == v => return Ok(true),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "syscall {name:?} does not exist on x86_64 (the sensor refuses this filter)"
                    ));
                }
            }
        }
        Ok(false)
    };
    let first = f
        .signed_values
        .first()
        .map(|&s| s as u64)
        .or(f.unsigned_values.first().copied());
    let in_ranges = || {
        if signed {
            f.signed_ranges
                .iter()
                .any(|r| (v as i64) >= r.min && (v as i64) <= r.max)
        } else {
            f.unsigned_ranges.iter().any(|r| v >= r.min && v <= r.max)
        }
    };
    let op = f.operator();
    let res = match op {
        ArgOperator::Equal | ArgOperator::InMap => in_set(),
        ArgOperator::NotEqual | ArgOperator::NotInMap => in_set().map(|b| !b),
        ArgOperator::GreaterThan | ArgOperator::LessThan | ArgOperator::Mask => {
            let Some(x) = first else {
                return Decision::No("the filter has no value".into());
            };
            Ok(match op {
                ArgOperator::GreaterThan if signed => (v as i64) > (x as i64),
                ArgOperator::GreaterThan => v > x,
                ArgOperator::LessThan if signed => (v as i64) < (x as i64),
                ArgOperator::LessThan => v < x,
                // Only the first (smallest) mask value is used, as the kernel's filter does.
                _ => v & x != 0,
            })
        }
        ArgOperator::InRange => Ok(in_ranges()),
        ArgOperator::NotInRange => Ok(!in_ranges()),
        ArgOperator::CapabilitiesGained => Err(
            "CapabilitiesGained compares with the previous capabilities, which events do not carry"
                .into(),
        ),
        _ => Ok(false),
    };
    match res {
        Ok(true) => Decision::Yes,
        Ok(false) => Decision::No(format!("value {} does not satisfy it", shown())),
        Err(e) => Decision::Unknown(e),
    }
}

/// String operators on a value the kernel could not read: only the negated ones hold.
fn unreadable_text(f: &ArgFilter) -> Decision {
    match f.operator() {
        ArgOperator::NotEqual
        | ArgOperator::NotPrefix
        | ArgOperator::NotPostfix
        | ArgOperator::NotFileType => Decision::Yes,
        _ => Decision::No("the value could not be read".into()),
    }
}

fn text_match(f: &ArgFilter, bytes: &[u8], full_len: u64, file_type: Option<u32>) -> Decision {
    let values = || set_values(&f.strings).map(str::as_bytes);
    let equal = || values().any(|v| v == bytes && v.len() as u64 == full_len);
    let prefix = || values().any(|v| bytes.starts_with(v));
    let postfix = || values().any(|v| bytes.ends_with(v));
    let substring = |haystack: &[u8]| {
        values().any(|v| v.is_empty() || haystack.windows(v.len()).any(|w| w == v))
    };
    let hit = match f.operator() {
        ArgOperator::Equal => equal(),
        ArgOperator::NotEqual => !equal(),
        ArgOperator::Prefix => prefix(),
        ArgOperator::NotPrefix => !prefix(),
        ArgOperator::Postfix => postfix(),
        ArgOperator::NotPostfix => !postfix(),
        ArgOperator::Substring => substring(bytes),
        ArgOperator::SubstringIgnoreCase => substring(&bytes.to_ascii_lowercase()),
        op @ (ArgOperator::FileType | ArgOperator::NotFileType) => {
            let Some(t) = file_type else {
                return Decision::Unknown("event has no file mode (permission)".into());
            };
            f.small_values.contains(&t) == (op == ArgOperator::FileType)
        }
        _ => false,
    };
    Decision::from_bool(hit, || {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(96)]).into_owned();
        let cut = if bytes.len() > 96 { "…" } else { "" };
        format!(
            "{shown:?}{cut} against {}",
            super::process::show_values(set_values(&f.strings))
        )
    })
}

fn cidr_contains(c: &Cidr, a: &IpAddr) -> bool {
    let bytes: Vec<u8> = match a {
        IpAddr::V4(v) if c.ip_version == 4 => v.octets().to_vec(),
        IpAddr::V6(v) if c.ip_version == 6 => v.octets().to_vec(),
        _ => return false,
    };
    let bits = c.prefix_len as usize;
    if c.address.len() != bytes.len() || bits > bytes.len() * 8 {
        return false;
    }
    (0..bits).all(|i| {
        let m = 0x80u8 >> (i % 8);
        bytes[i / 8] & m == c.address[i / 8] & m
    })
}

/// The kernel's address lookup: only AF_INET and AF_INET6 sockets have addresses to compare.
fn addr_in_set(
    f: &ArgFilter,
    family: u16,
    addr: Option<&IpAddr>,
    which: &str,
) -> Result<bool, String> {
    if family != AF_INET && family != AF_INET6 {
        return Ok(false);
    }
    let a = addr.ok_or_else(|| format!("event has no {which}"))?;
    let matches_family = matches!(
        (family, a),
        (AF_INET, IpAddr::V4(_)) | (AF_INET6, IpAddr::V6(_))
    );
    Ok(matches_family && f.addresses.iter().any(|c| cidr_contains(c, a)))
}

fn in_ports(f: &ArgFilter, port: u16) -> bool {
    f.ports
        .iter()
        .any(|r| u32::from(port) >= r.min && u32::from(port) <= r.max)
}

fn small(f: &ArgFilter, v: Option<u16>, which: &str) -> Result<bool, String> {
    v.map(|v| f.small_values.contains(&u32::from(v)))
        .ok_or_else(|| format!("event has no socket {which}"))
}

fn decide(r: Result<bool, String>, why: impl FnOnce() -> String) -> Decision {
    match r {
        Ok(true) => Decision::Yes,
        Ok(false) => Decision::No(why()),
        Err(e) => Decision::Unknown(e),
    }
}

fn sock_match(f: &ArgFilter, s: &SockView) -> Decision {
    use ArgOperator as O;
    let r = match f.operator() {
        O::Saddr => addr_in_set(f, s.family, s.saddr.as_ref(), "saddr"),
        O::NotSaddr => addr_in_set(f, s.family, s.saddr.as_ref(), "saddr").map(|b| !b),
        O::Daddr => addr_in_set(f, s.family, s.daddr.as_ref(), "daddr"),
        O::NotDaddr => addr_in_set(f, s.family, s.daddr.as_ref(), "daddr").map(|b| !b),
        O::Sport => Ok(in_ports(f, s.sport)),
        O::NotSport => Ok(!in_ports(f, s.sport)),
        O::SportPriv => Ok(s.sport < 1024),
        O::NotSportPriv => Ok(s.sport >= 1024),
        O::Dport => Ok(in_ports(f, s.dport)),
        O::NotDport => Ok(!in_ports(f, s.dport)),
        O::DportPriv => Ok(s.dport < 1024),
        O::NotDportPriv => Ok(s.dport >= 1024),
        O::Protocol => small(f, s.protocol, "protocol"),
        O::Family => Ok(f.small_values.contains(&u32::from(s.family))),
        O::State => small(f, s.state, "state"),
        _ => Ok(false),
    };
    decide(r, || {
        let a = |x: &Option<IpAddr>| x.map(|a| a.to_string()).unwrap_or_default();
        format!(
            "socket family {} {}:{} -> {}:{}",
            s.family,
            a(&s.saddr),
            s.sport,
            a(&s.daddr),
            s.dport
        )
    })
}

/// A sockaddr has one address and port: the S* and D* operators both look at them.
fn sockaddr_match(f: &ArgFilter, s: &SockaddrView) -> Decision {
    use ArgOperator as O;
    let r = match f.operator() {
        O::Saddr | O::Daddr => addr_in_set(f, s.family, s.addr.as_ref(), "address"),
        O::NotSaddr | O::NotDaddr => {
            addr_in_set(f, s.family, s.addr.as_ref(), "address").map(|b| !b)
        }
        O::Sport | O::Dport => Ok(in_ports(f, s.port)),
        O::NotSport | O::NotDport => Ok(!in_ports(f, s.port)),
        O::SportPriv | O::DportPriv => Ok(s.port < 1024),
        O::NotSportPriv | O::NotDportPriv => Ok(s.port >= 1024),
        O::Family => Ok(f.small_values.contains(&u32::from(s.family))),
        _ => Ok(false),
    };
    decide(r, || {
        let a = s.addr.map(|a| a.to_string()).unwrap_or_default();
        format!("sockaddr family {} {a}:{}", s.family, s.port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_extend_like_the_kernel() {
        assert_eq!(extend(0xff, ArgType::Int8), u64::MAX);
        assert_eq!(extend(0xff, ArgType::Uint8), 0xff);
        assert_eq!(extend(0x1_0000_ffff, ArgType::Int16), u64::MAX);
        assert_eq!(extend(0xffff_ffff, ArgType::Int32), u64::MAX);
        assert_eq!(extend(u64::MAX, ArgType::Uint32), 0xffff_ffff);
        assert_eq!(extend(u64::MAX, ArgType::Uint64), u64::MAX);
        assert_eq!(extend(5, ArgType::String), 5);
    }

    fn cidr(v: u32, addr: &[u8], len: u32) -> Cidr {
        Cidr {
            ip_version: v,
            address: addr.to_vec(),
            prefix_len: len,
            text: String::new(),
        }
    }

    #[test]
    fn cidrs_compare_the_prefix_bits_only() {
        let net = cidr(4, &[10, 0, 0, 0], 8);
        assert!(cidr_contains(&net, &"10.200.1.1".parse().unwrap()));
        assert!(!cidr_contains(&net, &"11.0.0.1".parse().unwrap()));
        assert!(!cidr_contains(&net, &"::ffff:10.0.0.1".parse().unwrap()));
        let odd = cidr(4, &[192, 168, 0, 0], 23);
        assert!(cidr_contains(&odd, &"192.168.1.255".parse().unwrap()));
        assert!(!cidr_contains(&odd, &"192.168.2.0".parse().unwrap()));
        let all = cidr(6, &[0; 16], 0);
        assert!(cidr_contains(&all, &"2001:db8::1".parse().unwrap()));
        assert!(!cidr_contains(&all, &"1.2.3.4".parse().unwrap()));
    }
}
