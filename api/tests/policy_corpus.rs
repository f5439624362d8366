//! Every Tetragon example policy validates and compiles, or fails only with
//! `not supported yet` errors for a feature on the documented list.
//! The corpus is shared/policies/tetragon-examples next to the repository (searched upwards,
//! then /work/shared); override with VIGIL_POLICY_CORPUS.

use std::path::{Path, PathBuf};

use vigil_api::policy::{compile_yaml, parse_documents, validate};

fn corpus_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_POLICY_CORPUS") {
        return PathBuf::from(p);
    }
    // `shared/` sits next to the repository; look upwards so a clone elsewhere finds it too.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/policies/tetragon-examples"))
        .chain([PathBuf::from("/work/shared/policies/tetragon-examples")])
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "Tetragon example corpus not found next to {} or in /work/shared; set VIGIL_POLICY_CORPUS",
                manifest.display()
            )
        })
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set VIGIL_POLICY_CORPUS)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Files expected to fail, and the feature named in their `not supported yet` errors.
const NOT_SUPPORTED: [(&str, &str); 6] = [
    ("loader.yaml", "loader events"),
    ("policylibrary/library.yaml", "loader events"),
    ("usdt-set.yaml", "USDT probes"),
    ("policylibrary/egress.yaml", "template variable"),
    (
        "quickstart/network_egress_cluster.yaml",
        "template variable",
    ),
    (
        "quickstart/network_egress_cluster_enforce.yaml",
        "template variable",
    ),
];

#[test]
fn every_example_compiles_or_is_documented_as_not_supported() {
    let dir = corpus_dir();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    assert!(
        files.len() >= 40,
        "corpus too small: {} files in {}",
        files.len(),
        dir.display()
    );
    let mut failures = Vec::new();
    let mut compiled = 0;
    let mut hooks = 0;
    for f in &files {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().to_string();
        let yaml = std::fs::read_to_string(f).unwrap();
        let expected = NOT_SUPPORTED.iter().find(|(n, _)| *n == rel);
        match (compile_yaml(&yaml), expected) {
            (Ok(irs), None) => {
                compiled += 1;
                hooks += irs.iter().map(|ir| ir.hooks.len()).sum::<usize>();
                // validate() agrees with compile.
                for d in parse_documents(&yaml).unwrap() {
                    validate(&d).unwrap();
                }
            }
            (Ok(_), Some(_)) => {
                failures.push(format!("{rel}: compiled, but is listed as not supported"))
            }
            (Err(e), None) => failures.push(format!("{rel}:\n{e}")),
            (Err(e), Some((_, feature))) => {
                if !e.only_not_supported() {
                    failures.push(format!(
                        "{rel}: expected only `not supported yet` errors, got:\n{e}"
                    ));
                }
                for err in e.iter() {
                    let line = err.to_string();
                    if !line.contains("not supported yet") || !line.contains(feature) {
                        failures.push(format!("{rel}: unexpected error: {line}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(compiled + NOT_SUPPORTED.len(), files.len());
    assert!(hooks > 100, "only {hooks} hooks compiled");
}
