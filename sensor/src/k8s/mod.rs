//! In: the node's pods, from the operator's policy-sync stream or the PodInventory service.
//! Out: events' `pod`, and the cgroup ids of scoped policies' workloads.
//!
//! The sensor never talks to the Kubernetes API: whoever holds credentials feeds it.

pub mod pod_api;
pub mod pods;
