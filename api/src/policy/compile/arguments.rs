//! Hook argument declarations (`args`, `returnArg`) lowered to [`ir::ArgSpec`].

use std::collections::BTreeMap;

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::types::*;

use super::arg_types::{arg_type_ir, type_name};
use super::{Cx, HookClass};

impl Cx<'_> {
    pub(super) fn args(
        &mut self,
        path: &str,
        args: &[KProbeArg],
        max_index: u32,
        class: HookClass,
    ) -> (Vec<ir::ArgSpec>, BTreeMap<u32, ArgTypeName>) {
        if args.len() > MAX_ARGS_PER_HOOK {
            self.err(PolicyError::over_limit(
                format!("{path}.args"),
                format!("{} args", args.len()),
                format!("at most {MAX_ARGS_PER_HOOK} args per hook"),
            ));
        }
        let mut out = Vec::new();
        let mut types = BTreeMap::new();
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, a) in args.iter().enumerate() {
            let p = format!("{path}.args[{i}]");
            if let Some(spec) = self.arg_spec(&p, a, max_index, class) {
                if let Some(j) = seen.get(&a.index) {
                    self.err(PolicyError::invalid(
                        format!("{p}.index"),
                        a.index.to_string(),
                        format!("index already declared by {path}.args[{j}]"),
                        "each argument index once",
                    ));
                    continue;
                }
                seen.insert(a.index, i);
                types.insert(a.index, a.r#type);
                out.push(spec);
            }
        }
        (out, types)
    }

    fn arg_spec(
        &mut self,
        p: &str,
        a: &KProbeArg,
        max_index: u32,
        class: HookClass,
    ) -> Option<ir::ArgSpec> {
        let before = self.errs.len();
        for (field, v) in [
            ("resolve", &a.resolve),
            ("btfType", &a.btf_type),
            ("btfTypeModule", &a.btf_type_module),
            ("source", &a.source),
        ] {
            if v.is_some() {
                self.err(PolicyError::not_supported(
                    format!("{p}.{field}"),
                    format!("BTF argument resolution (`{field}`)"),
                    "an argument read by index and type only",
                ));
            }
        }
        if a.index > max_index {
            self.err(PolicyError::invalid(
                format!("{p}.index"),
                a.index.to_string(),
                "argument index out of range",
                format!("an integer from 0 to {max_index}"),
            ));
        }
        let buf = matches!(a.r#type, ArgTypeName::CharBuf | ArgTypeName::CharIovec);
        let mut size_arg_index = None;
        if a.size_arg_index > 0 {
            if !buf {
                self.err(PolicyError::invalid(
                    format!("{p}.sizeArgIndex"),
                    a.size_arg_index.to_string(),
                    format!(
                        "sizeArgIndex only applies to char_buf and char_iovec, not {}",
                        type_name(a.r#type)
                    ),
                    "0 (none) for this type",
                ));
            } else if a.size_arg_index - 1 > MAX_FUNC_ARG_INDEX || a.size_arg_index - 1 == a.index {
                self.err(PolicyError::invalid(
                    format!("{p}.sizeArgIndex"),
                    a.size_arg_index.to_string(),
                    "sizeArgIndex is the 1-based position of another argument holding the size",
                    format!(
                        "1 to {} and not {} (this argument)",
                        MAX_FUNC_ARG_INDEX + 1,
                        a.index + 1
                    ),
                ));
            } else {
                size_arg_index = Some(a.size_arg_index - 1);
            }
        }
        if a.return_copy {
            if !buf {
                self.err(PolicyError::invalid(
                    format!("{p}.returnCopy"),
                    "true",
                    format!(
                        "returnCopy only applies to char_buf and char_iovec, not {}",
                        type_name(a.r#type)
                    ),
                    "false for this type",
                ));
            } else if !matches!(
                class,
                HookClass::Kprobe | HookClass::Syscall | HookClass::Uprobe
            ) {
                self.err(PolicyError::invalid(
                    format!("{p}.returnCopy"),
                    "true",
                    format!("a {} has no return to copy at", class.name()),
                    "false (returnCopy needs a kprobe or uprobe)",
                ));
            }
        }
        if a.max_data && !(buf || a.r#type == ArgTypeName::IovIter) {
            self.err(PolicyError::invalid(
                format!("{p}.maxData"),
                "true",
                format!(
                    "maxData only applies to char_buf, char_iovec and iov_iter, not {}",
                    type_name(a.r#type)
                ),
                "false for this type",
            ));
        }
        self.check_text(&format!("{p}.label"), &a.label, MAX_LABEL_LEN, "a label");
        if self.errs.len() != before {
            return None;
        }
        Some(ir::ArgSpec {
            index: a.index,
            r#type: arg_type_ir(a.r#type) as i32,
            size_arg_index,
            return_copy: a.return_copy,
            max_data: a.max_data,
            label: a.label.clone(),
        })
    }

    pub(super) fn return_arg(
        &mut self,
        path: &str,
        ra: Option<&KProbeArg>,
        ret: bool,
        class: HookClass,
    ) -> Option<ir::ArgSpec> {
        let a = ra?;
        let p = format!("{path}.returnArg");
        if !ret {
            // Tetragon accepts and ignores a returnArg without `return: true`; so does Vigil
            // (there is no return probe, so nothing is captured). Documented.
            return None;
        }
        if a.index != 0 {
            self.err(PolicyError::invalid(
                format!("{p}.index"),
                a.index.to_string(),
                "the return value has index 0",
                "0",
            ));
        }
        if a.size_arg_index != 0 || a.return_copy {
            self.err(PolicyError::invalid(
                p.clone(),
                "sizeArgIndex/returnCopy",
                "buffer options do not apply to the return value",
                "index, type, label",
            ));
        }
        self.arg_spec(&p, a, 0, class)
    }
}
