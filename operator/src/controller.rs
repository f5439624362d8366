//! Kubernetes controllers for `TracingPolicy` (cluster-scoped) and `TracingPolicyNamespaced`,
//! in Vigil's group `vigil.dev` and — when the cluster serves them and the operator was asked to
//! (`--cilium-policies`) — in Tetragon's group `cilium.io`, with the same status.
//!
//! On every new generation the spec is compiled; an accepted policy goes to the [`Fleet`]
//! (`upsert`), a rejected one is not pushed (whatever runs keeps running) and its status says
//! why. The status (server-side apply, field manager [`FIELD_MANAGER`]) rolls up what the
//! nodes reported. Both controllers also reconcile every policy when [`Fleet::changes`]
//! ticks, and patch a status only when it changed. The [`FINALIZER`] makes deletion remove
//! the policy from every node first.
//!
//! Both groups share one name space on the nodes (a policy is known there by name, plus
//! namespace for the namespaced kind): when the same key exists in both groups, the one the
//! operator took first is distributed and the other is rejected in its status, naming the
//! first, until that one is gone.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use vigil_api::policy::ir::PolicyMode;
use vigil_api::policy::{
    self, CiliumTracingPolicy, CiliumTracingPolicyNamespaced, OptionSpec, PolicyModeName,
    TracingPolicy, TracingPolicyDoc, TracingPolicyNamespaced, TracingPolicyStatus,
};

use crate::error::{OperatorError, Result};
use crate::fleet::{DesiredPolicy, Fleet, PolicyKey};
use crate::kube_metrics::KubeMetrics;
use crate::status::{self, Compiled};

/// Field manager of the operator's status patches.
pub const FIELD_MANAGER: &str = "vigil-operator";
/// Finalizer that keeps a policy resource until its policy left every node.
pub const FINALIZER: &str = "vigil.dev/policy-cleanup";
/// Delay before a failed reconciliation is retried.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What the controllers need to know about each of the two policy kinds.
pub trait PolicyResource:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static
{
    /// `TracingPolicy` or `TracingPolicyNamespaced`.
    const KIND: &'static str;
    /// The kind as logs and metrics name it: the kind, plus `.cilium.io` for Tetragon's group.
    const LABEL: &'static str;
    /// The policy as the compiler reads it (namespaced kind: with its namespace as identity).
    fn doc(&self) -> TracingPolicyDoc;
    fn policy_status(&self) -> Option<&TracingPolicyStatus>;
    fn options(&self) -> &[OptionSpec];
    /// An Api through which this object can be patched.
    fn object_api(client: &Client, obj: &Self) -> Result<Api<Self>>;
    /// The fleet key: name, plus namespace for the namespaced kind.
    fn key(&self) -> Result<PolicyKey>;
}

fn name_of<K: Resource>(obj: &K, kind: &'static str) -> Result<String> {
    obj.meta().name.clone().ok_or(OperatorError::MissingField {
        kind,
        field: "metadata.name",
    })
}

fn namespace_of<K: Resource>(obj: &K, kind: &'static str) -> Result<String> {
    obj.meta()
        .namespace
        .clone()
        .ok_or(OperatorError::MissingField {
            kind,
            field: "metadata.namespace",
        })
}

