//! Shared helpers for the system tests: locating the project binaries, running a real sensor as
//! a child process, and waiting (with timeouts) for the events it exports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_api::events::GetEventsResponse;

pub mod cluster;
pub mod containers;
pub mod fake_kube;
pub mod loss;
pub mod test_ca;

/// The project binary `name`: from `VIGIL_BIN_DIR` when set, else next to the test binary's
/// target directory (`target/<profile>/`).
pub fn bin_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("VIGIL_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir")
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `vigil-sensor` exporting to a file in its own temporary directory.
pub struct Sensor {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub export: PathBuf,
    /// The gRPC unix socket (in `dir`, unless the test passed its own `--grpc-socket`).
    pub socket: PathBuf,
    stderr: Arc<Mutex<String>>,
    pub metrics_port: Option<u16>,
    /// The sensor's instance (`--instance`): its pinned objects are under
    /// `/sys/fs/bpf/vigil/<instance>/`.
    pub instance: String,
    /// The instance was made up for this sensor: its pins go when the `Sensor` does, however it
    /// stopped (a killed sensor leaves its programs enforcing).
    own_instance: bool,
}

/// A sensor instance name no other test sensor uses.
pub fn unique_instance() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "e2e-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// True inside the VM harness (software-emulated CPU: everything is slower), or when asked.
pub fn slow_machine() -> bool {
    std::env::var_os("VIGIL_IN_VM").is_some() || std::env::var_os("VIGIL_SLOW").is_some()
}

/// How long a sensor may take to load and attach.
pub fn start_timeout() -> Duration {
    Duration::from_secs(if slow_machine() { 240 } else { 60 })
}

/// Events' timeouts.
pub fn event_timeout() -> Duration {
    Duration::from_secs(if slow_machine() { 120 } else { 20 })
}

impl Sensor {
    /// Starts the sensor with `args` (plus `--export-file` and `--node-name e2e`) and waits until
    /// it says it is ready.
    pub fn start(args: &[&str]) -> Sensor {
        Self::start_with(args, &[], true)
    }

