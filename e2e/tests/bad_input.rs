//! The bad-input suite, against a real sensor: hostile policies (through the API and the policy
//! directory), malformed or oversized gRPC requests, streams abandoned by the thousand, and odd
//! event data. Each gets a clear error (naming the field where there is one) in bounded time and
//! memory, changes nothing that runs, and never stops the sensor. Figures in docs/operations.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use vigil_api::events::{GetEventsResponse, ProcessFlags};
use vigil_api::wire::tetragon;
use vigil_e2e::loss::{open_n, write_open_policy};
use vigil_e2e::{Sensor, event_timeout, free_port, metric_value, wait_for};

type Client =
    tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient<tonic::transport::Channel>;

const POLICY: &str = "bad-input-guard";

/// A sensor with one running policy (whose opens of `target` it reports), the gRPC API on TCP
/// and a policy directory.
struct Rig {
    sensor: Sensor,
    target: PathBuf,
    addr: String,
    policy_dir: PathBuf,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("watched");
        std::fs::create_dir(&watched).unwrap();
        let target = watched.join("f");
        std::fs::write(&target, b"x").unwrap();
        let policy = write_open_policy(dir.path(), POLICY, &watched);
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let sensor = Sensor::start_with_metrics(&[
            "--policy",
            policy.to_str().unwrap(),
            "--policy-dir",
            policy_dir.to_str().unwrap(),
            "--grpc-address",
            &addr,
        ]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Rig {
            sensor,
            target,
            addr,
            policy_dir,
            _dir: dir,
            rt,
        }
    }

    fn client(&self) -> Client {
        self.rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
                .unwrap()
                .connect()
                .await
                .unwrap();
            Client::new(ch).max_encoding_message_size(256 << 20)
        })
    }

    fn add(&self, yaml: String) -> Result<(), Status> {
        let mut c = self.client();
        self.rt.block_on(async {
            c.add_tracing_policy(tetragon::AddTracingPolicyRequest { yaml })
                .await
                .map(|_| ())
        })
    }

    fn policies(&self) -> Vec<String> {
        let mut c = self.client();
        let mut names: Vec<String> = self.rt.block_on(async {
            c.list_tracing_policies(tetragon::ListTracingPoliciesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .policies
                .into_iter()
                .map(|p| p.name)
                .collect()
        });
        names.sort();
        names
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.sensor.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Nothing changed: the one policy still runs and still reports.
    fn untouched(&self) {
        assert_eq!(self.policies(), vec![POLICY.to_string()]);
        let before = self.guard_events();
        open_n(&self.target, 1);
        wait_for(event_timeout(), "the running policy to report", || {
            (self.guard_events() > before).then_some(())
        });
    }

    fn guard_events(&self) -> usize {
        self.sensor
            .events()
            .iter()
            .filter(|e| {
                e.process_kprobe
                    .as_ref()
                    .is_some_and(|k| k.policy_name == POLICY)
            })
            .count()
    }
}

const HEAD: &str =
    "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bad\nspec:\n";

/// Billion laughs: nine levels of nine aliases, 387 420 489 leaves once expanded.
fn yaml_bomb() -> String {
    let mut s = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    format!("{s}{HEAD}  kprobes:\n  - call: sys_openat\n    syscall: true\n    tags: *a9\n")
}

fn ten_thousand_selectors() -> String {
    let one = "    - matchPIDs: [{operator: In, values: [1]}]\n";
    format!(
        "{HEAD}  kprobes:\n  - call: sys_openat\n    syscall: true\n    selectors:\n{}",
        one.repeat(10_000)
    )
}

fn deeply_nested() -> String {
    format!(
        "{HEAD}  kprobes: {}{}\n",
        "[".repeat(50_000),
        "]".repeat(50_000)
    )
}

#[test]
fn hostile_policies_get_a_clear_error_in_bounded_time_and_memory_and_change_nothing() {
    let rig = Rig::start();
    let rss_before = rig.rss_kib();
    let cases: Vec<(&str, String, &str)> = vec![
        ("YAML bomb", yaml_bomb(), "budget breached"),
        (
            "10 000 selectors",
            ten_thousand_selectors(),
            "spec.kprobes[0].selectors",
        ),
        ("deep nesting", deeply_nested(), "recursion limit exceeded"),
        (
            "a NUL byte",
            format!("{HEAD}  kprobes:\n  - call: \"sys_\0openat\"\n    syscall: true\n"),
            "unexpected character",
        ),
        (
            "an escaped NUL",
            format!("{HEAD}  kprobes:\n  - call: \"sys_\\0openat\"\n    syscall: true\n"),
            "spec.kprobes[0].call",
        ),
        (
            "wrong type",
            format!(
                "{HEAD}  kprobes:\n  - call: sys_openat\n    syscall: true\n    args: {{index: 0}}\n"
            ),
            "spec.kprobes[0].args",
        ),
        (
            "wrong type deep",
            format!(
                "{HEAD}  kprobes:\n  - call: sys_openat\n    syscall: true\n    args: [{{index: 0, type: string}}]\n    selectors: [{{matchArgs: [{{index: [0], operator: Equal, values: [a]}}]}}]\n"
            ),
            "spec.kprobes[0].selectors[0].matchArgs[0].index",
        ),
        (
            "2 000 values",
            format!(
                "{HEAD}  kprobes:\n  - call: sys_openat\n    syscall: true\n    args: [{{index: 1, type: string}}]\n    selectors: [{{matchArgs: [{{index: 1, operator: Equal, values: [{}]}}]}}]\n",
                vec!["\"/x\""; 2_000].join(",")
            ),
            "spec.kprobes[0].selectors[0].matchArgs[0].values",
        ),
    ];
    for (what, yaml, names) in cases {
        let t = Instant::now();
        let err = rig.add(yaml).expect_err(what);
        let took = t.elapsed();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message().contains(names),
            "{what}: the error does not name {names:?}: {}",
            err.message()
        );
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
        println!(
            "figure: {what}: refused in {} ms: {}",
            took.as_millis(),
            err.message().lines().next().unwrap_or("")
        );
    }
    // Over the request size limit: refused before it is read into a policy.
    let huge = format!("{HEAD}  kprobes: []\n# {}\n", "x".repeat(100 << 20));
    let t = Instant::now();
    let err = rig.add(huge).expect_err("a 100 MiB policy");
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );
    println!(
        "figure: 100 MiB policy over gRPC: {:?} in {} ms",
        err.code(),
        t.elapsed().as_millis()
    );
    rig.untouched();
    let rss_after = rig.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
    println!("figure: hostile policies: sensor RSS {rss_before} -> {rss_after} KiB");
}

