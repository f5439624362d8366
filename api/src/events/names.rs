//! Names events use for numbers the kernel compares: address families, protocols, socket
//! types and states, BPF commands, file types. The sensor writes events with the names
//! (`*_name`: number → name, empty or `None` when unknown); the policy evaluator reads events
//! back into numbers (name → number). One table per kind serves both directions.

use crate::policy::values::TCP_STATES;

/// `AF_*` names by number, as events spell them.
const FAMILIES: [&str; 46] = [
    "AF_UNSPEC",
    "AF_UNIX",
    "AF_INET",
    "AF_AX25",
    "AF_IPX",
    "AF_APPLETALK",
    "AF_NETROM",
    "AF_BRIDGE",
    "AF_ATMPVC",
    "AF_X25",
    "AF_INET6",
    "AF_ROSE",
    "AF_DECnet",
    "AF_NETBEUI",
    "AF_SECURITY",
    "AF_KEY",
    "AF_NETLINK",
    "AF_PACKET",
    "AF_ASH",
    "AF_ECONET",
    "AF_ATMSVC",
    "AF_RDS",
    "AF_SNA",
    "AF_IRDA",
    "AF_PPPOX",
    "AF_WANPIPE",
    "AF_LLC",
    "AF_IB",
    "AF_MPLS",
    "AF_CAN",
    "AF_TIPC",
    "AF_BLUETOOTH",
    "AF_IUCV",
    "AF_RXRPC",
    "AF_ISDN",
    "AF_PHONET",
    "AF_IEEE802154",
    "AF_CAIF",
    "AF_ALG",
    "AF_NFC",
    "AF_VSOCK",
    "AF_KCM",
    "AF_QIPCRTR",
    "AF_SMC",
    "AF_XDP",
    "AF_MCTP",
];

const PROTOCOLS: [(&str, u16); 29] = [
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
    ("IPPROTO_MTP", 92),
    ("IPPROTO_BEETPH", 94),
    ("IPPROTO_ENCAP", 98),
    ("IPPROTO_PIM", 103),
    ("IPPROTO_COMP", 108),
    ("IPPROTO_L2TP", 115),
    ("IPPROTO_SCTP", 132),
    ("IPPROTO_UDPLITE", 136),
    ("IPPROTO_MPLS", 137),
    ("IPPROTO_ETHERNET", 143),
    ("IPPROTO_RAW", 255),
    ("IPPROTO_MPTCP", 262),
];

const SOCK_TYPES: [(&str, u16); 7] = [
    ("SOCK_STREAM", 1),
    ("SOCK_DGRAM", 2),
    ("SOCK_RAW", 3),
    ("SOCK_RDM", 4),
    ("SOCK_SEQPACKET", 5),
    ("SOCK_DCCP", 6),
    ("SOCK_PACKET", 10),
];

/// `enum bpf_cmd` names by number.
const BPF_CMDS: [&str; 37] = [
    "BPF_MAP_CREATE",
    "BPF_MAP_LOOKUP_ELEM",
    "BPF_MAP_UPDATE_ELEM",
    "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_GET_NEXT_KEY",
    "BPF_PROG_LOAD",
    "BPF_OBJ_PIN",
    "BPF_OBJ_GET",
    "BPF_PROG_ATTACH",
    "BPF_PROG_DETACH",
    "BPF_PROG_TEST_RUN",
    "BPF_PROG_GET_NEXT_ID",
    "BPF_MAP_GET_NEXT_ID",
    "BPF_PROG_GET_FD_BY_ID",
    "BPF_MAP_GET_FD_BY_ID",
    "BPF_OBJ_GET_INFO_BY_FD",
    "BPF_PROG_QUERY",
    "BPF_RAW_TRACEPOINT_OPEN",
    "BPF_BTF_LOAD",
    "BPF_BTF_GET_FD_BY_ID",
    "BPF_TASK_FD_QUERY",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
    "BPF_MAP_FREEZE",
    "BPF_BTF_GET_NEXT_ID",
    "BPF_MAP_LOOKUP_BATCH",
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
    "BPF_MAP_UPDATE_BATCH",
    "BPF_MAP_DELETE_BATCH",
    "BPF_LINK_CREATE",
    "BPF_LINK_UPDATE",
    "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID",
    "BPF_ENABLE_STATS",
    "BPF_ITER_CREATE",
    "BPF_LINK_DETACH",
    "BPF_PROG_BIND_MAP",
    "BPF_TOKEN_CREATE",
];

