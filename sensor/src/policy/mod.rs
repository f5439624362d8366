//! In: TracingPolicies from `--policy`, `--policy-dir`, the operator and the policy RPCs.
//! Out: calls on the engine's [`control::PolicyControl`] (see [`crate::hooks`]), and status back.
//!
//! The sources of policies and the contract between them and the engine.

pub mod api;
pub mod control;
pub mod dir;
pub mod sync;

/// Compiles a policy file's YAML. A refused input leaves nothing behind, not even glibc's
/// retained peak: the parser allocates up to its budgets (a YAML bomb, up to its node limit)
/// before it refuses, and that memory is given back here.
pub fn compile_yaml(
    yaml: &str,
) -> Result<Vec<vigil_api::policy::ir::PolicyIr>, vigil_api::policy::PolicyErrors> {
    vigil_api::policy::compile_yaml(yaml).inspect_err(|_| crate::heap::release_free_memory())
}
