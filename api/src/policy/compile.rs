//! Semantic validation and lowering of a [`TracingPolicyDoc`] to the IR. One pass does both,
//! so `validate` and `compile` can never disagree. All errors are collected.

use std::collections::{BTreeMap, BTreeSet};

use super::ir;
use super::limits::*;
use super::parse::{PolicyKind, TracingPolicyDoc};
use super::schema::{child, escape, quote, suggest};
use super::types::*;
use super::values::*;
use super::{PolicyError, PolicyErrors};

const TEMPLATE_HINT: &str =
    "a literal value (substitute template variables before loading, e.g. with envsubst)";

struct ListInfo {
    kind: Option<ListTypeName>,
    values: Vec<String>,
    pattern: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HookClass {
    Kprobe,
    Syscall,
    Tracepoint,
    Uprobe,
    Lsm,
}

impl HookClass {
    fn name(self) -> &'static str {
        match self {
            HookClass::Kprobe => "kprobe",
            HookClass::Syscall => "syscall kprobe",
            HookClass::Tracepoint => "tracepoint",
            HookClass::Uprobe => "uprobe",
            HookClass::Lsm => "LSM hook",
        }
    }
}

struct HookCx {
    class: HookClass,
    args: BTreeMap<u32, ArgTypeName>,
    /// Tracepoints: matchArgs.index is a position in `args`; this maps it to the field index.
    positions: Option<Vec<u32>>,
    ret: Option<ArgTypeName>,
    return_probe: bool,
}

struct Cx<'a> {
    spec: &'a TracingPolicySpec,
    errs: PolicyErrors,
    lists: BTreeMap<String, ListInfo>,
}

pub(crate) fn compile(doc: &TracingPolicyDoc) -> Result<ir::PolicyIr, PolicyErrors> {
    let spec = &doc.spec;
    let mut cx = Cx {
        spec,
        errs: PolicyErrors::default(),
        lists: BTreeMap::new(),
    };
    let mut unsupported_top = false;
    if spec.loader {
        unsupported_top = true;
        cx.err(PolicyError::not_supported(
            "spec.loader",
            "loader events (spec.loader)",
            "remove `loader` (process_exec events already report every executed binary)",
        ));
    }
    if spec.usdts.is_some() {
        unsupported_top = true;
        cx.err(PolicyError::not_supported(
            "spec.usdts",
            "USDT probes (spec.usdts)",
            "kprobes, tracepoints, uprobes, lsmhooks",
        ));
    }
    if spec.fentries.is_some() {
        unsupported_top = true;
        cx.err(PolicyError::not_supported(
            "spec.fentries",
            "fentry hooks (spec.fentries)",
            "kprobes (the sensor picks fentry itself where the kernel allows)",
        ));
    }
    cx.lists();
    let (mode, hints) = cx.options();
    let enforcers = cx.enforcers();
    cx.macros();

    let mut hooks: Vec<ir::Hook> = Vec::new();
    for (i, k) in spec.kprobes.iter().enumerate() {
        cx.kprobe(&format!("spec.kprobes[{i}]"), k, &mut hooks);
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        cx.tracepoint(&format!("spec.tracepoints[{i}]"), t, &mut hooks);
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        cx.uprobe(&format!("spec.uprobes[{i}]"), u, &mut hooks);
    }
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        cx.lsm(&format!("spec.lsmhooks[{i}]"), l, &mut hooks);
    }
    let declared =
        spec.kprobes.len() + spec.tracepoints.len() + spec.uprobes.len() + spec.lsmhooks.len();
    if declared == 0 && !unsupported_top {
        cx.err(PolicyError::MissingField {
            path: "spec".into(),
            accepted: "at least one hook in kprobes, tracepoints, uprobes or lsmhooks".into(),
        });
    }
    if hooks.len() > MAX_HOOKS {
        cx.err(PolicyError::over_limit(
            "spec",
            format!("{} hooks after list expansion", hooks.len()),
            format!("at most {MAX_HOOKS} hooks per policy"),
        ));
    }
    cx.duplicate_hooks(&hooks);
    for (i, h) in hooks.iter_mut().enumerate() {
        h.id = u32::try_from(i).unwrap_or(u32::MAX);
    }
    let scope = cx.scope(doc);
    let Cx { errs, .. } = cx;
    errs.into_result(ir::PolicyIr {
        ir_version: ir::IR_VERSION,
        identity: Some(ir::PolicyIdentity {
            name: doc.metadata.name.clone(),
            namespace: doc.metadata.namespace.clone().unwrap_or_default(),
            kind: match doc.kind {
                PolicyKind::Cluster => ir::PolicyKind::Cluster,
                PolicyKind::Namespaced => ir::PolicyKind::Namespaced,
            } as i32,
            source_api_version: doc.api_version.clone(),
        }),
        mode: mode as i32,
        scope: Some(scope),
        hooks,
        enforcers,
        hints: Some(hints),
    })
}

fn arg_type_ir(t: ArgTypeName) -> ir::ArgType {
    use ArgTypeName as A;
    use ir::ArgType as I;
    match t {
        A::Auto => I::Auto,
        A::Int8 => I::Int8,
        A::Uint8 => I::Uint8,
        A::Int16 => I::Int16,
        A::Uint16 => I::Uint16,
        A::Int | A::Int32 => I::Int32,
        A::Uint32 => I::Uint32,
        A::Int64 | A::Long => I::Int64,
        A::Uint64 | A::Ulong => I::Uint64,
        A::SizeT => I::SizeT,
        A::String => I::String,
        A::CharBuf => I::CharBuf,
        A::CharIovec => I::CharIovec,
        A::Filename => I::Filename,
        A::Fd => I::Fd,
        A::File => I::File,
        A::Path => I::Path,
        A::Dentry => I::Dentry,
        A::LinuxBinprm => I::LinuxBinprm,
        A::Sock => I::Sock,
        A::Socket => I::Socket,
        A::Skb => I::Skb,
        A::Sockaddr => I::Sockaddr,
        A::SockaddrUn => I::SockaddrUn,
        A::NetDevice => I::NetDevice,
        A::Cred => I::Cred,
        A::UserNamespace => I::UserNamespace,
        A::Capability => I::Capability,
        A::KernelCapT => I::KernelCapT,
        A::CapInheritable => I::CapInheritable,
        A::CapPermitted => I::CapPermitted,
        A::CapEffective => I::CapEffective,
        A::BpfAttr => I::BpfAttr,
        A::BpfCmd => I::BpfCmd,
        A::BpfMap => I::BpfMap,
        A::BpfProg => I::BpfProg,
        A::PerfEvent => I::PerfEvent,
        A::Kiocb => I::Kiocb,
        A::IovIter => I::IovIter,
        A::LoadInfo => I::LoadInfo,
        A::Module => I::Module,
        A::Syscall64 => I::Syscall64,
        A::DataLoc => I::DataLoc,
        A::ConstBuf => I::ConstBuf,
        A::Nop => I::Nop,
    }
}

fn type_name(t: ArgTypeName) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn op_name(o: ArgOperatorName) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn action_name(a: ActionName) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How values of an argument type are filtered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    Int(IntKind),
    Capability,
    CapMask,
    Syscall,
    Str,
    File { file_type: bool },
    Sock,
    Sockaddr,
    SockaddrUn,
    Opaque,
    Auto,
}

fn group(t: ArgTypeName) -> Group {
    use ArgTypeName as A;
    let s = |min: i64, max: i64| Group::Int(IntKind::Signed { min, max });
    let u = |max: u64| Group::Int(IntKind::Unsigned { max });
    match t {
        A::Int8 => s(i8::MIN.into(), i8::MAX.into()),
        A::Uint8 => u(u8::MAX.into()),
        A::Int16 => s(i16::MIN.into(), i16::MAX.into()),
        A::Uint16 => u(u16::MAX.into()),
        A::Int | A::Int32 => s(i32::MIN.into(), i32::MAX.into()),
        A::Uint32 | A::BpfCmd => u(u32::MAX.into()),
        A::Int64 | A::Long => s(i64::MIN, i64::MAX),
        A::Uint64 | A::Ulong | A::SizeT => u(u64::MAX),
        A::Capability => Group::Capability,
        A::KernelCapT | A::CapInheritable | A::CapPermitted | A::CapEffective => Group::CapMask,
        A::Syscall64 => Group::Syscall,
        A::String | A::CharBuf | A::CharIovec | A::Filename | A::DataLoc | A::ConstBuf => {
            Group::Str
        }
        A::File | A::Path => Group::File { file_type: true },
        A::Fd | A::Dentry | A::LinuxBinprm => Group::File { file_type: false },
        A::Sock | A::Socket | A::Skb => Group::Sock,
        A::Sockaddr => Group::Sockaddr,
        A::SockaddrUn => Group::SockaddrUn,
        A::Auto => Group::Auto,
        A::NetDevice
        | A::Cred
        | A::UserNamespace
        | A::BpfAttr
        | A::BpfMap
        | A::BpfProg
        | A::PerfEvent
        | A::Kiocb
        | A::IovIter
        | A::LoadInfo
        | A::Module
        | A::Nop => Group::Opaque,
    }
}

fn ops_for(g: Group) -> Vec<ArgOperatorName> {
    use ArgOperatorName as O;
    let strs = [
        O::Equal,
        O::NotEqual,
        O::Prefix,
        O::NotPrefix,
        O::Postfix,
        O::NotPostfix,
    ];
    match g {
        Group::Int(_) => vec![
            O::Equal,
            O::NotEqual,
            O::GreaterThan,
            O::Gt,
            O::LessThan,
            O::Lt,
            O::Mask,
            O::InRange,
            O::NotInRange,
            O::InMap,
            O::NotInMap,
        ],
        Group::Capability => vec![O::Equal, O::NotEqual, O::InMap, O::NotInMap],
        Group::CapMask => vec![O::Equal, O::NotEqual, O::Mask, O::CapabilitiesGained],
        Group::Syscall => vec![O::Equal, O::NotEqual, O::InMap, O::NotInMap],
        Group::Str => {
            let mut v = strs.to_vec();
            v.extend([O::SubString, O::SubStringIgnCase]);
            v
        }
        Group::File { file_type } => {
            let mut v = strs.to_vec();
            if file_type {
                v.extend([O::FileType, O::NotFileType]);
            }
            v
        }
        Group::SockaddrUn => strs.to_vec(),
        Group::Sock => vec![
            O::SAddr,
            O::NotSAddr,
            O::DAddr,
            O::NotDAddr,
            O::SPort,
            O::NotSPort,
            O::SPortPriv,
            O::NotSPortPriv,
            O::NotSportPriv,
            O::DPort,
            O::NotDPort,
            O::DPortPriv,
            O::NotDPortPriv,
            O::Protocol,
            O::Family,
            O::State,
        ],
        Group::Sockaddr => vec![
            O::SAddr,
            O::NotSAddr,
            O::SPort,
            O::NotSPort,
            O::SPortPriv,
            O::NotSPortPriv,
            O::NotSportPriv,
            O::Family,
        ],
        Group::Opaque | Group::Auto => vec![],
    }
}

