//! `vigil policy add|delete|list|enable|disable|set-mode`: managing the policies of a running
//! sensor through `tetragon.FineGuidanceSensors` (the connection code is [`crate::remote`]'s).
//!
//! Exit codes: 0 success; 1 the policy was refused (invalid, already there, not found, cannot
//! run here) or nothing of it could be loaded; 2 the input could not be read or the sensor could
//! not be reached (or has no policy engine).

use std::fmt::Write as _;

use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use vigil_api::policy;
use vigil_api::wire::tetragon::{
    self, TracingPolicyMode, TracingPolicyState, TracingPolicyStatus,
    fine_guidance_sensors_client::FineGuidanceSensorsClient,
};

use crate::remote::{self, Target};

pub const EXIT_REFUSED: i32 = 1;
pub const EXIT_UNREACHABLE: i32 = 2;

/// A failed call: the line to print and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    fn unreachable(message: String) -> Failure {
        Failure {
            message,
            code: EXIT_UNREACHABLE,
        }
    }
}

/// The exit status for a status the sensor returned.
pub fn exit_code(code: Code) -> i32 {
    match code {
        Code::InvalidArgument | Code::AlreadyExists | Code::NotFound | Code::FailedPrecondition => {
            EXIT_REFUSED
        }
        _ => EXIT_UNREACHABLE,
    }
}

fn failure(target: &Target, s: &tonic::Status) -> Failure {
    let message = match s.code() {
        // The sensor's own words (the validator's text for a bad manifest).
        Code::InvalidArgument | Code::AlreadyExists | Code::NotFound | Code::FailedPrecondition => {
            s.message().to_string()
        }
        _ => remote::status_line(target, s),
    };
    Failure {
        message,
        code: exit_code(s.code()),
    }
}

async fn client(target: &Target) -> Result<FineGuidanceSensorsClient<Channel>, Failure> {
    remote::connect(target)
        .await
        .map(FineGuidanceSensorsClient::new)
        .map_err(Failure::unreachable)
}

/// Lists the sensor's policies.
pub async fn list(target: &Target) -> Result<Vec<TracingPolicyStatus>, Failure> {
    let mut c = client(target).await?;
    c.list_tracing_policies(tetragon::ListTracingPoliciesRequest {})
        .await
        .map(|r| r.into_inner().policies)
        .map_err(|s| failure(target, &s))
}

/// Sends one manifest; returns the policy as loaded (when the sensor says, i.e. Vigil).
pub async fn add(target: &Target, yaml: String) -> Result<Option<TracingPolicyStatus>, Failure> {
    let mut c = client(target).await?;
    c.add_tracing_policy(tetragon::AddTracingPolicyRequest { yaml })
        .await
        .map(|r| r.into_inner().vigil_status)
        .map_err(|s| failure(target, &s))
}

pub async fn delete(target: &Target, name: &str, namespace: &str) -> Result<(), Failure> {
    let mut c = client(target).await?;
    c.delete_tracing_policy(tetragon::DeleteTracingPolicyRequest {
        name: name.into(),
        namespace: namespace.into(),
    })
    .await
    .map(|_| ())
    .map_err(|s| failure(target, &s))
}

/// ConfigureTracingPolicy: switch on/off and/or change the mode.
pub async fn configure(
    target: &Target,
    name: &str,
    namespace: &str,
    enable: Option<bool>,
    mode: Option<TracingPolicyMode>,
) -> Result<Option<TracingPolicyStatus>, Failure> {
    let mut c = client(target).await?;
    c.configure_tracing_policy(tetragon::ConfigureTracingPolicyRequest {
        name: name.into(),
        namespace: namespace.into(),
        enable,
        mode: mode.map(|m| m as i32),
    })
    .await
    .map(|r| r.into_inner().vigil_status)
    .map_err(|s| failure(target, &s))
}

