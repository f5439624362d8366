//! The Helm chart `charts/vigil/`, checked without a cluster or a helm binary: every template is
//! rendered with a Go-template engine (`gtmpl`) plus the Helm/Sprig functions the chart uses,
//! every rendered object is parsed into the typed Kubernetes API structs with unknown fields
//! caught (deserialize, serialize, compare), and the security-relevant facts are asserted:
//! the sensor's ServiceAccount is bound to nothing, the operator's rules are exactly the
//! documented ones, the host paths are exactly the documented ones, and images, ports, flags
//! and config keys agree with the binaries' sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn chart_dir() -> PathBuf {
    root().join("charts/vigil")
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Go-template renderer with the subset of Helm's environment the chart uses.
mod helm {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};
    use std::path::Path;

    use gtmpl::{Context, Func, FuncError, Template, Value};
    use serde_json::Value as Json;

    thread_local! {
        /// Text of every template file (helpers included), so that `include` sees every define.
        static DEFINES: RefCell<String> = const { RefCell::new(String::new()) };
        /// Files of the chart for `.Files.Get`, by path relative to the chart.
        static FILES: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    }

    fn err(msg: impl Into<String>) -> FuncError {
        FuncError::Generic(msg.into())
    }

    fn funcs() -> Vec<(&'static str, Func)> {
        vec![
            ("include", include as Func),
            ("toYaml", to_yaml),
            ("nindent", nindent),
            ("indent", indent),
            ("quote", quote),
            ("default", default),
            ("required", required),
            ("fail", fail),
            ("trunc", trunc),
            ("trimSuffix", trim_suffix),
            ("replace", replace),
            ("contains", contains),
            ("ternary", ternary),
            ("dict", dict),
            ("list", list),
            ("hasKey", has_key),
            ("keys", keys),
            ("sortAlpha", sort_alpha),
            ("filesGet", files_get),
        ]
    }

    /// `.Files.Get` is a method call with an argument, which gtmpl cannot express; the chart
    /// writes it as Helm does and the harness turns it into the function `filesGet`.
    fn rewrite(text: &str) -> String {
        let re = regex::Regex::new(r"\$?\.Files\.Get\b").unwrap();
        re.replace_all(text, "filesGet").into_owned()
    }

    fn str_arg(args: &[Value], i: usize, f: &str) -> Result<String, FuncError> {
        match args.get(i) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            Some(Value::Nil) | Some(Value::NoValue) => Ok(String::new()),
            Some(other) => Err(err(format!("{f}: argument {i} is not a string: {other}"))),
            None => Err(err(format!("{f}: missing argument {i}"))),
        }
    }

    fn int_arg(args: &[Value], i: usize, f: &str) -> Result<i64, FuncError> {
        match args.get(i) {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| err(format!("{f}: argument {i} is not an integer"))),
            other => Err(err(format!("{f}: argument {i} is not a number: {other:?}"))),
        }
    }

    fn empty(v: &Value) -> bool {
        match v {
            Value::NoValue | Value::Nil => true,
            Value::Bool(b) => !b,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Map(m) | Value::Object(m) => m.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Function(_) => false,
        }
    }

    pub fn to_json(v: &Value) -> Json {
        match v {
            Value::NoValue | Value::Nil => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::String(s) => Json::String(s.clone()),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Json::from(i)
                } else if let Some(u) = n.as_u64() {
                    Json::from(u)
                } else {
                    Json::from(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
            Value::Map(m) | Value::Object(m) => {
                Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
            }
            Value::Function(_) => Json::Null,
        }
    }

    pub fn from_json(v: &Json) -> Value {
        match v {
            Json::Null => Value::Nil,
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) => Value::String(s.clone()),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::from(i)
                } else if let Some(u) = n.as_u64() {
                    Value::from(u)
                } else {
                    Value::from(n.as_f64().unwrap())
                }
            }
            Json::Array(a) => Value::Array(a.iter().map(from_json).collect()),
            Json::Object(m) => {
                Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
            }
        }
    }

    fn template(name: &str) -> Result<Template, String> {
        let mut t = Template::with_name("_defines");
        t.add_funcs(&funcs());
        let text = DEFINES.with(|d| d.borrow().clone());
        t.parse(text)
            .map_err(|e| format!("parsing the templates: {e}"))?;
        t.name = name.to_string();
        Ok(t)
    }

    fn include(args: &[Value]) -> Result<Value, FuncError> {
        let name = str_arg(args, 0, "include")?;
        let data = args.get(1).cloned().unwrap_or(Value::Nil);
        let t = template(&name).map_err(err)?;
        if !t.tree_set.contains_key(&name) {
            return Err(err(format!("include: no template {name:?}")));
        }
        t.render(&Context::from(data))
            .map(Value::String)
            .map_err(|e| err(format!("include {name:?}: {e}")))
    }

    /// Like Helm's toYaml: block style, keys sorted, without the final newline.
    fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
        let v = to_json(args.first().unwrap_or(&Value::Nil));
        let s = serde_saphyr::to_string(&v).map_err(|e| err(format!("toYaml: {e}")))?;
        Ok(Value::String(s.trim_end_matches('\n').to_string()))
    }

    fn indent_by(n: i64, s: &str) -> String {
        let pad = " ".repeat(n as usize);
        s.split('\n')
            .map(|l| format!("{pad}{l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn indent(args: &[Value]) -> Result<Value, FuncError> {
        let n = int_arg(args, 0, "indent")?;
        Ok(Value::String(indent_by(n, &str_arg(args, 1, "indent")?)))
    }

    fn nindent(args: &[Value]) -> Result<Value, FuncError> {
        let n = int_arg(args, 0, "nindent")?;
        Ok(Value::String(format!(
            "\n{}",
            indent_by(n, &str_arg(args, 1, "nindent")?)
        )))
    }

    fn quote(args: &[Value]) -> Result<Value, FuncError> {
        let mut out = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if matches!(a, Value::Nil | Value::NoValue) {
                continue;
            }
            out.push(Json::String(str_arg(args, i, "quote")?).to_string());
        }
        Ok(Value::String(out.join(" ")))
    }

    fn default(args: &[Value]) -> Result<Value, FuncError> {
        let d = args.first().cloned().unwrap_or(Value::Nil);
        match args.get(1) {
            Some(v) if !empty(v) => Ok(v.clone()),
            _ => Ok(d),
        }
    }

    fn required(args: &[Value]) -> Result<Value, FuncError> {
        let msg = str_arg(args, 0, "required")?;
        match args.get(1) {
            Some(v) if !matches!(v, Value::Nil | Value::NoValue) && v.to_string() != "" => {
                Ok(v.clone())
            }
            _ => Err(err(msg)),
        }
    }

    fn fail(args: &[Value]) -> Result<Value, FuncError> {
        Err(err(str_arg(args, 0, "fail")?))
    }

    fn trunc(args: &[Value]) -> Result<Value, FuncError> {
        let n = int_arg(args, 0, "trunc")? as usize;
        let s = str_arg(args, 1, "trunc")?;
        Ok(Value::String(s.chars().take(n).collect()))
    }

    fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
        let suffix = str_arg(args, 0, "trimSuffix")?;
        let s = str_arg(args, 1, "trimSuffix")?;
        Ok(Value::String(
            s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_string(),
        ))
    }

    fn replace(args: &[Value]) -> Result<Value, FuncError> {
        let (old, new) = (str_arg(args, 0, "replace")?, str_arg(args, 1, "replace")?);
        Ok(Value::String(
            str_arg(args, 2, "replace")?.replace(&old, &new),
        ))
    }

    fn contains(args: &[Value]) -> Result<Value, FuncError> {
        let needle = str_arg(args, 0, "contains")?;
        Ok(Value::Bool(str_arg(args, 1, "contains")?.contains(&needle)))
    }

    fn ternary(args: &[Value]) -> Result<Value, FuncError> {
        match args {
            [a, b, Value::Bool(c)] => Ok(if *c { a.clone() } else { b.clone() }),
            _ => Err(err("ternary: expected TRUE_VALUE FALSE_VALUE BOOL")),
        }
    }

    fn dict(args: &[Value]) -> Result<Value, FuncError> {
        if !args.len().is_multiple_of(2) {
            return Err(err("dict: odd number of arguments"));
        }
        let mut m = HashMap::new();
        for pair in args.chunks(2) {
            m.insert(str_arg(pair, 0, "dict")?, pair[1].clone());
        }
        Ok(Value::Map(m))
    }

    fn list(args: &[Value]) -> Result<Value, FuncError> {
        Ok(Value::Array(args.to_vec()))
    }

    fn has_key(args: &[Value]) -> Result<Value, FuncError> {
        match args.first() {
            Some(Value::Map(m)) | Some(Value::Object(m)) => {
                Ok(Value::Bool(m.contains_key(&str_arg(args, 1, "hasKey")?)))
            }
            _ => Err(err("hasKey: first argument is not a map")),
        }
    }

    fn keys(args: &[Value]) -> Result<Value, FuncError> {
        match args.first() {
            Some(Value::Map(m)) | Some(Value::Object(m)) => Ok(Value::Array(
                m.keys().map(|k| Value::String(k.clone())).collect(),
            )),
            _ => Err(err("keys: argument is not a map")),
        }
    }

    fn sort_alpha(args: &[Value]) -> Result<Value, FuncError> {
        match args.first() {
            Some(Value::Array(a)) => {
                let mut v: Vec<String> = a.iter().map(|x| x.to_string()).collect();
                v.sort();
                Ok(Value::Array(v.into_iter().map(Value::String).collect()))
            }
            _ => Err(err("sortAlpha: argument is not a list")),
        }
    }

    fn files_get(args: &[Value]) -> Result<Value, FuncError> {
        let path = str_arg(args, 0, "Files.Get")?;
        FILES.with(|f| {
            f.borrow()
                .get(&path)
                .cloned()
                .map(Value::String)
                .ok_or_else(|| err(format!(".Files.Get: no file {path:?} in the chart")))
        })
    }

    /// Deep merge of `over` into `base` (maps merge, everything else replaces), as `--set`
    /// and `-f` do.
    pub fn merge(base: &mut Json, over: &Json) {
        match (base, over) {
            (Json::Object(b), Json::Object(o)) => {
                for (k, v) in o {
                    merge(b.entry(k.clone()).or_insert(Json::Null), v);
                }
            }
            (b, o) => *b = o.clone(),
        }
    }

    fn files_under(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.path().is_dir() {
                files_under(&e.path(), &rel, out);
            } else {
                out.push((rel, std::fs::read_to_string(e.path()).unwrap()));
            }
        }
    }

    /// `helm template NAME CHART -n NAMESPACE --values OVERRIDES`: each template's output by
    /// its path (`templates/x.yaml`), or the first error.
    pub fn render(
        chart: &Path,
        release: &str,
        namespace: &str,
        overrides: &Json,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut files = Vec::new();
        files_under(chart, "", &mut files);
        let templates: Vec<_> = files
            .iter()
            .filter(|(p, _)| p.starts_with("templates/"))
            .map(|(p, t)| (p.clone(), rewrite(t)))
            .collect();
        // Named templates are defined in the helpers (`templates/_*.tpl`), as is the custom.
        DEFINES.with(|d| {
            *d.borrow_mut() = templates
                .iter()
                .filter(|(p, _)| p.rsplit('/').next().unwrap().starts_with('_'))
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        });
        FILES.with(|f| *f.borrow_mut() = files.iter().cloned().collect());

        let chart_yaml: Json = serde_saphyr::from_str(
            &files
                .iter()
                .find(|(p, _)| p == "Chart.yaml")
                .ok_or("no Chart.yaml")?
                .1,
        )
        .map_err(|e| format!("Chart.yaml: {e}"))?;
        let mut values: Json = serde_saphyr::from_str(
            &files
                .iter()
                .find(|(p, _)| p == "values.yaml")
                .ok_or("no values.yaml")?
                .1,
        )
        .map_err(|e| format!("values.yaml: {e}"))?;
        merge(&mut values, overrides);
        let top = serde_json::json!({
            "Values": values,
            "Release": {
                "Name": release, "Namespace": namespace, "Service": "Helm",
                "IsInstall": true, "IsUpgrade": false, "Revision": 1,
            },
            "Chart": {
                "Name": chart_yaml["name"], "Version": chart_yaml["version"],
                "AppVersion": chart_yaml["appVersion"],
            },
        });
        let data = from_json(&top);

        let mut out = BTreeMap::new();
        for (path, text) in &templates {
            let base = path.rsplit('/').next().unwrap();
            if base.starts_with('_') {
                continue;
            }
            let mut t = Template::with_name(path.as_str());
            t.add_funcs(&funcs());
            let defines = DEFINES.with(|d| d.borrow().clone());
            t.add_template("_defines", defines)
                .map_err(|e| format!("parsing the templates: {e}"))?;
            t.parse(text.as_str())
                .map_err(|e| format!("{path}: parse error: {e}"))?;
            let rendered = t
                .render(&Context::from(data.clone()))
                .map_err(|e| format!("{path}: {e}"))?;
            // Helm prints missing values as empty; a strict harness refuses them instead.
            if rendered.contains("<no value>") {
                return Err(format!("{path}: renders a missing value:\n{rendered}"));
            }
            out.insert(path.clone(), rendered);
        }
        Ok(out)
    }
}

