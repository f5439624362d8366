//! Evaluator: every argument operator, each with calls that match and calls that do not, with
//! the kernel's value rules (sign extension by declared size, exact string lengths, unreadable
//! values, socket families).

mod common;

use common::*;
use vigil_api::policy::eval::{ArgView, SockView, SockaddrView};

fn int(v: i64) -> ArgView {
    ArgView::Int(v as u64)
}

fn text(s: &str) -> ArgView {
    ArgView::text(s)
}

#[test]
fn equal_and_not_equal_on_signed_ints_sign_extend() {
    let ir = arg_filter("int", "Equal", &["-1", "5"]);
    // An int_arg of -1 and the raw 32-bit register value both extend to -1.
    assert!(hit(&ir, int(-1)));
    assert!(hit(&ir, ArgView::Int(0xffff_ffff)));
    assert!(hit(&ir, int(5)));
    assert!(!hit(&ir, int(4)));
    let ir = arg_filter("int", "NotEqual", &["-1", "5"]);
    assert!(hit(&ir, int(4)));
    assert!(!hit(&ir, int(-1)));
    let ir = arg_filter("int8", "Equal", &["-1"]);
    assert!(hit(&ir, ArgView::Int(0xff)), "1-byte value sign-extended");
    let ir = arg_filter("uint8", "Equal", &["255"]);
    assert!(hit(&ir, ArgView::Int(0x1ff)), "only the low byte is read");
    assert!(!hit(&ir, ArgView::Int(0xfe)));
}

#[test]
fn greater_and_less_than_compare_signed_or_unsigned_by_type() {
    let ir = arg_filter("int", "GT", &["10"]);
    assert!(hit(&ir, int(11)));
    assert!(!hit(&ir, int(10)));
    assert!(!hit(&ir, int(-5)), "signed comparison: -5 < 10");
    let ir = arg_filter("uint64", "GreaterThan", &["10"]);
    assert!(hit(&ir, ArgView::Int(u64::MAX)), "unsigned comparison");
    assert!(!hit(&ir, ArgView::Int(3)));
    let ir = arg_filter("int64", "LT", &["0"]);
    assert!(hit(&ir, int(-1)));
    assert!(!hit(&ir, int(0)));
    let ir = arg_filter("uint32", "LessThan", &["100"]);
    assert!(hit(&ir, int(99)));
    assert!(!hit(&ir, int(-1)), "-1 as uint32 is 4294967295");
}

#[test]
fn mask_tests_bits_of_the_first_value_only() {
    let ir = arg_filter("uint32", "Mask", &["0x4"]);
    assert!(hit(&ir, int(6)));
    assert!(!hit(&ir, int(3)));
    // The kernel's filter keeps one mask value: the smallest of the sorted list.
    let ir = arg_filter("uint32", "Mask", &["0x4", "0x1"]);
    assert!(hit(&ir, int(1)));
    assert!(!hit(&ir, int(4)));
}

#[test]
fn ranges_are_inclusive_and_signed_by_type() {
    let ir = arg_filter("int", "InRange", &["-10:10"]);
    assert!(hit(&ir, int(-10)));
    assert!(hit(&ir, int(10)));
    assert!(!hit(&ir, int(11)));
    let ir = arg_filter("uint32", "NotInRange", &["100:200", "300:400"]);
    assert!(hit(&ir, int(99)));
    assert!(hit(&ir, int(250)));
    assert!(!hit(&ir, int(150)));
    assert!(!hit(&ir, int(400)));
}

#[test]
fn in_map_and_not_in_map() {
    let ir = arg_filter("uint32", "InMap", &["1", "2", "3"]);
    assert!(hit(&ir, int(2)));
    assert!(!hit(&ir, int(7)));
    let ir = arg_filter("uint32", "NotInMap", &["1", "2", "3"]);
    assert!(hit(&ir, int(7)));
    assert!(!hit(&ir, int(3)));
}

#[test]
fn syscall_names_become_x86_64_numbers() {
    let ir = arg_filter("syscall64", "InMap", &["execve", "sys_openat"]);
    assert!(hit(&ir, int(59)));
    assert!(hit(&ir, int(257)));
    assert!(!hit(&ir, int(0)));
    let ir = arg_filter("syscall64", "NotEqual", &["execve"]);
    assert!(hit(&ir, int(0)));
    assert!(!hit(&ir, int(59)));
}

#[test]
fn capability_arguments_compare_numbers() {
    let ir = arg_filter("capability", "Equal", &["CAP_SYS_ADMIN"]);
    assert!(hit(&ir, int(21)));
    assert!(!hit(&ir, int(0)));
    let ir = arg_filter("capability", "NotInMap", &["CAP_SYS_ADMIN", "CAP_BPF"]);
    assert!(hit(&ir, int(12)));
    assert!(!hit(&ir, int(39)));
}

