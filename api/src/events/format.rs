//! Helpers that produce field values: exec_id, arguments, timestamps, signals, capabilities.

use crate::capabilities::CAPABILITIES;

use super::EventError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `exec_id` for a process: standard base64 of `<node>:<ktime_ns>:<pid>`.
///
/// `ktime_ns` is the kernel (monotonic, boot-based) timestamp taken at exec; `pid` is the TGID.
pub fn exec_id(node: &str, ktime_ns: u64, pid: u32) -> String {
    STANDARD.encode(format!("{node}:{ktime_ns}:{pid}"))
}

/// The parts of an exec_id made by [`exec_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecIdParts {
    pub node: String,
    pub ktime_ns: u64,
    pub pid: u32,
}

/// Decodes an exec_id back into node, ktime and pid (the node may itself contain `:`).
pub fn parse_exec_id(id: &str) -> Result<ExecIdParts, EventError> {
    let bad = |why: &str| EventError::BadExecId {
        id: id.to_string(),
        reason: why.to_string(),
    };
    let raw = STANDARD
        .decode(id)
        .map_err(|_| bad("not standard base64"))?;
    let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
    let mut parts = text.rsplitn(3, ':');
    let pid = parts.next().ok_or_else(|| bad("no pid"))?;
    let ktime = parts.next().ok_or_else(|| bad("no ktime"))?;
    let node = parts.next().ok_or_else(|| bad("no node"))?;
    Ok(ExecIdParts {
        node: node.to_string(),
        ktime_ns: ktime.parse().map_err(|_| bad("ktime is not a number"))?,
        pid: pid.parse().map_err(|_| bad("pid is not a number"))?,
    })
}

/// The `arguments` field from a full argv: argv[1..] joined by single spaces, each argument
/// that contains a space wrapped in double quotes (nothing is escaped).
///
/// `format_arguments(&["sh", "-c", "echo hi"])` is `-c "echo hi"`.
pub fn format_arguments(argv: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().skip(1).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let arg = arg.as_ref();
        if arg.contains(' ') {
            out.push('"');
            out.push_str(arg);
            out.push('"');
        } else {
            out.push_str(arg);
        }
    }
    out
}

/// RFC 3339 UTC with exactly nine fractional digits, e.g. `2026-11-28T15:01:53.730525626Z`.
pub fn format_time_ns(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let nanos = unix_ns % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        );
    }
    // Every event carries at least one timestamp: digits are written by hand, not by the
    // formatting machinery (the same text, in a fraction of the time).
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 9, nanos);
    String::from_utf8_lossy(&b).into_owned()
}

/// The inverse of [`format_time_ns`]: an RFC 3339 timestamp (`Z` or a `±HH:MM` offset, 0–9
/// fractional digits) to nanoseconds since the Unix epoch. `None` when malformed or before 1970.
pub fn parse_time_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = s.get(r)?;
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let digits = end - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start..end)? * 10u64.pow(9 - digits as u32);
        i = end;
    }
    let offset: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 3600 + om * 60) as i64;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d)?;
    let secs = (days * 86_400 + h * 3600 + mi * 60 + sec) as i64 - offset;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// (year, month, day) in the proleptic Gregorian calendar to days since 1970-01-01.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// Name of a Linux signal number (`9` → `SIGKILL`), empty for 0.
///
/// Real-time signals are named as `kill -l` does (`SIGRTMIN`, `SIGRTMIN+1`, …, `SIGRTMAX`);
/// any other number gives `SIG<n>`.
pub fn signal_name(sig: i32) -> String {
    match sig {
        0 => String::new(),
        1..=31 => SIGNALS[(sig - 1) as usize].to_string(),
        34 => "SIGRTMIN".to_string(),
        35..=49 => format!("SIGRTMIN+{}", sig - 34),
        50..=63 => format!("SIGRTMAX-{}", 64 - sig),
        64 => "SIGRTMAX".to_string(),
        _ => format!("SIG{sig}"),
    }
}