fn op_ir(o: ArgOperatorName) -> ir::ArgOperator {
    use ArgOperatorName as O;
    use ir::ArgOperator as I;
    match o {
        O::Equal => I::Equal,
        O::NotEqual => I::NotEqual,
        O::Prefix => I::Prefix,
        O::NotPrefix => I::NotPrefix,
        O::Postfix => I::Postfix,
        O::NotPostfix => I::NotPostfix,
        O::GreaterThan | O::Gt => I::GreaterThan,
        O::LessThan | O::Lt => I::LessThan,
        O::Mask => I::Mask,
        O::InRange => I::InRange,
        O::NotInRange => I::NotInRange,
        O::InMap => I::InMap,
        O::NotInMap => I::NotInMap,
        O::SubString => I::Substring,
        O::SubStringIgnCase => I::SubstringIgnoreCase,
        O::FileType => I::FileType,
        O::NotFileType => I::NotFileType,
        O::SAddr => I::Saddr,
        O::NotSAddr => I::NotSaddr,
        O::DAddr => I::Daddr,
        O::NotDAddr => I::NotDaddr,
        O::SPort => I::Sport,
        O::NotSPort => I::NotSport,
        O::SPortPriv => I::SportPriv,
        O::NotSportPriv | O::NotSPortPriv => I::NotSportPriv,
        O::DPort => I::Dport,
        O::NotDPort => I::NotDport,
        O::DPortPriv => I::DportPriv,
        O::NotDPortPriv => I::NotDportPriv,
        O::Protocol => I::Protocol,
        O::Family => I::Family,
        O::State => I::State,
        O::CapabilitiesGained => I::CapabilitiesGained,
        O::CelExpr => I::Unspecified,
    }
}

/// Group strings into length buckets; values sorted and de-duplicated.
fn bucketize(values: BTreeSet<String>) -> ir::StringSet {
    let mut buckets: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for v in values {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        let class = STRING_BUCKETS
            .iter()
            .copied()
            .find(|c| len <= *c)
            .unwrap_or(STRING_BUCKETS[STRING_BUCKETS.len() - 1]);
        buckets.entry(class).or_default().push(v);
    }
    ir::StringSet {
        buckets: buckets
            .into_iter()
            .map(|(max_len, values)| ir::StringBucket { max_len, values })
            .collect(),
    }
}

fn set_op(o: SetOperatorName) -> ir::SetOperator {
    match o {
        SetOperatorName::In => ir::SetOperator::In,
        SetOperatorName::NotIn => ir::SetOperator::NotIn,
    }
}

fn ns_ir(n: NamespaceName) -> ir::NamespaceType {
    use NamespaceName as N;
    use ir::NamespaceType as I;
    match n {
        N::Uts => I::Uts,
        N::Ipc => I::Ipc,
        N::Mnt => I::Mnt,
        N::Pid => I::Pid,
        N::PidForChildren => I::PidForChildren,
        N::Net => I::Net,
        N::Time => I::Time,
        N::TimeForChildren => I::TimeForChildren,
        N::Cgroup => I::Cgroup,
        N::User => I::User,
    }
}

const NAMESPACE_NAMES: [(&str, NamespaceName); 10] = [
    ("Uts", NamespaceName::Uts),
    ("Ipc", NamespaceName::Ipc),
    ("Mnt", NamespaceName::Mnt),
    ("Pid", NamespaceName::Pid),
    ("PidForChildren", NamespaceName::PidForChildren),
    ("Net", NamespaceName::Net),
    ("Time", NamespaceName::Time),
    ("TimeForChildren", NamespaceName::TimeForChildren),
    ("Cgroup", NamespaceName::Cgroup),
    ("User", NamespaceName::User),
];

const SYSCALL_PREFIXES: [&str; 6] = [
    "__x64_sys_",
    "__ia32_sys_",
    "__arm64_sys_",
    "__se_sys_",
    "__do_sys_",
    "sys_",
];

fn syscall_name(call: &str) -> String {
    for p in SYSCALL_PREFIXES {
        if let Some(rest) = call.strip_prefix(p) {
            return rest.to_string();
        }
    }
    call.to_string()
}

