//! Node selection: a policy's `spec.nodeSelector` (IR [`LabelSelector`]) against the labels a
//! sensor sent in its Hello. Kubernetes semantics: every requirement must hold; `NotIn` and
//! `DoesNotExist` hold for a node without the label.

use std::collections::BTreeMap;

use vigil_api::policy::ir::{LabelOperator, LabelSelector};

/// Whether a node with `labels` is targeted by `selector` (`None`: every node).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else {
        return true;
    };
    sel.requirements.iter().all(|r| {
        let value = labels.get(&r.key);
        match r.operator() {
            LabelOperator::In => value.is_some_and(|v| r.values.contains(v)),
            LabelOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            // The compiler never writes it; a requirement we do not understand selects nothing.
            LabelOperator::Unspecified => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::policy::ir::LabelRequirement;

    fn req(key: &str, op: LabelOperator, values: &[&str]) -> LabelRequirement {
        LabelRequirement {
            key: key.into(),
            operator: op as i32,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn none_and_empty_select_every_node() {
        let l = labels(&[]);
        assert!(selects(None, &l));
        assert!(selects(Some(&LabelSelector::default()), &l));
    }

    #[test]
    fn operators() {
        let node = labels(&[("zone", "a"), ("role", "web")]);
        let one = |r| LabelSelector {
            requirements: vec![r],
        };
        use LabelOperator::*;
        assert!(selects(Some(&one(req("zone", In, &["a", "b"]))), &node));
        assert!(!selects(Some(&one(req("zone", In, &["b"]))), &node));
        assert!(!selects(Some(&one(req("missing", In, &["a"]))), &node));
        assert!(selects(Some(&one(req("zone", NotIn, &["b"]))), &node));
        assert!(!selects(Some(&one(req("zone", NotIn, &["a"]))), &node));
        assert!(selects(Some(&one(req("missing", NotIn, &["a"]))), &node));
        assert!(selects(Some(&one(req("role", Exists, &[]))), &node));
        assert!(!selects(Some(&one(req("missing", Exists, &[]))), &node));
        assert!(selects(
            Some(&one(req("missing", DoesNotExist, &[]))),
            &node
        ));
        assert!(!selects(Some(&one(req("role", DoesNotExist, &[]))), &node));
        assert!(!selects(Some(&one(req("role", Unspecified, &[]))), &node));
    }

    #[test]
    fn all_requirements_must_hold() {
        let node = labels(&[("zone", "a"), ("role", "web")]);
        let sel = LabelSelector {
            requirements: vec![
                req("zone", LabelOperator::In, &["a"]),
                req("role", LabelOperator::In, &["db"]),
            ],
        };
        assert!(!selects(Some(&sel), &node));
        let sel = LabelSelector {
            requirements: vec![
                req("zone", LabelOperator::In, &["a"]),
                req("role", LabelOperator::Exists, &[]),
            ],
        };
        assert!(selects(Some(&sel), &node));
    }
}