#[test]
fn capabilities_gained_is_unknown_from_events() {
    let ir = arg_filter("cap_effective", "CapabilitiesGained", &["CAP_SYS_ADMIN"]);
    let why = unknown(&ir, &call(vec![int(1 << 21)]));
    assert!(why.contains("previous capabilities"), "{why}");
}

#[test]
fn string_equal_needs_the_exact_bytes_and_full_length() {
    let ir = arg_filter("string", "Equal", &["/etc/passwd", "/etc/shadow"]);
    assert!(hit(&ir, text("/etc/passwd")));
    assert!(!hit(&ir, text("/etc/passwd2")));
    assert!(!hit(&ir, text("/etc/pass")));
    // A buffer cut by the kernel: its full length is longer than what was read.
    let cut = ArgView::Text {
        bytes: b"/etc/passwd".to_vec(),
        full_len: 5000,
        file_type: None,
    };
    assert!(!hit(&ir, cut.clone()));
    assert!(!hit(&ir, ArgView::Unreadable));
    let ir = arg_filter("string", "NotEqual", &["/etc/passwd"]);
    assert!(hit(&ir, text("/etc/group")));
    assert!(hit(&ir, cut));
    assert!(hit(&ir, ArgView::Unreadable), "negated operators hold");
    assert!(!hit(&ir, text("/etc/passwd")));
}

#[test]
fn net_device_compares_the_device_name_as_a_string() {
    let ir = arg_filter("net_device", "Equal", &["lo", "eth0"]);
    assert!(hit(&ir, text("lo")));
    assert!(hit(&ir, text("eth0")));
    assert!(!hit(&ir, text("eth01")));
    assert!(!hit(&ir, ArgView::Unreadable));
    let ir = arg_filter("net_device", "NotEqual", &["lo"]);
    assert!(hit(&ir, text("eth0")));
    assert!(hit(&ir, ArgView::Unreadable), "negated operators hold");
    assert!(!hit(&ir, text("lo")));
    let ir = arg_filter("net_device", "Prefix", &["veth"]);
    assert!(hit(&ir, text("veth1a2b")));
    assert!(!hit(&ir, text("eth0")));
}

#[test]
fn prefix_and_not_prefix() {
    let ir = arg_filter("file", "Prefix", &["/etc/", "/root/"]);
    assert!(hit(&ir, text("/etc/shadow")));
    assert!(hit(&ir, text("/root/.ssh/id")));
    assert!(!hit(&ir, text("/tmp/etc/x")));
    assert!(!hit(&ir, ArgView::Unreadable));
    let ir = arg_filter("file", "NotPrefix", &["/etc/"]);
    assert!(hit(&ir, text("/tmp/x")));
    assert!(hit(&ir, ArgView::Unreadable));
    assert!(!hit(&ir, text("/etc/x")));
}

#[test]
fn postfix_and_not_postfix_look_at_the_end_of_what_was_read() {
    let ir = arg_filter("string", "Postfix", &[".so", "/id_rsa"]);
    assert!(hit(&ir, text("/lib/libc.so")));
    assert!(hit(&ir, text("/root/.ssh/id_rsa")));
    assert!(!hit(&ir, text("/lib/libc.so.6")));
    let long = format!("/{}.so", "a".repeat(5000));
    assert!(hit(&ir, text(&long)), "the kernel compares the last bytes");
    assert!(!hit(&ir, ArgView::Unreadable));
    let ir = arg_filter("string", "NotPostfix", &[".so"]);
    assert!(hit(&ir, text("/bin/sh")));
    assert!(hit(&ir, ArgView::Unreadable));
    assert!(!hit(&ir, text("/x.so")));
}

#[test]
fn substring_operators() {
    let ir = arg_filter("string", "SubString", &["pass"]);
    assert!(hit(&ir, text("/etc/passwd")));
    assert!(!hit(&ir, text("/etc/Passwd")));
    let ir = arg_filter("string", "SubStringIgnCase", &["PASS"]);
    assert!(hit(&ir, text("/etc/PaSswd")));
    assert!(!hit(&ir, text("/etc/shadow")));
    assert!(!hit(&ir, ArgView::Unreadable));
}

#[test]
fn file_type_needs_the_mode() {
    let dir = ArgView::Text {
        bytes: b"/tmp".to_vec(),
        full_len: 4,
        file_type: Some(0o040000),
    };
    let reg = ArgView::Text {
        bytes: b"/tmp/x".to_vec(),
        full_len: 6,
        file_type: Some(0o100000),
    };
    let ir = arg_filter("file", "FileType", &["dir"]);
    assert!(hit(&ir, dir.clone()));
    assert!(!hit(&ir, reg.clone()));
    let ir = arg_filter("file", "NotFileType", &["dir"]);
    assert!(hit(&ir, reg));
    assert!(!hit(&ir, dir));
    let why = unknown(&ir, &call(vec![text("/tmp/y")]));
    assert!(why.contains("no file mode"), "{why}");
}