/// The four policy kinds differ only in their names, how their document is read, and whether
/// they live in a namespace.
macro_rules! policy_resource {
    ($ty:ty, $kind:literal, $label:literal, $doc:path, $scope:ident) => {
        impl PolicyResource for $ty {
            const KIND: &'static str = $kind;
            const LABEL: &'static str = $label;

            fn doc(&self) -> TracingPolicyDoc {
                $doc(self)
            }

            fn policy_status(&self) -> Option<&TracingPolicyStatus> {
                self.status.as_ref()
            }

            fn options(&self) -> &[OptionSpec] {
                &self.spec.options
            }

            policy_resource!(@$scope $label);
        }
    };
    (@cluster $label:literal) => {
        fn object_api(client: &Client, _: &Self) -> Result<Api<Self>> {
            Ok(Api::all(client.clone()))
        }

        fn key(&self) -> Result<PolicyKey> {
            Ok(PolicyKey::new(name_of(self, $label)?, ""))
        }
    };
    (@namespaced $label:literal) => {
        fn object_api(client: &Client, obj: &Self) -> Result<Api<Self>> {
            Ok(Api::namespaced(client.clone(), &namespace_of(obj, $label)?))
        }

        fn key(&self) -> Result<PolicyKey> {
            Ok(PolicyKey::new(
                name_of(self, $label)?,
                namespace_of(self, $label)?,
            ))
        }
    };
}

policy_resource!(
    TracingPolicy,
    "TracingPolicy",
    "TracingPolicy",
    TracingPolicyDoc::from_cluster,
    cluster
);
policy_resource!(
    TracingPolicyNamespaced,
    "TracingPolicyNamespaced",
    "TracingPolicyNamespaced",
    TracingPolicyDoc::from_namespaced,
    namespaced
);
policy_resource!(
    CiliumTracingPolicy,
    "TracingPolicy",
    "TracingPolicy.cilium.io",
    TracingPolicyDoc::from_cilium_cluster,
    cluster
);
policy_resource!(
    CiliumTracingPolicyNamespaced,
    "TracingPolicyNamespaced",
    "TracingPolicyNamespaced.cilium.io",
    TracingPolicyDoc::from_cilium_namespaced,
    namespaced
);

/// What was last compiled (and pushed) for one policy.
struct Entry {
    /// [`PolicyResource::LABEL`] of the resource that holds the key.
    owner: &'static str,
    uid: String,
    generation: i64,
    compiled: Compiled,
    /// The accepted revision, kept to re-push it if the fleet lost it.
    desired: Option<DesiredPolicy>,
}

/// Shared state of both controllers.
pub struct Context {
    client: Client,
    fleet: Arc<dyn Fleet>,
    metrics: Arc<KubeMetrics>,
    compiled: Mutex<HashMap<PolicyKey, Entry>>,
    /// Also run the controllers of the `cilium.io` kinds.
    cilium: bool,
}

impl Context {
    pub fn new(client: Client, fleet: Arc<dyn Fleet>, metrics: Arc<KubeMetrics>) -> Self {
        Context {
            client,
            fleet,
            metrics,
            compiled: Mutex::new(HashMap::new()),
            cilium: false,
        }
    }

    /// Also reconcile `TracingPolicy` and `TracingPolicyNamespaced` of group `cilium.io`.
    pub fn with_cilium_policies(mut self, on: bool) -> Self {
        self.cilium = on;
        self
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<PolicyKey, Entry>> {
        self.compiled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn mode_name(mode: i32) -> PolicyModeName {
    if mode == PolicyMode::Monitor as i32 {
        PolicyModeName::Monitor
    } else {
        PolicyModeName::Enforce
    }
}

/// `policy-mode` from `spec.options`, for specs that did not compile.
fn mode_from_options(options: &[OptionSpec]) -> Option<PolicyModeName> {
    match options
        .iter()
        .rev()
        .find(|o| o.name == "policy-mode")
        .map(|o| o.value.as_str())
    {
        Some("monitor") => Some(PolicyModeName::Monitor),
        Some("enforce") | None => Some(PolicyModeName::Enforce),
        Some(_) => None,
    }
}

/// Reconcile one policy resource (the controllers' reconciler; public for tests and callers
/// that drive it themselves).
pub async fn reconcile<K: PolicyResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = reconcile_inner(obj, &ctx).await;
    ctx.metrics.observe_reconcile(
        K::LABEL,
        start.elapsed(),
        result.as_ref().err().map(OperatorError::metric_label),
    );
    result
}

async fn reconcile_inner<K: PolicyResource>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    let api = K::object_api(&ctx.client, &obj)?;
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(obj) => apply(obj, ctx, &api).await,
            Event::Cleanup(obj) => cleanup(obj, ctx),
        }
    })
    .await
    .map_err(|e| OperatorError::Finalizer(Box::new(e)))
}

