//! A real Kubernetes control plane for the cluster suites (`e2e/tests/k8s_*.rs`): etcd and
//! kube-apiserver v1.20 started on loopback for one test and stopped when it ends, read and
//! changed with the real `kubectl` and `helm`. The binaries come from `scripts/install-k8s.sh`
//! (cached under /var/cache/vigil/k8s; `VIGIL_K8S_BIN_DIR` overrides the directory).
//!
//! What runs: etcd, kube-apiserver with TLS, client-certificate authentication against a CA of
//! the test's own, the RBAC authorizer, and an audit log of every request made by a
//! ServiceAccount identity. What does not run: no kubelet, scheduler or controller-manager, so
//! Deployments and DaemonSets are stored but start no pod; tests create Pod objects themselves
//! (with `spec.nodeName`) and write their status through the status subresource. The
//! ServiceAccount admission plugin is off (no controller fills token Secrets): pods are stored
//! as given.
//!
//! Identities: `kubectl`/`helm` run as a cluster admin (client certificate in group
//! `system:masters`). Processes that should act as a ServiceAccount get a kubeconfig from
//! [`Cluster::service_account_kubeconfig`]: a client certificate whose common name is
//! `system:serviceaccount:NAMESPACE:NAME`, the user name RBAC matches a ServiceAccount subject
//! by — so every call they make goes through the same authorizer as in a cluster.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::free_port;

/// The directory of the pinned Kubernetes binaries (`kube-apiserver`, `etcd`, `kubectl`,
/// `helm`).
pub fn k8s_bin_dir() -> PathBuf {
    std::env::var_os("VIGIL_K8S_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vigil/k8s/bin"))
}

/// One of the pinned Kubernetes binaries; panics with the way to install it when missing.
pub fn k8s_bin(name: &str) -> PathBuf {
    let p = k8s_bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: install the cluster test components with scripts/install-k8s.sh \
         (make deps does it), or point VIGIL_K8S_BIN_DIR at a directory holding kube-apiserver, \
         etcd, kubectl and helm",
        p.display()
    );
    p
}

/// How long the control plane may take to answer `/readyz` (it is ~6 s on an idle machine).
fn ready_timeout() -> Duration {
    Duration::from_secs(if crate::slow_machine() { 300 } else { 120 })
}

