//! Vigil's policy limits. Every one is checked by the compiler and reported with its value;
//! docs/policy-reference.md lists them. Where Tetragon has a smaller limit it is noted.

/// Largest manifest text accepted by `parse_documents` (bytes).
pub const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;
/// Documents per input.
pub const MAX_DOCUMENTS: usize = 256;
/// Hooks per policy, after `list:` and uprobe symbol expansion.
pub const MAX_HOOKS: usize = 512;
/// Declared `args` per hook.
pub const MAX_ARGS_PER_HOOK: usize = 8;
/// Highest function argument index (kprobes, syscalls, uprobes, LSM hooks): six register args.
pub const MAX_FUNC_ARG_INDEX: u32 = 5;
/// Highest tracepoint field index.
pub const MAX_TRACEPOINT_ARG_INDEX: u32 = 31;
/// Selectors per hook, after macro expansion (Tetragon: 5).
pub const MAX_SELECTORS: usize = 16;
/// Argument filters per selector (matchArgs, and separately matchReturnArgs).
pub const MAX_ARG_FILTERS: usize = 8;
/// matchBinaries entries per selector (Tetragon: 1).
pub const MAX_BINARY_FILTERS: usize = 4;
/// matchPIDs entries per selector.
pub const MAX_PID_FILTERS: usize = 4;
/// matchCapabilities / matchCapabilityChanges entries per selector (one per set).
pub const MAX_CAPABILITY_FILTERS: usize = 3;
/// matchNamespaceChanges entries per selector.
pub const MAX_NAMESPACE_CHANGE_FILTERS: usize = 1;
/// Actions per selector (matchActions, and separately matchReturnActions).
pub const MAX_ACTIONS: usize = 4;
/// Values per filter (arg filters, binaries, pids, namespaces, capabilities).
pub const MAX_VALUES_PER_FILTER: usize = 1024;
/// Byte length of a string compared with Equal/NotEqual (and matchBinaries In/NotIn).
pub const MAX_STRING_EQUAL_LEN: usize = 4096;
/// Byte length of a Prefix/NotPrefix/Postfix/NotPostfix value (Tetragon: 256 / 127).
pub const MAX_STRING_AFFIX_LEN: usize = 256;
/// Byte length of a SubString/SubStringIgnCase value (Tetragon: 100).
pub const MAX_SUBSTRING_LEN: usize = 128;
/// Byte length of a network device name (`net_device` arguments): IFNAMSIZ less its NUL.
pub const MAX_DEVICE_NAME_LEN: usize = 15;
/// Length classes strings are grouped into (see StringSet in the IR).
pub const STRING_BUCKETS: [u32; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Characters in `message`.
pub const MAX_MESSAGE_LEN: usize = 256;
/// Tags per hook, and characters per tag.
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_LEN: usize = 128;
/// Characters in an arg label.
pub const MAX_LABEL_LEN: usize = 128;
/// Named lists per policy, values per list, characters per list name.
pub const MAX_LISTS: usize = 64;
pub const MAX_LIST_VALUES: usize = 1024;
pub const MAX_LIST_NAME_LEN: usize = 64;
/// Enforcers per policy.
pub const MAX_ENFORCERS: usize = 16;
/// Characters in a kernel symbol / LSM hook / tracepoint name.
pub const MAX_SYMBOL_LEN: usize = 256;
/// Characters in a uprobe symbol (mangled C++ names are long).
pub const MAX_UPROBE_SYMBOL_LEN: usize = 1024;
/// Characters in a path (uprobe binaries).
pub const MAX_PATH_LEN: usize = 4095;
/// Longest rateLimit interval (24 hours).
pub const MAX_RATE_LIMIT_MS: u64 = 24 * 3600 * 1000;
/// Characters in argUrl / argFqdn.
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_FQDN_LEN: usize = 253;
/// Errors reported per input before the rest are summarized.
pub const MAX_ERRORS: usize = 200;