/// Every object of a rendering (NOTES.txt excluded), in template order.
fn objects(rendered: &BTreeMap<String, String>) -> Vec<Json> {
    let mut objs = Vec::new();
    for (path, text) in rendered {
        if !path.ends_with(".yaml") {
            continue;
        }
        for doc in text.split("\n---") {
            let doc = doc.trim_start_matches("---");
            if doc
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                continue;
            }
            let v: Json = serde_saphyr::from_str(doc)
                .unwrap_or_else(|e| panic!("{path}: not YAML: {e}\n{doc}"));
            assert!(v.is_object(), "{path}: not an object:\n{doc}");
            objs.push(v);
        }
    }
    objs
}

/// Renders as `helm template vigil charts/vigil -n kube-system` with `overrides` on top of
/// values.yaml, and checks every object against its type. `VIGIL_CHART_OUT=DIR` also writes
/// the default rendering there, for reading.
fn render(overrides: Json) -> Vec<Json> {
    let r = helm::render(&chart_dir(), "vigil", "kube-system", &overrides)
        .unwrap_or_else(|e| panic!("render failed: {e}"));
    if let Some(dir) = std::env::var_os("VIGIL_CHART_OUT") {
        let name = if overrides == json!({}) {
            "default"
        } else {
            "custom"
        };
        let all: String = r
            .iter()
            .map(|(p, t)| format!("# Source: {p}\n{t}\n---\n"))
            .collect();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.yaml")), all).unwrap();
    }
    let objs = objects(&r);
    for o in &objs {
        check_typed(o);
    }
    objs
}

