//! Error table: bad manifests, each rejected with a message that names the field path, the
//! offending value and the accepted values.

use vigil_api::policy::{PolicyErrors, compile_yaml};

const HEAD: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: t}\n";

/// A policy with one kprobe on `fn_x`; `lines` are extra fields of the kprobe (flow style).
fn kp(lines: &[&str]) -> String {
    let mut s = format!("{HEAD}spec:\n  kprobes:\n  - call: fn_x\n    syscall: false\n");
    for l in lines {
        s.push_str("    ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// A kprobe with one arg of `ty` at index 0 and one selector with one matchArgs filter.
fn filter(ty: &str, op: &str, values: &str) -> String {
    kp(&[
        &format!("args: [{{index: 0, type: {ty}}}]"),
        &format!("selectors: [{{matchArgs: [{{index: 0, operator: {op}, values: {values}}}]}}]"),
    ])
}

/// A kprobe with an int arg 0 and one selector with the given matchActions entry.
fn action(a: &str) -> String {
    kp(&[
        "args: [{index: 0, type: int}]",
        &format!("selectors: [{{matchActions: [{a}]}}]"),
    ])
}

fn spec(body: &str) -> String {
    format!("{HEAD}spec:\n{body}")
}

const SEL: &str = "spec.kprobes[0].selectors[0]";
const ARG0: &str = "spec.kprobes[0].selectors[0].matchArgs[0]";
const ACT0: &str = "spec.kprobes[0].selectors[0].matchActions[0]";

fn cases() -> Vec<(&'static str, String, String, &'static str)> {
    let many_selectors = format!(
        "selectors: [{}]",
        vec!["{matchPIDs: [{operator: In, values: [1]}]}"; 17].join(", ")
    );
    let many_values = format!(
        "[{}]",
        (0..1025)
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let long_prefix = format!("[\"/{}\"]", "a".repeat(300));
    let long_message = format!("message: \"{}\"", "m".repeat(300));
    let many_tags = format!(
        "tags: [{}]",
        (0..17)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    vec![
        // Structure: unknown / missing fields, wrong types, enums.
        ("unknown spec field", spec("  kprobe: []\n"), "spec".into(), "kprobes"),
        ("unknown hook field", kp(&["cal: x"]), "spec.kprobes[0]".into(), "call, data, ignore"),
        (
            "missing call",
            spec("  kprobes:\n  - syscall: false\n"),
            "spec.kprobes[0].call".into(),
            "a string",
        ),
        ("bool as string", kp(&["return: maybe"]), "spec.kprobes[0].return".into(), "true or false"),
        ("unknown arg type", kp(&["args: [{index: 0, type: strng}]"]), "spec.kprobes[0].args[0].type".into(), "char_buf"),
        ("negative arg index", kp(&["args: [{index: -1, type: int}]"]), "spec.kprobes[0].args[0].index".into(), "0 to 4294967295"),
        ("unknown operator", filter("int", "Equals", "[\"1\"]"), format!("{ARG0}.operator"), "Equal, NotEqual"),
        ("unknown action", action("{action: Kill}"), format!("{ACT0}.action"), "Post, NoPost, Sigkill"),
        ("unquoted number in values", filter("int", "Equal", "[1]"), format!("{ARG0}.values[0]"), "a string"),
        ("pid as string", kp(&["selectors: [{matchPIDs: [{operator: In, values: [abc]}]}]"]), format!("{SEL}.matchPIDs[0].values[0]"), "an integer from 0 to 4294967295"),
        ("unknown namespace type", kp(&["selectors: [{matchNamespaces: [{namespace: Mount, operator: In, values: [\"1\"]}]}]"]), format!("{SEL}.matchNamespaces[0].namespace"), "Mnt"),
        // Operator vs type, value syntax.
        ("Prefix on int", filter("int", "Prefix", "[\"1\"]"), format!("{ARG0}.operator"), "Equal, NotEqual, GreaterThan"),
        ("DAddr on string", filter("string", "DAddr", "[\"10.0.0.0/8\"]"), format!("{ARG0}.operator"), "Prefix"),
        ("filter on opaque type", filter("cred", "Equal", "[\"1\"]"), format!("{ARG0}.operator"), "cannot be filtered"),
        ("SubString on net_device", filter("net_device", "SubString", "[\"eth\"]"), format!("{ARG0}.operator"), "Equal, NotEqual, Prefix, NotPrefix, Postfix, NotPostfix"),
        ("net_device name too long", filter("net_device", "Equal", "[\"sixteen-bytes-xx\"]"), format!("{ARG0}.values[0]"), "a network device name has at most 15 bytes"),
        ("filter on auto type", kp(&["args: [{index: 0}]", "selectors: [{matchArgs: [{index: 0, operator: Equal, values: [\"1\"]}]}]"]), format!("{ARG0}.index"), "declare the argument's type"),
        ("not an integer", filter("int", "Equal", "[\"abc\"]"), format!("{ARG0}.values[0]"), "an integer from -2147483648 to 2147483647"),
        ("uint8 out of range", filter("uint8", "Equal", "[\"300\"]"), format!("{ARG0}.values[0]"), "an integer from 0 to 255"),
        ("negative unsigned", filter("uint32", "Equal", "[\"-1\"]"), format!("{ARG0}.values[0]"), "an integer from 0 to 4294967295"),
        ("reversed range", filter("int", "InRange", "[\"10:1\"]"), format!("{ARG0}.values[0]"), "MIN:MAX with MIN <= MAX"),
        ("bad CIDR prefix", filter("sock", "DAddr", "[\"10.0.0.0/33\"]"), format!("{ARG0}.values[0]"), "IPv4/IPv6 address or CIDR"),
        ("bad IP", filter("sock", "SAddr", "[\"10.0.0.256\"]"), format!("{ARG0}.values[0]"), "IPv4/IPv6 address or CIDR"),
        ("port out of range", filter("sock", "DPort", "[\"70000\"]"), format!("{ARG0}.values[0]"), "a port from 0 to 65535"),
        ("reversed port range", filter("sock", "SPort", "[\"9000:8000\"]"), format!("{ARG0}.values[0]"), "MIN:MAX with MIN <= MAX"),
        ("unknown protocol", filter("sock", "Protocol", "[\"IPPROTO_TPC\"]"), format!("{ARG0}.values[0]"), "IPPROTO_TCP"),
        ("unknown family", filter("sockaddr", "Family", "[\"AF_INET4\"]"), format!("{ARG0}.values[0]"), "AF_INET6"),
        ("unknown TCP state", filter("sock", "State", "[\"TCP_OPEN\"]"), format!("{ARG0}.values[0]"), "TCP_ESTABLISHED"),
        ("unknown file type", filter("file", "FileType", "[\"regular\"]"), format!("{ARG0}.values[0]"), "reg, dir, lnk"),
        ("unknown capability", kp(&["selectors: [{matchCapabilities: [{operator: In, values: [CAP_SYS_ADMN]}]}]"]), format!("{SEL}.matchCapabilities[0].values[0]"), "CAP_CHOWN"),
        ("bad namespace value", kp(&["selectors: [{matchNamespaces: [{namespace: Pid, operator: In, values: [hostns]}]}]"]), format!("{SEL}.matchNamespaces[0].values[0]"), "host_ns"),
        ("GT with two values", filter("int", "GT", "[\"1\", \"2\"]"), format!("{ARG0}.values"), "exactly one value"),
        ("Priv operator with values", filter("sock", "DPortPriv", "[\"22\"]"), format!("{ARG0}.values"), "no values"),
        ("empty value list", filter("string", "Equal", "[]"), format!("{ARG0}.values"), "a non-empty list"),
        ("empty string value", filter("string", "Equal", "[\"\"]"), format!("{ARG0}.values[0]"), "a non-empty string"),
        // Lists.
        ("unknown list", spec("  lists: [{name: dups, type: syscalls, values: [sys_dup]}]\n  tracepoints:\n  - {subsystem: raw_syscalls, event: sys_enter, args: [{index: 4, type: syscall64}], selectors: [{matchArgs: [{index: 0, operator: InMap, values: [\"list:dupz\"]}]}]}\n"), "spec.tracepoints[0].selectors[0].matchArgs[0].values[0]".into(), "list:dups"),
        ("list without lists", spec("  kprobes: [{call: \"list:nope\"}]\n"), "spec.kprobes[0].call".into(), "no lists are defined"),
        ("duplicate list names", spec("  lists: [{name: a, values: [f1]}, {name: a, values: [f2]}]\n  kprobes: [{call: \"list:a\"}]\n"), "spec.lists[1].name".into(), "a name not used by another list"),
        ("generated_ftrace without pattern", spec("  lists: [{name: k, type: generated_ftrace}]\n  kprobes: [{call: \"list:k\"}]\n"), "spec.lists[0].pattern".into(), "regular expression"),
        ("bad regex", spec("  lists: [{name: k, type: generated_ftrace, pattern: \"(\"}]\n  kprobes: [{call: \"list:k\"}]\n"), "spec.lists[0].pattern".into(), "a regular expression"),
        // Arg specs.
        ("arg index out of range", kp(&["args: [{index: 6, type: int}]"]), "spec.kprobes[0].args[0].index".into(), "an integer from 0 to 5"),
        ("duplicate arg index", kp(&["args: [{index: 0, type: int}, {index: 0, type: string}]"]), "spec.kprobes[0].args[1].index".into(), "each argument index once"),
        ("matchArgs index not declared", kp(&["args: [{index: 0, type: int}]", "selectors: [{matchArgs: [{index: 2, operator: Equal, values: [\"1\"]}]}]"]), format!("{ARG0}.index"), "a declared argument index: 0"),
        ("sizeArgIndex on int", kp(&["args: [{index: 0, type: int, sizeArgIndex: 2}]"]), "spec.kprobes[0].args[0].sizeArgIndex".into(), "0 (none)"),
        ("sizeArgIndex to itself", kp(&["args: [{index: 1, type: char_buf, sizeArgIndex: 2}]"]), "spec.kprobes[0].args[0].sizeArgIndex".into(), "1 to 6"),
        ("maxData on int", kp(&["args: [{index: 0, type: int, maxData: true}]"]), "spec.kprobes[0].args[0].maxData".into(), "false for this type"),
        ("return filter without return", kp(&["args: [{index: 0, type: int}]", "selectors: [{matchReturnArgs: [{index: 0, operator: Equal, values: [\"0\"]}]}]"]), format!("{SEL}.matchReturnArgs[0]"), "set `return: true`"),
        ("returnArgAction TrackSock on int", kp(&["return: true", "returnArg: {index: 0, type: int}", "returnArgAction: TrackSock"]), "spec.kprobes[0].returnArgAction".into(), "Post"),
        // Actions.
        ("Signal without argSig", action("{action: Signal}"), format!("{ACT0}.argSig"), "a signal number from 1 to 64"),
        ("bad signal number", action("{action: Signal, argSig: 99}"), format!("{ACT0}.argSig"), "a signal number from 1 to 64"),
        ("Override without argError", action("{action: Override}"), format!("{ACT0}.argError"), "-4095 to 4095"),
        ("argError out of range", action("{action: Override, argError: 5000}"), format!("{ACT0}.argError"), "an integer from -4095 to 4095"),
        ("bad rateLimit unit", action("{action: Post, rateLimit: 1d}"), format!("{ACT0}.rateLimit"), "optionally with unit s, m or h"),
        ("rateLimit over limit", action("{action: Post, rateLimit: 48h}"), format!("{ACT0}.rateLimit"), "at most 24h"),
        ("rateLimitScope without rateLimit", action("{action: Post, rateLimitScope: process}"), format!("{ACT0}.rateLimitScope"), "set rateLimit too"),
        ("parameter of another action", action("{action: Post, argSig: 9}"), format!("{ACT0}.argSig"), "for Post: rateLimit, rateLimitScope"),
        ("GetUrl with ftp", action("{action: GetUrl, argUrl: \"ftp://x.example\"}"), format!("{ACT0}.argUrl"), "an http:// or https:// URL"),
        ("DnsLookup bad name", action("{action: DnsLookup, argFqdn: \"bad name!\"}"), format!("{ACT0}.argFqdn"), "a domain name"),
        ("TrackSock on non-sock arg", action("{action: TrackSock, argSock: 0}"), format!("{ACT0}.argSock"), "declare a sock argument"),
        ("NotifyEnforcer without enforcers", action("{action: NotifyEnforcer, argSig: 9}"), format!("{ACT0}.action"), "NotifyEnforcer (with spec.enforcers)"),
        ("Override on tracepoint", spec("  tracepoints: [{subsystem: syscalls, event: sys_enter_openat, selectors: [{matchActions: [{action: Override, argError: -1}]}]}]\n"), "spec.tracepoints[0].selectors[0].matchActions[0].action".into(), "Override (kprobes, syscalls, LSM hooks)"),
        // Limits.
        ("too many selectors", kp(&[&many_selectors]), "spec.kprobes[0].selectors".into(), "at most 16 selectors per hook"),
        ("too many values", filter("int", "Equal", &many_values), format!("{ARG0}.values"), "at most 1024 values per filter"),
        ("prefix too long", filter("string", "Prefix", &long_prefix), format!("{ARG0}.values[0]"), "at most 256 bytes"),
        ("message too long", kp(&[&long_message]), "spec.kprobes[0].message".into(), "at most 256 characters"),
        ("too many tags", kp(&[&many_tags]), "spec.kprobes[0].tags".into(), "at most 16 tags per hook"),
        // Binaries, uprobes, LSM, duplicates, macros.
        ("relative binary path", kp(&["selectors: [{matchBinaries: [{operator: In, values: [curl]}]}]"]), format!("{SEL}.matchBinaries[0].values[0]"), "an absolute path"),
        ("followChildren with Prefix", kp(&["selectors: [{matchBinaries: [{operator: Prefix, values: [/usr], followChildren: true}]}]"]), format!("{SEL}.matchBinaries[0].followChildren"), "operator In or NotIn"),
        ("uprobe relative path", spec("  uprobes: [{path: libc.so.6, symbols: [malloc]}]\n"), "spec.uprobes[0].path".into(), "an absolute path"),
        ("uprobe without symbols", spec("  uprobes: [{path: /lib/libc.so.6}]\n"), "spec.uprobes[0].symbols".into(), "symbol names"),
        ("LSM hook with security_ prefix", spec("  lsmhooks: [{hook: security_file_open}]\n"), "spec.lsmhooks[0].hook".into(), "\"file_open\""),
        ("duplicate hook", spec("  kprobes: [{call: fn_x, syscall: false}, {call: fn_x, syscall: false}]\n"), "spec.kprobes[1]".into(), "one entry per hook target"),
        ("unknown macro", kp(&["selectors: [{macros: [nope]}]"]), format!("{SEL}.macros[0]"), "no macros are defined"),
        ("bad call name", spec("  kprobes: [{call: \"fn x\"}]\n"), "spec.kprobes[0].call".into(), "letters, digits and '_'"),
        // Options.
        ("unknown option", spec("  options: [{name: policy-mod, value: monitor}]\n  kprobes: [{call: fn_x}]\n"), "spec.options[0].name".into(), "policy-mode, disable-kprobe-multi"),
        ("bad policy mode", spec("  options: [{name: policy-mode, value: enforcing}]\n  kprobes: [{call: fn_x}]\n"), "spec.options[0].value".into(), "enforce, monitor"),
        // Envelope.
        ("wrong apiVersion", "apiVersion: cilium.io/v1\nkind: TracingPolicy\nmetadata: {name: t}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "apiVersion".into(), "cilium.io/v1alpha1, vigil.dev/v1alpha1"),
        ("wrong kind", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicies\nmetadata: {name: t}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "kind".into(), "TracingPolicy, TracingPolicyNamespaced"),
        ("missing name", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "metadata.name".into(), "DNS-1123"),
        ("bad name", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: Bad_Name}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "metadata.name".into(), "DNS-1123 subdomain"),
        ("namespace on cluster policy", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: t, namespace: x}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "metadata.namespace".into(), "TracingPolicyNamespaced"),
        ("unknown metadata field", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: t, label: {}}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "metadata".into(), "labels"),
        ("bad rollout annotation", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: t, annotations: {vigil.dev/rollout: \"canary=150%\"}}\nspec: {kprobes: [{call: fn_x}]}\n".into(), "metadata.annotations[\"vigil.dev/rollout\"]".into(), "canary=N% (1 to 99)"),
        ("missing spec", HEAD.to_string(), "spec".into(), "at least one hook"),
        ("empty spec", spec("  {}\n"), "spec".into(), "at least one hook"),
        ("invalid YAML", format!("{HEAD}spec: [unclosed\n"), "input".into(), "YAML documents"),
        ("duplicate YAML key", format!("{HEAD}spec:\n  kprobes: []\n  kprobes: []\n"), "input".into(), "YAML documents"),
        ("error in second document", format!("{}---\n{}", kp(&[]), kp(&["args: [{index: 9, type: int}]"])), "document[1].spec.kprobes[0].args[0].index".into(), "an integer from 0 to 5"),
        ("namespace pseudo-label outside podSelector", spec("  hostSelector: {matchLabels: {\"k8s:io.kubernetes.pod.namespace\": prod}}\n  kprobes: [{call: fn_x}]\n"), "spec.hostSelector.matchLabels".into(), "[prefix/]name"),
        ("CEL expression", filter("int", "CelExpr", "[\"x > 1\"]"), format!("{ARG0}.operator"), "the typed operators"),
    ]
}

fn check(name: &str, yaml: &str, path: &str, accepted: &str) -> Result<(), String> {
    let errors: PolicyErrors = match compile_yaml(yaml) {
        Ok(_) => return Err(format!("[{name}] compiled, but should fail\n{yaml}")),
        Err(e) => e,
    };
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let hit = lines.iter().find(|l| l.starts_with(&format!("{path}: ")));
    match hit {
        None => Err(format!(
            "[{name}] no error at `{path}`; got:\n{}",
            lines.join("\n")
        )),
        Some(l) if !l.contains("accepted: ") || !l.contains(accepted) => Err(format!(
            "[{name}] error at `{path}` lacks accepted values `{accepted}`: {l}"
        )),
        Some(_) => Ok(()),
    }
}

#[test]
fn error_table() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, yaml, path, accepted)| check(name, yaml, path, accepted).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_error_line_has_path_and_accepted() {
    for (name, yaml, _, _) in cases() {
        let errors = compile_yaml(&yaml).unwrap_err();
        for e in errors.iter() {
            let line = e.to_string();
            assert!(!line.contains('\n'), "[{name}] multi-line error: {line}");
            assert!(
                line.contains("accepted: "),
                "[{name}] no accepted values: {line}"
            );
            assert!(
                !e.path().is_empty() || line.starts_with(": "),
                "[{name}] {line}"
            );
        }
    }
}

#[test]
fn all_errors_are_reported_not_only_the_first() {
    let yaml = kp(&[
        "args: [{index: 7, type: int}, {index: 1, type: strng}]",
        "selectors: [{matchActions: [{action: Signal, argSig: 0}]}, {matchBinaries: [{operator: In, values: [rel]}]}]",
        "unknownField: 1",
    ]);
    let errors = compile_yaml(&yaml).unwrap_err();
    let text = errors.to_string();
    // Structural errors (type, unknown field) are all reported together.
    assert!(text.contains("spec.kprobes[0].args[1].type"), "{text}");
    assert!(text.contains("unknown field `unknownField`"), "{text}");
    assert_eq!(errors.len(), 2, "{text}");
    // Once the structure is valid, every semantic error is reported.
    let yaml = kp(&[
        "args: [{index: 7, type: int}, {index: 1, type: string}]",
        "selectors: [{matchActions: [{action: Signal, argSig: 0}]}, {matchBinaries: [{operator: In, values: [rel]}]}]",
    ]);
    let errors = compile_yaml(&yaml).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.len(), 3, "{text}");
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.contains("spec.kprobes[0].args[0].index: invalid value 7"),
        "{text}"
    );
    assert!(
        text.contains("spec.kprobes[0].selectors[0].matchActions[0].argSig: invalid value 0"),
        "{text}"
    );
    assert!(
        text.contains("spec.kprobes[0].selectors[1].matchBinaries[0].values[0]"),
        "{text}"
    );
}

#[test]
fn typo_gets_a_suggestion() {
    let e = compile_yaml(&filter("int", "Equl", "[\"1\"]"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `Equal`?"), "{e}");
    let e = compile_yaml(&spec("  kprobe: []\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `kprobes`?"), "{e}");
}

#[test]
fn over_limit_input_is_rejected_before_parsing() {
    let big = format!(
        "{HEAD}# {}\n",
        "x".repeat(vigil_api::policy::limits::MAX_YAML_BYTES)
    );
    let e = compile_yaml(&big).unwrap_err().to_string();
    assert!(e.starts_with("input: "), "{e}");
    assert!(e.contains("at most 4194304 bytes"), "{e}");
}

#[test]
fn errors_of_every_document_are_reported() {
    // Document 0 has a structural error, document 1 a semantic one; both are reported.
    let yaml = format!(
        "{}---\n{}---\n{}",
        kp(&["bogus: 1"]),
        kp(&["args: [{index: 9, type: int}]"]),
        kp(&[])
    );
    let errors = compile_yaml(&yaml).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.len(), 2, "{text}");
    assert!(
        text.contains("document[0].spec.kprobes[0]: unknown field `bogus`"),
        "{text}"
    );
    assert!(
        text.contains("document[1].spec.kprobes[0].args[0].index"),
        "{text}"
    );
    // The valid third document still compiles on its own.
    let each = vigil_api::policy::compile_each(&yaml).unwrap();
    assert_eq!(each.len(), 3);
    assert!(each[0].is_err() && each[1].is_err() && each[2].is_ok());
}

#[test]
fn error_count_is_capped_with_a_summary() {
    let max = vigil_api::policy::limits::MAX_ERRORS;
    let fields: Vec<String> = (0..max + 50).map(|i| format!("bogus{i}: 1")).collect();
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let errors = compile_yaml(&kp(&refs)).unwrap_err();
    assert_eq!(errors.len(), max + 1);
    let last = errors.iter().last().unwrap().to_string();
    assert!(last.contains("50 more errors not shown"), "{last}");
}

#[test]
fn root_errors_name_the_document() {
    let e = compile_yaml("just a string\n").unwrap_err().to_string();
    assert!(
        e.starts_with("document: invalid value \"just a string\""),
        "{e}"
    );
    let e = compile_yaml(&format!(
        "{HEAD}spec: {{kprobes: [{{call: fn_x}}]}}\nextra: 1\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("document: unknown field `extra`"), "{e}");
    assert!(
        e.contains("accepted: apiVersion, kind, metadata, spec, status"),
        "{e}"
    );
}