/// The inverse of [`signal_name`] for the named signals 1..=31 and the real-time names.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Some(i) = SIGNALS.iter().position(|s| *s == name) {
        return Some(i as i32 + 1);
    }
    match name {
        "SIGRTMIN" => Some(34),
        "SIGRTMAX" => Some(64),
        _ => {
            if let Some(n) = name.strip_prefix("SIGRTMIN+") {
                let n: i32 = n.parse().ok()?;
                (1..=15).contains(&n).then_some(34 + n)
            } else if let Some(n) = name.strip_prefix("SIGRTMAX-") {
                let n: i32 = n.parse().ok()?;
                (1..=14).contains(&n).then_some(64 - n)
            } else {
                None
            }
        }
    }
}

/// Bit 1's name in events: Tetragon's `CapabilitiesType` enum calls it `DAC_OVERRIDE`, without the
/// `CAP_` prefix, so event consumers see exactly that string.
const DAC_OVERRIDE_EVENT_NAME: &str = "DAC_OVERRIDE";

/// The event spelling of capability `bit` (see [`CAPABILITIES`] for the kernel names).
pub fn capability_event_name(bit: usize) -> Option<&'static str> {
    match bit {
        1 => Some(DAC_OVERRIDE_EVENT_NAME),
        _ => CAPABILITIES.get(bit).copied(),
    }
}

/// Names of the capabilities set in `mask`, lowest bit first (bits above 40 are ignored).
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..CAPABILITIES.len())
        .filter(|bit| mask & (1u64 << bit) != 0)
        .filter_map(capability_event_name)
        .map(str::to_string)
        .collect()
}

/// Bit number of a capability name. Accepts the JSON spelling and `CAP_DAC_OVERRIDE`.
pub fn capability_bit(name: &str) -> Option<u32> {
    if name == DAC_OVERRIDE_EVENT_NAME {
        return Some(1);
    }
    CAPABILITIES
        .iter()
        .position(|n| *n == name)
        .map(|b| b as u32)
}

/// Secure bits by bit number (`SECBIT_*` in the kernel).
pub const SECUREBITS_NAMES: [&str; 8] = [
    "SecBitNoRoot",
    "SecBitNoRootLocked",
    "SecBitNoSetUidFixup",
    "SecBitNoSetUidFixupLocked",
    "SecBitKeepCaps",
    "SecBitKeepCapsLocked",
    "SecBitNoCapAmbientRaise",
    "SecBitNoCapAmbientRaiseLocked",
];