/// Deserializes into the typed struct and serializes back: a field the struct does not know
/// (a typo, a field in the wrong place) or a value it normalizes away shows as a difference.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Json) {
    let typed: T = serde_json::from_value(obj.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {}: does not parse: {e}",
            obj["kind"], obj["metadata"]["name"]
        )
    });
    let back = serde_json::to_value(&typed).unwrap();
    if &back != obj {
        panic!(
            "{} {}: unknown or dropped fields\nrendered: {}\ntyped:    {}",
            obj["kind"],
            obj["metadata"]["name"],
            serde_json::to_string_pretty(obj).unwrap(),
            serde_json::to_string_pretty(&back).unwrap()
        );
    }
}

/// The fields of the Prometheus Operator's ServiceMonitor the chart uses (k8s-openapi does
/// not have it); unknown fields are errors.
mod monitoring {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ServiceMonitor {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: Spec,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Spec {
        pub selector: LabelSelector,
        pub namespace_selector: NamespaceSelector,
        pub endpoints: Vec<Endpoint>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct NamespaceSelector {
        pub match_names: Vec<String>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Endpoint {
        pub port: String,
        pub path: String,
        pub interval: String,
        pub scrape_timeout: String,
    }
}

fn check_typed(obj: &Json) {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    match (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
        (Some("apps/v1"), Some("DaemonSet")) => roundtrip::<apps::DaemonSet>(obj),
        (Some("apps/v1"), Some("Deployment")) => roundtrip::<apps::Deployment>(obj),
        (Some("v1"), Some("Service")) => roundtrip::<core::Service>(obj),
        (Some("v1"), Some("ServiceAccount")) => roundtrip::<core::ServiceAccount>(obj),
        (Some("v1"), Some("ConfigMap")) => roundtrip::<core::ConfigMap>(obj),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
            roundtrip::<rbac::ClusterRole>(obj)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
            roundtrip::<rbac::ClusterRoleBinding>(obj)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => roundtrip::<rbac::Role>(obj),
        (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
            roundtrip::<rbac::RoleBinding>(obj)
        }
        (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
            roundtrip::<ext::CustomResourceDefinition>(obj)
        }
        (Some("monitoring.coreos.com/v1"), Some("ServiceMonitor")) => {
            roundtrip::<monitoring::ServiceMonitor>(obj)
        }
        (v, k) => panic!("unexpected object {v:?} {k:?}"),
    }
}

fn find<'a>(objs: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(objs: &[Json]) -> BTreeSet<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// Every optional feature switched on.
fn all_on() -> Json {
    json!({
        "commonLabels": {"team": "security"},
        "imagePullSecrets": [{"name": "regcred"}],
        "sensor": {
            "grpc": {"address": "0.0.0.0:54321"},
            "nodeLabels": {"topology.kubernetes.io/zone": "a", "role": "edge"},
            "extraArgs": ["--export-stdout=false"],
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "podAnnotations": {"example.com/a": "b"},
            "podLabels": {"example.com/l": "x"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
                ]}]}}},
            "serviceAccount": {"annotations": {"example.com/sa": "s"}},
            "config": {"enable-process-cred": true, "enable-process-ns": true},
        },
        "operator": {
            "extraArgs": ["--log-level=debug"],
            "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"example.com/o": "p"},
            "serviceAccount": {"annotations": {"example.com/sa": "o"}},
        },
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
        "tls": {"enabled": true},
    })
}

