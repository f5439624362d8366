//! In: decoded kernel records and the /proc scan (plus heal re-reads after loss).
//! Out: events with their process, parent and pod, serialized for the outputs.
//!
//! The event path proper: the pipeline, the process cache it keeps, and the builders of the
//! event contract's `Process` values.

pub mod builder;
pub mod container;
pub mod heal;
pub mod pipeline;
pub mod process_cache;
pub mod procfs_scan;
pub mod replay;
pub mod thread_variants;
