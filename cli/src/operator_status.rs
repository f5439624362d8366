//! `vigil status --operator ADDR`: the operator's view, every policy × every targeted node.

use serde_json::{Value, json};
use vigil_api::wire::policy_sync as pb;
use vigil_api::wire::policy_sync::policy_sync_client::PolicySyncClient;

use crate::remote::{self, Target};

/// `HOST:PORT` → `http://HOST:PORT`.
pub fn operator_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

fn state_name(s: pb::PolicyState) -> &'static str {
    match s {
        pb::PolicyState::Ready => "ready",
        pb::PolicyState::Partial => "partial",
        pb::PolicyState::Failed => "failed",
        pb::PolicyState::Pending => "pending",
        pb::PolicyState::Unspecified => "unknown",
    }
}

fn key(name: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

pub fn to_json(s: &pb::GetStatusResponse) -> Value {
    let nodes: Vec<Value> = s
        .nodes
        .iter()
        .map(|n| {
            let labels: std::collections::BTreeMap<_, _> = n.labels.iter().collect();
            json!({
                "name": n.name,
                "labels": labels,
                "kernel_release": n.kernel_release,
                "sensor_version": n.sensor_version,
                "connected_seconds": n.connected_seconds,
                "pods": n.pods,
            })
        })
        .collect();
    let policies: Vec<Value> = s
        .policies
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "namespace": p.namespace,
                "generation": p.generation,
                "version": p.version,
                "targeted": p.targeted,
                "ready": p.ready,
                "partial": p.partial,
                "failed": p.failed,
                "pending": p.pending,
                "demoted": p.demoted,
                "rollout": p.rollout.as_ref().map(|r| json!({
                    "stage": r.stage,
                    "canary_nodes": r.canary_nodes,
                    "message": r.message,
                })),
                "nodes": p.nodes.iter().map(|n| json!({
                    "node": n.node,
                    "state": state_name(n.state()),
                    "reason": n.reason,
                    "demotion": (!n.demotion.is_empty()).then_some(&n.demotion),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "nodes": nodes, "policies": policies })
}

/// A table: one line per policy (READY = ready/targeted), then one line per node that is not
/// ready with its state and reason; then the connected nodes.
pub fn render_table(s: &pb::GetStatusResponse) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "POLICY".into(),
        "NODE".into(),
        "STATE".into(),
        "READY".into(),
        "ERROR".into(),
    ]];
    for p in &s.policies {
        let overall = if p.targeted == 0 {
            "no nodes"
        } else if p.ready == p.targeted {
            "ready"
        } else if p.failed > 0 {
            "failed"
        } else if p.partial > 0 {
            "partial"
        } else {
            "pending"
        };
        rows.push([
            key(&p.name, &p.namespace),
            "*".into(),
            overall.into(),
            format!("{}/{}", p.ready, p.targeted),
            // A staged rollout says where it stands on the policy's line.
            p.rollout
                .as_ref()
                .map(|r| r.message.clone())
                .unwrap_or_default(),
        ]);
        for n in &p.nodes {
            rows.push([
                String::new(),
                n.node.clone(),
                if n.demotion.is_empty() {
                    state_name(n.state()).into()
                } else {
                    "demoted".into()
                },
                String::new(),
                match (n.reason.as_str(), n.demotion.as_str()) {
                    (r, "") => r.to_string(),
                    ("", d) => d.to_string(),
                    (r, d) => format!("{r}; {d}"),
                },
            ]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, w) in widths.iter().enumerate() {
            line.push_str(&format!("{:<w$}  ", r[i], w = *w));
        }
        line.push_str(&r[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!("\nnodes connected: {}\n", s.nodes.len()));
    for n in &s.nodes {
        let labels: std::collections::BTreeMap<_, _> = n.labels.iter().collect();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "  {}  kernel {}  pods {}  labels {}\n",
            n.name,
            if n.kernel_release.is_empty() {
                "?"
            } else {
                &n.kernel_release
            },
            n.pods,
            if labels.is_empty() {
                "-".to_string()
            } else {
                labels.join(",")
            }
        ));
    }
    out
}