fn sensor_pod(objs: &[Json]) -> &Json {
    &find(objs, "DaemonSet", "vigil")["spec"]["template"]["spec"]
}

fn container<'a>(pod: &'a Json, name: &str) -> &'a Json {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(c: &Json) -> Vec<String> {
    c["args"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The binaries' defaults, read from their sources.

/// `pub const NAME: T = VALUE;` from a Rust source file, VALUE as written.
fn rust_const(path: &str, name: &str) -> String {
    let text = read(root().join(path));
    let re = regex::Regex::new(&format!(r"pub const {name}: [^=]+= ([^;]+);")).unwrap();
    re.captures(&text)
        .unwrap_or_else(|| panic!("{path}: no const {name}"))[1]
        .trim()
        .trim_matches('"')
        .to_string()
}

/// The kebab-case names of the fields of `struct NAME` in a Rust source file.
fn struct_fields(path: &str, name: &str) -> BTreeSet<String> {
    let text = read(root().join(path));
    let start = text
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("{path}: no struct {name}"));
    let body = &text[start..start + text[start..].find("\n}").unwrap()];
    let re = regex::Regex::new(r"(?m)^\s+(?:pub )?([a-z_]+): ").unwrap();
    re.captures_iter(body)
        .map(|c| c[1].replace('_', "-"))
        .collect()
}

/// The long flags of the sensor (`struct Cli`; `policies` is `--policy`).
fn sensor_flags() -> BTreeSet<String> {
    struct_fields("sensor/src/config.rs", "Cli")
        .into_iter()
        .filter(|f| f != "command")
        .map(|f| if f == "policies" { "policy".into() } else { f })
        .collect()
}

/// The operator's policy-distribution port (`vigil-operator run --grpc-address`, default
/// 0.0.0.0:4245, as the operator issue specifies).
const OPERATOR_GRPC_PORT: u64 = 4245;

/// Long flag name of `--name=value` / `--name`.
fn flag_name(arg: &str) -> Option<&str> {
    arg.strip_prefix("--").map(|a| a.split('=').next().unwrap())
}

fn workspace_version() -> String {
    let text = read(root().join("Cargo.toml"));
    let re =
        regex::Regex::new(r#"(?m)^\[workspace\.package\][^\[]*?^version = "([^"]+)""#).unwrap();
    re.captures(&text).expect("workspace version")[1].to_string()
}

fn values_yaml() -> Json {
    serde_saphyr::from_str(&read(chart_dir().join("values.yaml"))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn default_values_render_every_object() {
    let objs = render(json!({}));
    let expected: BTreeSet<String> = [
        "ServiceAccount/vigil",
        "ConfigMap/vigil-config",
        "DaemonSet/vigil",
        "ServiceAccount/vigil-operator",
        "ClusterRole/vigil-operator",
        "ClusterRoleBinding/vigil-operator",
        "Role/vigil-operator-leader-election",
        "RoleBinding/vigil-operator-leader-election",
        "Deployment/vigil-operator",
        "Service/vigil-operator",
        "CustomResourceDefinition/tracingpolicies.vigil.dev",
        "CustomResourceDefinition/tracingpoliciesnamespaced.vigil.dev",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds(&objs), expected);
    for o in &objs {
        let ns = o["metadata"]["namespace"].as_str();
        match o["kind"].as_str().unwrap() {
            "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition" => {
                assert_eq!(ns, None, "{}", o["metadata"]["name"])
            }
            _ => assert_eq!(ns, Some("kube-system"), "{}", o["metadata"]["name"]),
        }
    }
}

#[test]
fn every_optional_feature_renders() {
    let objs = render(all_on());
    let k = kinds(&objs);
    for want in [
        "ServiceMonitor/vigil",
        "ServiceMonitor/vigil-operator",
        "Service/vigil-metrics",
    ] {
        assert!(k.contains(want), "{want} missing from {k:?}");
    }
    let pod = sensor_pod(&objs);
    let sensor = container(pod, "sensor");
    let a = args(sensor);
    for want in [
        "--operator-address=https://vigil-operator.kube-system.svc:4245",
        "--operator-tls-ca=/etc/vigil/tls/ca.crt",
        "--grpc-tls-client-ca=/etc/vigil/tls/ca.crt",
        "--node-labels=role=edge,topology.kubernetes.io/zone=a",
        "--export-stdout=false",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
    }
    let tls_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(tls_volume["secret"]["secretName"], "vigil-sensor-tls");
    let op = &find(&objs, "Deployment", "vigil-operator")["spec"]["template"]["spec"];
    let oa = args(&op["containers"][0]);
    assert!(oa.contains(&"--grpc-tls-client-ca=/etc/vigil/tls/ca.crt".to_string()));
    assert_eq!(
        op["volumes"][0]["secret"]["secretName"],
        "vigil-operator-tls"
    );
    assert_eq!(
        find(&objs, "ServiceMonitor", "vigil")["metadata"]["labels"]["release"],
        "prometheus"
    );
    // Every object carries the common labels.
    // Every object carries the common labels (the CRDs are config/crd/ as generated).
    for o in objs
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        assert_eq!(
            o["metadata"]["labels"]["team"], "security",
            "{}",
            o["metadata"]["name"]
        );
    }
}

#[test]
fn unprivileged_mode_adds_exactly_the_documented_capabilities() {
    let objs = render(json!({"sensor": {"privileged": false}}));
    let sc = &container(sensor_pod(&objs), "sensor")["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        json!([
            "BPF",
            "PERFMON",
            "SYS_RESOURCE",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "DAC_READ_SEARCH"
        ])
    );
    let readme = read(chart_dir().join("README.md"));
    for cap in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
    ] {
        assert!(readme.contains(cap), "README does not document {cap}");
    }
    let objs = render(json!({}));
    assert_eq!(
        container(sensor_pod(&objs), "sensor")["securityContext"]["privileged"],
        true
    );
}