    /// Like [`Sensor::start`], with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Sensor {
        Self::start_with(args, env, true)
    }

    /// Like [`Sensor::start`], serving metrics on a free local port.
    pub fn start_with_metrics(args: &[&str]) -> Sensor {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--metrics-address", &addr]);
        let mut s = Self::start_with(&all, &[], true);
        s.metrics_port = Some(port);
        s
    }

    /// Like [`Sensor::start_with_metrics`], run through `wrapper` (a command that ends by
    /// executing its arguments, e.g. `sh -c 'echo $$ > …/cgroup.procs && exec "$@"' sh`).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Sensor {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--metrics-address", &addr]);
        let mut s = Self::spawn(Some(wrapper), &all, env, true);
        s.metrics_port = Some(port);
        s
    }

    fn start_with(args: &[&str], env: &[(&str, &str)], wait_ready: bool) -> Sensor {
        Self::spawn(None, args, env, wait_ready)
    }

    fn spawn(
        wrapper: Option<&[&str]>,
        args: &[&str],
        env: &[(&str, &str)],
        wait_ready: bool,
    ) -> Sensor {
        let dir = tempfile::tempdir().expect("tempdir");
        // The test's own --export-file, when it gives one (e.g. on a small tmpfs).
        let own_export = args
            .iter()
            .position(|a| *a == "--export-file")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        let export = own_export
            .clone()
            .unwrap_or_else(|| dir.path().join("events.json"));
        // Never the default socket: tests must not meet each other (or a real sensor).
        let socket = match args.iter().position(|a| *a == "--grpc-socket") {
            Some(i) => PathBuf::from(args.get(i + 1).copied().unwrap_or("")),
            None => dir.path().join("vigil.sock"),
        };
        let mut cmd = match wrapper {
            Some([first, rest @ ..]) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin_path("vigil-sensor"));
                c
            }
            _ => Command::new(bin_path("vigil-sensor")),
        };
        if !args.contains(&"--node-name") && !env.iter().any(|(k, _)| *k == "VIGIL_NODE_NAME") {
            cmd.args(["--node-name", "e2e"]);
        }
        // Each test sensor has pins of its own, removed when it stops, unless the test is about
        // what one sensor leaves to the next.
        let (instance, own_instance) = match args.iter().position(|a| *a == "--instance") {
            Some(i) => (args.get(i + 1).copied().unwrap_or("").to_string(), false),
            None => {
                let i = unique_instance();
                cmd.args(["--instance", &i]);
                (i, true)
            }
        };
        if !args
            .iter()
            .any(|a| a.starts_with("--keep-enforcing-on-exit"))
        {
            cmd.arg("--keep-enforcing-on-exit=false");
        }
        cmd.args(["--log-level", "warn"]);
        if own_export.is_none() {
            cmd.arg("--export-file").arg(&export);
        }
        if !args.contains(&"--grpc-socket") {
            cmd.arg("--grpc-socket").arg(&socket);
        }
        let mut child = cmd
            .args(args)
            .env_remove("NODE_NAME")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin_path("vigil-sensor").display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut sensor = Sensor {
            child: Some(child),
            dir,
            export,
            socket,
            stderr,
            metrics_port: None,
            instance,
            own_instance,
        };
        if wait_ready {
            let deadline = Instant::now() + start_timeout();
            loop {
                if sensor.stderr().contains("ready, listening for events") {
                    break;
                }
                if let Some(status) = sensor.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("sensor exited early ({status}):\n{}", sensor.stderr());
                }
                assert!(
                    Instant::now() < deadline,
                    "sensor not ready in time:\n{}",
                    sensor.stderr()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        sensor
    }

    /// The sensor's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every event exported so far (each line must decode strictly).
    pub fn events(&self) -> Vec<GetEventsResponse> {
        read_events(&self.export)
    }

    /// Waits until some event satisfies `pred` and returns it.
    pub fn wait_event(
        &self,
        what: &str,
        pred: impl Fn(&GetEventsResponse) -> bool,
    ) -> GetEventsResponse {
        wait_for(event_timeout(), what, || {
            self.events().into_iter().find(|e| pred(e))
        })
    }

    /// The exec event of `pid`.
    pub fn wait_exec(&self, pid: u32) -> GetEventsResponse {
        self.wait_event(&format!("exec of pid {pid}"), |e| {
            e.process_exec
                .as_ref()
                .and_then(|x| x.process.as_ref())
                .and_then(|p| p.pid)
                == Some(pid)
        })
    }

    /// The exit event of `pid`.
    pub fn wait_exit(&self, pid: u32) -> GetEventsResponse {
        self.wait_event(&format!("exit of pid {pid}"), |e| {
            e.process_exit
                .as_ref()
                .and_then(|x| x.process.as_ref())
                .and_then(|p| p.pid)
                == Some(pid)
        })
    }

    /// Scrapes `/metrics` (the sensor must have been started with metrics).
    pub fn metrics(&self) -> String {
        let port = self.metrics_port.expect("sensor started without metrics");
        http_get(port, "/metrics")
    }

    /// The directory of the sensor's current generation of pinned objects.
    pub fn pin_dir(&self) -> PathBuf {
        let root = Path::new("/sys/fs/bpf/vigil").join(&self.instance);
        let mut gens: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        gens.sort();
        gens.pop().expect("a generation")
    }

    /// Kills the sensor with SIGKILL (no clean stop) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status. The export file stays
    /// until the `Sensor` is dropped.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + start_timeout();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sensor did not stop after SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.own_instance {
            let _ = Command::new(bin_path("vigil-sensor"))
                .args(["cleanup", "--instance", &self.instance])
                .output();
        }
    }
}

/// Reads a JSON-lines export file; every complete line must decode strictly. A last line
/// without its newline is still being written (the exporter flushes in blocks) and is skipped.
pub fn read_events(path: &Path) -> Vec<GetEventsResponse> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map(|i| &text[..=i]).unwrap_or("");
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            GetEventsResponse::from_json(l).unwrap_or_else(|e| panic!("bad event line ({e}): {l}"))
        })
        .collect()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:`port`; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of a metric line `name{labels} value` (sum over label sets when `name` is given
/// without labels).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) takes plain integers; a stale pid at worst signals nothing or errors.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Runs `cmd` to completion and returns its pid and exit status.
pub fn run(cmd: &mut Command) -> (u32, ExitStatus) {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    (pid, child.wait().unwrap())
}

/// Runs `vigil ARGS --server SOCKET`; returns its output whatever the exit status.
pub fn vigil_cli(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin_path("vigil"))
        .args(args)
        .arg("--server")
        .arg(socket)
        .output()
        .unwrap_or_else(|e| panic!("cannot run vigil {args:?}: {e}"))
}

