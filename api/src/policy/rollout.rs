//! Staged rollout: the `vigil.dev/rollout` annotation of a policy.
//!
//! `vigil.dev/rollout: "canary=10%,pause=5m"` asks the operator to push a new or changed
//! policy to a fraction of the nodes it targets first (the canaries, at least one node), and to
//! the rest only after every canary loaded it with every hook and the pause elapsed since the
//! last canary did. The plan lives in an annotation, not in the spec, so that Tetragon
//! manifests stay valid and a change of the plan alone does not reload the policy on any node.
//! It is not part of the compiled IR: sensors never see it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::PolicyError;

/// The annotation that carries a policy's rollout plan.
pub const ROLLOUT_ANNOTATION: &str = "vigil.dev/rollout";

/// The longest pause a plan may ask for (one week): longer is almost certainly a typo.
pub const MAX_PAUSE: Duration = Duration::from_secs(7 * 24 * 3600);

const ACCEPTED: &str = "comma-separated canary=N% (1 to 99) and optional pause=DURATION \
                        (e.g. 30s, 5m, 2h; at most 168h), such as \"canary=10%,pause=5m\"";

/// How a new version of a policy reaches its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPlan {
    /// Percent of the targeted nodes that get a new version first (rounded up, at least one).
    pub canary_percent: u8,
    /// How long every canary must have run the new version before the rest get it.
    pub pause: Duration,
}

impl RolloutPlan {
    /// How many of `targeted` nodes are canaries.
    pub fn canary_count(&self, targeted: usize) -> usize {
        if targeted == 0 {
            return 0;
        }
        (targeted * usize::from(self.canary_percent))
            .div_ceil(100)
            .clamp(1, targeted)
    }
}

impl std::fmt::Display for RolloutPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "canary={}%,pause={}s",
            self.canary_percent,
            self.pause.as_secs()
        )
    }
}

/// The rollout plan of a policy with these annotations: `None` without the annotation (the
/// policy goes to every node at once).
pub fn rollout_plan(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<RolloutPlan>, PolicyError> {
    let Some(text) = annotations.get(ROLLOUT_ANNOTATION) else {
        return Ok(None);
    };
    parse_plan(text).map(Some).map_err(|reason| {
        PolicyError::invalid(
            format!("metadata.annotations[\"{ROLLOUT_ANNOTATION}\"]"),
            format!("{text:?}"),
            reason,
            ACCEPTED,
        )
    })
}

fn parse_plan(text: &str) -> Result<RolloutPlan, String> {
    let mut canary = None;
    let mut pause = None;
    for part in text.split(',').map(str::trim) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("{part:?} is not key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "canary" if canary.is_some() => return Err("canary is given twice".into()),
            "pause" if pause.is_some() => return Err("pause is given twice".into()),
            "canary" => canary = Some(parse_percent(value)?),
            "pause" => pause = Some(parse_duration("pause", value, MAX_PAUSE)?),
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    let Some(canary_percent) = canary else {
        return Err("canary is missing".into());
    };
    Ok(RolloutPlan {
        canary_percent,
        pause: pause.unwrap_or(Duration::ZERO),
    })
}

fn parse_percent(value: &str) -> Result<u8, String> {
    let digits = value
        .strip_suffix('%')
        .ok_or_else(|| format!("canary {value:?} is not a percentage (N%)"))?;
    match digits.parse::<u8>() {
        Ok(n @ 1..=99) => Ok(n),
        _ => Err(format!("canary {value:?} is not between 1% and 99%")),
    }
}

/// `N` followed by `s`, `m` or `h`, at most `max`; errors name the key (`pause`, `window`).
pub(super) fn parse_duration(key: &str, value: &str, max: Duration) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{key} {value:?} has no unit (s, m or h)"))?;
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{key} {value:?} does not start with a number"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => return Err(format!("{key} {value:?} has an unknown unit (s, m or h)")),
    };
    match secs.map(Duration::from_secs) {
        Some(d) if d <= max => Ok(d),
        _ => Err(format!(
            "{key} {value:?} is longer than {}h",
            max.as_secs() / 3600
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Option<RolloutPlan>, String> {
        let a = BTreeMap::from([(ROLLOUT_ANNOTATION.to_string(), text.to_string())]);
        rollout_plan(&a).map_err(|e| e.to_string())
    }

    #[test]
    fn plans_parse_with_and_without_a_pause() {
        assert_eq!(
            plan("canary=10%,pause=5m").unwrap(),
            Some(RolloutPlan {
                canary_percent: 10,
                pause: Duration::from_secs(300)
            })
        );
        assert_eq!(
            plan(" pause = 2h , canary = 50% ").unwrap(),
            Some(RolloutPlan {
                canary_percent: 50,
                pause: Duration::from_secs(7200)
            })
        );
        assert_eq!(plan("canary=1%").unwrap().unwrap().pause, Duration::ZERO);
        assert_eq!(rollout_plan(&BTreeMap::new()).unwrap(), None);
    }

    #[test]
    fn bad_plans_name_the_annotation_and_what_is_wrong() {
        for (text, why) in [
            ("canary=10", "not a percentage"),
            ("canary=0%", "between 1% and 99%"),
            ("canary=100%", "between 1% and 99%"),
            ("canary=-5%", "between 1% and 99%"),
            ("pause=5m", "canary is missing"),
            ("canary=10%,pause=5", "no unit"),
            ("canary=10%,pause=5d", "unknown unit"),
            ("canary=10%,pause=m", "does not start with a number"),
            ("canary=10%,pause=169h", "longer than 168h"),
            (
                "canary=10%,pause=99999999999999999999h",
                "does not start with a number",
            ),
            ("canary=10%,canary=20%", "given twice"),
            ("canary=10%,speed=2", "unknown key \"speed\""),
            ("canary", "not key=value"),
            ("", "not key=value"),
        ] {
            let e = plan(text).unwrap_err();
            assert!(e.contains("vigil.dev/rollout"), "{text}: {e}");
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("canary=N%"), "{text}: {e}");
        }
    }

    #[test]
    fn canaries_are_rounded_up_and_at_least_one_node() {
        let p = |canary_percent| RolloutPlan {
            canary_percent,
            pause: Duration::ZERO,
        };
        assert_eq!(p(10).canary_count(0), 0);
        assert_eq!(p(10).canary_count(1), 1);
        assert_eq!(p(10).canary_count(5), 1);
        assert_eq!(p(20).canary_count(5), 1);
        assert_eq!(p(21).canary_count(5), 2);
        assert_eq!(p(99).canary_count(5), 5);
        assert_eq!(p(50).canary_count(4), 2);
    }
}
