//! Value syntax: integers, ranges, addresses, ports, and the symbolic names policies use.

use std::net::IpAddr;

pub(crate) use crate::capabilities::CAPABILITIES;

pub(crate) fn capability(name: &str) -> Option<u32> {
    CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .and_then(|p| u32::try_from(p).ok())
}

pub(crate) const FAMILIES: [(&str, u32); 20] = [
    ("AF_UNSPEC", 0),
    ("AF_UNIX", 1),
    ("AF_LOCAL", 1),
    ("AF_INET", 2),
    ("AF_AX25", 3),
    ("AF_IPX", 4),
    ("AF_APPLETALK", 5),
    ("AF_BRIDGE", 7),
    ("AF_INET6", 10),
    ("AF_KEY", 15),
    ("AF_NETLINK", 16),
    ("AF_PACKET", 17),
    ("AF_RDS", 21),
    ("AF_CAN", 29),
    ("AF_TIPC", 30),
    ("AF_BLUETOOTH", 31),
    ("AF_ALG", 38),
    ("AF_VSOCK", 40),
    ("AF_XDP", 44),
    ("AF_MCTP", 45),
];
pub(crate) const MAX_FAMILY: u32 = 45;

pub(crate) const PROTOCOLS: [(&str, u32); 22] = [
    ("IPPROTO_IP", 0),
    ("IPPROTO_ICMP", 1),
    ("IPPROTO_IGMP", 2),
    ("IPPROTO_IPIP", 4),
    ("IPPROTO_TCP", 6),
    ("IPPROTO_EGP", 8),
    ("IPPROTO_PUP", 12),
    ("IPPROTO_UDP", 17),
    ("IPPROTO_IDP", 22),
    ("IPPROTO_TP", 29),
    ("IPPROTO_DCCP", 33),
    ("IPPROTO_IPV6", 41),
    ("IPPROTO_RSVP", 46),
    ("IPPROTO_GRE", 47),
    ("IPPROTO_ESP", 50),
    ("IPPROTO_AH", 51),
    ("IPPROTO_ICMPV6", 58),
    ("IPPROTO_SCTP", 132),
    ("IPPROTO_UDPLITE", 136),
    ("IPPROTO_MPLS", 137),
    ("IPPROTO_RAW", 255),
    ("IPPROTO_MPTCP", 262),
];
pub(crate) const MAX_PROTOCOL: u32 = 262;

pub(crate) const TCP_STATES: [(&str, u32); 12] = [
    ("TCP_ESTABLISHED", 1),
    ("TCP_SYN_SENT", 2),
    ("TCP_SYN_RECV", 3),
    ("TCP_FIN_WAIT1", 4),
    ("TCP_FIN_WAIT2", 5),
    ("TCP_TIME_WAIT", 6),
    ("TCP_CLOSE", 7),
    ("TCP_CLOSE_WAIT", 8),
    ("TCP_LAST_ACK", 9),
    ("TCP_LISTEN", 10),
    ("TCP_CLOSING", 11),
    ("TCP_NEW_SYN_RECV", 12),
];

/// File types for FileType/NotFileType, as S_IFMT values.
pub(crate) const FILE_TYPES: [(&str, u32); 7] = [
    ("reg", 0o100000),
    ("dir", 0o040000),
    ("lnk", 0o120000),
    ("sock", 0o140000),
    ("chr", 0o020000),
    ("blk", 0o060000),
    ("fifo", 0o010000),
];

pub(crate) fn names(table: &[(&str, u32)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// A name from `table`, or a number ≤ max.
pub(crate) fn symbolic(s: &str, table: &[(&str, u32)], max: u32) -> Option<u32> {
    if let Some((_, v)) = table.iter().find(|(n, _)| *n == s) {
        return Some(*v);
    }
    match parse_int(s)? {
        Int::Unsigned(u) if u <= u64::from(max) => u32::try_from(u).ok(),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int {
    Unsigned(u64),
    Negative(i64),
}

/// An integer: decimal, `0x` hex, `0o`/leading-`0` octal, `0b` binary, optional sign.
pub(crate) fn parse_int(s: &str) -> Option<Int> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if body.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (h, 16)
        } else if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (b, 2)
        } else if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (o, 8)
        } else if body.len() > 1 && body.starts_with('0') {
            (&body[1..], 8)
        } else {
            (body, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag == 0 {
            return Some(Int::Unsigned(0));
        }
        let v = 0i64.checked_sub_unsigned(mag)?;
        Some(Int::Negative(v))
    } else {
        Some(Int::Unsigned(mag))
    }
}

/// Integer kinds of argument types, with their ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntKind {
    Signed { min: i64, max: i64 },
    Unsigned { max: u64 },
}