#[test]
fn parts_switch_off() {
    let objs = render(json!({"operator": {"enabled": false}, "crds": {"install": false}}));
    let k = kinds(&objs);
    assert_eq!(
        k,
        [
            "ServiceAccount/vigil",
            "ConfigMap/vigil-config",
            "DaemonSet/vigil"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    // Without an operator the sensor is not told to connect to one.
    let a = args(container(sensor_pod(&objs), "sensor"));
    assert!(!a.iter().any(|x| x.starts_with("--operator")), "{a:?}");

    let objs =
        render(json!({"sensor": {"enabled": false}, "export": {"stdout": {"enabled": false}}}));
    assert!(!kinds(&objs).iter().any(|k| k.starts_with("DaemonSet")));

    let objs = render(
        json!({"export": {"stdout": {"enabled": false}}, "metrics": {"podAnnotations": false}}),
    );
    let pod = sensor_pod(&objs);
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    let op = find(&objs, "Deployment", "vigil-operator");
    assert!(op["spec"]["template"]["metadata"]["annotations"].is_null());
}

#[test]
fn template_errors_are_reported() {
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"sensor": {"config": {"export-file": "/tmp/x"}}}),
    )
    .unwrap_err();
    assert!(
        e.contains("sensor.config.export-file is set by the chart"),
        "{e}"
    );
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"sensor": {"image": {"repository": ""}}}),
    )
    .unwrap_err();
    assert!(e.contains("image.repository is required"), "{e}");
    // A missing value is an error in this harness (Helm would print nothing).
    let e = helm::render(
        &chart_dir(),
        "vigil",
        "kube-system",
        &json!({"sensor": {"probes": null}}),
    )
    .unwrap_err();
    assert!(e.contains("sensor-daemonset.yaml"), "{e}");
}

#[test]
fn sensor_service_account_has_no_api_access() {
    for overrides in [json!({}), all_on()] {
        let objs = render(overrides);
        let sa = find(&objs, "ServiceAccount", "vigil");
        assert_eq!(sa["automountServiceAccountToken"], false);
        let pod = sensor_pod(&objs);
        assert_eq!(pod["serviceAccountName"], "vigil");
        assert_eq!(pod["automountServiceAccountToken"], false);
        for o in &objs {
            if matches!(
                o["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            ) {
                for s in o["subjects"].as_array().unwrap() {
                    assert_ne!(
                        s["name"], "vigil",
                        "{} binds the sensor",
                        o["metadata"]["name"]
                    );
                    assert_eq!(s["name"], "vigil-operator");
                }
            }
        }
        // Nothing else mounts a token into the sensor.
        assert!(
            !serde_json::to_string(pod)
                .unwrap()
                .contains("serviceaccount")
        );
    }
}

/// The operator's rules, as charts/vigil/README.md ("RBAC") documents them.
fn documented_operator_rules() -> (Json, Json) {
    let cluster = json!([
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["vigil.dev"], "resources": ["tracingpolicies", "tracingpoliciesnamespaced"],
         "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["vigil.dev"], "resources": ["tracingpolicies/status", "tracingpoliciesnamespaced/status"],
         "verbs": ["get", "patch", "update"]},
    ]);
    let namespaced = json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "list", "watch", "create", "update", "patch"]},
    ]);
    (cluster, namespaced)
}

