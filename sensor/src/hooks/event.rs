//! Hook records → Tetragon events (process_kprobe, process_tracepoint, process_uprobe,
//! process_lsm).