impl IntKind {
    pub(crate) fn describe(self) -> String {
        match self {
            IntKind::Signed { min, max } => format!("an integer from {min} to {max}"),
            IntKind::Unsigned { max } => format!("an integer from 0 to {max}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypedInt {
    Signed(i64),
    Unsigned(u64),
}

pub(crate) fn typed_int(s: &str, kind: IntKind) -> Option<TypedInt> {
    let v = parse_int(s)?;
    match (kind, v) {
        (IntKind::Signed { min, max }, Int::Unsigned(u)) => {
            let i = i64::try_from(u).ok()?;
            (i >= min && i <= max).then_some(TypedInt::Signed(i))
        }
        (IntKind::Signed { min, max }, Int::Negative(i)) => {
            (i >= min && i <= max).then_some(TypedInt::Signed(i))
        }
        (IntKind::Unsigned { max }, Int::Unsigned(u)) => {
            (u <= max).then_some(TypedInt::Unsigned(u))
        }
        (IntKind::Unsigned { .. }, Int::Negative(_)) => None,
    }
}

/// A CIDR or a bare address (a host route). Returns (version, network bytes, prefix).
pub(crate) fn parse_cidr(s: &str) -> Option<(u32, Vec<u8>, u32)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                return None;
            }
            (a, Some(p.parse::<u32>().ok()?))
        }
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let (version, mut bytes, max) = match ip {
        IpAddr::V4(a) => (4, a.octets().to_vec(), 32),
        IpAddr::V6(a) => (6, a.octets().to_vec(), 128),
    };
    let prefix = prefix.unwrap_or(max);
    if prefix > max {
        return None;
    }
    for (i, b) in bytes.iter_mut().enumerate() {
        let bit_start = u32::try_from(i).ok()? * 8;
        if bit_start >= prefix {
            *b = 0;
        } else if bit_start + 8 > prefix {
            let keep = prefix - bit_start;
            *b &= 0xffu8 << (8 - keep);
        }
    }
    Some((version, bytes, prefix))
}

pub(crate) fn cidr_text(version: u32, bytes: &[u8], prefix: u32) -> String {
    let ip: IpAddr = if version == 4 {
        let a: [u8; 4] = bytes.try_into().unwrap_or_default();
        IpAddr::from(a)
    } else {
        let a: [u8; 16] = bytes.try_into().unwrap_or_default();
        IpAddr::from(a)
    };
    format!("{ip}/{prefix}")
}

/// A port `N` or range `MIN:MAX` (inclusive), 0..=65535.
pub(crate) fn parse_port_range(s: &str) -> Option<(u32, u32)> {
    let port = |p: &str| -> Option<u32> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u32 = p.parse().ok()?;
        (v <= 65535).then_some(v)
    };
    match s.split_once(':') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            (a <= b).then_some((a, b))
        }
        None => port(s).map(|p| (p, p)),
    }
}

/// `N`, `Ns`, `Nm`, `Nh` → milliseconds.
pub(crate) fn parse_rate_limit(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b's' => (&s[..s.len() - 1], 1000u64),
        b'm' => (&s[..s.len() - 1], 60_000),
        b'h' => (&s[..s.len() - 1], 3_600_000),
        _ => (s, 1000),
    };
    if num.is_empty() || num.len() > 12 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A C-like identifier (syscall, kernel function, LSM hook, tracepoint, list name).
pub(crate) fn is_identifier(s: &str, extra: &[u8]) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.contains(&b))
}

/// An unsubstituted template placeholder such as `${PODCIDR}`.
pub(crate) fn is_template(s: &str) -> bool {
    s.find("${").is_some_and(|i| s[i..].contains('}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int("0x10"), Some(Int::Unsigned(16)));
        assert_eq!(parse_int("010"), Some(Int::Unsigned(8)));
        assert_eq!(parse_int("-1"), Some(Int::Negative(-1)));
        assert_eq!(
            parse_int("-0x8000000000000000"),
            Some(Int::Negative(i64::MIN))
        );
        assert_eq!(parse_int("-0x8000000000000001"), None);
        assert_eq!(
            parse_int("18446744073709551615"),
            Some(Int::Unsigned(u64::MAX))
        );
        assert_eq!(parse_int("18446744073709551616"), None);
        assert_eq!(parse_int("0"), Some(Int::Unsigned(0)));
        assert_eq!(parse_int("09"), None);
        assert_eq!(parse_int("1_000"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
    }

    #[test]
    fn typed() {
        let i8k = IntKind::Signed {
            min: -128,
            max: 127,
        };
        assert_eq!(typed_int("-128", i8k), Some(TypedInt::Signed(-128)));
        assert_eq!(typed_int("128", i8k), None);
        assert_eq!(typed_int("-1", IntKind::Unsigned { max: 255 }), None);
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.1.2.3/8"), Some((4, vec![10, 0, 0, 0], 8)));
        assert_eq!(parse_cidr("127.0.0.1"), Some((4, vec![127, 0, 0, 1], 32)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0.0/"), None);
        assert_eq!(parse_cidr("300.0.0.0/8"), None);
        let (v, b, p) = parse_cidr("2001:db8::1/32").unwrap();
        assert_eq!(cidr_text(v, &b, p), "2001:db8::/32");
        let (v, b, p) = parse_cidr("172.16.255.1/12").unwrap();
        assert_eq!(cidr_text(v, &b, p), "172.16.0.0/12");
    }

    #[test]
    fn ports_and_rates() {
        assert_eq!(parse_port_range("80"), Some((80, 80)));
        assert_eq!(parse_port_range("1024:2048"), Some((1024, 2048)));
        assert_eq!(parse_port_range("2048:1024"), None);
        assert_eq!(parse_port_range("65536"), None);
        assert_eq!(parse_rate_limit("1m"), Some(60_000));
        assert_eq!(parse_rate_limit("5"), Some(5000));
        assert_eq!(parse_rate_limit("2h"), Some(7_200_000));
        assert_eq!(parse_rate_limit("1d"), None);
        assert_eq!(parse_rate_limit("m"), None);
    }

    #[test]
    fn templates() {
        assert!(is_template("${PODCIDR}"));
        assert!(!is_template("$PODCIDR"));
        assert!(!is_template("10.0.0.0/8"));
    }
}
