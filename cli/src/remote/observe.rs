//! `vigil observe --server`: server-side filters from the flags and the event stream,
//! reconnecting on request.

use std::io::{self, Write};
use std::time::Duration;

use tonic::transport::Channel;
use vigil_api::events::EventKind;
use vigil_api::wire::{self, tetragon};

use crate::compact;

use super::connection::{connect, status_line};
use super::{Target, runtime};

/// Server-side filters from the observe flags.
#[derive(Debug, Clone, Default)]
pub struct RemoteFilter {
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub processes: Vec<String>,
    pub kinds: Vec<EventKind>,
    pub pids: Vec<u32>,
    pub pid_set: Vec<u32>,
    pub policy_names: Vec<String>,
    pub include_fields: Vec<String>,
    pub exclude_fields: Vec<String>,
}

impl RemoteFilter {
    pub fn request(&self) -> tetragon::GetEventsRequest {
        let f = tetragon::Filter {
            namespace: self.namespaces.clone(),
            pod_regex: self.pods.clone(),
            binary_regex: self.processes.clone(),
            event_set: self.kinds.iter().map(|k| wire::event_type(*k)).collect(),
            pid: self.pids.clone(),
            pid_set: self.pid_set.clone(),
            policy_names: self.policy_names.clone(),
            ..Default::default()
        };
        let empty = f == tetragon::Filter::default();
        let field = |paths: &[String], action: tetragon::FieldFilterAction| {
            (!paths.is_empty()).then(|| tetragon::FieldFilter {
                fields: Some(prost_types::FieldMask {
                    paths: paths.to_vec(),
                }),
                action: action as i32,
                ..Default::default()
            })
        };
        tetragon::GetEventsRequest {
            allow_list: if empty { vec![] } else { vec![f] },
            field_filters: [
                field(&self.include_fields, tetragon::FieldFilterAction::Include),
                field(&self.exclude_fields, tetragon::FieldFilterAction::Exclude),
            ]
            .into_iter()
            .flatten()
            .collect(),
            ..Default::default()
        }
    }
}

enum StreamEnd {
    /// The sensor ended the stream (it stopped).
    Closed,
    /// Output closed (e.g. `| head`): stop quietly.
    OutputGone,
    Failed(String),
}

/// `vigil observe --server`: prints the stream until it ends; with `reconnect`, connects again.
pub fn observe(
    target: &Target,
    filter: &RemoteFilter,
    json: bool,
    reconnect: bool,
) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut announced = false;
        loop {
            let end = match connect(target).await {
                Ok(ch) => {
                    announced = false;
                    stream_once(ch, target, filter, json).await
                }
                Err(msg) => StreamEnd::Failed(msg),
            };
            match end {
                StreamEnd::OutputGone => return Ok(0),
                StreamEnd::Closed if !reconnect => return Ok(0),
                StreamEnd::Failed(msg) if !reconnect => {
                    eprintln!("vigil observe: {msg}");
                    return Ok(2);
                }
                StreamEnd::Closed | StreamEnd::Failed(_) => {
                    if !announced {
                        if let StreamEnd::Failed(msg) = &end {
                            eprintln!("vigil observe: {msg}; retrying every second");
                        } else {
                            eprintln!("vigil observe: the sensor closed the stream; reconnecting");
                        }
                        announced = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

async fn stream_once(ch: Channel, target: &Target, filter: &RemoteFilter, json: bool) -> StreamEnd {
    let mut client = tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient::new(ch)
        .max_decoding_message_size(64 << 20);
    let mut stream = match client.get_events(filter.request()).await {
        Ok(r) => r.into_inner(),
        Err(s) => return StreamEnd::Failed(status_line(target, &s)),
    };
    let stdout = io::stdout();
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return StreamEnd::Closed,
            Err(s) => return StreamEnd::Failed(status_line(target, &s)),
        };
        // Loss markers (`rate_limit_info`) are part of the stream: they print where the gap is.
        let text = {
            match wire::from_proto(&msg) {
                Ok(ev) if json => match ev.to_json() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("vigil observe: {e}");
                        continue;
                    }
                },
                Ok(ev) => match compact::render(&ev) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("vigil observe: cannot render: {e}");
                        continue;
                    }
                },
                Err(e) => {
                    eprintln!("vigil observe: {e}");
                    continue;
                }
            }
        };
        let mut out = stdout.lock();
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            return StreamEnd::OutputGone;
        }
    }
}
