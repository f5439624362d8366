//! Property tests for the event helpers.

use proptest::prelude::*;
use vigil_api::events::*;

/// Slow, obviously-correct calendar walk used as a reference for `format_time_ns`.
fn reference_time(unix_ns: u64) -> String {
    let mut days = unix_ns / 1_000_000_000 / 86_400;
    let rem = unix_ns / 1_000_000_000 % 86_400;
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let months = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= months[month] {
        days -= months[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        month + 1,
        days + 1,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ns % 1_000_000_000
    )
}

proptest! {
    #[test]
    fn time_matches_reference_calendar(ns in 0u64..=253_402_300_799_999_999) {
        // up to 9999-12-31T23:59:59.999999999Z
        prop_assert_eq!(format_time_ns(ns), reference_time(ns));
    }

    #[test]
    fn exec_id_round_trips(node in "[a-z0-9.:-]{1,40}", ktime: u64, pid: u32) {
        let id = exec_id(&node, ktime, pid);
        let parts = parse_exec_id(&id).unwrap();
        prop_assert_eq!(parts.node, node);
        prop_assert_eq!(parts.ktime_ns, ktime);
        prop_assert_eq!(parts.pid, pid);
    }

    #[test]
    fn arguments_without_spaces_are_a_plain_join(args in proptest::collection::vec("[^ ]{0,8}", 0..6)) {
        let mut argv = vec!["prog".to_string()];
        argv.extend(args.iter().cloned());
        prop_assert_eq!(format_arguments(&argv), args.join(" "));
    }

    #[test]
    fn capability_names_and_bits_agree(mask in 0u64..(1u64 << 41)) {
        let names = capability_names(mask);
        prop_assert_eq!(names.len() as u32, mask.count_ones());
        let back = names
            .iter()
            .map(|n| 1u64 << capability_bit(n).unwrap())
            .fold(0, |a, b| a | b);
        prop_assert_eq!(back, mask);
    }

    #[test]
    fn flags_display_parse_round_trip(bits in 0u32..(1 << 20)) {
        let f = ProcessFlags::from_bits_truncate(bits);
        let parsed: ProcessFlags = f.to_string().parse().unwrap();
        prop_assert_eq!(parsed, f);
        prop_assert_eq!(parsed.bits(), bits);
    }
}