#[test]
fn operator_rules_are_exactly_the_documented_ones() {
    let objs = render(json!({}));
    let (cluster, namespaced) = documented_operator_rules();
    assert_eq!(
        find(&objs, "ClusterRole", "vigil-operator")["rules"],
        cluster
    );
    let role = find(&objs, "Role", "vigil-operator-leader-election");
    assert_eq!(role["rules"], namespaced);
    assert_eq!(role["metadata"]["namespace"], "kube-system");
    let roles: Vec<_> = objs
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .collect();
    assert_eq!(roles.len(), 2, "only the two documented roles");
    for (kind, name, role_kind) in [
        ("ClusterRoleBinding", "vigil-operator", "ClusterRole"),
        ("RoleBinding", "vigil-operator-leader-election", "Role"),
    ] {
        let b = find(&objs, kind, name);
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(b["roleRef"]["name"], name);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "vigil-operator", "namespace": "kube-system"}])
        );
    }
    // The README's table lists the same rules.
    let readme = read(chart_dir().join("README.md"));
    for rules in [cluster, namespaced] {
        for r in rules.as_array().unwrap() {
            let row = format!(
                "| `{}` | {} | {} |",
                r["apiGroups"][0].as_str().unwrap(),
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| format!("`{}`", x.as_str().unwrap()))
                    .collect::<Vec<_>>()
                    .join(", "),
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
    // Leader election: two replicas that know who they are.
    let d = find(&objs, "Deployment", "vigil-operator");
    assert_eq!(d["spec"]["replicas"], 2);
    let env: Vec<_> = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
}

/// The host paths of the sensor: (volume, host path, mount path, read-only), as the README's
/// "Host access" table lists them.
const HOST_PATHS: &[(&str, &str, &str, bool)] = &[
    ("bpffs", "/sys/fs/bpf", "/sys/fs/bpf", false),
    ("btf", "/sys/kernel/btf", "/sys/kernel/btf", true),
    (
        "tracefs",
        "/sys/kernel/tracing",
        "/sys/kernel/tracing",
        false,
    ),
    ("cgroup", "/sys/fs/cgroup", "/sys/fs/cgroup", true),
];

#[test]
fn host_access_is_exactly_the_documented_one() {
    let readme = read(chart_dir().join("README.md"));
    for (_, host, _, ro) in HOST_PATHS {
        let row = format!(
            "| `{host}` | {} |",
            if *ro { "read-only" } else { "read-write" }
        );
        assert!(readme.contains(&row), "README lacks {row}");
    }
    for overrides in [
        json!({}),
        all_on(),
        json!({"sensor": {"privileged": false}}),
    ] {
        let objs = render(overrides);
        let mut host_volumes = BTreeMap::new();
        for o in &objs {
            let pod = &o["spec"]["template"]["spec"];
            for v in pod["volumes"].as_array().into_iter().flatten() {
                if let Some(p) = v["hostPath"]["path"].as_str() {
                    host_volumes.insert(
                        v["name"].as_str().unwrap().to_string(),
                        (o["kind"].as_str().unwrap().to_string(), p.to_string()),
                    );
                }
            }
            if o["kind"] == "Deployment" {
                for k in ["hostPID", "hostNetwork", "hostIPC"] {
                    assert!(pod[k].is_null(), "operator sets {k}");
                }
            }
        }
        let want: BTreeMap<_, _> = HOST_PATHS
            .iter()
            .map(|(n, h, _, _)| (n.to_string(), ("DaemonSet".to_string(), h.to_string())))
            .collect();
        assert_eq!(host_volumes, want);

        let pod = sensor_pod(&objs);
        assert_eq!(pod["hostPID"], true);
        assert!(pod["hostNetwork"].is_null());
        assert!(pod["hostIPC"].is_null());
        let sensor = container(pod, "sensor");
        for (name, _, mount, ro) in HOST_PATHS {
            let m = sensor["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == *name)
                .unwrap_or_else(|| panic!("{name} not mounted"));
            assert_eq!(m["mountPath"], *mount);
            assert_eq!(m["readOnly"].as_bool().unwrap_or(false), *ro, "{name}");
            assert!(m["mountPropagation"].is_null());
        }
        // The export-stdout container sees the export volume, read-only, and nothing else.
        if let Some(c) = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "export-stdout")
        {
            assert_eq!(
                c["volumeMounts"],
                json!([{"name": "export", "mountPath": "/var/log/vigil", "readOnly": true}])
            );
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        }
        // Tolerate every taint so that every node runs a sensor.
        assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    }
}

#[test]
fn images_ports_and_paths_agree_with_the_binaries() {
    let version = workspace_version();
    let chart: Json = serde_saphyr::from_str(&read(chart_dir().join("Chart.yaml"))).unwrap();
    assert_eq!(
        chart["appVersion"],
        version.as_str(),
        "Chart.yaml appVersion"
    );
    let objs = render(json!({}));
    let pod = sensor_pod(&objs);
    let sensor = container(pod, "sensor");
    assert_eq!(sensor["image"], format!("vigil/vigil-sensor:{version}"));
    assert_eq!(sensor["command"], json!(["vigil-sensor"]));
    let op =
        &find(&objs, "Deployment", "vigil-operator")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(op["image"], format!("vigil/vigil-operator:{version}"));
    assert_eq!(op["command"], json!(["vigil-operator"]));
    assert_eq!(args(op)[0], "run");
    // A pinned tag wins over appVersion.
    let objs2 = render(json!({"sensor": {"image": {"tag": "9.9.9"}}}));
    assert_eq!(
        container(sensor_pod(&objs2), "sensor")["image"],
        "vigil/vigil-sensor:9.9.9"
    );

    // The sensor's config: the socket is the sensor's default, metrics on the probed port.
    let cm = find(&objs, "ConfigMap", "vigil-config");
    let config: Json = serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        config["grpc-socket"],
        rust_const("sensor/src/config.rs", "DEFAULT_GRPC_SOCKET").as_str()
    );
    assert_eq!(config["metrics-address"], "0.0.0.0:2112");
    assert_eq!(config["export-file"], "/var/log/vigil/events.json");
    assert_eq!(
        sensor["ports"],
        json!([{"name": "metrics", "containerPort": 2112, "protocol": "TCP"}])
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            sensor[probe]["httpGet"],
            json!({"path": "/healthz", "port": "metrics"})
        );
    }
    // The sensor serves /healthz on its metrics address.
    assert!(read(root().join("sensor/src/metrics.rs")).contains(r#".route("/healthz""#));
    let annotations =
        &find(&objs, "DaemonSet", "vigil")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], "2112");
    assert_eq!(annotations["prometheus.io/scrape"], "true");

    // The export file's default rotation matches the sensor's.
    assert_eq!(
        config["export-file-max-size-mb"].to_string(),
        rust_const("sensor/src/config.rs", "DEFAULT_EXPORT_FILE_MAX_SIZE_MB")
    );
    assert_eq!(
        config["export-file-max-backups"].to_string(),
        rust_const("sensor/src/config.rs", "DEFAULT_EXPORT_FILE_MAX_BACKUPS")
    );
    // And the sizes in values.yaml are the sensor's defaults.
    let rb = rust_const("sensor/src/config.rs", "DEFAULT_RING_BUFFER_SIZE");
    assert_eq!(rb, "8 << 20");
    assert_eq!(config["ring-buffer-size"], 8 << 20);
    for (key, c) in [
        ("process-table-size", "DEFAULT_PROCESS_TABLE_SIZE"),
        ("process-cache-size", "DEFAULT_PROCESS_CACHE_SIZE"),
        ("export-queue-size", "DEFAULT_EXPORT_QUEUE_SIZE"),
    ] {
        assert_eq!(
            config[key].to_string(),
            rust_const("sensor/src/config.rs", c),
            "{key}"
        );
    }

    // The operator: gRPC port 4245 behind the Service the sensors are pointed at.
    assert!(args(op).contains(&format!("--grpc-address=0.0.0.0:{OPERATOR_GRPC_PORT}")));
    assert_eq!(
        op["ports"][0],
        json!({"name": "grpc", "containerPort": OPERATOR_GRPC_PORT, "protocol": "TCP"})
    );
    let svc = find(&objs, "Service", "vigil-operator");
    assert_eq!(svc["spec"]["ports"][0]["port"], OPERATOR_GRPC_PORT);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "grpc");
    assert_eq!(
        svc["spec"]["selector"],
        find(&objs, "Deployment", "vigil-operator")["spec"]["selector"]["matchLabels"]
    );
    assert!(args(sensor).contains(&format!(
        "--operator-address=http://vigil-operator.kube-system.svc:{OPERATOR_GRPC_PORT}"
    )));
    // The operator's --grpc-address default (operator/src/run.rs) is this port.
    let operator_src = read(root().join("operator/src/run.rs"));
    assert!(
        operator_src.contains(&format!(
            "DEFAULT_GRPC_ADDRESS: &str = \"0.0.0.0:{OPERATOR_GRPC_PORT}\""
        )),
        "operator/src/run.rs: --grpc-address default is not port {OPERATOR_GRPC_PORT}"
    );
}