/// What a user calls a state.
pub fn state_word(state: i32) -> &'static str {
    match TracingPolicyState::try_from(state) {
        Ok(TracingPolicyState::TpStateEnabled) => "enabled",
        Ok(TracingPolicyState::TpStateDisabled) => "disabled",
        Ok(TracingPolicyState::TpStatePartiallyEnabled) => "partial",
        Ok(TracingPolicyState::TpStateLoadError | TracingPolicyState::TpStateError) => "error",
        Ok(TracingPolicyState::TpStateLoading) => "loading",
        Ok(TracingPolicyState::TpStateUnloading) => "unloading",
        Ok(TracingPolicyState::TpStateSkipped) => "skipped",
        Ok(TracingPolicyState::TpStateUnknown) | Err(_) => "unknown",
    }
}

pub fn mode_word(mode: i32) -> &'static str {
    match TracingPolicyMode::try_from(mode) {
        Ok(TracingPolicyMode::TpModeEnforce) => "enforce",
        Ok(TracingPolicyMode::TpModeMonitor) => "monitor",
        Ok(TracingPolicyMode::TpModeMonitorOnly) => "monitor-only",
        Ok(TracingPolicyMode::TpModeUnknown) | Err(_) => "unknown",
    }
}

/// `namespace/name`, or `name` for a cluster-scoped policy.
pub fn display_key(p: &TracingPolicyStatus) -> String {
    if p.namespace.is_empty() {
        p.name.clone()
    } else {
        format!("{}/{}", p.namespace, p.name)
    }
}

/// `loaded/total` hooks, `-` when the sensor does not report hooks (Tetragon).
pub fn hooks_column(p: &TracingPolicyStatus) -> String {
    match &p.vigil {
        Some(v) => {
            let loaded = v.hooks.iter().filter(|h| h.loaded).count();
            format!("{loaded}/{}", v.hooks.len())
        }
        None => "-".into(),
    }
}

fn counters(p: &TracingPolicyStatus) -> tetragon::VigilPolicyCounters {
    match p.vigil.as_ref().and_then(|v| v.counters) {
        Some(c) => c,
        None => {
            let a = p.stats.and_then(|s| s.action_counters).unwrap_or_default();
            tetragon::VigilPolicyCounters {
                posted: a.post,
                signal: a.signal,
                r#override: a.r#override,
                ..Default::default()
            }
        }
    }
}

/// Mean nanoseconds of one evaluation of the policy's hooks (from the timed sample).
fn ns_per_evaluation(c: &tetragon::VigilPolicyCounters) -> Option<f64> {
    (c.cost_samples > 0).then(|| c.cost_ns as f64 / c.cost_samples as f64)
}

/// One policy as the JSON object of `vigil policy list -o json`.
pub fn policy_json(p: &TracingPolicyStatus) -> Value {
    let c = counters(p);
    let hooks: Vec<Value> = p
        .vigil
        .iter()
        .flat_map(|v| v.hooks.iter())
        .map(|h| {
            json!({
                "source": h.source,
                "target": h.target,
                "mechanism": h.mechanism,
                "loaded": h.loaded,
                "error": h.error,
            })
        })
        .collect();
    json!({
        "id": p.id,
        "name": p.name,
        "namespace": p.namespace,
        "state": state_word(p.state),
        "mode": mode_word(p.mode),
        "enabled": p.enabled,
        "error": p.error,
        "demotion": p.vigil.as_ref().map(|v| v.demotion.as_str()).filter(|d| !d.is_empty()),
        "origin": p.vigil.as_ref().map(|v| v.origin.as_str()).unwrap_or(""),
        "sensors": p.sensors,
        "kernel_memory_bytes": p.kernel_memory_bytes,
        "hooks": hooks,
        "stats": {
            "matched": c.matched,
            "posted": c.posted,
            "lost": c.lost,
            "rate_limited": c.rate_limited,
            "sigkill": c.sigkill,
            "signal": c.signal,
            "override": c.r#override,
            "monitored": c.monitored,
            "evaluations": c.evaluations,
            "ns_per_evaluation": ns_per_evaluation(&c),
            "cpu_seconds": ns_per_evaluation(&c).map_or(0.0, |ns| ns * c.evaluations as f64 / 1e9),
        },
    })
}

/// The policies as a JSON array.
pub fn render_json(policies: &[TracingPolicyStatus]) -> String {
    Value::Array(policies.iter().map(policy_json).collect()).to_string()
}

