//! `vigil.sensor.v1.PodInventory`: feeds the node's pods into the [`PodInventory`] over gRPC
//! (tests, `vigil pod …`; the operator's policy-sync stream calls the same store directly).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vigil_api::wire::sensor_info as pb;
use vigil_api::wire::sensor_info::pod_inventory_server::{self, PodInventoryServer};

use vigil_api::wire::pod::Pod;

use crate::k8s::pods::PodInventory;

/// A pod must be named: a uid (its key), a namespace and a name. The error says which is
/// missing.
pub fn check_pod(p: &pb::PodInfo) -> Result<(), String> {
    for (v, what) in [
        (&p.uid, "uid"),
        (&p.namespace, "namespace"),
        (&p.name, "name"),
    ] {
        if v.is_empty() {
            return Err(format!("pod {}/{}: {what} is empty", p.namespace, p.name));
        }
    }
    Ok(())
}

fn check(p: &pb::PodInfo) -> Result<(), Status> {
    check_pod(p).map_err(Status::invalid_argument)
}

#[derive(Debug, Clone)]
pub struct PodApi {
    pods: Option<Arc<PodInventory>>,
}

/// The service, answering UNAVAILABLE when the sensor runs without an inventory.
pub fn server(pods: Option<Arc<PodInventory>>) -> PodInventoryServer<PodApi> {
    PodInventoryServer::new(PodApi { pods })
}

impl PodApi {
    fn inv(&self) -> Result<&Arc<PodInventory>, Status> {
        self.pods
            .as_ref()
            .ok_or_else(|| Status::unavailable("this sensor keeps no pod inventory"))
    }

    fn response(inv: &PodInventory, found: bool) -> Response<pb::PodsResponse> {
        Response::new(pb::PodsResponse {
            pods: inv.len() as u32,
            containers_resolved: inv.containers_resolved() as u32,
            found,
        })
    }
}

// The store's calls are short, but they walk the cgroup tree and take the engine's lock
// through the change listeners: run them off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("pod inventory update failed: {e}")))
}

#[tonic::async_trait]
impl pod_inventory_server::PodInventory for PodApi {
    async fn set_pods(
        &self,
        request: Request<pb::SetPodsRequest>,
    ) -> Result<Response<pb::PodsResponse>, Status> {
        let inv = self.inv()?.clone();
        let pods = request.into_inner().pods;
        pods.iter().try_for_each(check)?;
        let pods: Vec<Pod> = pods.into_iter().map(Pod::from).collect();
        let inv2 = inv.clone();
        blocking(move || inv2.apply_pods(pods)).await?;
        Ok(Self::response(&inv, true))
    }

    async fn upsert_pod(
        &self,
        request: Request<pb::UpsertPodRequest>,
    ) -> Result<Response<pb::PodsResponse>, Status> {
        let inv = self.inv()?.clone();
        let pod = request
            .into_inner()
            .pod
            .ok_or_else(|| Status::invalid_argument("pod is missing"))?;
        check(&pod)?;
        let inv2 = inv.clone();
        blocking(move || inv2.upsert_pod(pod.into())).await?;
        Ok(Self::response(&inv, true))
    }

    async fn delete_pod(
        &self,
        request: Request<pb::DeletePodRequest>,
    ) -> Result<Response<pb::PodsResponse>, Status> {
        let inv = self.inv()?.clone();
        let uid = request.into_inner().uid;
        if uid.is_empty() {
            return Err(Status::invalid_argument("uid is empty"));
        }
        let inv2 = inv.clone();
        let found = blocking(move || inv2.delete_pod(&uid)).await?;
        Ok(Self::response(&inv, found))
    }

    async fn list_pods(
        &self,
        _request: Request<pb::ListPodsRequest>,
    ) -> Result<Response<pb::ListPodsResponse>, Status> {
        let inv = self.inv()?;
        Ok(Response::new(pb::ListPodsResponse {
            pods: inv.pods().iter().map(|p| pb::PodInfo::from(&**p)).collect(),
        }))
    }
}