#[test]
fn hostile_files_in_the_policy_directory_are_refused_once_and_not_read_whole() {
    let rig = Rig::start();
    let rss_before = rig.rss_kib();
    let big = rig.policy_dir.join("huge.yaml");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        f.write_all(HEAD.as_bytes()).unwrap();
        let chunk = vec![b'#'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
    }
    std::fs::write(
        rig.policy_dir.join("invalid-utf8.yaml"),
        b"apiVersion: \xff\xfe\n",
    )
    .unwrap();
    std::fs::write(rig.policy_dir.join("bomb.yaml"), yaml_bomb()).unwrap();
    std::fs::write(rig.policy_dir.join("nested.yaml"), deeply_nested()).unwrap();
    let errors = wait_for(event_timeout(), "the four files refused", || {
        let n = metric_value(&rig.sensor.metrics(), "vigil_policy_dir_errors_total");
        (n >= 4.0).then_some(n)
    });
    // Refused once each, not again every poll.
    std::thread::sleep(Duration::from_millis(1500));
    let again = metric_value(&rig.sensor.metrics(), "vigil_policy_dir_errors_total");
    assert_eq!(again, errors, "the same files were refused again");
    rig.untouched();
    let rss_after = rig.rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB with a 100 MiB file in the directory"
    );
    println!("figure: hostile files: sensor RSS {rss_before} -> {rss_after} KiB");
}

/// Raw bytes as a gRPC message body, to send what no well-behaved client would.
#[derive(Clone, Default)]
struct Raw;

struct RawEnc;
struct RawDec;

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let v = buf.chunk().to_vec();
        buf.advance(v.len());
        Ok(Some(v))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

fn raw_call(rig: &Rig, method: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    rig.rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", rig.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(ch);
        grpc.ready().await.unwrap();
        let path = format!("/tetragon.FineGuidanceSensors/{method}")
            .parse()
            .unwrap();
        grpc.unary(tonic::Request::new(body), path, Raw)
            .await
            .map(|r| r.into_inner())
    })
}