/// Exit status: 0 shown; 2 the operator could not be reached. An `https://` address is
/// reached over TLS with `tls` (`--tls-ca`, and `--tls-cert`/`--tls-key` for mTLS).
pub fn run(addr: &str, tls: &remote::TlsArgs, json: bool) -> anyhow::Result<i32> {
    let url = operator_url(addr);
    let target = Target {
        addr: if url.starts_with("https://") {
            remote::Addr::Https(url)
        } else {
            remote::Addr::Http(url)
        },
        tls: tls.clone(),
    };
    let rt = remote::runtime()?;
    rt.block_on(async {
        let ch = match remote::connect(&target).await {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("vigil status: {msg}");
                return Ok(2);
            }
        };
        let mut client = PolicySyncClient::new(ch);
        match client.get_status(pb::GetStatusRequest {}).await {
            Ok(r) => {
                let s = r.into_inner();
                if json {
                    println!("{}", serde_json::to_string_pretty(&to_json(&s))?);
                } else {
                    print!("{}", render_table(&s));
                }
                Ok(0)
            }
            Err(s) => {
                eprintln!("vigil status: {}", remote::status_line(&target, &s));
                Ok(2)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::GetStatusResponse {
        pb::GetStatusResponse {
            nodes: vec![pb::NodeStatus {
                name: "n1".into(),
                labels: [("zone".to_string(), "a".to_string())].into(),
                kernel_release: "6.18".into(),
                pods: 3,
                ..Default::default()
            }],
            policies: vec![pb::PolicyStatus {
                name: "p".into(),
                targeted: 2,
                ready: 1,
                partial: 1,
                nodes: vec![
                    pb::NodePolicyState {
                        node: "n1".into(),
                        state: pb::PolicyState::Ready as i32,
                        reason: String::new(),
                        demotion: String::new(),
                    },
                    pb::NodePolicyState {
                        node: "n2".into(),
                        state: pb::PolicyState::Partial as i32,
                        reason: "spec.kprobes[0] (tcp_connect): no kprobes".into(),
                        demotion: String::new(),
                    },
                ],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn table_and_json() {
        let t = render_table(&sample());
        assert!(t.starts_with("POLICY"), "{t}");
        assert!(t.contains("p       *     partial  1/2"), "{t}");
        assert!(t.contains("n2    partial"), "{t}");
        assert!(
            t.contains("spec.kprobes[0] (tcp_connect): no kprobes"),
            "{t}"
        );
        assert!(t.contains("n1  kernel 6.18  pods 3  labels zone=a"), "{t}");
        let j = to_json(&sample());
        assert_eq!(j["policies"][0]["nodes"][1]["state"], "partial");
        assert_eq!(j["nodes"][0]["labels"]["zone"], "a");
        assert_eq!(j["nodes"][0]["pods"], 3);
        assert!(j["policies"][0]["rollout"].is_null());
        let mut staged = sample();
        staged.policies[0].rollout = Some(pb::RolloutStatus {
            stage: "canary".into(),
            canary_nodes: vec!["n2".into()],
            message: "rollout canary=10%,pause=60s: waiting for the canaries to load it: n2".into(),
        });
        let t = render_table(&staged);
        assert!(
            t.contains("1/2    rollout canary=10%,pause=60s: waiting for the canaries"),
            "{t}"
        );
        let j = to_json(&staged);
        assert_eq!(j["policies"][0]["rollout"]["stage"], "canary");
        assert_eq!(j["policies"][0]["rollout"]["canary_nodes"][0], "n2");
        let mut demoted = sample();
        demoted.policies[0].demoted = 1;
        demoted.policies[0].nodes[0].demotion =
            "over its CPU budget: 3.000% of one CPU over 10s, budget 1%; switched to monitor"
                .into();
        let t = render_table(&demoted);
        assert!(
            t.contains("n1    demoted         over its CPU budget: 3.000%"),
            "{t}"
        );
        let j = to_json(&demoted);
        assert_eq!(j["policies"][0]["demoted"], 1);
        assert!(
            j["policies"][0]["nodes"][0]["demotion"]
                .as_str()
                .unwrap()
                .contains("switched to monitor")
        );
        assert!(j["policies"][0]["nodes"][1]["demotion"].is_null());
        assert_eq!(operator_url("h:1"), "http://h:1");
        assert_eq!(operator_url("http://h:1"), "http://h:1");
    }
}
