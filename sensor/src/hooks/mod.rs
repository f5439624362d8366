//! In: policies (IR) through [`crate::policy::control::PolicyControl`], the pod inventory.
//! Out: map entries and attached generic programs; hook records turned back into events.
//!
//! The policy engine: TracingPolicies lowered to map entries for the generic hook programs of
//! `sensor-bpf/bpf/hook.bpf.c`, attached by the best mechanism this kernel offers, and their
//! records turned back into events. See docs/bpf.md.

pub mod attach;
pub mod btf_funcs;
pub mod engine;
pub mod event;
pub mod kernel;
pub mod links;
pub mod lower;
pub mod meta;
pub mod perf_link;
pub mod policy_metrics;
pub mod programs;
pub mod slots;
pub mod snapshot;
pub mod tracefs;
