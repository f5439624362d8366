//! Vigil's BPF objects and the record ABI shared with the C side.