async fn apply<K: PolicyResource>(obj: Arc<K>, ctx: &Context, api: &Api<K>) -> Result<Action> {
    let key = obj.key()?;
    let name = key.name.clone();
    let generation = obj.meta().generation.unwrap_or(0);
    let uid = obj.meta().uid.clone().unwrap_or_default();

    let holder = ctx
        .entries()
        .get(&key)
        .map(|e| e.owner)
        .filter(|o| *o != K::LABEL);
    let fresh = ctx
        .entries()
        .get(&key)
        .filter(|e| e.owner == K::LABEL)
        .map(|e| {
            (
                e.uid == uid && e.generation == generation,
                e.compiled.clone(),
            )
        });
    let compiled = if let Some(holder) = holder {
        // The other group's policy of the same name runs on the nodes: this one waits (logged
        // when its status says so, below).
        Compiled::Rejected {
            message: format!(
                "a {holder} named {key} already exists and is distributed: TracingPolicies of \
                 the vigil.dev and cilium.io groups share one name space on the nodes; rename \
                 one of them (this one is distributed once the other is deleted)"
            ),
            mode: mode_from_options(obj.options()),
        }
    } else {
        match fresh {
            Some((true, compiled)) => {
                // Already compiled and pushed; push again only if the fleet lost it.
                if ctx.fleet.rollup(&key).is_none() {
                    let again = ctx.entries().get(&key).and_then(|e| e.desired.clone());
                    if let Some(d) = again {
                        tracing::info!(policy = %key, generation, "fleet lost the policy; pushing it again");
                        ctx.fleet.upsert(d);
                    }
                }
                compiled
            }
            _ => {
                let doc = obj.doc();
                let compiled_plan = policy::compile(&doc).and_then(|ir| {
                    // compile checked the annotation already; this cannot fail after it.
                    policy::rollout_plan(&doc.metadata.annotations)
                        .map(|plan| (ir, plan))
                        .map_err(policy::PolicyErrors::from)
                });
                let (compiled, desired) = match compiled_plan {
                    Ok((ir, rollout)) => {
                        let compiled = Compiled::Accepted {
                            mode: mode_name(ir.mode),
                            hooks: ir.hooks.len(),
                        };
                        let node_selector = ir.scope.as_ref().and_then(|s| s.node_selector.clone());
                        let desired = DesiredPolicy {
                            key: key.clone(),
                            generation,
                            ir,
                            node_selector,
                            rollout,
                        };
                        tracing::info!(kind = K::LABEL, policy = %key, generation, "policy accepted; distributing");
                        ctx.fleet.upsert(desired.clone());
                        (compiled, Some(desired))
                    }
                    Err(errors) => {
                        tracing::warn!(kind = K::LABEL, policy = %key, generation, %errors, "policy rejected; not distributed");
                        (
                            Compiled::Rejected {
                                message: errors.to_string(),
                                mode: mode_from_options(obj.options()),
                            },
                            None,
                        )
                    }
                };
                ctx.entries().insert(
                    key.clone(),
                    Entry {
                        owner: K::LABEL,
                        uid,
                        generation,
                        compiled: compiled.clone(),
                        desired,
                    },
                );
                compiled
            }
        }
    };

    // The other group's roll-up is not this policy's.
    let rollup = if holder.is_some() {
        None
    } else {
        ctx.fleet.rollup(&key)
    };
    // Kubernetes keeps times to the second.
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH);
    let desired = status::build(
        generation,
        &compiled,
        rollup.as_ref(),
        obj.policy_status(),
        now,
    );
    ctx.metrics
        .set_state(K::LABEL, &key, Some(status::state_of(&desired)));
    if obj.policy_status() != Some(&desired) {
        if let Some(holder) = holder {
            tracing::warn!(kind = K::LABEL, policy = %key, holder, "policy name already used in the other API group; not distributed");
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::KIND,
            "status": desired,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        ctx.metrics
            .status_patches
            .get_or_create(&crate::kube_metrics::KindLabel {
                kind: K::LABEL.into(),
            })
            .inc();
        tracing::debug!(kind = K::LABEL, policy = %key, generation, "status updated");
    }
    Ok(Action::await_change())
}