/// Names of the secure bits set in `bits`, lowest first.
pub fn securebits_names(bits: u32) -> Vec<String> {
    SECUREBITS_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1u32 << bit) != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_id_matches_samples() {
        assert_eq!(exec_id("tetravm", 1, 0), "dGV0cmF2bToxOjA=");
        assert_eq!(
            exec_id("tetravm", 1_730_000_000, 1),
            "dGV0cmF2bToxNzMwMDAwMDAwOjE="
        );
        assert_eq!(
            exec_id("tetravm", 132_355_164_780, 120),
            "dGV0cmF2bToxMzIzNTUxNjQ3ODA6MTIw"
        );
    }

    #[test]
    fn exec_id_parses_back() {
        let p = parse_exec_id("dGV0cmF2bTo5ODAwMDAwMDAwOjEwOA==").unwrap();
        assert_eq!(
            p,
            ExecIdParts {
                node: "tetravm".into(),
                ktime_ns: 9_800_000_000,
                pid: 108
            }
        );
        let id = exec_id("node:with:colons", u64::MAX, u32::MAX);
        let p = parse_exec_id(&id).unwrap();
        assert_eq!(p.node, "node:with:colons");
        assert_eq!(p.ktime_ns, u64::MAX);
        assert_eq!(p.pid, u32::MAX);
        assert!(parse_exec_id("!!!").is_err());
        // "a:b" has no pid part that parses
        assert!(parse_exec_id(&STANDARD.encode("node:x:1")).is_err());
        assert!(parse_exec_id(&STANDARD.encode("1:2")).is_err());
    }

    #[test]
    fn arguments_quote_only_arguments_with_spaces() {
        assert_eq!(format_arguments(&["sh", "/init"]), "/init");
        assert_eq!(format_arguments(&["true"]), "");
        assert_eq!(format_arguments(&[] as &[&str]), "");
        assert_eq!(
            format_arguments(&[
                "bench",
                "waitfor",
                "/tmp/smoke.log",
                "Listening for events",
                "9.7"
            ]),
            "waitfor /tmp/smoke.log \"Listening for events\" 9.7"
        );
        // From the samples: argv `\n`, ` ` gives `\n " "`; inner quotes are not escaped.
        assert_eq!(format_arguments(&["x", "\\n", " "]), "\\n \" \"");
        assert_eq!(
            format_arguments(&["sh".to_string(), "-c".into(), "echo hi > /dev/null".into()]),
            "-c \"echo hi > /dev/null\""
        );
        assert_eq!(format_arguments(&["x", "a\"b"]), "a\"b");
    }

    #[test]
    fn time_has_nine_fraction_digits() {
        assert_eq!(
            format_time_ns(1_795_878_113_730_525_626),
            "2026-11-28T15:01:53.730525626Z"
        );
        assert_eq!(format_time_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time_ns(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            format_time_ns(946_684_799_999_999_999),
            "1999-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn time_digits_match_the_formatting_machinery() {
        let reference = |unix_ns: u64| {
            let secs = unix_ns / 1_000_000_000;
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days(secs / 86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                unix_ns % 1_000_000_000
            )
        };
        let mut v: u64 = 1;
        for i in 0..20_000u64 {
            v = v
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            for t in [v, v % 4_102_444_800_000_000_000, i * 86_399_999_999_937] {
                assert_eq!(format_time_ns(t), reference(t), "{t}");
            }
        }
        assert_eq!(format_time_ns(u64::MAX), reference(u64::MAX));
    }

    #[test]
    fn time_parses_back() {
        for ns in [
            0,
            1_795_878_113_730_525_626,
            951_782_400_000_000_001,
            946_684_799_999_999_999,
        ] {
            assert_eq!(parse_time_ns(&format_time_ns(ns)), Some(ns));
        }
        assert_eq!(
            parse_time_ns("2026-11-28T16:01:53.5+01:00"),
            Some(1_795_878_113_500_000_000)
        );
        assert_eq!(parse_time_ns("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        for bad in [
            "",
            "2026-11-28",
            "2026-11-28T15:01:53",
            "2026-13-28T15:01:53Z",
            "2026-11-28T15:01:53.Z",
            "2026-11-28T15:01:53.1234567890Z",
            "1969-12-31T23:59:59Z",
            "2026-11-28T15:01:53+0100",
        ] {
            assert_eq!(parse_time_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(signal_name(0), "");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(1), "SIGHUP");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(36), "SIGRTMIN+2");
        assert_eq!(signal_name(62), "SIGRTMAX-2");
        assert_eq!(signal_name(64), "SIGRTMAX");
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(-1), "SIG-1");
        for n in (1..=31).chain(34..=64) {
            assert_eq!(signal_number(&signal_name(n)), Some(n), "signal {n}");
        }
        assert_eq!(signal_number("SIGNOPE"), None);
    }

    #[test]
    fn capabilities_by_bit() {
        assert!(capability_names(0).is_empty());
        assert_eq!(capability_names(1 << 21), vec!["CAP_SYS_ADMIN"]);
        assert_eq!(
            capability_names(0b111),
            vec!["CAP_CHOWN", "DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"]
        );
        let all = capability_names(u64::MAX);
        assert_eq!(all.len(), 41);
        assert_eq!(all.last().unwrap(), "CAP_CHECKPOINT_RESTORE");
        for (bit, name) in all.iter().enumerate() {
            assert_eq!(capability_bit(name), Some(bit as u32), "{name}");
        }
        assert_eq!(capability_bit("CAP_DAC_OVERRIDE"), Some(1));
        assert_eq!(capability_bit("CAP_BPF"), Some(39));
        assert_eq!(capability_bit("CAP_NOPE"), None);
    }

    #[test]
    fn securebits() {
        assert_eq!(securebits_names(0), Vec::<String>::new());
        assert_eq!(
            securebits_names(0b1_0001),
            vec!["SecBitNoRoot", "SecBitKeepCaps"]
        );
    }
}
