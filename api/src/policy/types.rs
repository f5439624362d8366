//! TracingPolicy manifest types: Tetragon's spec field for field, as kube custom resources in
//! group `vigil.dev`, version `v1alpha1` — and the same kinds in Tetragon's group `cilium.io`
//! (`CiliumTracingPolicy`, `CiliumTracingPolicyNamespaced`), for clusters that keep Tetragon's
//! manifests unchanged.
//!
//! These types describe the *shape* of a manifest. Strictness (unknown fields, every error
//! reported) comes from [`super::parse`], which checks the raw document against the JSON
//! schema of these types before deserializing; semantic rules live in [`super::compile`].

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_true() -> bool {
    true
}

/// Schema for fields Vigil recognises but does not implement yet: any value is accepted by
/// the structural check (and kept by the API server); the compiler then reports
/// `not supported yet: …` for it.
fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// One TracingPolicy CRD spec: the fields of [`tracing_policy_specs`] with a group, kind and
/// root struct. The printer columns are the same for every kind.
macro_rules! policy_crd_spec {
    (
        $(#[$sm:meta])* $spec:ident, root = $root:literal, group = $group:literal,
        kind = $kind:literal, plural = $plural:literal, singular = $singular:literal
        $(, $namespaced:ident)?;
        $( $(#[$fm:meta])* pub $f:ident : $t:ty, )*
    ) => {
        $(#[$sm])*
        #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[kube(
            group = $group,
            version = "v1alpha1",
            kind = $kind,
            root = $root,
            plural = $plural,
            singular = $singular,
            $($namespaced,)?
            status = "TracingPolicyStatus",
            derive = "PartialEq",
            printcolumn(
                name = "Ready",
                type_ = "string",
                json_path = ".status.conditions[?(@.type==\"Ready\")].status",
                description = "Every targeted node loaded the current generation"
            ),
            printcolumn(
                name = "Nodes",
                type_ = "string",
                json_path = ".status.nodes.summary",
                description = "Nodes that loaded the policy / nodes it targets"
            ),
            printcolumn(
                name = "Mode",
                type_ = "string",
                json_path = ".status.mode",
                description = "enforce or monitor"
            ),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
            // `kubectl get -o wide` only.
            printcolumn(
                name = "Rollout",
                type_ = "string",
                json_path = ".status.rollout.stage",
                description = "Stage of the staged rollout of the current generation",
                priority = 1
            )
        )]
        pub struct $spec { $( $(#[$fm])* pub $f: $t, )* }
    };
}

/// The four specs (both kinds, in Vigil's group and in Tetragon's `cilium.io`) with the same
/// fields, and conversions from the others into [`TracingPolicySpec`] (what the compiler reads).
macro_rules! tracing_policy_specs {
    ( $( $(#[$fm:meta])* pub $f:ident : $t:ty, )* ) => {
        policy_crd_spec! {
            /// Spec of a cluster-scoped `TracingPolicy`.
            TracingPolicySpec, root = "TracingPolicy", group = "vigil.dev",
            kind = "TracingPolicy", plural = "tracingpolicies", singular = "tracingpolicy";
            $( $(#[$fm])* pub $f: $t, )*
        }

        policy_crd_spec! {
            /// Spec of a namespaced `TracingPolicyNamespaced` (same fields as [`TracingPolicySpec`]).
            TracingPolicyNamespacedSpec, root = "TracingPolicyNamespaced", group = "vigil.dev",
            kind = "TracingPolicyNamespaced", plural = "tracingpoliciesnamespaced",
            singular = "tracingpolicynamespaced", namespaced;
            $( $(#[$fm])* pub $f: $t, )*
        }

        // The same kinds in Tetragon's group `cilium.io`, served when the cluster has Vigil's
        // `cilium.io` CRDs so that manifests written for Tetragon apply unchanged. Their doc
        // comments are the schema descriptions (`kubectl explain`): the same as Vigil's.
        policy_crd_spec! {
            /// Spec of a cluster-scoped `TracingPolicy`.
            CiliumTracingPolicySpec, root = "CiliumTracingPolicy", group = "cilium.io",
            kind = "TracingPolicy", plural = "tracingpolicies", singular = "tracingpolicy";
            $( $(#[$fm])* pub $f: $t, )*
        }

        policy_crd_spec! {
            /// Spec of a namespaced `TracingPolicyNamespaced` (same fields as [`TracingPolicySpec`]).
            CiliumTracingPolicyNamespacedSpec, root = "CiliumTracingPolicyNamespaced",
            group = "cilium.io", kind = "TracingPolicyNamespaced",
            plural = "tracingpoliciesnamespaced", singular = "tracingpolicynamespaced", namespaced;
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl From<TracingPolicyNamespacedSpec> for TracingPolicySpec {
            fn from(s: TracingPolicyNamespacedSpec) -> Self {
                Self { $( $f: s.$f, )* }
            }
        }

        impl From<TracingPolicySpec> for TracingPolicyNamespacedSpec {
            fn from(s: TracingPolicySpec) -> Self {
                Self { $( $f: s.$f, )* }
            }
        }

        impl From<CiliumTracingPolicySpec> for TracingPolicySpec {
            fn from(s: CiliumTracingPolicySpec) -> Self {
                Self { $( $f: s.$f, )* }
            }
        }

        impl From<CiliumTracingPolicyNamespacedSpec> for TracingPolicySpec {
            fn from(s: CiliumTracingPolicyNamespacedSpec) -> Self {
                Self { $( $f: s.$f, )* }
            }
        }
    };
}

tracing_policy_specs! {
    /// Kernel function hooks.
    #[serde(default)]
    pub kprobes: Vec<KProbeSpec>,
    /// Tracepoint hooks.
    #[serde(default)]
    pub tracepoints: Vec<TracepointSpec>,
    /// User-space function hooks.
    #[serde(default)]
    pub uprobes: Vec<UProbeSpec>,
    /// BPF-LSM hooks.
    #[serde(default)]
    pub lsmhooks: Vec<LsmHookSpec>,
    /// USDT probes (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub usdts: Option<serde_json::Value>,
    /// fentry hooks (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub fentries: Option<serde_json::Value>,
    /// Emit loader events (not supported yet).
    #[serde(default)]
    pub loader: bool,
    /// Named value lists referenced as `list:NAME`.
    #[serde(default)]
    pub lists: Vec<ListSpec>,
    /// Policy options (`policy-mode`, `disable-kprobe-multi`, `disable-uprobe-multi`).
    #[serde(default)]
    pub options: Vec<OptionSpec>,
    /// Syscall enforcers used by the NotifyEnforcer action.
    #[serde(default)]
    pub enforcers: Vec<EnforcerSpec>,
    /// Named selectors that hook selectors include through `macros`.
    #[serde(default)]
    pub selectors_macros: BTreeMap<String, KProbeSelector>,
    /// Pods the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Containers the policy applies to (labels: `name`, `repo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_selector: Option<LabelSelector>,
    /// Host (non-container) processes the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<LabelSelector>,
    /// Nodes the policy is loaded on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

/// Status of a TracingPolicy, written by the operator (server-side apply, field manager
/// `vigil-operator`) from the policy's compilation and its nodes' reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the spec compiled), `Ready` (every targeted node loaded the current
    /// generation) and `Degraded` (some node failed to load it, or loaded it partially).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// Node counts for the current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<PolicyNodeCounts>,
    /// Whether enforcing actions run (`enforce`) or are only reported (`monitor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PolicyModeName>,
    /// Where the staged rollout of the current version stands (policies with a rollout
    /// annotation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<PolicyRolloutStatus>,
}

/// A staged rollout's stage, canary nodes and why it stands where it does.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRolloutStatus {
    /// `canary` (waiting for the canaries to load it), `pause` (every canary loaded it; the
    /// pause runs), `halted` (a canary failed: the rest keep what they ran) or `complete`.
    pub stage: String,
    /// The nodes that received the version first, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary_nodes: Vec<String>,
    /// In words, with the failed canaries and their reasons when halted.
    #[serde(default)]
    pub message: String,
}

/// How many nodes a policy targets and how many loaded it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyNodeCounts {
    /// Connected nodes the policy targets.
    pub targeted: u32,
    /// Nodes that loaded the current generation with every hook.
    pub ready: u32,
    /// Nodes that did not load it, or loaded it only partially.
    pub failed: u32,
    /// Nodes that have not answered for the current generation yet.
    #[serde(default)]
    pub pending: u32,
    /// `ready/targeted`, for `kubectl get` (column NODES).
    #[serde(default)]
    pub summary: String,
}

/// A policy's mode as shown in its status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyModeName {
    Enforce,
    Monitor,
}

impl PolicyModeName {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyModeName::Enforce => "enforce",
            PolicyModeName::Monitor => "monitor",
        }
    }
}

/// A Kubernetes-style label selector (matchLabels ANDed with matchExpressions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A kernel function hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KProbeSpec {
    /// Function name, or `list:NAME`.
    pub call: String,
    /// Capture the return value (`returnArg`).
    #[serde(default)]
    pub r#return: bool,
    /// The function is a system call. Tetragon's CRD default: true.
    #[serde(default = "default_true")]
    pub syscall: bool,
    /// Text included in every event of this hook (max 256 characters).
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub args: Vec<KProbeArg>,
    /// Extra data to read (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_arg: Option<KProbeArg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_arg_action: Option<ReturnArgActionName>,
    #[serde(default)]
    pub selectors: Vec<KProbeSelector>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<IgnoreSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnoreSpec {
    /// Skip this hook, instead of failing the policy, when the function does not exist.
    #[serde(default)]
    pub call_not_found: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReturnArgActionName {
    Post,
    TrackSock,
    UntrackSock,
}

/// A tracepoint hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracepointSpec {
    pub subsystem: String,
    pub event: String,
    /// Attach as a raw tracepoint.
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub args: Vec<KProbeArg>,
    #[serde(default)]
    pub selectors: Vec<KProbeSelector>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A user-space function hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UProbeSpec {
    /// Absolute path of the binary or library.
    pub path: String,
    #[serde(default)]
    pub symbols: Vec<String>,
    #[serde(default)]
    pub offsets: Vec<u64>,
    #[serde(default)]
    pub ref_ctr_offsets: Vec<u64>,
    #[serde(default)]
    pub r#return: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub args: Vec<KProbeArg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_arg: Option<KProbeArg>,
    /// Extra data to read (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub selectors: Vec<KProbeSelector>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A BPF-LSM hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LsmHookSpec {
    /// LSM hook name without the `security_` prefix, e.g. `file_open`.
    pub hook: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub args: Vec<KProbeArg>,
    #[serde(default)]
    pub selectors: Vec<KProbeSelector>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An argument to read and report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KProbeArg {
    /// Function argument (or tracepoint field) position.
    pub index: u32,
    #[serde(default)]
    pub r#type: ArgTypeName,
    /// char_buf/char_iovec: 1-based position of the size argument (0 = none).
    #[serde(default)]
    pub size_arg_index: u32,
    #[serde(default)]
    pub return_copy: bool,
    #[serde(default)]
    pub max_data: bool,
    #[serde(default)]
    pub label: String,
    /// BTF path resolution (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub resolve: Option<serde_json::Value>,
    /// BTF type override (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub btf_type: Option<serde_json::Value>,
    /// BTF type module (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub btf_type_module: Option<serde_json::Value>,
    /// Data source (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub source: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArgTypeName {
    #[default]
    Auto,
    Int,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Long,
    Ulong,
    SizeT,
    String,
    CharBuf,
    CharIovec,
    Filename,
    Fd,
    File,
    Path,
    Dentry,
    LinuxBinprm,
    Sock,
    Socket,
    Skb,
    Sockaddr,
    SockaddrUn,
    NetDevice,
    Cred,
    UserNamespace,
    Capability,
    KernelCapT,
    CapInheritable,
    CapPermitted,
    CapEffective,
    BpfAttr,
    BpfCmd,
    BpfMap,
    BpfProg,
    PerfEvent,
    Kiocb,
    IovIter,
    LoadInfo,
    Module,
    Syscall64,
    DataLoc,
    ConstBuf,
    Nop,
}

/// One selector: its filters are ANDed; a hook's selectors are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KProbeSelector {
    #[serde(default, rename = "matchPIDs")]
    pub match_pids: Vec<PidSelector>,
    #[serde(default)]
    pub match_args: Vec<ArgSelector>,
    /// Filters on `data` (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub match_data: Option<serde_json::Value>,
    #[serde(default)]
    pub match_return_args: Vec<ArgSelector>,
    #[serde(default)]
    pub match_actions: Vec<ActionSelector>,
    #[serde(default)]
    pub match_return_actions: Vec<ActionSelector>,
    #[serde(default)]
    pub match_binaries: Vec<BinarySelector>,
    /// Parent binary filters (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub match_parent_binaries: Option<serde_json::Value>,
    #[serde(default)]
    pub match_namespaces: Vec<NamespaceSelector>,
    #[serde(default)]
    pub match_namespace_changes: Vec<NamespaceChangesSelector>,
    #[serde(default)]
    pub match_capabilities: Vec<CapabilitiesSelector>,
    #[serde(default)]
    pub match_capability_changes: Vec<CapabilitiesSelector>,
    /// Names of `spec.selectorsMacros` entries merged into this selector.
    #[serde(default)]
    pub macros: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SetOperatorName {
    In,
    NotIn,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PidSelector {
    pub operator: SetOperatorName,
    pub values: Vec<u32>,
    #[serde(default, rename = "isNamespacePID")]
    pub is_namespace_pid: bool,
    #[serde(default)]
    pub follow_forks: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgSelector {
    pub index: u32,
    pub operator: ArgOperatorName,
    #[serde(default)]
    pub values: Vec<String>,
    /// Positions in the hook's `args` list (not supported yet; use `index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub args: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ArgOperatorName {
    Equal,
    NotEqual,
    Prefix,
    NotPrefix,
    Postfix,
    NotPostfix,
    GreaterThan,
    LessThan,
    #[serde(rename = "GT")]
    Gt,
    #[serde(rename = "LT")]
    Lt,
    Mask,
    InRange,
    NotInRange,
    InMap,
    NotInMap,
    SubString,
    SubStringIgnCase,
    FileType,
    NotFileType,
    #[serde(rename = "SAddr")]
    SAddr,
    #[serde(rename = "NotSAddr")]
    NotSAddr,
    #[serde(rename = "DAddr")]
    DAddr,
    #[serde(rename = "NotDAddr")]
    NotDAddr,
    #[serde(rename = "SPort")]
    SPort,
    #[serde(rename = "NotSPort")]
    NotSPort,
    #[serde(rename = "SPortPriv")]
    SPortPriv,
    /// Tetragon's spelling.
    #[serde(rename = "NotSportPriv")]
    NotSportPriv,
    #[serde(rename = "NotSPortPriv")]
    NotSPortPriv,
    #[serde(rename = "DPort")]
    DPort,
    #[serde(rename = "NotDPort")]
    NotDPort,
    #[serde(rename = "DPortPriv")]
    DPortPriv,
    #[serde(rename = "NotDPortPriv")]
    NotDPortPriv,
    Protocol,
    Family,
    State,
    CapabilitiesGained,
    /// CEL expressions (not supported yet).
    CelExpr,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BinaryOperatorName {
    In,
    NotIn,
    Prefix,
    NotPrefix,
    Postfix,
    NotPostfix,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BinarySelector {
    pub operator: BinaryOperatorName,
    pub values: Vec<String>,
    /// Also match descendants of matching binaries (In/NotIn only).
    #[serde(default)]
    pub follow_children: bool,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum NamespaceName {
    Uts,
    Ipc,
    Mnt,
    Pid,
    PidForChildren,
    Net,
    Time,
    TimeForChildren,
    Cgroup,
    User,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSelector {
    pub namespace: NamespaceName,
    pub operator: SetOperatorName,
    /// Namespace inode numbers, or `host_ns`.
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceChangesSelector {
    pub operator: SetOperatorName,
    /// Namespace types (Uts, Ipc, Mnt, …).
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CapabilityTypeName {
    #[default]
    Effective,
    Inheritable,
    Permitted,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilitiesSelector {
    #[serde(default)]
    pub r#type: CapabilityTypeName,
    pub operator: SetOperatorName,
    #[serde(default)]
    pub is_namespace_capability: bool,
    /// Capability names (`CAP_*`).
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ActionName {
    Post,
    NoPost,
    Sigkill,
    Signal,
    Override,
    NotifyEnforcer,
    CleanupEnforcerNotification,
    TrackSock,
    UntrackSock,
    GetUrl,
    DnsLookup,
    /// Deprecated in Tetragon (not supported).
    FollowFD,
    /// Deprecated in Tetragon (not supported).
    UnfollowFD,
    /// Deprecated in Tetragon (not supported).
    CopyFD,
    /// USDT argument write (not supported yet).
    Set,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitScopeName {
    Thread,
    Process,
    Global,
}

/// An action to run when the selector matches. Parameters only apply to some actions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSelector {
    pub action: ActionName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_fd: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_name: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_error: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_sig: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_sock: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_scope: Option<RateLimitScopeName>,
    #[serde(default)]
    pub kernel_stack_trace: bool,
    #[serde(default)]
    pub user_stack_trace: bool,
    /// IMA hash of the file (not supported yet).
    #[serde(default)]
    pub ima_hash: bool,
    /// Set action: argument to write (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub arg_index: Option<serde_json::Value>,
    /// Set action: value to write (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub arg_value: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListTypeName {
    /// System call names.
    Syscalls,
    /// Every system call of the node's kernel.
    GeneratedSyscalls,
    /// Traceable kernel functions matching `pattern`.
    GeneratedFtrace,
}

/// A named list, referenced as `list:NAME`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSpec {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
    /// Absent: a plain list of kernel function names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<ListTypeName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Set by Tetragon itself; accepted and ignored.
    #[serde(default)]
    pub validated: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptionSpec {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnforcerSpec {
    /// Syscall names or `list:NAME`.
    pub calls: Vec<String>,
}