/// The number of an address family name (`AF_INET` → 2; `AF_LOCAL` is `AF_UNIX`).
pub fn family(name: &str) -> Option<u16> {
    if name == "AF_LOCAL" {
        return Some(1);
    }
    FAMILIES.iter().position(|n| *n == name).map(|i| i as u16)
}

pub fn protocol(name: &str) -> Option<u16> {
    PROTOCOLS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn sock_type(name: &str) -> Option<u16> {
    SOCK_TYPES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn tcp_state(name: &str) -> Option<u16> {
    TCP_STATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as u16)
}

pub fn bpf_cmd(name: &str) -> Option<u64> {
    BPF_CMDS.iter().position(|n| *n == name).map(|i| i as u64)
}

/// The `S_IFMT` bits of an `ls -l` mode string (`-rw-r--r--` → regular file).
pub fn file_type(permission: &str) -> Option<u32> {
    Some(match permission.chars().next()? {
        '-' => 0o100000,
        'd' => 0o040000,
        'l' => 0o120000,
        's' => 0o140000,
        'c' => 0o020000,
        'b' => 0o060000,
        'p' => 0o010000,
        _ => return None,
    })
}

/// `AF_*` name of an address family (empty when unknown).
pub fn family_name(f: u16) -> &'static str {
    FAMILIES.get(usize::from(f)).copied().unwrap_or("")
}

/// `IPPROTO_*` name of an IP protocol (empty when unknown).
pub fn protocol_name(p: u16) -> &'static str {
    PROTOCOLS
        .iter()
        .find(|(_, v)| *v == p)
        .map_or("", |(n, _)| n)
}

/// `SOCK_*` name of a socket type (empty when unknown).
pub fn sock_type_name(t: u16) -> &'static str {
    SOCK_TYPES
        .iter()
        .find(|(_, v)| *v == t)
        .map_or("", |(n, _)| n)
}

/// `TCP_*` name of a socket state (empty when unknown).
pub fn tcp_state_name(s: u16) -> &'static str {
    TCP_STATES
        .iter()
        .find(|(_, v)| u32::from(s) == *v)
        .map_or("", |(n, _)| n)
}

/// `BPF_*` name of an `enum bpf_cmd` value (`None` when unknown).
pub fn bpf_cmd_name(cmd: u64) -> Option<&'static str> {
    usize::try_from(cmd)
        .ok()
        .and_then(|i| BPF_CMDS.get(i))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(family("AF_INET"), Some(2));
        assert_eq!(family("AF_INET6"), Some(10));
        assert_eq!(family("AF_MCTP"), Some(45));
        assert_eq!(family("AF_LOCAL"), Some(1));
        assert_eq!(family("AF_NOPE"), None);
        assert_eq!(protocol("IPPROTO_TCP"), Some(6));
        assert_eq!(protocol("IPPROTO_MPTCP"), Some(262));
        assert_eq!(protocol(""), None);
        assert_eq!(sock_type("SOCK_DGRAM"), Some(2));
        assert_eq!(tcp_state("TCP_LISTEN"), Some(10));
        assert_eq!(tcp_state("TCP_NOPE"), None);
        assert_eq!(bpf_cmd("BPF_PROG_LOAD"), Some(5));
        assert_eq!(file_type("-rw-r--r--"), Some(0o100000));
        assert_eq!(file_type("drwxr-xr-x"), Some(0o040000));
        assert_eq!(file_type(""), None);
        assert_eq!(file_type("?"), None);
    }

    #[test]
    fn numbers_and_names_round_trip() {
        for f in 0..46u16 {
            assert_eq!(family(family_name(f)), Some(f));
        }
        assert_eq!(family_name(46), "");
        for (name, n) in PROTOCOLS {
            assert_eq!(protocol_name(n), name);
        }
        assert_eq!(protocol_name(7), "");
        for (name, n) in SOCK_TYPES {
            assert_eq!(sock_type_name(n), name);
        }
        assert_eq!(sock_type_name(7), "");
        for s in 1..=12u16 {
            assert_eq!(tcp_state(tcp_state_name(s)), Some(s));
        }
        assert_eq!(tcp_state_name(0), "");
        assert_eq!(bpf_cmd_name(5), Some("BPF_PROG_LOAD"));
        assert_eq!(bpf_cmd_name(36), Some("BPF_TOKEN_CREATE"));
        assert_eq!(bpf_cmd_name(37), None);
    }

    #[test]
    fn the_policy_tables_agree_with_the_event_names() {
        for (name, n) in crate::policy::values::FAMILIES {
            assert_eq!(family(name), Some(n as u16), "{name}");
        }
        for (name, n) in crate::policy::values::PROTOCOLS {
            assert_eq!(protocol(name), Some(n as u16), "{name}");
        }
    }
}
