//! CPU budget: the `vigil.dev/cpu-budget` annotation of a policy.
//!
//! `vigil.dev/cpu-budget: "2%"` (or `"0.5%,window=30s"`) caps what the policy's hooks may cost
//! a node, as a share of one CPU averaged over the window (60 s unless given). A sensor that
//! measures more for a whole window demotes the policy: an enforcing policy in enforce mode is
//! switched to monitor, any other policy is disabled. The budget is an annotation so that
//! Tetragon manifests stay valid; it travels to the sensors in the IR (`PolicyIr.cpu_budget`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::PolicyError;
use super::ir;
use super::rollout::parse_duration;

/// The annotation that carries a policy's CPU budget.
pub const CPU_BUDGET_ANNOTATION: &str = "vigil.dev/cpu-budget";

/// The window when the annotation gives none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Windows are at least this long (the sensor measures once a second) …
pub const MIN_WINDOW: Duration = Duration::from_secs(2);
/// … and at most one hour.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// The largest budget: 100 CPUs' worth.
const MAX_MILLIPERCENT: u32 = 10_000_000;

const ACCEPTED: &str = "a share of one CPU from 0.001% to 10000% with at most three decimals, \
                        optionally followed by ,window=DURATION (2s to 1h, default 60s), \
                        such as \"2%\" or \"0.5%,window=30s\"";

/// The CPU budget of a policy with these annotations, as carried in the IR: `None` without
/// the annotation.
pub fn cpu_budget(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<ir::CpuBudget>, PolicyError> {
    let Some(text) = annotations.get(CPU_BUDGET_ANNOTATION) else {
        return Ok(None);
    };
    parse_budget(text).map(Some).map_err(|reason| {
        PolicyError::invalid(
            format!("metadata.annotations[\"{CPU_BUDGET_ANNOTATION}\"]"),
            format!("{text:?}"),
            reason,
            ACCEPTED,
        )
    })
}

/// The budget as a percentage of one CPU (2% → 2.0).
pub fn budget_percent(b: &ir::CpuBudget) -> f64 {
    f64::from(b.millipercent) / 1000.0
}

fn parse_budget(text: &str) -> Result<ir::CpuBudget, String> {
    let mut parts = text.split(',').map(str::trim);
    let share = parts.next().unwrap_or_default();
    let millipercent = parse_share(share)?;
    let mut window = None;
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("{part:?} is not key=value"));
        };
        match key.trim() {
            "window" if window.is_some() => return Err("window is given twice".into()),
            "window" => {
                let w = parse_duration("window", value.trim(), MAX_WINDOW)?;
                if w < MIN_WINDOW {
                    return Err(format!("window {:?} is shorter than 2s", value.trim()));
                }
                window = Some(w);
            }
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    Ok(ir::CpuBudget {
        millipercent,
        window_seconds: window.unwrap_or(DEFAULT_WINDOW).as_secs() as u32,
    })
}

/// `2%`, `0.5%`, `12.125%` → thousandths of a percent.
fn parse_share(share: &str) -> Result<u32, String> {
    let digits = share
        .strip_suffix('%')
        .ok_or_else(|| format!("{share:?} is not a percentage (N%)"))?
        .trim();
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 3 {
        return Err(format!(
            "{share:?} is not a number with at most three decimals"
        ));
    }
    let frac_milli: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let milli = whole
        .parse::<u64>()
        .ok()
        .and_then(|w| w.checked_mul(1000))
        .and_then(|w| w.checked_add(frac_milli));
    match milli {
        Some(m @ 1..) if m <= u64::from(MAX_MILLIPERCENT) => Ok(m as u32),
        Some(0) => Err(format!("{share:?} is zero")),
        _ => Err(format!("{share:?} is more than 10000%")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(text: &str) -> Result<Option<ir::CpuBudget>, String> {
        let a = BTreeMap::from([(CPU_BUDGET_ANNOTATION.to_string(), text.to_string())]);
        cpu_budget(&a).map_err(|e| e.to_string())
    }

    fn b(millipercent: u32, window_seconds: u32) -> Option<ir::CpuBudget> {
        Some(ir::CpuBudget {
            millipercent,
            window_seconds,
        })
    }

    #[test]
    fn budgets_parse_with_and_without_a_window() {
        assert_eq!(budget("2%").unwrap(), b(2000, 60));
        assert_eq!(budget("0.5%,window=30s").unwrap(), b(500, 30));
        assert_eq!(budget(" 12.125% , window = 2m ").unwrap(), b(12_125, 120));
        assert_eq!(budget("0.001%,window=2s").unwrap(), b(1, 2));
        assert_eq!(budget("10000%,window=1h").unwrap(), b(10_000_000, 3600));
        assert_eq!(cpu_budget(&BTreeMap::new()).unwrap(), None);
        assert_eq!(budget_percent(&b(2500, 60).unwrap()), 2.5);
    }

    #[test]
    fn bad_budgets_name_the_annotation_and_what_is_wrong() {
        for (text, why) in [
            ("2", "not a percentage"),
            ("", "not a percentage"),
            ("0%", "is zero"),
            ("0.000%", "is zero"),
            ("10000.001%", "more than 10000%"),
            ("99999999999999999999%", "more than 10000%"),
            ("-1%", "at most three decimals"),
            ("1.2345%", "at most three decimals"),
            ("a%", "at most three decimals"),
            (".5%", "at most three decimals"),
            ("2%,window=1s", "shorter than 2s"),
            ("2%,window=2h", "longer than 1h"),
            ("2%,window=5", "no unit"),
            ("2%,window=30s,window=40s", "given twice"),
            ("2%,burst=3", "unknown key \"burst\""),
            ("2%,window", "not key=value"),
        ] {
            let e = budget(text).unwrap_err();
            assert!(e.contains("vigil.dev/cpu-budget"), "{text}: {e}");
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("window=DURATION"), "{text}: {e}");
        }
    }
}