fn sock(family: u16, saddr: &str, sport: u16, daddr: &str, dport: u16) -> ArgView {
    ArgView::Sock(SockView {
        family,
        sock_type: Some(1),
        protocol: Some(6),
        state: Some(1),
        saddr: saddr.parse().ok(),
        daddr: daddr.parse().ok(),
        sport,
        dport,
        cookie: 1,
    })
}

fn v4(saddr: &str, daddr: &str) -> ArgView {
    sock(2, saddr, 40000, daddr, 443)
}

#[test]
fn saddr_daddr_and_negations_by_cidr() {
    let ir = arg_filter("sock", "SAddr", &["10.0.0.0/8", "192.168.1.1"]);
    assert!(hit(&ir, v4("10.1.2.3", "1.1.1.1")));
    assert!(hit(&ir, v4("192.168.1.1", "1.1.1.1")));
    assert!(!hit(&ir, v4("192.168.1.2", "10.0.0.1")));
    let ir = arg_filter("sock", "NotSAddr", &["10.0.0.0/8"]);
    assert!(hit(&ir, v4("11.0.0.1", "1.1.1.1")));
    assert!(!hit(&ir, v4("10.0.0.1", "1.1.1.1")));
    let ir = arg_filter("sock", "DAddr", &["2001:db8::/32"]);
    assert!(hit(&ir, sock(10, "::1", 1, "2001:db8::7", 80)));
    assert!(!hit(&ir, sock(10, "::1", 1, "2001:db9::7", 80)));
    assert!(
        !hit(&ir, v4("1.1.1.1", "32.1.13.184")),
        "IPv4 never in an IPv6 set"
    );
    let ir = arg_filter("sock", "NotDAddr", &["127.0.0.0/8", "::1"]);
    assert!(hit(&ir, v4("10.0.0.1", "8.8.8.8")));
    assert!(!hit(&ir, v4("10.0.0.1", "127.0.0.53")));
    assert!(!hit(&ir, sock(10, "::1", 1, "::1", 80)));
}

#[test]
fn address_filters_on_other_families_and_unreadable_sockets() {
    let unix = ArgView::Sock(SockView {
        family: 1,
        ..Default::default()
    });
    // No address to compare: the positive filter fails, the negated one holds.
    assert!(!hit(
        &arg_filter("sock", "SAddr", &["0.0.0.0/0"]),
        unix.clone()
    ));
    assert!(hit(&arg_filter("sock", "NotDAddr", &["0.0.0.0/0"]), unix));
    // A socket the kernel could not read fails every socket filter, negated ones too.
    assert!(!hit(
        &arg_filter("sock", "NotDAddr", &["10.0.0.0/8"]),
        ArgView::Unreadable
    ));
    assert!(!hit(
        &arg_filter("sock", "NotDPortPriv", &[]),
        ArgView::Unreadable
    ));
    // An inet socket whose event lacks the address cannot be decided.
    let bare = sock(2, "", 1, "", 2);
    let why = unknown(
        &arg_filter("sock", "DAddr", &["10.0.0.0/8"]),
        &call(vec![bare]),
    );
    assert!(why.contains("no daddr"), "{why}");
}

#[test]
fn ports_and_privileged_ports() {
    let ir = arg_filter("sock", "SPort", &["1000:2000", "8080"]);
    assert!(hit(&ir, sock(2, "1.1.1.1", 1500, "2.2.2.2", 1)));
    assert!(hit(&ir, sock(2, "1.1.1.1", 8080, "2.2.2.2", 1)));
    assert!(!hit(&ir, sock(2, "1.1.1.1", 80, "2.2.2.2", 1)));
    let ir = arg_filter("sock", "NotSPort", &["1000:2000"]);
    assert!(hit(&ir, sock(2, "1.1.1.1", 80, "2.2.2.2", 1)));
    assert!(!hit(&ir, sock(2, "1.1.1.1", 1000, "2.2.2.2", 1)));
    let ir = arg_filter("sock", "DPort", &["443"]);
    assert!(hit(&ir, v4("1.1.1.1", "2.2.2.2")));
    assert!(!hit(&ir, sock(2, "1.1.1.1", 1, "2.2.2.2", 444)));
    let ir = arg_filter("sock", "NotDPort", &["443"]);
    assert!(hit(&ir, sock(2, "1.1.1.1", 1, "2.2.2.2", 80)));
    assert!(!hit(&ir, v4("1.1.1.1", "2.2.2.2")));
    for (op, port, want) in [
        ("SPortPriv", 1023, true),
        ("SPortPriv", 1024, false),
        ("NotSPortPriv", 1024, true),
        ("NotSportPriv", 22, false),
        ("DPortPriv", 0, true),
        ("DPortPriv", 8443, false),
        ("NotDPortPriv", 8443, true),
        ("NotDPortPriv", 443, false),
    ] {
        let ir = arg_filter("sock", op, &[]);
        let s = if op.contains("SPort") || op.contains("Sport") {
            sock(2, "1.1.1.1", port, "2.2.2.2", 9)
        } else {
            sock(2, "1.1.1.1", 9, "2.2.2.2", port)
        };
        assert_eq!(hit(&ir, s), want, "{op} {port}");
    }
}