/// Why the policy is not fully running: its error, or what its CPU budget did to it.
fn reason_column(p: &TracingPolicyStatus) -> String {
    let demotion = p.vigil.as_ref().map_or("", |v| v.demotion.as_str());
    match (first_line(&p.error), demotion) {
        (e, "") => e.to_string(),
        ("", d) => format!("demoted: {}", first_line(d)),
        (e, d) => format!("{e}; demoted: {}", first_line(d)),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// The policies as a table; hooks that are not loaded follow their policy's row.
pub fn render_table(policies: &[TracingPolicyStatus]) -> String {
    if policies.is_empty() {
        return "no policies loaded\n".into();
    }
    let header = [
        "NAME",
        "NAMESPACE",
        "STATE",
        "MODE",
        "HOOKS",
        "MATCHED",
        "POSTED",
        "NS/EVAL",
        "ORIGIN",
        "REASON",
    ];
    let rows: Vec<[String; 10]> = policies
        .iter()
        .map(|p| {
            let c = counters(p);
            let matched = if p.vigil.is_some() {
                c.matched.to_string()
            } else {
                "-".into()
            };
            [
                p.name.clone(),
                if p.namespace.is_empty() {
                    "-".into()
                } else {
                    p.namespace.clone()
                },
                state_word(p.state).into(),
                mode_word(p.mode).into(),
                hooks_column(p),
                matched,
                c.posted.to_string(),
                ns_per_evaluation(&c).map_or_else(|| "-".into(), |ns| format!("{ns:.0}")),
                p.vigil
                    .as_ref()
                    .map(|v| v.origin.clone())
                    .filter(|o| !o.is_empty())
                    .unwrap_or_else(|| "-".into()),
                reason_column(p),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}   ", w = widths[i]);
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(&header);
    out.push('\n');
    for (p, r) in policies.iter().zip(&rows) {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
        out.push('\n');
        for h in p.vigil.iter().flat_map(|v| &v.hooks).filter(|h| !h.loaded) {
            let _ = writeln!(
                out,
                "  hook {} ({}) not loaded: {}",
                h.source,
                h.target,
                first_line(&h.error)
            );
        }
    }
    out
}

/// The local check before sending: exactly one valid policy document. Returns the lines to
/// print (the validator's errors, each prefixed by `shown`) on failure.
pub fn check_manifest(shown: &str, text: &str) -> Result<(), Vec<String>> {
    let prefix = |errors: policy::PolicyErrors| -> Vec<String> {
        errors.iter().map(|e| format!("{shown}: {e}")).collect()
    };
    let docs = policy::compile_each(text).map_err(prefix)?;
    if docs.len() != 1 {
        return Err(vec![format!(
            "{shown}: holds {} policies; `vigil policy add` takes one per file",
            docs.len()
        )]);
    }
    let mut errors = Vec::new();
    for d in docs {
        if let Err(e) = d {
            errors.extend(prefix(e));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The summary printed after `add`/`enable`/`disable`/`set-mode`.
pub fn summary(verb: &str, p: &TracingPolicyStatus) -> String {
    let mut out = format!(
        "{verb} policy {}: {}, mode {}, hooks {} loaded",
        display_key(p),
        state_word(p.state),
        mode_word(p.mode),
        hooks_column(p)
    );
    if !p.error.is_empty() {
        let _ = write!(out, " ({})", first_line(&p.error));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tetragon::{VigilHookStatus, VigilPolicyCounters, VigilPolicyStatus};

    fn sample() -> Vec<TracingPolicyStatus> {
        vec![
            TracingPolicyStatus {
                id: 1,
                name: "sys-enter".into(),
                state: TracingPolicyState::TpStateEnabled as i32,
                mode: TracingPolicyMode::TpModeEnforce as i32,
                enabled: true,
                sensors: vec!["tracepoint".into()],
                vigil: Some(VigilPolicyStatus {
                    origin: "api".into(),
                    hooks: vec![VigilHookStatus {
                        source: "spec.tracepoints[0]".into(),
                        target: "raw_syscalls/sys_enter".into(),
                        mechanism: "tracepoint".into(),
                        loaded: true,
                        error: String::new(),
                    }],
                    counters: Some(VigilPolicyCounters {
                        matched: 12,
                        posted: 10,
                        monitored: 3,
                        evaluations: 640,
                        cost_samples: 10,
                        cost_ns: 4_206,
                        ..Default::default()
                    }),
                    demotion: String::new(),
                }),
                ..Default::default()
            },
            TracingPolicyStatus {
                id: 2,
                name: "open-deny".into(),
                namespace: "prod".into(),
                state: TracingPolicyState::TpStatePartiallyEnabled as i32,
                mode: TracingPolicyMode::TpModeMonitor as i32,
                error: "1 of 2 hooks not loaded\nsecond line".into(),
                vigil: Some(VigilPolicyStatus {
                    origin: "file:/etc/vigil/policies/open.yaml".into(),
                    hooks: vec![
                        VigilHookStatus {
                            source: "spec.kprobes[0]".into(),
                            target: "security_file_open".into(),
                            mechanism: String::new(),
                            loaded: false,
                            error: "kprobes not available".into(),
                        },
                        VigilHookStatus {
                            source: "spec.tracepoints[0]".into(),
                            target: "syscalls/sys_enter_openat".into(),
                            mechanism: "tracepoint".into(),
                            loaded: true,
                            error: String::new(),
                        },
                    ],
                    counters: None,
                    demotion: String::new(),
                }),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn table_has_the_columns_and_one_row_per_policy_with_unloaded_hooks_below() {
        let text = render_table(&sample());
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "NAMESPACE",
                "STATE",
                "MODE",
                "HOOKS",
                "MATCHED",
                "POSTED",
                "NS/EVAL",
                "ORIGIN",
                "REASON"
            ]
        );
        let row1: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row1,
            [
                "sys-enter",
                "-",
                "enabled",
                "enforce",
                "1/1",
                "12",
                "10",
                "421",
                "api"
            ]
        );
        let row2: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            &row2[..9],
            [
                "open-deny",
                "prod",
                "partial",
                "monitor",
                "1/2",
                "0",
                "0",
                "-",
                "file:/etc/vigil/policies/open.yaml"
            ]
        );
        // Only the error's first line, so a row stays a row.
        assert!(lines[2].ends_with("1 of 2 hooks not loaded"), "{text}");
        assert_eq!(
            lines[3],
            "  hook spec.kprobes[0] (security_file_open) not loaded: kprobes not available"
        );
        assert_eq!(lines.len(), 4, "{text}");
        // Columns line up: STATE starts at the same offset in the header and every row.
        let col = lines[0].find("STATE").unwrap();
        assert_eq!(&lines[1][col..col + 7], "enabled");
        assert_eq!(&lines[2][col..col + 7], "partial");
    }

    #[test]
    fn a_demoted_policy_shows_why_in_the_table_and_the_json() {
        let mut policies = sample();
        policies[0].state = TracingPolicyState::TpStateDisabled as i32;
        if let Some(v) = policies[0].vigil.as_mut() {
            v.demotion = "over its CPU budget: 3.000% of one CPU over 10s, budget 1%; \
                          switched to disabled"
                .into();
        }
        let text = render_table(&policies);
        let row1 = text.lines().nth(1).unwrap();
        assert!(
            row1.ends_with("demoted: over its CPU budget: 3.000% of one CPU over 10s, budget 1%; switched to disabled"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&render_json(&policies)).unwrap();
        assert!(
            v[0]["demotion"]
                .as_str()
                .unwrap()
                .contains("switched to disabled")
        );
        assert!(v[1]["demotion"].is_null());
    }

    #[test]
    fn empty_list_says_so() {
        assert_eq!(render_table(&[]), "no policies loaded\n");
        assert_eq!(render_json(&[]), "[]");
    }

    #[test]
    fn json_has_every_field_and_per_hook_status() {
        let v: Value = serde_json::from_str(&render_json(&sample())).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0]["name"], "sys-enter");
        assert_eq!(a[0]["namespace"], "");
        assert_eq!(a[0]["state"], "enabled");
        assert_eq!(a[0]["mode"], "enforce");
        assert_eq!(a[0]["enabled"], true);
        assert_eq!(a[0]["origin"], "api");
        assert_eq!(a[0]["sensors"], json!(["tracepoint"]));
        assert_eq!(a[0]["stats"]["matched"], 12);
        assert_eq!(a[0]["stats"]["posted"], 10);
        assert_eq!(a[0]["stats"]["monitored"], 3);
        assert_eq!(a[0]["stats"]["evaluations"], 640);
        assert_eq!(a[0]["stats"]["ns_per_evaluation"], 420.6);
        assert!((a[0]["stats"]["cpu_seconds"].as_f64().unwrap() - 640.0 * 420.6e-9).abs() < 1e-12);
        assert!(a[1]["stats"]["ns_per_evaluation"].is_null());
        assert_eq!(
            a[0]["hooks"],
            json!([{
                "source": "spec.tracepoints[0]",
                "target": "raw_syscalls/sys_enter",
                "mechanism": "tracepoint",
                "loaded": true,
                "error": "",
            }])
        );
        assert_eq!(a[1]["state"], "partial");
        assert_eq!(a[1]["mode"], "monitor");
        assert_eq!(a[1]["hooks"][0]["loaded"], false);
        assert_eq!(a[1]["hooks"][0]["error"], "kprobes not available");
        assert_eq!(a[1]["error"], "1 of 2 hooks not loaded\nsecond line");
        for key in [
            "id",
            "kernel_memory_bytes",
            "stats",
            "hooks",
            "error",
            "origin",
        ] {
            assert!(a[1].get(key).is_some(), "{key} missing");
        }
    }

    #[test]
    fn a_tetragon_status_without_vigil_detail_still_renders() {
        let p = TracingPolicyStatus {
            name: "t".into(),
            state: TracingPolicyState::TpStateLoadError as i32,
            mode: TracingPolicyMode::TpModeUnknown as i32,
            stats: Some(tetragon::TracingPolicyStats {
                action_counters: Some(tetragon::TracingPolicyActionCounters {
                    post: 4,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let row: Vec<String> = render_table(std::slice::from_ref(&p))
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(row, ["t", "-", "error", "unknown", "-", "-", "4", "-", "-"]);
        let v = policy_json(&p);
        assert_eq!(v["stats"]["posted"], 4);
        assert_eq!(v["hooks"], json!([]));
    }

    #[test]
    fn status_codes_become_exit_codes() {
        assert_eq!(exit_code(Code::InvalidArgument), EXIT_REFUSED);
        assert_eq!(exit_code(Code::AlreadyExists), EXIT_REFUSED);
        assert_eq!(exit_code(Code::NotFound), EXIT_REFUSED);
        assert_eq!(exit_code(Code::FailedPrecondition), EXIT_REFUSED);
        assert_eq!(exit_code(Code::Unavailable), EXIT_UNREACHABLE);
        assert_eq!(exit_code(Code::Internal), EXIT_UNREACHABLE);
    }

    #[test]
    fn manifest_check_gives_the_validators_errors_and_wants_one_policy() {
        let good = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: a}\n\
                    spec:\n  tracepoints:\n  - {subsystem: raw_syscalls, event: sys_enter}\n";
        assert_eq!(check_manifest("f.yaml", good), Ok(()));
        let bad = good.replace("raw_syscalls, event", "raw_syscalls, evnt");
        let expected: Vec<String> = policy::compile_yaml(&bad)
            .unwrap_err()
            .iter()
            .map(|e| format!("f.yaml: {e}"))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(check_manifest("f.yaml", &bad), Err(expected));
        let two = format!("{good}---\n{}", good.replace("name: a", "name: b"));
        let err = check_manifest("f.yaml", &two).unwrap_err();
        assert_eq!(
            err,
            vec!["f.yaml: holds 2 policies; `vigil policy add` takes one per file".to_string()]
        );
    }

    #[test]
    fn status_section_lists_policies_or_says_why_not() {
        let text = crate::remote::policy_lines(&Ok(sample()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "policies:  2");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["sys-enter", "enabled", "enforce", "hooks", "1/1"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["prod/open-deny", "partial", "monitor", "hooks", "1/2"]
        );
        assert_eq!(
            crate::remote::policy_lines(&Err("policy engine not running".into())),
            "policies:  unavailable (policy engine not running)\n"
        );
    }
}
