//! `vigil status`: health, version, probed kernel features, BPF programs and policies.

use vigil_api::wire::{sensor_info, tetragon};

use crate::policy_remote;

use super::connection::{connect, status_line};
use super::{Target, runtime};

/// `vigil status`: health, version and the kernel features the sensor probed.
pub fn status(target: &Target, json: bool) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async {
        let ch = match connect(target).await {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("vigil status: {msg}");
                return Ok(2);
            }
        };
        let mut fgs =
            tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient::new(ch.clone());
        let mut info = sensor_info::sensor_info_client::SensorInfoClient::new(ch);
        let fail = |s: tonic::Status| {
            eprintln!("vigil status: {}", status_line(target, &s));
            Ok(2)
        };
        let health = match fgs
            .get_health(tetragon::GetHealthStatusRequest::default())
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return fail(s),
        };
        let version = match fgs.get_version(tetragon::GetVersionRequest {}).await {
            Ok(r) => r.into_inner().version,
            Err(s) => return fail(s),
        };
        let info = match info.get_info(sensor_info::GetInfoRequest {}).await {
            Ok(r) => r.into_inner(),
            Err(s) => return fail(s),
        };
        // Policies: a sensor without a policy engine answers UNAVAILABLE; that is not a
        // failure of `vigil status`.
        let policies = match fgs
            .list_tracing_policies(tetragon::ListTracingPoliciesRequest {})
            .await
        {
            Ok(r) => Ok(r.into_inner().policies),
            Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unimplemented => {
                Err(s.message().to_string())
            }
            Err(s) => return fail(s),
        };
        let healthy = health
            .health_status
            .iter()
            .all(|h| h.status == tetragon::HealthStatusResult::HealthStatusRunning as i32)
            && !health.health_status.is_empty();
        let health_text = if healthy { "running" } else { "not running" };
        if json {
            let features: serde_json::Map<String, serde_json::Value> = info
                .features
                .iter()
                .map(|f| (f.name.clone(), serde_json::Value::Bool(f.available)))
                .collect();
            let v = serde_json::json!({
                "health": health_text,
                "version": version,
                "node_name": info.node_name,
                "kernel_release": info.kernel_release,
                "subscribers": info.subscribers,
                "events_dropped_total": info.events_dropped_total,
                "features": features,
                "self_protection": info.self_protection,
                "self_protection_detail": info.self_protection_detail,
                "programs": info.programs.iter().map(|p| serde_json::json!({
                    "name": p.name,
                    "loads": p.loads,
                    "last_load_seconds": p.last_load_seconds,
                    "verified_insns": p.verified_insns,
                })).collect::<Vec<_>>(),
                "policies": match &policies {
                    Ok(p) => serde_json::Value::Array(p.iter().map(policy_remote::policy_json).collect()),
                    Err(_) => serde_json::Value::Null,
                },
                "policies_error": policies.as_ref().err(),
            });
            println!("{v}");
        } else {
            println!("health:    {health_text}");
            println!("version:   {version}");
            println!("node:      {}", info.node_name);
            println!("kernel:    {}", info.kernel_release);
            println!(
                "clients:   {} (events dropped for slow clients: {})",
                info.subscribers, info.events_dropped_total
            );
            println!(
                "self-protection: {}",
                self_protection_text(&info.self_protection, &info.self_protection_detail)
            );
            println!("features:");
            for f in &info.features {
                let yes = if f.available { "yes" } else { "no" };
                let detail = f.detail.lines().next().unwrap_or("").trim();
                if detail.is_empty() {
                    println!("  {:<16} {yes}", f.name);
                } else {
                    println!("  {:<16} {yes}  ({detail})", f.name);
                }
            }
            print!("{}", program_lines(&info.programs));
            print!("{}", policy_lines(&policies));
        }
        Ok(if healthy { 0 } else { 1 })
    })
}

/// `vigil status`'s self-protection line: `off`, `active`, or `unavailable (<reason>)`. A
/// sensor older than the field answers "": it has no self-protection.
pub fn self_protection_text(state: &str, detail: &str) -> String {
    match (state, detail) {
        ("", _) => "off".into(),
        (s, "") => s.into(),
        (s, d) => format!("{s} ({d})"),
    }
}

/// The `programs:` section of `vigil status`: what loading each BPF program cost.
pub fn program_lines(programs: &[sensor_info::BpfProgram]) -> String {
    use std::fmt::Write as _;
    if programs.is_empty() {
        return "programs:  none loaded\n".into();
    }
    let width = programs.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "programs:  {} (load time of the last load, verifier instructions)\n",
        programs.len()
    );
    for p in programs {
        let insns = p
            .verified_insns
            .map(|n| format!("{n} insns"))
            .unwrap_or_else(|| "insns not reported by this kernel".into());
        let loads = if p.loads > 1 {
            format!(", {} loads", p.loads)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<width$} {:>7.1} ms  {insns}{loads}",
            p.name,
            p.last_load_seconds * 1000.0
        );
    }
    out
}

/// The `policies:` section of `vigil status`.
pub fn policy_lines(policies: &Result<Vec<tetragon::TracingPolicyStatus>, String>) -> String {
    use std::fmt::Write as _;
    match policies {
        Err(why) => format!("policies:  unavailable ({why})\n"),
        Ok(p) if p.is_empty() => "policies:  none\n".into(),
        Ok(p) => {
            let width = p
                .iter()
                .map(|x| policy_remote::display_key(x).len())
                .max()
                .unwrap_or(0)
                .max(14);
            let mut out = format!("policies:  {}\n", p.len());
            for x in p {
                let _ = writeln!(
                    out,
                    "  {:<width$} {:<9} {:<8} hooks {}",
                    policy_remote::display_key(x),
                    policy_remote::state_word(x.state),
                    policy_remote::mode_word(x.mode),
                    policy_remote::hooks_column(x),
                );
            }
            out
        }
    }
}
