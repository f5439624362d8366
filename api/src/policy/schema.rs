//! Structural check of a raw document against the JSON schema of the spec types.
//!
//! serde stops at the first error; this walker reports every unknown field, missing field,
//! wrong type and unknown enum value, each with its path and the accepted alternatives.

use std::sync::OnceLock;

use serde_json::Value;

use super::{PolicyError, PolicyErrors, TracingPolicySpec};

pub(crate) struct SchemaChecker {
    root: Value,
}

/// Render a value for an error message: compact JSON, shortened.
pub(crate) fn show(v: &Value) -> String {
    let s = v.to_string();
    shorten(&s)
}

pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

pub(crate) fn quote(s: &str) -> String {
    shorten(&Value::String(s.to_string()).to_string())
}

/// "did you mean" for a misspelt name: case-insensitive match or edit distance ≤ 2.
pub(crate) fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let lower = input.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if c.to_ascii_lowercase() == lower {
            0
        } else {
            edit_distance(&lower, &c.to_ascii_lowercase())
        };
        if d <= 2 && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    match best {
        Some((_, c)) => format!(" (did you mean `{}`?)", escape(c)),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Append a mapping key to a path: `a.key`, or `a["odd key"]` when the key is not a plain
/// name (so that paths stay on one line and unambiguous).
pub(crate) fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-/".contains(&b));
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", quote(key)),
    }
}