#[test]
fn sensor_args_and_config_keys_are_the_sensors() {
    let flags = sensor_flags();
    assert!(
        flags.contains("export-file") && flags.contains("config"),
        "{flags:?}"
    );
    let file_keys = struct_fields("sensor/src/config.rs", "FileConfig");
    assert!(file_keys.contains("enable-process-ns"), "{file_keys:?}");
    for overrides in [json!({}), all_on()] {
        let objs = render(overrides);
        let sensor = container(sensor_pod(&objs), "sensor");
        for a in args(sensor) {
            let f = flag_name(&a).unwrap_or_else(|| panic!("{a} is not a long flag"));
            assert!(flags.contains(f), "vigil-sensor has no --{f}");
        }
        // Every key of config.yaml is a key the sensor's FileConfig accepts (it refuses others).
        let cm = find(&objs, "ConfigMap", "vigil-config");
        let config: Json =
            serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
        for k in config.as_object().unwrap().keys() {
            assert!(
                file_keys.contains(k),
                "config.yaml key {k} is not a sensor option"
            );
        }
        let d = find(&objs, "Deployment", "vigil-operator");
        let operator_src = read(root().join("operator/src/main.rs"));
        for a in args(&d["spec"]["template"]["spec"]["containers"][0])
            .iter()
            .skip(1)
        {
            let f = flag_name(a).unwrap();
            let declared = operator_src.contains(&format!("{}:", f.replace('-', "_")));
            assert!(
                declared || a.starts_with("--log-level"),
                "vigil-operator run has no --{f}"
            );
        }
    }
}

/// Entry sizes of docs/architecture.md ("Memory is a function of configuration"), typical case.
const PROCESS_TABLE_ENTRY: u64 = 420;
const PER_CPU_SCRATCH: u64 = 25 << 10;
const PROCESS_CACHE_ENTRY_TYPICAL: u64 = 1 << 10;
const EXPORT_QUEUE_ENTRY_TYPICAL: u64 = 1536;

