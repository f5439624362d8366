//! What user space needs to turn a hook record into an event: per hook slot, the policy, the
//! hooked function and how each argument is to be rendered.
//!
//! The engine writes an entry when it loads a hook and removes it when the hook goes; the
//! pipeline reads it for every hook record. A slot is reused only with a new generation, and
//! records carry the generation they were written under, so a record that was still in the ring
//! buffer when its hook was replaced is never attributed to the new hook.

use std::sync::{Arc, RwLock};

use vigil_api::policy::ir::ArgType;
use vigil_sensor_bpf::abi;

/// Which event a hook produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEventKind {
    /// `process_kprobe` (kprobes, kretprobes and syscall hooks, whatever the mechanism).
    Kprobe,
    /// `process_tracepoint`.
    Tracepoint { subsys: String, event: String },
    /// `process_uprobe`.
    Uprobe {
        path: String,
        symbol: String,
        offset: u64,
    },
    /// `process_lsm`.
    Lsm,
}

/// One argument of a hook as the policy declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgMeta {
    /// The type written in the policy (decides the JSON shape: `int_arg`, `size_arg`, …).
    pub ir_type: ArgType,
    /// How the kernel read it (`abi::argk::*`), which decides the record layout.
    pub kind: u8,
    /// `label` from the policy (empty when none).
    pub label: String,
}

/// Everything about one loaded hook that event building needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookMeta {
    pub policy_name: String,
    pub policy_namespace: String,
    pub kind: HookEventKind,
    /// `function_name` of process_kprobe / process_lsm: the kernel function (e.g.
    /// `__x64_sys_openat`, `security_file_open`) or the LSM hook name (`file_open`).
    pub function_name: String,
    pub args: Vec<ArgMeta>,
    /// The return value's declared type when the hook reports it (`return: true`).
    pub return_type: Option<ArgType>,
    pub message: String,
    pub tags: Vec<String>,
}

/// One slot of the registry: the generation and metadata of the hook loaded there.
type Slot = Option<(u32, Arc<HookMeta>)>;

/// Slot-indexed hook metadata, shared between the engine (writer) and the pipeline (reader).
#[derive(Debug, Default)]
pub struct HookRegistry {
    slots: RwLock<Vec<Slot>>,
}

impl HookRegistry {
    pub fn new() -> Self {
        HookRegistry {
            slots: RwLock::new(vec![None; abi::MAX_HOOKS]),
        }
    }

    /// Records the metadata of `slot` under `generation`.
    pub fn set(&self, slot: u32, generation: u32, meta: Arc<HookMeta>) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.get_mut(slot as usize) {
            *s = Some((generation, meta));
        }
    }

    /// Forgets `slot`.
    pub fn clear(&self, slot: u32) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.get_mut(slot as usize) {
            *s = None;
        }
    }

    /// The metadata of `slot` if it is still the one of `generation`.
    pub fn get(&self, slot: u32, generation: u32) -> Option<Arc<HookMeta>> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        match slots.get(slot as usize) {
            Some(Some((g, m))) if *g == generation => Some(m.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> Arc<HookMeta> {
        Arc::new(HookMeta {
            policy_name: name.into(),
            policy_namespace: String::new(),
            kind: HookEventKind::Kprobe,
            function_name: "__x64_sys_openat".into(),
            args: vec![],
            return_type: None,
            message: String::new(),
            tags: vec![],
        })
    }

    #[test]
    fn generation_guards_reused_slots() {
        let r = HookRegistry::new();
        r.set(3, 1, meta("a"));
        assert_eq!(r.get(3, 1).unwrap().policy_name, "a");
        r.set(3, 2, meta("b"));
        assert!(
            r.get(3, 1).is_none(),
            "a record of the old hook must not get the new name"
        );
        assert_eq!(r.get(3, 2).unwrap().policy_name, "b");
        r.clear(3);
        assert!(r.get(3, 2).is_none());
        assert!(r.get(abi::MAX_HOOKS as u32, 0).is_none());
    }
}