fn cleanup<K: PolicyResource>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    let key = obj.key()?;
    let other = ctx
        .entries()
        .get(&key)
        .map(|e| e.owner)
        .filter(|o| *o != K::LABEL);
    match other {
        // It never ran: the other group's policy of that name stays.
        Some(holder) => {
            tracing::info!(kind = K::LABEL, policy = %key, holder, "policy deleted; it was not distributed")
        }
        None => {
            tracing::info!(kind = K::LABEL, policy = %key, "policy deleted; removing it from every node");
            ctx.fleet.remove(&key);
            ctx.entries().remove(&key);
        }
    }
    ctx.metrics.set_state(K::LABEL, &key, None);
    Ok(Action::await_change())
}

/// What the controllers do after a failed reconciliation: retry later.
pub fn error_policy<K: PolicyResource>(
    obj: Arc<K>,
    err: &OperatorError,
    ctx: Arc<Context>,
) -> Action {
    let what = format!("reconciling {} {}", K::LABEL, obj.name_any());
    if !crate::forbidden::report(err, &what, &ctx.metrics) {
        tracing::warn!(kind = K::LABEL, name = %obj.name_any(), error = %err, "reconcile failed; retrying in {RETRY_AFTER:?}");
    }
    Action::requeue(RETRY_AFTER)
}

/// A stream that yields once per tick of the fleet's change counter.
fn fleet_ticks(rx: watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok().map(|()| ((), rx))
    })
}

/// Completes once `stop` holds `true` (or its sender is gone).
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run_one<K: PolicyResource>(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let metrics = ctx.metrics.clone();
    Controller::new(
        Api::<K>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .reconcile_all_on(fleet_ticks(ctx.fleet.changes()))
    .graceful_shutdown_on(stopped(stop))
    .run(reconcile::<K>, error_policy::<K>, ctx)
    .for_each(|res| {
        let metrics = metrics.clone();
        async move {
            match res {
                Ok((obj, _)) => tracing::trace!(kind = K::LABEL, object = %obj, "reconciled"),
                // Already reported by `error_policy`.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                // Deleted while queued: nothing to do.
                Err(e @ kube::runtime::controller::Error::ObjectNotFound(..)) => {
                    tracing::debug!(kind = K::LABEL, error = %e, "controller")
                }
                Err(e) => {
                    let what = format!("watching {} resources", K::LABEL);
                    if !crate::forbidden::report(&e, &what, &metrics) {
                        tracing::warn!(kind = K::LABEL, error = %e, "controller");
                    }
                }
            }
        }
    })
    .await;
}

/// Run the controllers until `stop` turns `true`: both kinds of `vigil.dev`, and those of
/// `cilium.io` when the context says so.
pub async fn run_controllers(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let vigil = async {
        futures::join!(
            run_one::<TracingPolicy>(ctx.clone(), stop.clone()),
            run_one::<TracingPolicyNamespaced>(ctx.clone(), stop.clone()),
        )
    };
    let cilium = async {
        if ctx.cilium {
            futures::join!(
                run_one::<CiliumTracingPolicy>(ctx.clone(), stop.clone()),
                run_one::<CiliumTracingPolicyNamespaced>(ctx.clone(), stop.clone()),
            );
        }
    };
    futures::join!(vigil, cilium);
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