#[test]
fn protocol_family_and_state() {
    let with = |protocol: Option<u16>, state: Option<u16>, family: u16| {
        ArgView::Sock(SockView {
            family,
            protocol,
            state,
            ..Default::default()
        })
    };
    let ir = arg_filter("sock", "Protocol", &["IPPROTO_TCP"]);
    assert!(hit(&ir, with(Some(6), None, 2)));
    assert!(!hit(&ir, with(Some(17), None, 2)));
    let why = unknown(&ir, &call(vec![with(None, None, 1)]));
    assert!(why.contains("no socket protocol"), "{why}");
    let ir = arg_filter("sock", "Family", &["AF_INET6"]);
    assert!(hit(&ir, with(None, None, 10)));
    assert!(!hit(&ir, with(None, None, 2)));
    let ir = arg_filter("sock", "State", &["TCP_ESTABLISHED", "TCP_SYN_SENT"]);
    assert!(hit(&ir, with(None, Some(2), 2)));
    assert!(!hit(&ir, with(None, Some(7), 2)));
}

#[test]
fn sockaddr_has_one_address_and_port() {
    let sa = |family: u16, addr: &str, port: u16| {
        ArgView::Sockaddr(SockaddrView {
            family,
            addr: addr.parse().ok(),
            port,
        })
    };
    let ir = arg_filter("sockaddr", "SAddr", &["127.0.0.1"]);
    assert!(hit(&ir, sa(2, "127.0.0.1", 80)));
    assert!(!hit(&ir, sa(2, "127.0.0.2", 80)));
    assert!(!hit(&ir, sa(10, "::1", 80)));
    let ir = arg_filter("sockaddr", "NotSAddr", &["127.0.0.1"]);
    assert!(hit(&ir, sa(1, "", 0)), "AF_UNIX has no address");
    assert!(!hit(&ir, ArgView::Unreadable));
    let ir = arg_filter("sockaddr", "SPort", &["53"]);
    assert!(hit(&ir, sa(2, "1.1.1.1", 53)));
    assert!(!hit(&ir, sa(2, "1.1.1.1", 54)));
    let ir = arg_filter("sockaddr", "Family", &["AF_UNIX"]);
    assert!(hit(&ir, sa(1, "", 0)));
    assert!(!hit(&ir, sa(2, "1.1.1.1", 0)));
}

#[test]
fn filters_find_arguments_by_declared_position_and_check_their_shape() {
    // index 2 is the second argument read (index 1 is nop: declared, not read).
    let ir = kprobe(
        "[{index: 0, type: string}, {index: 1, type: nop}, {index: 2, type: int}]",
        "[{matchArgs: [{index: 2, operator: Equal, values: [\"7\"]}]}]",
    );
    assert_eq!(outcome(&ir, &call(vec![text("x"), int(7)])), "match 0");
    assert_eq!(outcome(&ir, &call(vec![text("x"), int(8)])), "no-match");
    let why = unknown(&ir, &call(vec![text("x")]));
    assert!(why.contains("event has 1 argument(s)"), "{why}");
    let why = unknown(&ir, &call(vec![text("x"), text("7")]));
    assert!(why.contains("declares int32"), "{why}");
}

#[test]
fn a_return_copied_buffer_is_empty_when_entry_filters_run() {
    let ir = policy(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: t}
spec:
  kprobes:
  - call: fn_x
    syscall: false
    return: true
    args: [{index: 0, type: char_buf, returnCopy: true, sizeArgIndex: 2}, {index: 1, type: size_t}]
    returnArg: {index: 0, type: int}
    selectors:
    - matchArgs: [{index: 0, operator: Prefix, values: [secret]}]
    - matchArgs: [{index: 0, operator: NotPrefix, values: [secret]}]
",
    );
    let mut ev = call(vec![text("secret data"), int(11)]);
    ev.ret = Some(11);
    assert_eq!(outcome(&ir, &ev), "match 1");
}

#[test]
fn credentials_are_read_but_never_compared() {
    let ir = arg_filter("string", "Equal", &["x"]);
    let why = unknown(&ir, &call(vec![ArgView::Opaque("process_credentials_arg")]));
    assert!(why.contains("process_credentials_arg"), "{why}");
}
