//! `vigil pod set|upsert|delete|list`: feeds a running sensor's pod inventory
//! (`vigil.sensor.v1.PodInventory`). In a cluster the operator does this; the command is for
//! hosts without one, for tests and for looking at what a sensor knows.
//!
//! Pods are JSON: `set` reads an array (the node's full set), `upsert` one object:
//! `{"namespace", "name", "uid", "labels": {..}, "annotations": {..}, "workload",
//! "workload_kind", "containers": [{"id", "name", "image", "image_id", "start_time",
//! "privileged"}]}`. Exit codes: 0 done; 1 refused (bad pod, unknown uid); 2 unreadable input or
//! unreachable sensor.

use clap::Subcommand;
use vigil_api::wire::sensor_info::{self as pb, pod_inventory_client::PodInventoryClient};

use crate::policy::ServerArg;
use crate::policy_remote::{EXIT_REFUSED, EXIT_UNREACHABLE, exit_code};
use crate::remote::{self, Target};

#[derive(Subcommand, Debug)]
pub enum PodCommand {
    /// Replace the sensor's pods with the JSON array in FILE ("-": stdin).
    Set {
        file: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Add or replace the pod (a JSON object) in FILE ("-": stdin).
    Upsert {
        file: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Remove the pod with this uid.
    Delete {
        uid: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Print the sensor's pods as a JSON array.
    List {
        #[command(flatten)]
        server: ServerArg,
    },
}

/// A pod in its JSON form (shared with the sensor's inventory).
pub type PodJson = vigil_api::wire::pod::Pod;

fn read(file: &str) -> Result<String, String> {
    if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))
    }
}

pub fn run(cmd: PodCommand) -> anyhow::Result<i32> {
    let (verb, server) = match &cmd {
        PodCommand::Set { server, .. } => ("set", server),
        PodCommand::Upsert { server, .. } => ("upsert", server),
        PodCommand::Delete { server, .. } => ("delete", server),
        PodCommand::List { server } => ("list", server),
    };
    let target: Target = server.target();
    let fail = |msg: String, code: i32| {
        eprintln!("vigil pod {verb}: {msg}");
        Ok(code)
    };
    // Input is read (and checked) before the sensor is contacted.
    let request = match &cmd {
        PodCommand::Set { file, .. } => match read(file).and_then(|t| {
            serde_json::from_str::<Vec<PodJson>>(&t).map_err(|e| format!("{file}: {e}"))
        }) {
            Ok(p) => Some(p),
            Err(e) => return fail(e, EXIT_UNREACHABLE),
        },
        PodCommand::Upsert { file, .. } => match read(file)
            .and_then(|t| serde_json::from_str::<PodJson>(&t).map_err(|e| format!("{file}: {e}")))
        {
            Ok(p) => Some(vec![p]),
            Err(e) => return fail(e, EXIT_UNREACHABLE),
        },
        _ => None,
    };
    let rt = remote::runtime()?;
    let result = rt.block_on(async {
        let ch = remote::connect(&target)
            .await
            .map_err(|e| (e, EXIT_UNREACHABLE))?;
        let mut client = PodInventoryClient::new(ch);
        let status = |s: tonic::Status| (remote::status_line(&target, &s), exit_code(s.code()));
        let out = match cmd {
            PodCommand::Set { .. } => {
                let pods = request.unwrap_or_default();
                let r = client
                    .set_pods(pb::SetPodsRequest {
                        pods: pods.into_iter().map(Into::into).collect(),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                format!(
                    "{} pods, {} containers with a cgroup",
                    r.pods, r.containers_resolved
                )
            }
            PodCommand::Upsert { .. } => {
                let pod = request.unwrap_or_default().pop().map(Into::into);
                let r = client
                    .upsert_pod(pb::UpsertPodRequest { pod })
                    .await
                    .map_err(status)?
                    .into_inner();
                format!(
                    "{} pods, {} containers with a cgroup",
                    r.pods, r.containers_resolved
                )
            }
            PodCommand::Delete { uid, .. } => {
                let r = client
                    .delete_pod(pb::DeletePodRequest { uid: uid.clone() })
                    .await
                    .map_err(status)?
                    .into_inner();
                if !r.found {
                    return Err((format!("no pod with uid {uid}"), EXIT_REFUSED));
                }
                format!(
                    "{} pods, {} containers with a cgroup",
                    r.pods, r.containers_resolved
                )
            }
            PodCommand::List { .. } => {
                let r = client
                    .list_pods(pb::ListPodsRequest {})
                    .await
                    .map_err(status)?
                    .into_inner();
                let pods: Vec<PodJson> = r.pods.into_iter().map(Into::into).collect();
                serde_json::to_string_pretty(&pods).unwrap_or_default()
            }
        };
        Ok::<String, (String, i32)>(out)
    });
    match result {
        Ok(out) => {
            println!("{out}");
            Ok(0)
        }
        Err((msg, code)) => fail(msg, code),
    }
}
