//! A pod of a node as Vigil's pod inventory holds it, in its JSON form (`vigil pod set|upsert|
//! list`) and to and from its protobuf form (`vigil.sensor.v1.PodInfo`, used by the PodInventory
//! service and the operator's pod pushes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sensor_info as pb;

/// One pod of a node. In JSON every field may be left out (empty) and unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub workload: String,
    pub workload_kind: String,
    pub containers: Vec<Container>,
}

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Container {
    /// The container id (in the inventory: full, without the runtime prefix).
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// RFC 3339.
    pub start_time: String,
    pub privileged: bool,
}

impl From<pb::PodInfo> for Pod {
    fn from(p: pb::PodInfo) -> Self {
        Pod {
            namespace: p.namespace,
            name: p.name,
            uid: p.uid,
            labels: p.labels.into_iter().collect(),
            annotations: p.annotations.into_iter().collect(),
            workload: p.workload,
            workload_kind: p.workload_kind,
            containers: p.containers.into_iter().map(Container::from).collect(),
        }
    }
}

impl From<pb::PodContainer> for Container {
    fn from(c: pb::PodContainer) -> Self {
        Container {
            id: c.id,
            name: c.name,
            image: c.image,
            image_id: c.image_id,
            start_time: c.start_time,
            privileged: c.privileged,
        }
    }
}

impl From<Pod> for pb::PodInfo {
    fn from(p: Pod) -> Self {
        pb::PodInfo {
            namespace: p.namespace,
            name: p.name,
            uid: p.uid,
            labels: p.labels.into_iter().collect(),
            annotations: p.annotations.into_iter().collect(),
            workload: p.workload,
            workload_kind: p.workload_kind,
            containers: p.containers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Container> for pb::PodContainer {
    fn from(c: Container) -> Self {
        pb::PodContainer {
            id: c.id,
            name: c.name,
            image: c.image,
            image_id: c.image_id,
            start_time: c.start_time,
            privileged: c.privileged,
        }
    }
}

impl From<&Pod> for pb::PodInfo {
    fn from(p: &Pod) -> Self {
        p.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_protobuf_round_trip_and_unknown_keys_are_refused() {
        let text = r#"{"namespace":"default","name":"xwing","uid":"u1","labels":{"app":"x"},
            "containers":[{"id":"containerd://abc","name":"c","privileged":true}]}"#;
        let p: Pod = serde_json::from_str(text).unwrap();
        assert_eq!(p.containers[0].id, "containerd://abc");
        let back = Pod::from(pb::PodInfo::from(&p));
        assert_eq!(back, p);
        let e = serde_json::from_str::<Pod>(r#"{"nmespace":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("nmespace"), "{e}");
    }
}