/// A selector after macro expansion: every filter keeps the path it came from.
#[derive(Default)]
struct Merged<'a> {
    pids: Vec<(String, &'a PidSelector)>,
    args: Vec<(String, &'a ArgSelector)>,
    return_args: Vec<(String, &'a ArgSelector)>,
    actions: Vec<(String, &'a ActionSelector)>,
    return_actions: Vec<(String, &'a ActionSelector)>,
    binaries: Vec<(String, &'a BinarySelector)>,
    namespaces: Vec<(String, &'a NamespaceSelector)>,
    namespace_changes: Vec<(String, &'a NamespaceChangesSelector)>,
    capabilities: Vec<(String, &'a CapabilitiesSelector)>,
    capability_changes: Vec<(String, &'a CapabilitiesSelector)>,
}

impl<'a> Merged<'a> {
    fn add(&mut self, base: &str, s: &'a KProbeSelector) {
        fn each<'b, T>(out: &mut Vec<(String, &'b T)>, base: &str, field: &str, items: &'b [T]) {
            for (i, x) in items.iter().enumerate() {
                out.push((format!("{base}.{field}[{i}]"), x));
            }
        }
        each(&mut self.pids, base, "matchPIDs", &s.match_pids);
        each(&mut self.args, base, "matchArgs", &s.match_args);
        each(
            &mut self.return_args,
            base,
            "matchReturnArgs",
            &s.match_return_args,
        );
        each(&mut self.actions, base, "matchActions", &s.match_actions);
        each(
            &mut self.return_actions,
            base,
            "matchReturnActions",
            &s.match_return_actions,
        );
        each(&mut self.binaries, base, "matchBinaries", &s.match_binaries);
        each(
            &mut self.namespaces,
            base,
            "matchNamespaces",
            &s.match_namespaces,
        );
        each(
            &mut self.namespace_changes,
            base,
            "matchNamespaceChanges",
            &s.match_namespace_changes,
        );
        each(
            &mut self.capabilities,
            base,
            "matchCapabilities",
            &s.match_capabilities,
        );
        each(
            &mut self.capability_changes,
            base,
            "matchCapabilityChanges",
            &s.match_capability_changes,
        );
    }
}

fn is_bool_option(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

const OPTION_NAMES: [&str; 3] = [
    "policy-mode",
    "disable-kprobe-multi",
    "disable-uprobe-multi",
];

impl Cx<'_> {
    fn err(&mut self, e: PolicyError) {
        self.errs.push(e);
    }

    fn check_text(&mut self, path: &str, s: &str, max: usize, what: &str) {
        if s.chars().count() > max {
            self.err(PolicyError::over_limit(
                path,
                format!("{} ({} characters)", quote(s), s.chars().count()),
                format!("{what} has at most {max} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            self.err(PolicyError::invalid(
                path,
                quote(s),
                "contains control characters",
                format!("{what} without control characters"),
            ));
        }
    }

    fn message_and_tags(&mut self, path: &str, message: &str, tags: &[String]) {
        self.check_text(
            &format!("{path}.message"),
            message,
            MAX_MESSAGE_LEN,
            "a message",
        );
        if tags.len() > MAX_TAGS {
            self.err(PolicyError::over_limit(
                format!("{path}.tags"),
                format!("{} tags", tags.len()),
                format!("at most {MAX_TAGS} tags per hook"),
            ));
        }
        for (i, t) in tags.iter().enumerate() {
            let p = format!("{path}.tags[{i}]");
            if t.is_empty() {
                self.err(PolicyError::invalid(
                    p,
                    "\"\"",
                    "empty tag",
                    "a non-empty string",
                ));
            } else {
                self.check_text(&p, t, MAX_TAG_LEN, "a tag");
            }
        }
    }

    fn lists(&mut self) {
        let spec = self.spec;
        if spec.lists.len() > MAX_LISTS {
            self.err(PolicyError::over_limit(
                "spec.lists",
                format!("{} lists", spec.lists.len()),
                format!("at most {MAX_LISTS} lists per policy"),
            ));
        }
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, l) in spec.lists.iter().enumerate() {
            let path = format!("spec.lists[{i}]");
            let name_ok = !l.name.is_empty()
                && l.name.len() <= MAX_LIST_NAME_LEN
                && is_identifier(&l.name, b"-.");
            if !name_ok {
                self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(&l.name),
                    "not a valid list name",
                    format!("letters, digits, '_', '-', '.', starting with a letter or '_', at most {MAX_LIST_NAME_LEN} characters"),
                ));
            }
            if let Some(j) = first.get(l.name.as_str()) {
                self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(&l.name),
                    format!("duplicate list name (already used by spec.lists[{j}])"),
                    "a name not used by another list",
                ));
                continue;
            }
            first.insert(&l.name, i);
            let mut values = BTreeSet::new();
            match l.r#type {
                None | Some(ListTypeName::Syscalls) => {
                    if l.values.is_empty() {
                        self.err(PolicyError::MissingField {
                            path: format!("{path}.values"),
                            accepted: "a non-empty list of names".into(),
                        });
                    }
                    if l.values.len() > MAX_LIST_VALUES {
                        self.err(PolicyError::over_limit(
                            format!("{path}.values"),
                            format!("{} values", l.values.len()),
                            format!("at most {MAX_LIST_VALUES} values per list"),
                        ));
                    }
                    for (j, v) in l.values.iter().enumerate() {
                        if v.len() > MAX_SYMBOL_LEN || !is_identifier(v, b".") {
                            self.err(PolicyError::invalid(
                                format!("{path}.values[{j}]"),
                                quote(v),
                                "not a valid function or syscall name",
                                "a name of letters, digits and '_' (e.g. sys_dup)",
                            ));
                        } else {
                            values.insert(v.clone());
                        }
                    }
                    if let Some(p) = &l.pattern {
                        self.err(PolicyError::invalid(
                            format!("{path}.pattern"),
                            quote(p),
                            "pattern only applies to generated_ftrace lists",
                            "no pattern (or type: generated_ftrace)",
                        ));
                    }
                }
                Some(t @ (ListTypeName::GeneratedSyscalls | ListTypeName::GeneratedFtrace)) => {
                    if !l.values.is_empty() {
                        self.err(PolicyError::invalid(
                            format!("{path}.values"),
                            format!("{} values", l.values.len()),
                            "generated lists get their values from the node's kernel",
                            "no values",
                        ));
                    }
                    match (&l.pattern, t) {
                        (None, ListTypeName::GeneratedFtrace) => {
                            self.err(PolicyError::MissingField {
                                path: format!("{path}.pattern"),
                                accepted:
                                    "a regular expression over kernel function names, e.g. ^ksys_"
                                        .into(),
                            })
                        }
                        (Some(p), ListTypeName::GeneratedFtrace) => {
                            if p.is_empty()
                                || p.len() > 1024
                                || regex::RegexBuilder::new(p)
                                    .size_limit(1 << 20)
                                    .build()
                                    .is_err()
                            {
                                self.err(PolicyError::invalid(
                                    format!("{path}.pattern"),
                                    quote(p),
                                    "not a valid regular expression",
                                    "a regular expression (at most 1024 characters), e.g. ^ksys_",
                                ));
                            }
                        }
                        (Some(p), _) => self.err(PolicyError::invalid(
                            format!("{path}.pattern"),
                            quote(p),
                            "pattern only applies to generated_ftrace lists",
                            "no pattern",
                        )),
                        (None, _) => {}
                    }
                }
            }
            if !name_ok {
                continue;
            }
            self.lists.insert(
                l.name.clone(),
                ListInfo {
                    kind: l.r#type,
                    values: values.into_iter().collect(),
                    pattern: l.pattern.clone().unwrap_or_default(),
                },
            );
        }
    }

    fn options(&mut self) -> (ir::PolicyMode, ir::MechanismHints) {
        let mut mode = ir::PolicyMode::Enforce;
        let mut hints = ir::MechanismHints::default();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, o) in self.spec.options.iter().enumerate() {
            let path = format!("spec.options[{i}]");
            if let Some(j) = seen.get(o.name.as_str()) {
                self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(&o.name),
                    format!("option already set by spec.options[{j}]"),
                    "each option once",
                ));
                continue;
            }
            seen.insert(&o.name, i);
            match o.name.as_str() {
                "policy-mode" => match o.value.as_str() {
                    "enforce" => mode = ir::PolicyMode::Enforce,
                    "monitor" => mode = ir::PolicyMode::Monitor,
                    other => self.err(PolicyError::invalid(
                        format!("{path}.value"),
                        quote(other),
                        format!(
                            "unknown policy mode{}",
                            suggest(other, ["enforce", "monitor"])
                        ),
                        "enforce, monitor",
                    )),
                },
                "disable-kprobe-multi" | "disable-uprobe-multi" => match is_bool_option(&o.value) {
                    Some(b) => {
                        if o.name == "disable-kprobe-multi" {
                            hints.disable_kprobe_multi = b;
                        } else {
                            hints.disable_uprobe_multi = b;
                        }
                    }
                    None => self.err(PolicyError::invalid(
                        format!("{path}.value"),
                        quote(&o.value),
                        "not a boolean",
                        "1, 0, true, false",
                    )),
                },
                other => self.err(PolicyError::invalid(
                    format!("{path}.name"),
                    quote(other),
                    format!("unknown option{}", suggest(other, OPTION_NAMES)),
                    OPTION_NAMES.join(", "),
                )),
            }
        }
        (mode, hints)
    }

    /// Resolve `list:NAME` to a syscalls list's values, reporting errors at `path`.
    fn syscall_list(&mut self, path: &str, name: &str) -> Option<Vec<String>> {
        match self.lists.get(name) {
            Some(l) if l.kind == Some(ListTypeName::Syscalls) => Some(l.values.clone()),
            Some(_) => {
                self.err(PolicyError::invalid(
                    path,
                    quote(&format!("list:{name}")),
                    "the list is not of type syscalls",
                    "a reference to a list with type: syscalls",
                ));
                None
            }
            None => {
                let names = self.list_names();
                self.err(PolicyError::invalid(
                    path,
                    quote(&format!("list:{name}")),
                    format!(
                        "unknown list{}",
                        suggest(name, self.lists.keys().map(String::as_str))
                    ),
                    names,
                ));
                None
            }
        }
    }

    fn list_names(&self) -> String {
        if self.lists.is_empty() {
            "no lists are defined (add one under spec.lists)".to_string()
        } else {
            self.lists
                .keys()
                .map(|k| format!("list:{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    fn enforcers(&mut self) -> Vec<ir::Enforcer> {
        let spec = self.spec;
        if spec.enforcers.len() > MAX_ENFORCERS {
            self.err(PolicyError::over_limit(
                "spec.enforcers",
                format!("{} enforcers", spec.enforcers.len()),
                format!("at most {MAX_ENFORCERS} enforcers per policy"),
            ));
        }
        let mut out = Vec::new();
        for (i, e) in spec.enforcers.iter().enumerate() {
            let path = format!("spec.enforcers[{i}]");
            if e.calls.is_empty() {
                self.err(PolicyError::MissingField {
                    path: format!("{path}.calls"),
                    accepted: "a non-empty list of syscall names or list:NAME references".into(),
                });
            }
            let mut set = BTreeSet::new();
            for (j, c) in e.calls.iter().enumerate() {
                let p = format!("{path}.calls[{j}]");
                if let Some(name) = c.strip_prefix("list:") {
                    if let Some(v) = self.syscall_list(&p, name) {
                        set.extend(v);
                    }
                } else if is_identifier(c, b"") && c.len() <= MAX_SYMBOL_LEN {
                    set.insert(c.clone());
                } else {
                    self.err(PolicyError::invalid(
                        p,
                        quote(c),
                        "not a syscall name or list reference",
                        "a syscall name (e.g. sys_dup) or list:NAME",
                    ));
                }
            }
            out.push(ir::Enforcer {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                syscalls: set.into_iter().collect(),
            });
        }
        out
    }

    fn macros(&mut self) {
        for (name, m) in &self.spec.selectors_macros {
            let path = child("spec.selectorsMacros", name);
            if !m.macros.is_empty() {
                self.err(PolicyError::invalid(
                    format!("{path}.macros"),
                    format!("{:?}", m.macros),
                    "macros cannot include other macros",
                    "no macros inside a selectorsMacros entry",
                ));
            }
        }
    }

    fn args(
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

    fn return_arg(
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

    fn selectors(
        &mut self,
        path: &str,
        sels: &[KProbeSelector],
        hcx: &HookCx,
    ) -> Vec<ir::Selector> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for (i, s) in sels.iter().enumerate() {
            let sp = format!("{path}.selectors[{i}]");
            total += 1;
            let mut merged = Merged::default();
            self.selector_unsupported(&sp, s);
            merged.add(&sp, s);
            for (k, m) in s.macros.iter().enumerate() {
                match self.spec.selectors_macros.get(m) {
                    Some(ms) => {
                        let mp = child("spec.selectorsMacros", m);
                        self.selector_unsupported(&mp, ms);
                        merged.add(&mp, ms);
                    }
                    None => {
                        let names: Vec<&str> = self
                            .spec
                            .selectors_macros
                            .keys()
                            .map(String::as_str)
                            .collect();
                        self.err(PolicyError::invalid(
                            format!("{sp}.macros[{k}]"),
                            quote(m),
                            format!(
                                "unknown selector macro{}",
                                suggest(m, names.iter().copied())
                            ),
                            if names.is_empty() {
                                "no macros are defined (add them under spec.selectorsMacros)"
                                    .to_string()
                            } else {
                                names
                                    .iter()
                                    .map(|n| escape(n))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            },
                        ));
                    }
                }
            }
            if let Some(sel) = self.selector(&sp, i, &merged, hcx) {
                out.push(sel);
            }
        }
        if total > MAX_SELECTORS {
            self.err(PolicyError::over_limit(
                format!("{path}.selectors"),
                format!("{total} selectors"),
                format!("at most {MAX_SELECTORS} selectors per hook"),
            ));
        }
        out
    }

    fn selector_unsupported(&mut self, sp: &str, s: &KProbeSelector) {
        if s.match_data.is_some() {
            self.err(PolicyError::not_supported(
                format!("{sp}.matchData"),
                "data filters (matchData)",
                "matchArgs on declared args",
            ));
        }
        if s.match_parent_binaries.is_some() {
            self.err(PolicyError::not_supported(
                format!("{sp}.matchParentBinaries"),
                "parent binary filters (matchParentBinaries)",
                "matchBinaries with followChildren",
            ));
        }
    }

    fn count<T>(&mut self, path: &str, field: &str, items: &[T], max: usize) {
        if items.len() > max {
            self.err(PolicyError::over_limit(
                format!("{path}.{field}"),
                format!("{} entries", items.len()),
                format!("at most {max} {field} entries per selector"),
            ));
        }
    }

    fn selector(
        &mut self,
        sp: &str,
        index: usize,
        m: &Merged<'_>,
        hcx: &HookCx,
    ) -> Option<ir::Selector> {
        let before = self.errs.len();
        self.count(sp, "matchPIDs", &m.pids, MAX_PID_FILTERS);
        self.count(sp, "matchArgs", &m.args, MAX_ARG_FILTERS);
        self.count(sp, "matchReturnArgs", &m.return_args, MAX_ARG_FILTERS);
        self.count(sp, "matchActions", &m.actions, MAX_ACTIONS);
        self.count(sp, "matchReturnActions", &m.return_actions, MAX_ACTIONS);
        self.count(sp, "matchBinaries", &m.binaries, MAX_BINARY_FILTERS);
        self.count(
            sp,
            "matchCapabilities",
            &m.capabilities,
            MAX_CAPABILITY_FILTERS,
        );
        self.count(
            sp,
            "matchCapabilityChanges",
            &m.capability_changes,
            MAX_CAPABILITY_FILTERS,
        );
        self.count(
            sp,
            "matchNamespaceChanges",
            &m.namespace_changes,
            MAX_NAMESPACE_CHANGE_FILTERS,
        );

        let mut sel = ir::Selector {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            ..Default::default()
        };
        for (p, f) in &m.pids {
            if let Some(x) = self.pid_filter(p, f) {
                sel.pids.push(x);
            }
        }
        for (p, f) in &m.binaries {
            if let Some(x) = self.binary_filter(p, f) {
                sel.binaries.push(x);
            }
        }
        let mut ns_seen: BTreeMap<NamespaceName, &str> = BTreeMap::new();
        for (p, f) in &m.namespaces {
            if let Some(prev) = ns_seen.get(&f.namespace) {
                self.err(PolicyError::invalid(
                    format!("{p}.namespace"),
                    format!("{:?}", f.namespace),
                    format!("namespace type already filtered by {prev}"),
                    "each namespace type once per selector",
                ));
                continue;
            }
            ns_seen.insert(f.namespace, p.as_str());
            if let Some(x) = self.namespace_filter(p, f) {
                sel.namespaces.push(x);
            }
        }
        if let Some((p, f)) = m.namespace_changes.first() {
            sel.namespace_changes = self.namespace_change_filter(p, f);
        }
        for (p, f) in &m.capabilities {
            if let Some(x) = self.capability_filter(p, f) {
                sel.capabilities.push(x);
            }
        }
        for (p, f) in &m.capability_changes {
            if let Some(x) = self.capability_filter(p, f) {
                sel.capability_changes.push(x);
            }
        }
        for (p, f) in &m.args {
            let field = match &hcx.positions {
                Some(pos) => pos.get(f.index as usize).copied(),
                None => Some(f.index),
            };
            match field.and_then(|i| hcx.args.get(&i).map(|t| (i, *t))) {
                Some((i, t)) => {
                    if let Some(mut x) = self.arg_filter(p, f, t) {
                        x.index = i;
                        sel.args.push(x);
                    }
                }
                None if hcx.positions.is_some() => {
                    let n = hcx.positions.as_ref().map_or(0, Vec::len);
                    self.err(PolicyError::invalid(
                        format!("{p}.index"),
                        f.index.to_string(),
                        "on tracepoints, matchArgs.index is a position in the hook's args list",
                        if n == 0 {
                            "a position in args (none are declared)".to_string()
                        } else {
                            format!("a position from 0 to {}", n - 1)
                        },
                    ));
                }
                None => {
                    let declared: Vec<String> = hcx.args.keys().map(u32::to_string).collect();
                    self.err(PolicyError::invalid(
                        format!("{p}.index"),
                        f.index.to_string(),
                        "no argument with this index is declared in args",
                        if declared.is_empty() {
                            "an index declared in the hook's args (none are declared)".to_string()
                        } else {
                            format!("a declared argument index: {}", declared.join(", "))
                        },
                    ));
                }
            }
        }
        if !m.return_args.is_empty() || !m.return_actions.is_empty() {
            if !hcx.return_probe {
                let p = if let Some((p, _)) = m.return_args.first() {
                    p
                } else {
                    &m.return_actions[0].0
                };
                self.err(PolicyError::invalid(
                    p.clone(),
                    "(return filter)",
                    if matches!(hcx.class, HookClass::Tracepoint | HookClass::Lsm) {
                        format!("a {} has no return value", hcx.class.name())
                    } else {
                        "matchReturnArgs/matchReturnActions need `return: true` on the hook"
                            .to_string()
                    },
                    "set `return: true` and a returnArg, or use matchArgs/matchActions",
                ));
            } else {
                for (p, f) in &m.return_args {
                    match hcx.ret {
                        Some(t) if f.index == 0 => {
                            if let Some(x) = self.arg_filter(p, f, t) {
                                sel.return_args.push(x);
                            }
                        }
                        Some(_) => self.err(PolicyError::invalid(
                            format!("{p}.index"),
                            f.index.to_string(),
                            "the return value has index 0",
                            "0",
                        )),
                        None => self.err(PolicyError::invalid(
                            p.clone(),
                            "(return filter)",
                            "matchReturnArgs needs a returnArg that declares the return type",
                            "add returnArg: {index: 0, type: ...} to the hook",
                        )),
                    }
                }
                for (p, a) in &m.return_actions {
                    if let Some(x) = self.action(p, a, hcx, true) {
                        sel.return_actions.push(x);
                    }
                }
            }
        }
        for (p, a) in &m.actions {
            if let Some(x) = self.action(p, a, hcx, false) {
                sel.actions.push(x);
            }
        }
        (self.errs.len() == before).then_some(sel)
    }

    fn too_many_values(&mut self, path: &str, n: usize) -> bool {
        if n > MAX_VALUES_PER_FILTER {
            self.err(PolicyError::over_limit(
                format!("{path}.values"),
                format!("{n} values"),
                format!("at most {MAX_VALUES_PER_FILTER} values per filter"),
            ));
            return true;
        }
        false
    }

    fn empty_values(&mut self, path: &str, n: usize, accepted: &str) -> bool {
        if n == 0 {
            self.err(PolicyError::MissingField {
                path: format!("{path}.values"),
                accepted: format!("a non-empty list of {accepted}"),
            });
            return true;
        }
        false
    }

    fn pid_filter(&mut self, p: &str, f: &PidSelector) -> Option<ir::PidFilter> {
        if self.empty_values(p, f.values.len(), "process IDs")
            || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let pids: BTreeSet<u32> = f.values.iter().copied().collect();
        Some(ir::PidFilter {
            operator: set_op(f.operator) as i32,
            pids: pids.into_iter().collect(),
            follow_forks: f.follow_forks,
            is_namespace_pid: f.is_namespace_pid,
        })
    }

    fn binary_filter(&mut self, p: &str, f: &BinarySelector) -> Option<ir::BinaryFilter> {
        use BinaryOperatorName as B;
        if self.empty_values(p, f.values.len(), "binary paths")
            || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let exact = matches!(f.operator, B::In | B::NotIn);
        if f.follow_children && !exact {
            self.err(PolicyError::invalid(
                format!("{p}.followChildren"),
                "true",
                "followChildren only applies to In and NotIn",
                "operator In or NotIn, or followChildren: false",
            ));
        }
        let mut set = BTreeSet::new();
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            let vp = format!("{p}.values[{i}]");
            if is_template(v) {
                self.err(PolicyError::not_supported(
                    vp,
                    format!("template variable in {}", quote(v)),
                    TEMPLATE_HINT,
                ));
                ok = false;
                continue;
            }
            let max = if exact {
                MAX_STRING_EQUAL_LEN - 1
            } else {
                MAX_STRING_AFFIX_LEN
            };
            if v.is_empty() || v.contains('\0') {
                self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    "empty or contains NUL",
                    "a non-empty path",
                ));
                ok = false;
            } else if v.len() > max {
                self.err(PolicyError::over_limit(
                    vp,
                    format!("{} ({} bytes)", quote(v), v.len()),
                    format!(
                        "matchBinaries {:?} values have at most {max} bytes",
                        f.operator
                    ),
                ));
                ok = false;
            } else if exact && !v.starts_with('/') {
                self.err(PolicyError::invalid(
                    vp,
                    quote(v),
                    "In/NotIn compare the full executable path",
                    "an absolute path such as /usr/bin/curl (or use operator Postfix)",
                ));
                ok = false;
            } else {
                set.insert(v.clone());
            }
        }
        let op = match f.operator {
            B::In => ir::BinaryOperator::In,
            B::NotIn => ir::BinaryOperator::NotIn,
            B::Prefix => ir::BinaryOperator::Prefix,
            B::NotPrefix => ir::BinaryOperator::NotPrefix,
            B::Postfix => ir::BinaryOperator::Postfix,
            B::NotPostfix => ir::BinaryOperator::NotPostfix,
        };
        ok.then(|| ir::BinaryFilter {
            operator: op as i32,
            values: Some(bucketize(set)),
            follow_children: f.follow_children,
        })
    }

    fn namespace_filter(&mut self, p: &str, f: &NamespaceSelector) -> Option<ir::NamespaceFilter> {
        if self.empty_values(p, f.values.len(), "namespace inode numbers or host_ns")
            || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let mut inodes = BTreeSet::new();
        let mut host_ns = false;
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            if v == "host_ns" {
                host_ns = true;
                continue;
            }
            match parse_int(v) {
                Some(Int::Unsigned(u)) if u32::try_from(u).is_ok() => {
                    inodes.insert(u32::try_from(u).unwrap_or_default());
                }
                _ => {
                    self.err(PolicyError::invalid(
                        format!("{p}.values[{i}]"),
                        quote(v),
                        "not a namespace inode number",
                        "an integer from 0 to 4294967295, or host_ns",
                    ));
                    ok = false;
                }
            }
        }
        ok.then(|| ir::NamespaceFilter {
            namespace: ns_ir(f.namespace) as i32,
            operator: set_op(f.operator) as i32,
            inodes: inodes.into_iter().collect(),
            host_ns,
        })
    }

    fn namespace_change_filter(
        &mut self,
        p: &str,
        f: &NamespaceChangesSelector,
    ) -> Option<ir::NamespaceChangeFilter> {
        let accepted = NAMESPACE_NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        if self.empty_values(p, f.values.len(), "namespace types") {
            return None;
        }
        let mut set = BTreeSet::new();
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            match NAMESPACE_NAMES.iter().find(|(n, _)| n == v) {
                Some((_, ns)) => {
                    set.insert(ns_ir(*ns) as i32);
                }
                None => {
                    self.err(PolicyError::invalid(
                        format!("{p}.values[{i}]"),
                        quote(v),
                        format!(
                            "unknown namespace type{}",
                            suggest(v, NAMESPACE_NAMES.iter().map(|(n, _)| *n))
                        ),
                        accepted.clone(),
                    ));
                    ok = false;
                }
            }
        }
        ok.then(|| ir::NamespaceChangeFilter {
            operator: set_op(f.operator) as i32,
            namespaces: set.into_iter().collect(),
        })
    }

    fn capability_filter(
        &mut self,
        p: &str,
        f: &CapabilitiesSelector,
    ) -> Option<ir::CapabilityFilter> {
        if self.empty_values(p, f.values.len(), "capability names (CAP_*)") {
            return None;
        }
        let mut mask = 0u64;
        let mut ok = true;
        for (i, v) in f.values.iter().enumerate() {
            match capability(v) {
                Some(n) => mask |= 1u64 << n,
                None => {
                    self.err(PolicyError::invalid(
                        format!("{p}.values[{i}]"),
                        quote(v),
                        format!("unknown capability{}", suggest(v, CAPABILITIES)),
                        "capability names CAP_CHOWN … CAP_CHECKPOINT_RESTORE (see capabilities(7))",
                    ));
                    ok = false;
                }
            }
        }
        let names = (0..64u32)
            .filter(|b| mask & (1u64 << b) != 0)
            .filter_map(|b| CAPABILITIES.get(b as usize).map(|s| s.to_string()))
            .collect();
        let set = match f.r#type {
            CapabilityTypeName::Effective => ir::CapabilitySet::Effective,
            CapabilityTypeName::Inheritable => ir::CapabilitySet::Inheritable,
            CapabilityTypeName::Permitted => ir::CapabilitySet::Permitted,
        };
        ok.then(|| ir::CapabilityFilter {
            set: set as i32,
            operator: set_op(f.operator) as i32,
            is_namespace_capability: f.is_namespace_capability,
            mask,
            names,
        })
    }

    fn arg_filter(&mut self, p: &str, f: &ArgSelector, ty: ArgTypeName) -> Option<ir::ArgFilter> {
        use ArgOperatorName as O;
        if f.args.is_some() {
            self.err(PolicyError::not_supported(
                format!("{p}.args"),
                "selecting arguments by position in `args` (matchArgs.args)",
                "index (the function argument index)",
            ));
            return None;
        }
        if f.operator == O::CelExpr {
            self.err(PolicyError::not_supported(
                format!("{p}.operator"),
                "CEL expressions (operator CelExpr)",
                "the typed operators (Equal, Prefix, InRange, DAddr, …)",
            ));
            return None;
        }
        let g = group(ty);
        if g == Group::Auto {
            self.err(PolicyError::invalid(
                format!("{p}.index"),
                f.index.to_string(),
                "the argument has type auto, so its values cannot be checked",
                "declare the argument's type in args (int, string, file, sock, …)",
            ));
            return None;
        }
        let allowed = ops_for(g);
        if !allowed.contains(&f.operator) {
            self.err(PolicyError::invalid(
                format!("{p}.operator"),
                quote(&op_name(f.operator)),
                format!("operator does not apply to arg type {}", type_name(ty)),
                if allowed.is_empty() {
                    format!(
                        "none: arg type {} cannot be filtered (filter on another argument)",
                        type_name(ty)
                    )
                } else {
                    allowed
                        .iter()
                        .map(|o| op_name(*o))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ));
            return None;
        }
        let mut out = ir::ArgFilter {
            index: f.index,
            arg_type: arg_type_ir(ty) as i32,
            operator: op_ir(f.operator) as i32,
            ..Default::default()
        };
        let no_values = matches!(
            f.operator,
            O::SPortPriv | O::NotSportPriv | O::NotSPortPriv | O::DPortPriv | O::NotDPortPriv
        );
        if no_values {
            if !f.values.is_empty() {
                self.err(PolicyError::invalid(
                    format!("{p}.values"),
                    format!("{} values", f.values.len()),
                    format!(
                        "{} takes no values (it matches ports below 1024)",
                        op_name(f.operator)
                    ),
                    "no values",
                ));
                return None;
            }
            return Some(out);
        }
        if self.empty_values(p, f.values.len(), "values") || self.too_many_values(p, f.values.len())
        {
            return None;
        }
        let before = self.errs.len();
        let mut signed = BTreeSet::new();
        let mut unsigned = BTreeSet::new();
        let mut sranges = BTreeSet::new();
        let mut uranges = BTreeSet::new();
        let mut strings = BTreeSet::new();
        let mut addrs = BTreeMap::new();
        let mut ports = Vec::new();
        let mut small = BTreeSet::new();
        let mut syscalls = BTreeSet::new();
        let single = matches!(f.operator, O::GreaterThan | O::Gt | O::LessThan | O::Lt);
        if single && f.values.len() != 1 {
            self.err(PolicyError::invalid(
                format!("{p}.values"),
                format!("{} values", f.values.len()),
                format!("{} compares against one value", op_name(f.operator)),
                "exactly one value",
            ));
            return None;
        }
        for (i, v) in f.values.iter().enumerate() {
            let vp = format!("{p}.values[{i}]");
            if is_template(v) {
                self.err(PolicyError::not_supported(
                    vp,
                    format!("template variable in {}", quote(v)),
                    TEMPLATE_HINT,
                ));
                continue;
            }
            if let (Group::Int(_), O::InMap | O::NotInMap) = (g, f.operator)
                && let Some(name) = v.strip_prefix("list:")
            {
                if f.values.len() != 1 {
                    self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        "a list reference must be the only value",
                        "either one list:NAME or integers",
                    ));
                } else if let Some(vals) = self.syscall_list(&vp, name) {
                    syscalls.extend(vals);
                    out.list_name = name.to_string();
                }
                continue;
            }
            match (g, f.operator) {
                (Group::Int(k), O::InRange | O::NotInRange) => {
                    let (a, b) = v.split_once(':').unwrap_or((v.as_str(), v.as_str()));
                    match (typed_int(a, k), typed_int(b, k)) {
                        (Some(TypedInt::Signed(x)), Some(TypedInt::Signed(y))) if x <= y => {
                            sranges.insert((x, y));
                        }
                        (Some(TypedInt::Unsigned(x)), Some(TypedInt::Unsigned(y))) if x <= y => {
                            uranges.insert((x, y));
                        }
                        _ => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!("not a range for arg type {}", type_name(ty)),
                            format!("MIN:MAX with MIN <= MAX, each {}", k.describe()),
                        )),
                    }
                }
                (Group::Int(_) | Group::CapMask, O::Mask)
                | (Group::CapMask, O::CapabilitiesGained) => {
                    match parse_int(v).or_else(|| capability(v).map(|c| Int::Unsigned(1u64 << c))) {
                        Some(Int::Unsigned(u)) => {
                            unsigned.insert(u);
                        }
                        _ => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            "not a bit mask",
                            "an unsigned integer (decimal, 0x hex, 0 octal) or, for capability sets, a CAP_* name",
                        )),
                    }
                }
                (Group::Int(k), _) => match typed_int(v, k) {
                    Some(TypedInt::Signed(x)) => {
                        signed.insert(x);
                    }
                    Some(TypedInt::Unsigned(x)) => {
                        unsigned.insert(x);
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        format!("not a value of arg type {}", type_name(ty)),
                        format!("{} (decimal, 0x hex, 0 octal)", k.describe()),
                    )),
                },
                (Group::Capability, _) => {
                    let n = capability(v).map(u64::from).or(match parse_int(v) {
                        Some(Int::Unsigned(u)) if u < 64 => Some(u),
                        _ => None,
                    });
                    match n {
                        Some(n) => {
                            unsigned.insert(n);
                        }
                        None => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!("not a capability{}", suggest(v, CAPABILITIES)),
                            "a CAP_* name or a capability number from 0 to 63",
                        )),
                    }
                }
                (Group::CapMask, _) => {
                    match parse_int(v).or_else(|| capability(v).map(|c| Int::Unsigned(1u64 << c))) {
                        Some(Int::Unsigned(u)) => {
                            unsigned.insert(u);
                        }
                        _ => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            "not a capability set",
                            "an unsigned 64-bit mask or a CAP_* name",
                        )),
                    }
                }
                (Group::Syscall, _) => {
                    if let Some(name) = v.strip_prefix("list:") {
                        if f.values.len() != 1 {
                            self.err(PolicyError::invalid(
                                vp,
                                quote(v),
                                "a list reference must be the only value",
                                "either one list:NAME or syscall names/numbers",
                            ));
                        } else if let Some(vals) = self.syscall_list(&vp, name) {
                            syscalls.extend(vals);
                            out.list_name = name.to_string();
                        }
                    } else if let Some(Int::Unsigned(u)) = parse_int(v) {
                        unsigned.insert(u);
                    } else if is_identifier(v, b"") && v.len() <= MAX_SYMBOL_LEN {
                        syscalls.insert(v.clone());
                    } else {
                        self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            "not a syscall",
                            "a syscall name (e.g. sys_dup), a syscall number, or list:NAME",
                        ));
                    }
                }
                (Group::File { .. }, O::FileType | O::NotFileType) => {
                    match FILE_TYPES.iter().find(|(n, _)| n == v) {
                        Some((_, t)) => {
                            small.insert(*t);
                        }
                        None => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!(
                                "unknown file type{}",
                                suggest(v, FILE_TYPES.iter().map(|(n, _)| *n))
                            ),
                            names(&FILE_TYPES),
                        )),
                    }
                }
                (Group::Str | Group::File { .. } | Group::SockaddrUn, op) => {
                    let max = match op {
                        O::Equal | O::NotEqual => MAX_STRING_EQUAL_LEN,
                        O::SubString | O::SubStringIgnCase => MAX_SUBSTRING_LEN,
                        _ => MAX_STRING_AFFIX_LEN,
                    };
                    if v.is_empty() {
                        self.err(PolicyError::invalid(
                            vp,
                            "\"\"",
                            "empty value",
                            "a non-empty string",
                        ));
                    } else if v.len() > max {
                        self.err(PolicyError::over_limit(
                            vp,
                            format!("{} ({} bytes)", quote(v), v.len()),
                            format!("{} values have at most {max} bytes", op_name(op)),
                        ));
                    } else if op == O::SubStringIgnCase {
                        strings.insert(v.to_lowercase());
                    } else {
                        strings.insert(v.clone());
                    }
                }
                (
                    Group::Sock | Group::Sockaddr,
                    O::SAddr | O::NotSAddr | O::DAddr | O::NotDAddr,
                ) => match parse_cidr(v) {
                    Some((ver, bytes, prefix)) => {
                        addrs.insert(
                            (ver, bytes.clone(), prefix),
                            ir::Cidr {
                                ip_version: ver,
                                text: cidr_text(ver, &bytes, prefix),
                                address: bytes,
                                prefix_len: prefix,
                            },
                        );
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        "not an IP address or CIDR",
                        "an IPv4/IPv6 address or CIDR, e.g. 10.0.0.0/8, 127.0.0.1, ::1/128",
                    )),
                },
                (
                    Group::Sock | Group::Sockaddr,
                    O::SPort | O::NotSPort | O::DPort | O::NotDPort,
                ) => match parse_port_range(v) {
                    Some(r) => ports.push(r),
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        "not a port or port range",
                        "a port from 0 to 65535, or MIN:MAX with MIN <= MAX",
                    )),
                },
                (Group::Sock | Group::Sockaddr, O::Protocol) => {
                    match symbolic(v, &PROTOCOLS, MAX_PROTOCOL) {
                        Some(n) => {
                            small.insert(n);
                        }
                        None => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!(
                                "unknown protocol{}",
                                suggest(v, PROTOCOLS.iter().map(|(n, _)| *n))
                            ),
                            format!("{} or a number from 0 to {MAX_PROTOCOL}", names(&PROTOCOLS)),
                        )),
                    }
                }
                (Group::Sock | Group::Sockaddr, O::Family) => {
                    match symbolic(v, &FAMILIES, MAX_FAMILY) {
                        Some(n) => {
                            small.insert(n);
                        }
                        None => self.err(PolicyError::invalid(
                            vp,
                            quote(v),
                            format!(
                                "unknown address family{}",
                                suggest(v, FAMILIES.iter().map(|(n, _)| *n))
                            ),
                            format!("{} or a number from 0 to {MAX_FAMILY}", names(&FAMILIES)),
                        )),
                    }
                }
                (Group::Sock, O::State) => match symbolic(v, &TCP_STATES, 12).filter(|n| *n >= 1) {
                    Some(n) => {
                        small.insert(n);
                    }
                    None => self.err(PolicyError::invalid(
                        vp,
                        quote(v),
                        format!(
                            "unknown TCP state{}",
                            suggest(v, TCP_STATES.iter().map(|(n, _)| *n))
                        ),
                        format!("{} or a number from 1 to 12", names(&TCP_STATES)),
                    )),
                },
                _ => self.err(PolicyError::invalid(
                    format!("{p}.operator"),
                    quote(&op_name(f.operator)),
                    format!("operator does not apply to arg type {}", type_name(ty)),
                    allowed
                        .iter()
                        .map(|o| op_name(*o))
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            }
        }
        if self.errs.len() != before {
            return None;
        }
        out.signed_values = signed.into_iter().collect();
        out.unsigned_values = unsigned.into_iter().collect();
        out.signed_ranges = sranges
            .into_iter()
            .map(|(min, max)| ir::SignedRange { min, max })
            .collect();
        out.unsigned_ranges = uranges
            .into_iter()
            .map(|(min, max)| ir::UnsignedRange { min, max })
            .collect();
        if !strings.is_empty() {
            out.strings = Some(bucketize(strings));
        }
        out.addresses = addrs.into_values().collect();
        ports.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (a, b) in ports {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        out.ports = merged
            .into_iter()
            .map(|(min, max)| ir::PortRange { min, max })
            .collect();
        out.small_values = small.into_iter().collect();
        out.syscalls = syscalls.into_iter().collect();
        Some(out)
    }

    fn action(
        &mut self,
        p: &str,
        a: &ActionSelector,
        hcx: &HookCx,
        on_return: bool,
    ) -> Option<ir::Action> {
        use ActionName as A;
        let name = action_name(a.action);
        let unsupported = match a.action {
            A::FollowFD | A::UnfollowFD | A::CopyFD => {
                Some("fd tracking actions FollowFD/UnfollowFD/CopyFD (deprecated in Tetragon)")
            }
            A::Set => Some("the Set action (USDT argument writes)"),
            _ => None,
        };
        if let Some(feature) = unsupported {
            self.err(PolicyError::not_supported(
                format!("{p}.action"),
                feature,
                "Post, NoPost, Sigkill, Signal, Override, NotifyEnforcer, CleanupEnforcerNotification, TrackSock, UntrackSock, GetUrl, DnsLookup",
            ));
            return None;
        }
        if a.ima_hash {
            self.err(PolicyError::not_supported(
                format!("{p}.imaHash"),
                "IMA hashes (imaHash)",
                "imaHash: false",
            ));
        }
        let allowed: &[&str] = match a.action {
            A::Post => &[
                "rateLimit",
                "rateLimitScope",
                "kernelStackTrace",
                "userStackTrace",
            ],
            A::Sigkill => &["argError"],
            A::Signal => &["argSig"],
            A::Override => &["argError"],
            A::NotifyEnforcer => &["argError", "argSig"],
            A::TrackSock | A::UntrackSock => &["argSock"],
            A::GetUrl => &["argUrl"],
            A::DnsLookup => &["argFqdn"],
            _ => &[],
        };
        let present: Vec<(&str, String)> = [
            ("argFd", a.arg_fd.map(|v| v.to_string())),
            ("argName", a.arg_name.map(|v| v.to_string())),
            ("argUrl", a.arg_url.as_deref().map(quote)),
            ("argFqdn", a.arg_fqdn.as_deref().map(quote)),
            ("argError", a.arg_error.map(|v| v.to_string())),
            ("argSig", a.arg_sig.map(|v| v.to_string())),
            ("argSock", a.arg_sock.map(|v| v.to_string())),
            ("rateLimit", a.rate_limit.as_deref().map(quote)),
            (
                "rateLimitScope",
                a.rate_limit_scope.map(|s| format!("{s:?}").to_lowercase()),
            ),
            (
                "kernelStackTrace",
                a.kernel_stack_trace.then(|| "true".to_string()),
            ),
            (
                "userStackTrace",
                a.user_stack_trace.then(|| "true".to_string()),
            ),
            ("argIndex", a.arg_index.as_ref().map(|v| v.to_string())),
            ("argValue", a.arg_value.as_ref().map(|v| v.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let before = self.errs.len();
        for (k, v) in &present {
            if !allowed.contains(k) {
                self.err(PolicyError::invalid(
                    format!("{p}.{k}"),
                    v.clone(),
                    format!("`{k}` is not a parameter of action {name}"),
                    if allowed.is_empty() {
                        format!("no parameters for {name}")
                    } else {
                        format!("for {name}: {}", allowed.join(", "))
                    },
                ));
            }
        }
        let kprobe_like = matches!(hcx.class, HookClass::Kprobe | HookClass::Syscall);
        let place_ok = match a.action {
            A::Override => {
                if on_return {
                    Err(
                        "Override acts before the call runs, so it cannot be a return action"
                            .to_string(),
                    )
                } else if matches!(hcx.class, HookClass::Tracepoint | HookClass::Uprobe) {
                    Err(format!(
                        "Override cannot change the result of a {}",
                        hcx.class.name()
                    ))
                } else {
                    Ok(())
                }
            }
            A::TrackSock | A::UntrackSock if !kprobe_like => Err(format!(
                "{name} only works on kprobes, not on a {}",
                hcx.class.name()
            )),
            A::NotifyEnforcer if self.spec.enforcers.is_empty() => {
                Err("NotifyEnforcer needs an enforcer in spec.enforcers".to_string())
            }
            A::NotifyEnforcer | A::CleanupEnforcerNotification if on_return => {
                Err(format!("{name} cannot be a return action"))
            }
            _ => Ok(()),
        };
        if let Err(reason) = place_ok {
            self.err(PolicyError::invalid(
                format!("{p}.action"),
                quote(&name),
                reason,
                "Post, NoPost, Sigkill, Signal (any hook); Override (kprobes, syscalls, LSM hooks); TrackSock/UntrackSock (kprobes); NotifyEnforcer (with spec.enforcers)",
            ));
        }
        let mut out = ir::Action {
            kind: match a.action {
                A::Post => ir::ActionKind::Post,
                A::NoPost => ir::ActionKind::NoPost,
                A::Sigkill => ir::ActionKind::Sigkill,
                A::Signal => ir::ActionKind::Signal,
                A::Override => ir::ActionKind::Override,
                A::NotifyEnforcer => ir::ActionKind::NotifyEnforcer,
                A::CleanupEnforcerNotification => ir::ActionKind::CleanupEnforcerNotification,
                A::TrackSock => ir::ActionKind::TrackSock,
                A::UntrackSock => ir::ActionKind::UntrackSock,
                A::GetUrl => ir::ActionKind::GetUrl,
                A::DnsLookup => ir::ActionKind::DnsLookup,
                A::FollowFD | A::UnfollowFD | A::CopyFD | A::Set => ir::ActionKind::Unspecified,
            } as i32,
            ..Default::default()
        };
        match a.action {
            A::Sigkill => out.signal = 9,
            A::Signal => match a.arg_sig {
                None => self.err(PolicyError::MissingField {
                    path: format!("{p}.argSig"),
                    accepted: "a signal number from 1 to 64 (e.g. 9 for SIGKILL, 19 for SIGSTOP)".into(),
                }),
                Some(s) => out.signal = self.signal(p, s),
            },
            A::Override => match a.arg_error {
                None => self.err(PolicyError::MissingField {
                    path: format!("{p}.argError"),
                    accepted: "the value the call returns, an integer from -4095 to 4095 (e.g. -1 for EPERM)".into(),
                }),
                Some(e) => out.error = Some(self.errno(p, e)),
            },
            A::NotifyEnforcer => {
                if a.arg_error.is_none() && a.arg_sig.is_none() {
                    self.err(PolicyError::MissingField {
                        path: format!("{p}.argError"),
                        accepted: "argError (value the syscall returns) and/or argSig (signal to send)".into(),
                    });
                }
                if let Some(e) = a.arg_error {
                    out.error = Some(self.errno(p, e));
                }
                if let Some(s) = a.arg_sig {
                    out.signal = self.signal(p, s);
                }
            }
            A::TrackSock | A::UntrackSock => {
                let idx = a.arg_sock.unwrap_or(0);
                out.sock_arg_index = idx;
                if kprobe_like && hcx.args.get(&idx) != Some(&ArgTypeName::Sock) {
                    let socks: Vec<String> = hcx
                        .args
                        .iter()
                        .filter(|(_, t)| **t == ArgTypeName::Sock)
                        .map(|(i, _)| i.to_string())
                        .collect();
                    self.err(PolicyError::invalid(
                        format!("{p}.argSock"),
                        idx.to_string(),
                        "argSock must name an argument declared with type sock",
                        if socks.is_empty() {
                            "declare a sock argument in args".to_string()
                        } else {
                            format!("one of: {}", socks.join(", "))
                        },
                    ));
                }
            }
            A::GetUrl => match a.arg_url.as_deref() {
                None => self.err(PolicyError::MissingField {
                    path: format!("{p}.argUrl"),
                    accepted: "an http:// or https:// URL".into(),
                }),
                Some(u) => {
                    let ok = (u.starts_with("http://") || u.starts_with("https://"))
                        && u.len() > 8
                        && u.len() <= MAX_URL_LEN
                        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
                    if ok {
                        out.url = u.to_string();
                    } else {
                        self.err(PolicyError::invalid(
                            format!("{p}.argUrl"),
                            quote(u),
                            "not an http(s) URL",
                            format!("an http:// or https:// URL without spaces, at most {MAX_URL_LEN} characters"),
                        ));
                    }
                }
            },
            A::DnsLookup => match a.arg_fqdn.as_deref() {
                None => self.err(PolicyError::MissingField {
                    path: format!("{p}.argFqdn"),
                    accepted: "a domain name such as example.com".into(),
                }),
                Some(d) => {
                    let ok = !d.is_empty()
                        && d.len() <= MAX_FQDN_LEN
                        && d.trim_end_matches('.').split('.').all(|l| {
                            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        });
                    if ok {
                        out.fqdn = d.to_string();
                    } else {
                        self.err(PolicyError::invalid(
                            format!("{p}.argFqdn"),
                            quote(d),
                            "not a domain name",
                            format!("a domain name (labels of letters, digits, '-'), at most {MAX_FQDN_LEN} characters"),
                        ));
                    }
                }
            },
            A::Post => {
                out.kernel_stack_trace = a.kernel_stack_trace;
                out.user_stack_trace = a.user_stack_trace;
                if let Some(r) = &a.rate_limit {
                    match parse_rate_limit(r) {
                        Some(0) | None => self.err(PolicyError::invalid(
                            format!("{p}.rateLimit"),
                            quote(r),
                            "not a rate limit interval",
                            "a positive number of seconds, optionally with unit s, m or h (e.g. 30, 30s, 1m, 2h)",
                        )),
                        Some(ms) if ms > MAX_RATE_LIMIT_MS => self.err(PolicyError::over_limit(
                            format!("{p}.rateLimit"),
                            quote(r),
                            "a rateLimit interval of at most 24h",
                        )),
                        Some(ms) => out.rate_limit_ms = ms,
                    }
                }
                match (a.rate_limit_scope, &a.rate_limit) {
                    (Some(s), Some(_)) => {
                        out.rate_limit_scope = match s {
                            RateLimitScopeName::Thread => ir::RateLimitScope::Thread,
                            RateLimitScopeName::Process => ir::RateLimitScope::Process,
                            RateLimitScopeName::Global => ir::RateLimitScope::Global,
                        } as i32;
                    }
                    (Some(s), None) => self.err(PolicyError::invalid(
                        format!("{p}.rateLimitScope"),
                        format!("{s:?}").to_lowercase(),
                        "rateLimitScope needs rateLimit",
                        "set rateLimit too, or remove rateLimitScope",
                    )),
                    (None, Some(_)) => out.rate_limit_scope = ir::RateLimitScope::Thread as i32,
                    (None, None) => {}
                }
            }
            _ => {}
        }
        (self.errs.len() == before).then_some(out)
    }

    fn signal(&mut self, p: &str, s: u32) -> u32 {
        if !(1..=64).contains(&s) {
            self.err(PolicyError::invalid(
                format!("{p}.argSig"),
                s.to_string(),
                "not a signal number",
                "a signal number from 1 to 64 (e.g. 9 for SIGKILL, 19 for SIGSTOP)",
            ));
        }
        s
    }

    fn errno(&mut self, p: &str, e: i32) -> i32 {
        if !(-4095..=4095).contains(&e) {
            self.err(PolicyError::invalid(
                format!("{p}.argError"),
                e.to_string(),
                "out of range for a return value override",
                "an integer from -4095 to 4095 (a negative errno such as -1 for EPERM, -13 for EACCES)",
            ));
        }
        e
    }

    fn symbol(&mut self, path: &str, s: &str, what: &str, extra: &[u8]) -> bool {
        if is_template(s) {
            self.err(PolicyError::not_supported(
                path,
                format!("template variable in {}", quote(s)),
                TEMPLATE_HINT,
            ));
            return false;
        }
        if s.len() > MAX_SYMBOL_LEN {
            self.err(PolicyError::over_limit(
                path,
                format!("{} ({} characters)", quote(s), s.len()),
                format!("a {what} has at most {MAX_SYMBOL_LEN} characters"),
            ));
            return false;
        }
        if !is_identifier(s, extra) {
            self.err(PolicyError::invalid(
                path,
                quote(s),
                format!("not a valid {what}"),
                format!("a {what}: letters, digits and '_', not starting with a digit"),
            ));
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn base_hook(
        &self,
        kind: ir::HookKind,
        source: &str,
        args: &[ir::ArgSpec],
        selectors: &[ir::Selector],
        message: &str,
        tags: &[String],
    ) -> ir::Hook {
        ir::Hook {
            kind: kind as i32,
            source: source.to_string(),
            args: args.to_vec(),
            selectors: selectors.to_vec(),
            message: message.to_string(),
            tags: tags.to_vec(),
            ..Default::default()
        }
    }

    fn kprobe(&mut self, path: &str, k: &KProbeSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        // Targets: (name, generated)
        let mut targets: Vec<String> = Vec::new();
        let mut generated: Option<ir::GeneratedTargets> = None;
        let mut syscall = k.syscall;
        let cp = format!("{path}.call");
        if let Some(name) = k.call.strip_prefix("list:") {
            let info = self
                .lists
                .get(name)
                .map(|l| (l.kind, l.values.clone(), l.pattern.clone()));
            match info {
                None => {
                    let names = self.list_names();
                    self.err(PolicyError::invalid(
                        cp.clone(),
                        quote(&k.call),
                        format!(
                            "unknown list{}",
                            suggest(name, self.lists.keys().map(String::as_str))
                        ),
                        names,
                    ));
                }
                Some((lkind, lvalues, lpattern)) => match lkind {
                    Some(ListTypeName::Syscalls) | Some(ListTypeName::GeneratedSyscalls) => {
                        if !k.syscall {
                            self.err(PolicyError::invalid(
                                format!("{path}.syscall"),
                                "false",
                                format!("list {name} holds syscalls"),
                                "true (or omit it)",
                            ));
                        }
                        syscall = true;
                        if lkind == Some(ListTypeName::GeneratedSyscalls) {
                            generated = Some(ir::GeneratedTargets {
                                kind: ir::GeneratedKind::Syscalls as i32,
                                pattern: String::new(),
                                list_name: name.to_string(),
                            });
                        } else {
                            targets = lvalues.clone();
                        }
                    }
                    Some(ListTypeName::GeneratedFtrace) => {
                        syscall = false;
                        generated = Some(ir::GeneratedTargets {
                            kind: ir::GeneratedKind::Ftrace as i32,
                            pattern: lpattern.clone(),
                            list_name: name.to_string(),
                        });
                    }
                    None => {
                        syscall = false;
                        targets = lvalues.clone();
                    }
                },
            }
        } else if self.symbol(&cp, &k.call, "kernel function name", b".") {
            targets.push(k.call.clone());
        } else if k.call.is_empty() {
            // reported by symbol()
        }
        if k.data.is_some() {
            self.err(PolicyError::not_supported(
                format!("{path}.data"),
                "extra data capture (data)",
                "args",
            ));
        }
        self.message_and_tags(path, &k.message, &k.tags);
        let class = if syscall {
            HookClass::Syscall
        } else {
            HookClass::Kprobe
        };
        let (args, types) = self.args(path, &k.args, MAX_FUNC_ARG_INDEX, class);
        let ret = self.return_arg(path, k.return_arg.as_ref(), k.r#return, class);
        let ret_action = match k.return_arg_action {
            None => ir::ReturnArgAction::Unspecified,
            Some(a) => {
                let needs_sock = matches!(
                    a,
                    ReturnArgActionName::TrackSock | ReturnArgActionName::UntrackSock
                );
                let ret_ty = k.return_arg.as_ref().map(|r| r.r#type);
                if !k.r#return || ret_ty.is_none() {
                    self.err(PolicyError::invalid(
                        format!("{path}.returnArgAction"),
                        format!("{a:?}"),
                        "returnArgAction needs `return: true` and a returnArg",
                        "set return: true and returnArg, or remove returnArgAction",
                    ));
                } else if needs_sock && ret_ty != Some(ArgTypeName::Sock) {
                    self.err(PolicyError::invalid(
                        format!("{path}.returnArgAction"),
                        format!("{a:?}"),
                        "TrackSock/UntrackSock need a returnArg of type sock",
                        "Post (or change returnArg.type to sock)",
                    ));
                }
                match a {
                    ReturnArgActionName::Post => ir::ReturnArgAction::Post,
                    ReturnArgActionName::TrackSock => ir::ReturnArgAction::TrackSock,
                    ReturnArgActionName::UntrackSock => ir::ReturnArgAction::UntrackSock,
                }
            }
        };
        let hcx = HookCx {
            class,
            args: types,
            positions: None,
            ret: k
                .return_arg
                .as_ref()
                .filter(|_| k.r#return)
                .map(|r| r.r#type),
            return_probe: k.r#return,
        };
        let selectors = self.selectors(path, &k.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        let kind = if syscall {
            ir::HookKind::Syscall
        } else if k.r#return {
            ir::HookKind::Kretprobe
        } else {
            ir::HookKind::Kprobe
        };
        let make = |cx: &Self, target: String| {
            let mut h = cx.base_hook(kind, path, &args, &selectors, &k.message, &k.tags);
            if syscall && !target.is_empty() {
                h.syscall_name = syscall_name(&target);
            }
            h.target = target;
            h.syscall = syscall;
            h.return_probe = k.r#return;
            h.ignore_call_not_found = k.ignore.as_ref().is_some_and(|i| i.call_not_found);
            h.return_arg = ret.clone();
            h.return_arg_action = ret_action as i32;
            h
        };
        if let Some(g) = generated {
            let mut h = make(self, String::new());
            h.generated = Some(g);
            hooks.push(h);
        }
        for t in targets {
            let h = make(self, t);
            hooks.push(h);
        }
    }

    fn tracepoint(&mut self, path: &str, t: &TracepointSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        self.symbol(
            &format!("{path}.subsystem"),
            &t.subsystem,
            "tracepoint subsystem",
            b"",
        );
        self.symbol(&format!("{path}.event"), &t.event, "tracepoint event", b"");
        self.message_and_tags(path, &t.message, &t.tags);
        let (args, types) = self.args(
            path,
            &t.args,
            MAX_TRACEPOINT_ARG_INDEX,
            HookClass::Tracepoint,
        );
        let hcx = HookCx {
            class: HookClass::Tracepoint,
            args: types,
            positions: Some(t.args.iter().map(|a| a.index).collect()),
            ret: None,
            return_probe: false,
        };
        let selectors = self.selectors(path, &t.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        let kind = if t.raw {
            ir::HookKind::RawTracepoint
        } else {
            ir::HookKind::Tracepoint
        };
        let mut h = self.base_hook(kind, path, &args, &selectors, &t.message, &t.tags);
        h.target = t.event.clone();
        h.subsystem = t.subsystem.clone();
        hooks.push(h);
    }

    fn uprobe(&mut self, path: &str, u: &UProbeSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        let pp = format!("{path}.path");
        if is_template(&u.path) {
            self.err(PolicyError::not_supported(
                pp,
                format!("template variable in {}", quote(&u.path)),
                TEMPLATE_HINT,
            ));
        } else if !u.path.starts_with('/') || u.path.contains('\0') {
            self.err(PolicyError::invalid(
                pp,
                quote(&u.path),
                "not an absolute path",
                "an absolute path such as /usr/lib/libc.so.6",
            ));
        } else if u.path.len() > MAX_PATH_LEN {
            self.err(PolicyError::over_limit(
                pp,
                format!("{} bytes", u.path.len()),
                format!("a path has at most {MAX_PATH_LEN} bytes"),
            ));
        }
        if u.symbols.is_empty() && u.offsets.is_empty() {
            self.err(PolicyError::MissingField {
                path: format!("{path}.symbols"),
                accepted: "a non-empty list of symbol names (or offsets)".into(),
            });
        }
        if !u.symbols.is_empty() && !u.offsets.is_empty() && u.symbols.len() != u.offsets.len() {
            self.err(PolicyError::invalid(
                format!("{path}.offsets"),
                format!(
                    "{} offsets for {} symbols",
                    u.offsets.len(),
                    u.symbols.len()
                ),
                "with symbols, offsets pair up with them one to one",
                "as many offsets as symbols, or no offsets",
            ));
        }
        let points = u.symbols.len().max(u.offsets.len());
        if !u.ref_ctr_offsets.is_empty() && u.ref_ctr_offsets.len() != points {
            self.err(PolicyError::invalid(
                format!("{path}.refCtrOffsets"),
                format!(
                    "{} refCtrOffsets for {points} attach points",
                    u.ref_ctr_offsets.len()
                ),
                "refCtrOffsets pair up with the attach points one to one",
                "as many refCtrOffsets as symbols/offsets, or none",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, s) in u.symbols.iter().enumerate() {
            let sp = format!("{path}.symbols[{i}]");
            if s.is_empty()
                || s.len() > MAX_UPROBE_SYMBOL_LEN
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                self.err(PolicyError::invalid(
                    sp,
                    quote(s),
                    "not a symbol name",
                    format!(
                        "a symbol name without spaces, at most {MAX_UPROBE_SYMBOL_LEN} characters"
                    ),
                ));
            } else if !seen.insert(s.as_str()) {
                self.err(PolicyError::invalid(
                    sp,
                    quote(s),
                    "duplicate symbol",
                    "each symbol once",
                ));
            }
        }
        if u.data.is_some() {
            self.err(PolicyError::not_supported(
                format!("{path}.data"),
                "extra data capture (data)",
                "args",
            ));
        }
        self.message_and_tags(path, &u.message, &u.tags);
        let (args, types) = self.args(path, &u.args, MAX_FUNC_ARG_INDEX, HookClass::Uprobe);
        let ret = self.return_arg(path, u.return_arg.as_ref(), u.r#return, HookClass::Uprobe);
        let hcx = HookCx {
            class: HookClass::Uprobe,
            args: types,
            positions: None,
            ret: u
                .return_arg
                .as_ref()
                .filter(|_| u.r#return)
                .map(|r| r.r#type),
            return_probe: u.r#return,
        };
        let selectors = self.selectors(path, &u.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        for i in 0..points {
            let mut h = self.base_hook(
                ir::HookKind::Uprobe,
                path,
                &args,
                &selectors,
                &u.message,
                &u.tags,
            );
            h.binary_path = u.path.clone();
            h.target = u.symbols.get(i).cloned().unwrap_or_default();
            h.offset = u.offsets.get(i).copied().unwrap_or_default();
            h.ref_ctr_offset = u.ref_ctr_offsets.get(i).copied().unwrap_or_default();
            h.return_probe = u.r#return;
            h.return_arg = ret.clone();
            hooks.push(h);
        }
    }

    fn lsm(&mut self, path: &str, l: &LsmHookSpec, hooks: &mut Vec<ir::Hook>) {
        let before = self.errs.len();
        let hp = format!("{path}.hook");
        if let Some(rest) = l.hook.strip_prefix("security_") {
            self.err(PolicyError::invalid(
                hp,
                quote(&l.hook),
                "LSM hooks are named without the security_ prefix",
                format!("{rest:?}"),
            ));
        } else {
            self.symbol(&hp, &l.hook, "LSM hook name", b"");
        }
        self.message_and_tags(path, &l.message, &l.tags);
        let (args, types) = self.args(path, &l.args, MAX_FUNC_ARG_INDEX, HookClass::Lsm);
        let hcx = HookCx {
            class: HookClass::Lsm,
            args: types,
            positions: None,
            ret: None,
            return_probe: false,
        };
        let selectors = self.selectors(path, &l.selectors, &hcx);
        if self.errs.len() != before {
            return;
        }
        let mut h = self.base_hook(
            ir::HookKind::Lsm,
            path,
            &args,
            &selectors,
            &l.message,
            &l.tags,
        );
        h.target = l.hook.clone();
        hooks.push(h);
    }

    fn duplicate_hooks(&mut self, hooks: &[ir::Hook]) {
        let mut seen: BTreeMap<(i32, String, String, String, u64, String), String> =
            BTreeMap::new();
        for h in hooks {
            // kprobes and kretprobes of one function collide too: merge their selectors.
            let kind = if h.kind == ir::HookKind::Kretprobe as i32 {
                ir::HookKind::Kprobe as i32
            } else {
                h.kind
            };
            let gen_name = h
                .generated
                .as_ref()
                .map(|g| g.list_name.clone())
                .unwrap_or_default();
            let key = (
                kind,
                h.target.clone(),
                h.subsystem.clone(),
                h.binary_path.clone(),
                h.offset,
                gen_name,
            );
            if let Some(prev) = seen.get(&key) {
                let what = if h.target.is_empty() {
                    h.source.clone()
                } else {
                    h.target.clone()
                };
                self.err(PolicyError::invalid(
                    h.source.clone(),
                    quote(&what),
                    format!("duplicate hook: already hooked by {prev}"),
                    "one entry per hook target (merge their args and selectors)",
                ));
            } else {
                seen.insert(key, h.source.clone());
            }
        }
    }

    fn label_selector(
        &mut self,
        path: &str,
        s: Option<&LabelSelector>,
    ) -> Option<ir::LabelSelector> {
        let s = s?;
        let mut reqs: Vec<ir::LabelRequirement> = Vec::new();
        for (k, v) in &s.match_labels {
            self.label_key(&format!("{path}.matchLabels"), k);
            if v.len() > 63 {
                self.err(PolicyError::over_limit(
                    child(&format!("{path}.matchLabels"), k),
                    quote(v),
                    "a label value has at most 63 characters",
                ));
            }
            reqs.push(ir::LabelRequirement {
                key: k.clone(),
                operator: ir::LabelOperator::In as i32,
                values: vec![v.clone()],
            });
        }
        for (i, e) in s.match_expressions.iter().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            self.label_key(&p, &e.key);
            let (op, needs_values) = match e.operator {
                LabelSelectorOperator::In => (ir::LabelOperator::In, true),
                LabelSelectorOperator::NotIn => (ir::LabelOperator::NotIn, true),
                LabelSelectorOperator::Exists => (ir::LabelOperator::Exists, false),
                LabelSelectorOperator::DoesNotExist => (ir::LabelOperator::DoesNotExist, false),
            };
            if needs_values && e.values.is_empty() {
                self.err(PolicyError::MissingField {
                    path: format!("{p}.values"),
                    accepted: "a non-empty list of label values for In/NotIn".into(),
                });
            }
            if !needs_values && !e.values.is_empty() {
                self.err(PolicyError::invalid(
                    format!("{p}.values"),
                    format!("{:?}", e.values),
                    "Exists/DoesNotExist take no values",
                    "no values",
                ));
            }
            let vals: BTreeSet<String> = e.values.iter().cloned().collect();
            reqs.push(ir::LabelRequirement {
                key: e.key.clone(),
                operator: op as i32,
                values: vals.into_iter().collect(),
            });
        }
        reqs.sort_by(|a, b| (&a.key, a.operator, &a.values).cmp(&(&b.key, b.operator, &b.values)));
        reqs.dedup();
        Some(ir::LabelSelector { requirements: reqs })
    }

    fn label_key(&mut self, path: &str, k: &str) {
        // Tetragon's pseudo-label for the pod's namespace: a podSelector may name it (the
        // sensor matches it against the pod's namespace); it is no valid label key elsewhere.
        if k == "k8s:io.kubernetes.pod.namespace" && path.starts_with("spec.podSelector.") {
            return;
        }
        let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        let prefix_ok = prefix.len() <= 253
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !(name_ok && prefix_ok) {
            self.err(PolicyError::invalid(
                path,
                quote(k),
                "not a valid label key",
                "[prefix/]name: name of at most 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric",
            ));
        }
    }

    fn scope(&mut self, doc: &TracingPolicyDoc) -> ir::WorkloadScope {
        let s = &doc.spec;
        ir::WorkloadScope {
            namespace: doc.metadata.namespace.clone().unwrap_or_default(),
            pod_selector: self.label_selector("spec.podSelector", s.pod_selector.as_ref()),
            container_selector: self
                .label_selector("spec.containerSelector", s.container_selector.as_ref()),
            host_selector: self.label_selector("spec.hostSelector", s.host_selector.as_ref()),
            node_selector: self.label_selector("spec.nodeSelector", s.node_selector.as_ref()),
        }
    }
}
