//! In: serialized events, loss counts of every stage, and the sensor's counters.
//! Out: JSON lines to a rotated file and/or stdout, in-band loss markers, Prometheus metrics.

pub mod event_json;
pub mod export;
pub mod export_file;
pub mod loss;
pub mod metrics;