/// Runs a `vigil` command that must succeed; returns its stdout.
pub fn vigil_ok(socket: &Path, args: &[&str]) -> String {
    let out = vigil_cli(socket, args);
    assert!(
        out.status.success(),
        "vigil {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vigil policy list -o json` as JSON values.
pub fn policy_list(socket: &Path) -> Vec<serde_json::Value> {
    let out = vigil_ok(socket, &["policy", "list", "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"));
    v.as_array().expect("a JSON array").clone()
}

/// The repository's root directory, for tests that read its files (chart, example policies,
/// docs). Found at run time, not from where the test binary was built, so that a binary built
/// from another checkout (a shared target directory), in CI or in the VM reads the tree it is
/// run against: `VIGIL_REPO_DIR` when set (the VM harness sets `/vigil/src`), else the parent
/// of the `CARGO_MANIFEST_DIR` that `cargo test` sets for the run, else the one compiled in.
pub fn repo_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("VIGIL_REPO_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// A file of the repository (`repo_file("examples/policies/x.yaml")`), read; panics with the
/// path when it cannot be read.
pub fn repo_file(rel: &str) -> String {
    let p = repo_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A policy from Tetragon's example corpus (`policies/tetragon-examples` of the shared
/// directory: `VIGIL_SHARED_DIR` when set (the VM harness sets `/vigil/shared`), else `shared/`
/// next to the repository or above it, else /work/shared).
pub fn corpus_policy(name: &str) -> String {
    let sub = "policies/tetragon-examples";
    let dir = std::env::var_os("VIGIL_SHARED_DIR")
        .map(|d| PathBuf::from(d).join(sub))
        .into_iter()
        .chain(repo_root().ancestors().map(|a| a.join("shared").join(sub)))
        .chain([PathBuf::from("/work/shared").join(sub)])
        .find(|p| p.is_dir())
        .expect("Tetragon example corpus: set VIGIL_SHARED_DIR, or put shared/policies next to the repository");
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A running `vigil-operator run` in GitOps mode: a policy directory of its own, policy sync on
/// a free local port, metrics on another.
pub struct Operator {
    child: Option<Child>,
    /// The policy directory (the test writes manifests here).
    pub policy_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    pub grpc_port: u16,
    pub metrics_port: u16,
    stderr: Arc<Mutex<String>>,
    /// Kubernetes mode: the kubeconfig of the API server to use (instead of the directory).
    kubeconfig: Option<PathBuf>,
    /// More arguments of `vigil-operator run` (e.g. the TLS files), passed at every (re)start.
    extra_args: Vec<String>,
    /// Kubernetes mode: compete for the leader Lease (else run alone, election off).
    leader_election: bool,
    /// More environment variables (e.g. a replica's POD_NAME and POD_NAMESPACE).
    env: Vec<(String, String)>,
}

impl Operator {
    /// Starts the operator in Kubernetes mode against the API server of `kubeconfig` (leader
    /// election off: one replica), and waits until it listens. It serves sensors once its
    /// controllers had time to load the policies (`LEADER_SETTLE`, 3 s); sensors retry until then.
    pub fn start_kubernetes(kubeconfig: &Path) -> Operator {
        let mut op = Operator {
            child: None,
            policy_dir: PathBuf::new(),
            _dir: None,
            grpc_port: free_port(),
            metrics_port: free_port(),
            stderr: Arc::new(Mutex::new(String::new())),
            kubeconfig: Some(kubeconfig.to_path_buf()),
            extra_args: Vec::new(),
            leader_election: false,
            env: Vec::new(),
        };
        op.spawn();
        op
    }

    /// Starts the operator in Kubernetes mode as one replica of its Deployment would run: with
    /// leader election (the Lease in `namespace`, identity `pod_name`, as the chart's POD_NAME
    /// and POD_NAMESPACE give them), the API server and identity of `kubeconfig`, and `args`
    /// of `vigil-operator run` besides the listen addresses. Waits until it listens; it serves
    /// sensors only while it holds the Lease.
    pub fn start_replica(
        kubeconfig: &Path,
        namespace: &str,
        pod_name: &str,
        args: &[&str],
    ) -> Operator {
        let mut op = Operator {
            child: None,
            policy_dir: PathBuf::new(),
            _dir: None,
            grpc_port: free_port(),
            metrics_port: free_port(),
            stderr: Arc::new(Mutex::new(String::new())),
            kubeconfig: Some(kubeconfig.to_path_buf()),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            leader_election: true,
            env: vec![
                ("POD_NAME".into(), pod_name.into()),
                ("POD_NAMESPACE".into(), namespace.into()),
            ],
        };
        op.spawn();
        op
    }

    /// The process id (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts the operator on a fresh policy directory and waits until it serves.
    pub fn start() -> Operator {
        Self::start_with_args(&[])
    }

    /// Like [`Operator::start`], with more arguments of `vigil-operator run` (passed again
    /// at every restart).
    pub fn start_with_args(args: &[&str]) -> Operator {
        Self::start_with(args, &[])
    }

    /// [`Operator::start_with_args`] with policy files, `(name, text)`, in the directory before
    /// the operator starts (its first set to sensors already carries them).
    pub fn start_with(args: &[&str], policy_files: &[(&str, &str)]) -> Operator {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        for (name, text) in policy_files {
            std::fs::write(policy_dir.join(name), text).unwrap();
        }
        let mut op = Operator {
            child: None,
            policy_dir,
            _dir: Some(dir),
            grpc_port: free_port(),
            metrics_port: free_port(),
            stderr: Arc::new(Mutex::new(String::new())),
            kubeconfig: None,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            leader_election: false,
            env: Vec::new(),
        };
        op.spawn();
        op
    }

    /// `HOST:PORT` of the policy sync service.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// `http://HOST:PORT`, as sensors take it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// `https://HOST:PORT`, for an operator serving TLS.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.address())
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bin_path("vigil-operator"));
        cmd.args(["run", "--log-level", "info"]);
        match &self.kubeconfig {
            Some(k) => {
                cmd.env("KUBECONFIG", k);
                if !self.leader_election {
                    cmd.env("VIGIL_LEADER_ELECTION", "false");
                }
            }
            None => {
                cmd.arg("--policy-dir").arg(&self.policy_dir);
            }
        }
        let mut child = cmd
            .args(["--grpc-address", &self.address()])
            .args([
                "--metrics-address",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e}", bin_path("vigil-operator").display())
            });
        self.stderr.lock().unwrap().clear();
        let pipe = child.stderr.take().expect("stderr");
        let sink = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + start_timeout();
        loop {
            if self.stderr().contains("vigil-operator: ready") {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("operator exited early ({status}):\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "operator not ready in time:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the operator logged since it last started.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the operator (SIGKILL: no goodbye to the sensors) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("operator did not stop after SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again with the same directory and ports (stopping it first if it runs).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Writes `name` into the policy directory atomically (the operator never sees half a file).
    pub fn write_policy(&self, name: &str, text: &str) {
        let tmp = self.policy_dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.policy_dir.join(name)).unwrap();
    }

    /// Removes `name` from the policy directory.
    pub fn remove_policy(&self, name: &str) {
        std::fs::remove_file(self.policy_dir.join(name)).unwrap();
    }

    /// `vigil status --operator ADDR -o json`.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(bin_path("vigil"))
            .args(["status", "--operator", &self.address(), "-o", "json"])
            .output()
            .expect("run vigil status");
        assert!(
            out.status.success(),
            "vigil status --operator failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
    }

    /// `vigil status --operator ADDR` as text.
    pub fn status_text(&self) -> String {
        let out = Command::new(bin_path("vigil"))
            .args(["status", "--operator", &self.address()])
            .output()
            .expect("run vigil status");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Scrapes the operator's `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A policy with one openat hook whose path must start with `prefix`, plus `selector_extra`
/// (more lines of the same selector, indented by six spaces; "" for none).
pub fn open_policy(name: &str, prefix: &str, selector_extra: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"{prefix}\"]
{selector_extra}"
    )
}

/// A Sigkill policy on `sys_openat` whose Prefix never matches, with a CPU budget
/// (`vigil.dev/cpu-budget: BUDGET`) and further annotations (`key: "value"` lines): a policy that
/// only costs, for budget tests.
pub fn budgeted_policy(name: &str, budget: &str, more_annotations: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
  annotations:
    vigil.dev/cpu-budget: \"{budget}\"
{more_annotations}spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: [\"/nonexistent/vigil-budget/a\", \"/nonexistent/vigil-budget/b\"]
      matchActions:
      - action: Sigkill
"
    )
}

/// Opens `path` over and over (the workload's `open-storm`, in rounds) until dropped.
pub struct OpenStorm {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OpenStorm {
    pub fn start(path: &Path) -> OpenStorm {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, path) = (stop.clone(), path.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let st = Command::new(bin_path("vigil-e2e-workload"))
                    .args(["open-storm", "20000"])
                    .arg(&path)
                    .stdout(Stdio::null())
                    .status()
                    .expect("run the open storm");
                assert!(st.success(), "open-storm failed: {st}");
            }
        });
        OpenStorm {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for OpenStorm {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