/// A child process killed when dropped, its output in a log file.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        // Should the test process die without dropping the cluster (killed by a timeout), the
        // control plane dies with it instead of lingering on its ports.
        // SAFETY: prctl(2) with plain integers; async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name,
            child: Some(child),
            log,
        }
    }

    /// Panics with the log tail when the process has exited.
    fn check_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait().unwrap()
        {
            panic!("{} exited ({status}):\n{}", self.name, tail(&self.log, 40));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::signal(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The output of a command as text, for messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running etcd + kube-apiserver on loopback, stopped when dropped.
pub struct Cluster {
    // Dropped in this order: the API server before etcd, then the files.
    apiserver: Proc,
    etcd: Proc,
    dir: tempfile::TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig for a cluster admin (group `system:masters`).
    pub admin: PathBuf,
    /// The API server's audit log (JSON lines), requests of ServiceAccount identities only.
    pub audit_log: PathBuf,
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [\"vigil-e2e:audited\"]
- level: None
";

/// Group that puts a client certificate's requests into the audit log.
const AUDITED_GROUP: &str = "vigil-e2e:audited";

impl Cluster {
    /// Starts etcd and kube-apiserver and waits until the API server is ready (`/readyz`).
    pub fn start() -> Cluster {
        let apiserver_bin = k8s_bin("kube-apiserver");
        let etcd_bin = k8s_bin("etcd");
        k8s_bin("kubectl");
        let dir = tempfile::Builder::new()
            .prefix("vigil-k8s-")
            .tempdir()
            .unwrap();
        let d = dir.path();

        // PKI: one CA signs the serving certificate and every client certificate.
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vigil-e2e-kubernetes-ca");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let serving = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
        std::fs::write(d.join("apiserver.pem"), serving.pem()).unwrap();
        std::fs::write(d.join("apiserver.key"), key.serialize_pem()).unwrap();
        // The ServiceAccount token signing key (tokens are not used, but 1.20 requires it).
        let sa = rcgen::KeyPair::generate().unwrap();
        std::fs::write(d.join("sa.key"), sa.serialize_pem()).unwrap();
        std::fs::write(d.join("sa.pub"), sa.public_key_pem()).unwrap();
        std::fs::write(d.join("audit-policy.yaml"), AUDIT_POLICY).unwrap();

        let etcd_port = free_port();
        let peer_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Proc::spawn(
            "etcd",
            Command::new(&etcd_bin)
                .arg("--data-dir")
                .arg(d.join("etcd"))
                .args(["--name", "vigil-e2e"])
                .args(["--listen-client-urls", &etcd_url])
                .args(["--advertise-client-urls", &etcd_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("vigil-e2e={peer_url}")])
                .args(["--log-level", "warn", "--logger", "zap"])
                .arg("--unsafe-no-fsync"),
            d.join("etcd.log"),
        );
        let deadline = Instant::now() + ready_timeout();
        loop {
            etcd.check_running();
            if std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
                && crate::http_get(etcd_port, "/health").contains("true")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy in time:\n{}",
                tail(&etcd.log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let p = |f: &str| d.join(f).to_str().unwrap().to_string();
        let apiserver = Proc::spawn(
            "kube-apiserver",
            Command::new(&apiserver_bin)
                .arg(format!("--etcd-servers={etcd_url}"))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                .arg(format!("--secure-port={port}"))
                .arg("--insecure-port=0")
                .arg(format!("--cert-dir={}", p("certs")))
                .arg(format!("--tls-cert-file={}", p("apiserver.pem")))
                .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
                .arg(format!("--client-ca-file={}", p("ca.pem")))
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!("--service-account-key-file={}", p("sa.pub")))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    p("sa.key")
                ))
                .arg("--service-cluster-ip-range=10.96.0.0/16")
                .arg("--authorization-mode=RBAC")
                .arg("--endpoint-reconciler-type=none")
                .arg("--allow-privileged=true")
                .arg("--disable-admission-plugins=ServiceAccount")
                .arg("--profiling=false")
                .arg(format!("--audit-policy-file={}", p("audit-policy.yaml")))
                .arg(format!("--audit-log-path={}", p("audit.log")))
                .arg("--audit-log-format=json")
                .arg("--audit-log-mode=blocking")
                .arg("--v=0"),
            d.join("kube-apiserver.log"),
        );

        let admin = d.join("admin.kubeconfig");
        let mut cluster = Cluster {
            apiserver,
            etcd,
            ca,
            url,
            admin: admin.clone(),
            audit_log: d.join("audit.log"),
            dir,
        };
        cluster.write_kubeconfig(&admin, "vigil-e2e-admin", "system:masters", "default");

        let deadline = Instant::now() + ready_timeout();
        loop {
            cluster.apiserver.check_running();
            cluster.etcd.check_running();
            let out = cluster.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready in time ({}):\n{}",
                describe(&out),
                tail(&cluster.apiserver.log, 40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        cluster
    }

    /// The test's working directory (PKI, kubeconfigs, logs, etcd data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's log (for failure messages).
    pub fn apiserver_log(&self) -> String {
        tail(&self.apiserver.log, 60)
    }

    /// Writes a kubeconfig for a client certificate with common name `user` (the user name)
    /// and organization `group` (a group); `namespace` is the context's default namespace.
    fn write_kubeconfig(&self, path: &Path, user: &str, group: &str, namespace: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, group);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: vigil-e2e
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: vigil-e2e
  context:
    cluster: vigil-e2e
    user: {user}
    namespace: {namespace}
current-context: vigil-e2e
",
            url = self.url,
            ca = b64(&self.ca.pem()),
            cert = b64(&cert.pem()),
            key = b64(&key.serialize_pem()),
        );
        std::fs::write(path, text).unwrap();
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name` (user
    /// `system:serviceaccount:NAMESPACE:NAME`, what RBAC bindings to a ServiceAccount match),
    /// with `namespace` as the default namespace. Its requests are recorded in
    /// [`Cluster::audit_log`].
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("sa-{namespace}-{name}.kubeconfig"));
        // The group only selects the audit rule; no RBAC binding names it.
        self.write_kubeconfig(
            &path,
            &format!("system:serviceaccount:{namespace}:{name}"),
            AUDITED_GROUP,
            namespace,
        );
        path
    }

    /// `kubectl ARGS` as the admin; the output whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    /// `kubectl ARGS` with `stdin` as its input.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_tool(&k8s_bin("kubectl"), args, stdin, &self.tool_env())
    }

    /// `kubectl ARGS` that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml` as the admin; must succeed; kubectl's stdout.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_in(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ARGS -o json` as a JSON value; `None` when it is not found.
    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("NotFound") || err.contains("not found"),
                "kubectl {all:?} failed: {}",
                describe(&out)
            );
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("kubectl -o json"))
    }

    /// `helm ARGS` as the admin; the output whatever the exit status.
    pub fn helm(&self, args: &[&str]) -> Output {
        run_tool(&k8s_bin("helm"), args, None, &self.tool_env())
    }

    /// `helm ARGS` that must succeed; its stdout.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn tool_env(&self) -> Vec<(String, PathBuf)> {
        let d = self.dir.path();
        vec![
            ("KUBECONFIG".into(), self.admin.clone()),
            ("HOME".into(), d.join("home")),
            ("HELM_CACHE_HOME".into(), d.join("helm/cache")),
            ("HELM_CONFIG_HOME".into(), d.join("helm/config")),
            ("HELM_DATA_HOME".into(), d.join("helm/data")),
        ]
    }

    /// `helm install vigil charts/vigil -n NAMESPACE` (the namespace is created) with `--set`
    /// `sets`; helm's output.
    pub fn install_chart(&self, namespace: &str, sets: &[&str]) -> String {
        self.kubectl_ok(&["create", "namespace", namespace]);
        let chart = crate_root().join("charts/vigil");
        let mut args = vec!["install", "vigil", chart.to_str().unwrap(), "-n", namespace];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = self.helm_ok(&args);
        self.wait_for_crds();
        out
    }

    /// Every CRD of the cluster is served: right after `helm install` the API server may not
    /// list a new CRD's kind yet, and a `kubectl apply` of it then fails with "no matches for
    /// kind". A `kubectl get` of each that succeeds also refreshes kubectl's discovery cache.
    pub fn wait_for_crds(&self) {
        let crds = self.kubectl_ok(&["get", "crd", "-o", "name"]);
        for crd in crds.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let name = crd.rsplit('/').next().unwrap_or(crd);
            crate::wait_for(
                Duration::from_secs(60),
                &format!("CRD {name} served"),
                || {
                    self.kubectl(&["get", name, "-A", "-o", "name"])
                        .status
                        .success()
                        .then_some(())
                },
            );
        }
    }

    /// The arguments of `vigil-operator run` in the chart's operator Deployment (`NAMESPACE/
    /// vigil-operator`), without `run` and the listen addresses: a replica started here gets
    /// the rest as the Deployment's pods would.
    pub fn operator_args(&self, namespace: &str) -> Vec<String> {
        let d = self
            .get_json(&["deployment", "vigil-operator", "-n", namespace])
            .expect("the chart's operator Deployment");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"][0], "vigil-operator", "{c}");
        c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .filter(|a| {
                a != "run"
                    && !a.starts_with("--grpc-address=")
                    && !a.starts_with("--metrics-address=")
            })
            .collect()
    }

    /// Every audit event of ServiceAccount identities so far (`Metadata` level: user, verb,
    /// resource, subresource, namespace, name, response code).
    pub fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Audit events of `user` answered with 403 Forbidden, as "verb resource[/sub] (message)".
    pub fn forbidden(&self, user: &str) -> Vec<String> {
        self.audit_events()
            .iter()
            .filter(|e| e["user"]["username"] == user)
            .filter(|e| e["responseStatus"]["code"] == 403)
            .map(|e| {
                format!(
                    "{} {} ({})",
                    e["verb"].as_str().unwrap_or("?"),
                    audit_resource(e),
                    e["responseStatus"]["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// The repository's root directory.
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.apiserver.stop();
        self.etcd.stop();
        // VIGIL_K8S_KEEP=1: keep the logs, the audit log, the kubeconfigs and etcd's data.
        if std::env::var_os("VIGIL_K8S_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("cluster files kept in {}", dir.keep().display());
        }
    }
}

/// `group/resource[/subresource]` of an audit event (the core group as "").
pub fn audit_resource(e: &Value) -> String {
    let r = &e["objectRef"];
    let mut s = format!(
        "{}/{}",
        r["apiGroup"].as_str().unwrap_or(""),
        r["resource"].as_str().unwrap_or("?")
    );
    if let Some(sub) = r["subresource"].as_str() {
        s.push('/');
        s.push_str(sub);
    }
    s
}

/// `helm ARGS` without a cluster (template, lint, `install --dry-run=client`), with helm's
/// home directories in a fresh temporary directory.
pub fn helm_local(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let d = home.path();
    run_tool(
        &k8s_bin("helm"),
        args,
        None,
        &[
            ("HOME".into(), d.to_path_buf()),
            ("HELM_CACHE_HOME".into(), d.join("cache")),
            ("HELM_CONFIG_HOME".into(), d.join("config")),
            ("HELM_DATA_HOME".into(), d.join("data")),
            // No cluster: a kubeconfig that points nowhere, so nothing is looked up.
            ("KUBECONFIG".into(), d.join("no-kubeconfig")),
        ],
    )
}

fn run_tool(bin: &Path, args: &[&str], stdin: Option<&str>, env: &[(String, PathBuf)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A TCP front for several backends, as a Service's virtual IP is for its pods: each new
/// connection goes to the next backend in turn that accepts it. Stops when dropped.
pub struct RoundRobin {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RoundRobin {
    pub fn start(backends: Vec<u16>) -> RoundRobin {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            while !s.load(Ordering::SeqCst) {
                let (client, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => continue,
                };
                client.set_nonblocking(false).unwrap();
                let mut upstream = None;
                for _ in 0..backends.len() {
                    let b = backends[next % backends.len()];
                    next += 1;
                    if let Ok(u) = std::net::TcpStream::connect(("127.0.0.1", b)) {
                        upstream = Some(u);
                        break;
                    }
                }
                let Some(upstream) = upstream else {
                    continue; // every backend refused: the client sees the connection close
                };
                pipe(client, upstream);
            }
        });
        RoundRobin { port, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies both directions between two sockets until either side closes.
fn pipe(a: std::net::TcpStream, b: std::net::TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let copy = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    };
    copy(a, b2);
    copy(b, a2);
}

/// Lines of `kubectl get` table output split into columns (whitespace-separated), header first.
pub fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// Reads a process's stderr lines into a shared string (for operator replicas started here).
pub fn collect_lines(
    pipe: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let sink = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s = sink.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut g = s.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    sink
}
