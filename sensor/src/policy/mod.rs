//! In: TracingPolicies from `--policy`, `--policy-dir`, the operator and the policy RPCs.
//! Out: calls on the engine's [`control::PolicyControl`] (see [`crate::hooks`]), and status back.
//!
//! The sources of policies and the contract between them and the engine.

pub mod api;
pub mod control;
pub mod dir;
pub mod sync;