#[test]
fn memory_limit_covers_the_documented_formula() {
    let arch = read(root().join("docs/architecture.md"));
    for fact in [
        "`--process-table-size` × ~420 B",
        "~25 KiB × CPUs",
        "~1 KiB typical",
        "~1.5 KiB typical",
        "| ring buffer | `--ring-buffer-size`",
    ] {
        assert!(
            arch.contains(fact),
            "docs/architecture.md no longer says {fact:?}: update the chart"
        );
    }
    let bpf = read(root().join("docs/bpf.md"));
    assert!(bpf.contains("≈ 4.5 MiB (preallocated)") && bpf.contains("512 × 3816 ≈ 1.9 MiB"));

    let values = values_yaml();
    let c = &values["sensor"]["config"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("sensor.config.{k}"));
    let mib = 1u64 << 20;
    // Fixed BPF maps besides the process table (bpf.md: hooks, ints, exited, pending,
    // ratelimit, attach, policies), rounded up.
    let other_maps = 8 * mib;
    let cpus = 128;
    let runtime = 40 * mib;
    let formula = n("ring-buffer-size")
        + n("process-table-size") * PROCESS_TABLE_ENTRY
        + other_maps
        + cpus * 3 * PER_CPU_SCRATCH
        + n("process-cache-size") * PROCESS_CACHE_ENTRY_TYPICAL
        + n("export-queue-size") * EXPORT_QUEUE_ENTRY_TYPICAL
        + runtime;
    let quantity = |q: &str| -> u64 {
        let (num, unit) = q.split_at(q.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(q.len()));
        let num: u64 = num.parse().unwrap();
        num * match unit {
            "Mi" => mib,
            "Gi" => 1 << 30,
            "" => 1,
            u => panic!("unit {u}"),
        }
    };
    let res = &values["sensor"]["resources"];
    let limit = quantity(res["limits"]["memory"].as_str().unwrap());
    let request = quantity(res["requests"]["memory"].as_str().unwrap());
    assert!(
        limit >= formula,
        "sensor memory limit {limit} is below the formula {formula} ({} MiB)",
        formula / mib
    );
    // The fixed part (preallocated maps, ring buffer, runtime) fits the request.
    let fixed = n("ring-buffer-size")
        + n("process-table-size") * PROCESS_TABLE_ENTRY
        + other_maps
        + runtime;
    assert!(
        request >= fixed,
        "request {request} below the fixed part {fixed}"
    );
    assert!(
        res["limits"]["cpu"].is_null(),
        "no CPU limit (throttling loses events)"
    );
}

#[test]
fn crds_in_the_chart_equal_config_crd() {
    let names: Vec<_> = std::fs::read_dir(root().join("config/crd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let chart_names: BTreeSet<_> = std::fs::read_dir(chart_dir().join("files/crds"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        chart_names,
        names.iter().cloned().collect(),
        "charts/vigil/files/crds vs config/crd"
    );
    for n in &names {
        assert_eq!(
            read(chart_dir().join("files/crds").join(n)),
            read(root().join("config/crd").join(n)),
            "charts/vigil/files/crds/{n} differs from config/crd/{n}: cp config/crd/*.yaml charts/vigil/files/crds/"
        );
    }
    let originals: Vec<Json> = names
        .iter()
        .map(|n| serde_saphyr::from_str(&read(root().join("config/crd").join(n))).unwrap())
        .collect();
    let crds = |objs: Vec<Json>| -> Vec<Json> {
        objs.into_iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .collect()
    };
    // Without `keep` the rendered CRDs are the files; with it they only gain the annotation.
    assert_eq!(crds(render(json!({"crds": {"keep": false}}))), originals);
    let kept = crds(render(json!({})));
    assert_eq!(kept.len(), originals.len());
    for (k, o) in kept.iter().zip(&originals) {
        let mut o = o.clone();
        o["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
        assert_eq!(k, &o);
    }
}

#[test]
fn values_are_documented_field_by_field() {
    let text = read(chart_dir().join("values.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    // (indent, documented) of the open keys above the current line.
    let mut stack: Vec<(usize, bool)> = Vec::new();
    let key = regex::Regex::new(r"^(\s*)([A-Za-z][A-Za-z0-9.-]*):").unwrap();
    let mut undocumented = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = key.captures(line) else {
            continue;
        };
        let indent = c[1].len();
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let commented = i > 0 && lines[i - 1].trim_start().starts_with('#');
        let parent_documented = stack.last().is_some_and(|(_, d)| *d);
        let is_section = line.trim_end().ends_with(':')
            && lines.get(i + 1).is_some_and(|n| {
                n.len() - n.trim_start().len() > indent && !n.trim_start().starts_with('-')
            });
        if !commented && !parent_documented && !is_section {
            undocumented.push(format!("line {}: {}", i + 1, line.trim()));
        }
        stack.push((indent, commented || parent_documented));
    }
    assert!(
        undocumented.is_empty(),
        "values.yaml fields without a comment:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn readme_and_notes_match_the_quickstart() {
    let readme = read(chart_dir().join("README.md"));
    for cmd in [
        "helm install vigil -n kube-system ./charts/vigil",
        "kubectl rollout status -n kube-system ds/vigil",
        "kubectl rollout status -n kube-system deploy/vigil-operator",
        "kubectl logs -n kube-system ds/vigil -c export-stdout -f | vigil observe",
    ] {
        assert!(readme.contains(cmd), "README lacks `{cmd}`");
    }
    let r = helm::render(&chart_dir(), "vigil", "kube-system", &json!({})).unwrap();
    let notes = &r["templates/NOTES.txt"];
    assert!(
        notes.contains("kubectl logs -n kube-system ds/vigil -c export-stdout -f | vigil observe"),
        "{notes}"
    );
    // The names in those commands are the rendered ones.
    let objs = objects(&r);
    find(&objs, "DaemonSet", "vigil");
    find(&objs, "Deployment", "vigil-operator");
    container(sensor_pod(&objs), "export-stdout");
    let ops = read(root().join("docs/operations.md"));
    assert!(
        ops.contains("charts/vigil/README.md"),
        "docs/operations.md points to the chart"
    );
}