/// A user-supplied name made safe for a one-line message.
pub(crate) fn escape(s: &str) -> String {
    let e: String = s.escape_debug().collect();
    shorten(&e)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl SchemaChecker {
    /// The checker for `TracingPolicySpec`.
    pub(crate) fn spec() -> &'static SchemaChecker {
        static CHECKER: OnceLock<SchemaChecker> = OnceLock::new();
        CHECKER.get_or_init(|| {
            let schema = schemars::generate::SchemaSettings::draft2020_12()
                .into_generator()
                .into_root_schema_for::<TracingPolicySpec>();
            SchemaChecker {
                root: schema.to_value(),
            }
        })
    }

    pub(crate) fn check_root(&self, v: &Value, path: &str, errs: &mut PolicyErrors) {
        self.check(v, &self.root, path, errs);
    }

    fn resolve<'a>(&'a self, s: &'a Value) -> &'a Value {
        let mut s = s;
        // References never chain more than a few times; bound the loop anyway.
        for _ in 0..8 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.rsplit('/').next().unwrap_or_default();
                    match self.root.get("$defs").and_then(|d| d.get(name)) {
                        Some(t) => s = t,
                        None => return s,
                    }
                }
                None => return s,
            }
        }
        s
    }

    /// Accepted values of an enum-like schema (`enum`, `const`, or oneOf/anyOf of those).
    fn enum_values(&self, s: &Value) -> Option<Vec<String>> {
        let s = self.resolve(s);
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            return Some(
                e.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            );
        }
        if let Some(c) = s.get("const").and_then(Value::as_str) {
            return Some(vec![c.to_string()]);
        }
        let branches = s
            .get("oneOf")
            .or_else(|| s.get("anyOf"))
            .and_then(Value::as_array)?;
        let mut out = Vec::new();
        for b in branches {
            out.extend(self.enum_values(b)?);
        }
        Some(out)
    }

    /// A short description of what a schema accepts.
    fn describe(&self, s: &Value) -> String {
        let s = self.resolve(s);
        if let Some(vals) = self.enum_values(s) {
            return vals.join(", ");
        }
        if let Some(branches) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array)
        {
            let parts: Vec<String> = branches
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .map(|b| self.describe(b))
                .collect();
            return parts.join(" or ");
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("any")
                .to_string(),
            _ => "any value".to_string(),
        };
        match ty.as_str() {
            "integer" => {
                let (lo, hi) = int_bounds(s);
                format!("an integer from {lo} to {hi}")
            }
            "string" => "a string".to_string(),
            "boolean" => "true or false".to_string(),
            "array" => match s.get("items") {
                Some(items) => format!("a list of {}", self.describe_item(items)),
                None => "a list".to_string(),
            },
            "object" => match s.get("properties").and_then(Value::as_object) {
                Some(p) => format!("a mapping with fields {}", sorted_keys(p)),
                None => "a mapping".to_string(),
            },
            other => other.to_string(),
        }
    }

    fn describe_item(&self, s: &Value) -> String {
        let d = self.describe(s);
        if d.starts_with("a mapping") {
            return "mappings".to_string();
        }
        // "an integer from 0 to 9" -> "integers from 0 to 9"; "a string" -> "strings".
        match d.strip_prefix("a ").or_else(|| d.strip_prefix("an ")) {
            Some(rest) => match rest.split_once(' ') {
                Some((noun, tail)) => format!("{noun}s {tail}"),
                None => format!("{rest}s"),
            },
            None => format!("values ({d})"),
        }
    }

    fn check(&self, v: &Value, s: &Value, path: &str, errs: &mut PolicyErrors) {
        let s = self.resolve(s);
        match s {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                errs.push(PolicyError::invalid(
                    path,
                    show(v),
                    "no value is allowed here",
                    "nothing",
                ));
                return;
            }
            _ => {}
        }
        if let Some(vals) = self.enum_values(s) {
            match v.as_str() {
                Some(x) if vals.iter().any(|a| a == x) => {}
                Some(x) => errs.push(PolicyError::invalid(
                    path,
                    show(v),
                    format!(
                        "unknown value{}",
                        suggest(x, vals.iter().map(String::as_str))
                    ),
                    vals.join(", "),
                )),
                None => errs.push(PolicyError::invalid(
                    path,
                    show(v),
                    format!("expected a string, found {}", kind_name(v)),
                    vals.join(", "),
                )),
            }
            return;
        }
        if let Some(branches) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array)
        {
            let non_null: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if v.is_null() && non_null.len() < branches.len() {
                return;
            }
            if non_null.len() == 1 {
                self.check(v, non_null[0], path, errs);
                return;
            }
            let mut best: Option<PolicyErrors> = None;
            for b in non_null {
                let mut e = PolicyErrors::default();
                self.check(v, b, path, &mut e);
                if e.is_empty() {
                    return;
                }
                if best.as_ref().is_none_or(|x| e.len() < x.len()) {
                    best = Some(e);
                }
            }
            if let Some(e) = best {
                errs.extend(e);
            }
            return;
        }
        // Schemas with no constraints (e.g. fields kept for "not supported yet").
        let Some(ty) = s.get("type") else {
            return;
        };
        let types: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = match v {
            Value::Null => types.contains(&"null"),
            Value::Bool(_) => types.contains(&"boolean"),
            Value::Number(n) => {
                types.contains(&"number") || (types.contains(&"integer") && !n.is_f64())
            }
            Value::String(_) => types.contains(&"string"),
            Value::Array(_) => types.contains(&"array"),
            Value::Object(_) => types.contains(&"object"),
        };
        if !ok {
            let mut reason = format!("expected {}, found {}", self.describe(s), kind_name(v));
            if types.contains(&"string") && matches!(v, Value::Number(_) | Value::Bool(_)) {
                reason.push_str(" (quote it)");
            }
            errs.push(PolicyError::invalid(
                path,
                show(v),
                reason,
                self.describe(s),
            ));
            return;
        }
        match v {
            Value::Number(n) => {
                let (lo, hi) = int_bounds(s);
                let in_range = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => i128::from(i) >= lo && i128::from(i) <= hi,
                    (None, Some(u)) => i128::from(u) <= hi,
                    _ => true,
                };
                if !in_range {
                    errs.push(PolicyError::invalid(
                        path,
                        show(v),
                        "out of range",
                        format!("an integer from {lo} to {hi}"),
                    ));
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{path}[{i}]"), errs);
                    }
                }
            }
            Value::Object(map) => {
                let props = s.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let additional = s.get("additionalProperties");
                for (k, val) in map {
                    let p = child(path, k);
                    match props.and_then(|p| p.get(k)) {
                        Some(ps) => {
                            if val.is_null() {
                                continue;
                            }
                            self.check(val, ps, &p, errs);
                        }
                        None => match additional {
                            Some(Value::Bool(false)) => {
                                let names = props.map(sorted_keys).unwrap_or_default();
                                let hint = props
                                    .map(|pr| suggest(k, pr.keys().map(String::as_str)))
                                    .unwrap_or_default();
                                errs.push(PolicyError::UnknownField {
                                    path: path.to_string(),
                                    field: escape(k),
                                    hint,
                                    accepted: names,
                                });
                            }
                            Some(extra) if extra.is_object() => self.check(val, extra, &p, errs),
                            _ => {}
                        },
                    }
                }
                for r in required {
                    if map.get(r).is_none_or(Value::is_null) {
                        let accepted = props
                            .and_then(|p| p.get(r))
                            .map(|ps| self.describe(ps))
                            .unwrap_or_else(|| "a value".to_string());
                        errs.push(PolicyError::MissingField {
                            path: child(path, r),
                            accepted,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

fn sorted_keys(m: &serde_json::Map<String, Value>) -> String {
    let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
    k.sort_unstable();
    k.join(", ")
}

fn int_bounds(s: &Value) -> (i128, i128) {
    let (mut lo, mut hi) = match s.get("format").and_then(Value::as_str) {
        Some("uint8") => (0, i128::from(u8::MAX)),
        Some("uint16") => (0, i128::from(u16::MAX)),
        Some("uint32") | Some("uint") => (0, i128::from(u32::MAX)),
        Some("uint64") => (0, i128::from(u64::MAX)),
        Some("int8") => (i128::from(i8::MIN), i128::from(i8::MAX)),
        Some("int16") => (i128::from(i16::MIN), i128::from(i16::MAX)),
        Some("int32") | Some("int") => (i128::from(i32::MIN), i128::from(i32::MAX)),
        _ => (i128::from(i64::MIN), i128::from(u64::MAX)),
    };
    if let Some(m) = s.get("minimum").and_then(Value::as_i64) {
        lo = lo.max(i128::from(m));
    }
    if let Some(m) = s.get("maximum").and_then(Value::as_i64) {
        hi = hi.min(i128::from(m));
    }
    (lo, hi)
}

/// Remove null-valued object entries (an empty YAML field means "absent", as in Tetragon).
pub(crate) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            for x in m.values_mut() {
                strip_nulls(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