#[test]
fn malformed_requests_unknown_enums_and_abandoned_streams_get_clear_status_codes() {
    let rig = Rig::start();
    let rss_before = rig.rss_kib();
    // Not protobuf at all; a string field that is not UTF-8.
    for (what, body) in [
        ("garbage", vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        ("truncated", vec![0x0a, 0x64, b'a']),
        ("invalid UTF-8 in yaml", vec![0x0a, 0x02, 0xff, 0xfe]),
    ] {
        let err = raw_call(&rig, "AddTracingPolicy", body).expect_err(what);
        assert!(
            matches!(err.code(), Code::Internal | Code::InvalidArgument),
            "{what}: {err:?}"
        );
        assert!(
            err.message().to_lowercase().contains("decod"),
            "{what}: {err:?}"
        );
        println!(
            "figure: malformed protobuf ({what}): {:?} {}",
            err.code(),
            err.message()
        );
    }
    // Unknown enum values.
    let mut c = rig.client();
    let streams = |req: tetragon::GetEventsRequest| {
        let mut c = c.clone();
        rig.rt
            .block_on(async move { c.get_events(req).await.map(|_| ()) })
    };
    let bad_type = tetragon::GetEventsRequest {
        allow_list: vec![tetragon::Filter {
            event_set: vec![31337],
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = streams(bad_type).expect_err("unknown event type");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("31337"), "{err:?}");
    let bad_action = tetragon::GetEventsRequest {
        field_filters: vec![tetragon::FieldFilter {
            action: 99,
            fields: Some(prost_types_mask(&["process"])),
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = streams(bad_action).expect_err("unknown field filter action");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let bad_mode = rig.rt.block_on(async {
        c.configure_tracing_policy(tetragon::ConfigureTracingPolicyRequest {
            name: POLICY.into(),
            mode: Some(77),
            ..Default::default()
        })
        .await
    });
    let err = bad_mode.expect_err("unknown mode");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("77"), "{err:?}");
    // A thousand streams opened and abandoned at once, then a thousand more one by one.
    let t = Instant::now();
    rig.rt.block_on(async {
        let mut open = Vec::new();
        for _ in 0..1000 {
            open.push(
                c.get_events(tetragon::GetEventsRequest::default())
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        drop(open);
        for _ in 0..1000 {
            let s = c
                .get_events(tetragon::GetEventsRequest::default())
                .await
                .unwrap();
            drop(s);
        }
    });
    let took = t.elapsed();
    drop(c);
    wait_for(event_timeout(), "every abandoned stream gone", || {
        (metric_value(&rig.sensor.metrics(), "vigil_grpc_clients") == 0.0).then_some(())
    });
    rig.untouched();
    let rss_after = rig.rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
    // An empty request body is a valid (empty) message; the sensor answers it.
    assert!(raw_call(&rig, "GetVersion", vec![]).is_ok());
    println!(
        "figure: 2000 abandoned GetEvents streams in {:.1} s: sensor RSS {rss_before} -> {rss_after} KiB",
        took.as_secs_f64()
    );
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

fn exec_of(sensor: &Sensor, pid: u32) -> vigil_api::events::Process {
    sensor
        .wait_exec(pid)
        .process_exec
        .unwrap()
        .process
        .unwrap()
        .as_ref()
        .clone()
}

fn run_args(program: &Path, args: &[&std::ffi::OsStr]) -> u32 {
    let (pid, st) = vigil_e2e::run(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(st.success(), "{} failed", program.display());
    pid
}

#[test]
fn odd_event_data_is_exported_as_documented() {
    use std::os::unix::ffi::OsStrExt;
    let rig = Rig::start();
    let dir = tempfile::tempdir().unwrap();
    let t = Path::new("/bin/true");
    // Invalid UTF-8 in arguments: each bad byte becomes U+FFFD.
    let pid = run_args(t, &[std::ffi::OsStr::from_bytes(b"ok\xff\xfe-x")]);
    let p = exec_of(&rig.sensor, pid);
    assert_eq!(p.arguments, "ok\u{fffd}\u{fffd}-x");
    // Empty arguments (consecutive NULs in the kernel's argv block) stay empty arguments.
    let pid = run_args(t, &["".as_ref(), "b".as_ref(), "".as_ref()]);
    assert_eq!(exec_of(&rig.sensor, pid).arguments, " b ");
    // 1 MiB of arguments: cut to the first 8 KiB, flagged truncArgs.
    let big = "a".repeat(100 * 1024);
    let args: Vec<&std::ffi::OsStr> = (0..10).map(|_| big.as_ref()).collect();
    let pid = run_args(t, &args);
    let p = exec_of(&rig.sensor, pid);
    let flags: ProcessFlags = p.flags.parse().unwrap();
    assert!(flags.contains(ProcessFlags::TRUNC_ARGS), "{}", p.flags);
    assert!(
        p.arguments.len() <= 8192,
        "{} bytes of arguments",
        p.arguments.len()
    );
    // A binary at the kernel's path length limit, 70 directories deep.
    let mut deep = dir.path().to_path_buf();
    for _ in 0..70 {
        deep.push("d".repeat(50));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let bin = deep.join("true");
    std::fs::copy(t, &bin).unwrap();
    let pid = run_args(&bin, &[]);
    let p = exec_of(&rig.sensor, pid);
    let flags: ProcessFlags = p.flags.parse().unwrap();
    assert!(
        p.binary == bin.to_str().unwrap() || flags.contains(ProcessFlags::ERROR_FILENAME),
        "{} ({})",
        p.binary,
        p.flags
    );
    println!(
        "figure: {}-byte binary path: reported as {} bytes, flags {}",
        bin.as_os_str().len(),
        p.binary.len(),
        p.flags
    );
    // Every line of the export is still valid.
    let all: Vec<GetEventsResponse> = vigil_e2e::read_events(&rig.sensor.export);
    assert!(!all.is_empty());
    rig.untouched();
}
