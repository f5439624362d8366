//! `vigil-sensor check-programs`: loads every BPF program this kernel can run — the process
//! programs and every kind of hook program, at their full configuration (the per-policy limits
//! are compiled in, so one load verifies the largest case) — and reports each one's verifier
//! instruction count and load time against a budget. A preflight for a new kernel, and what the
//! test suites run on every kernel they boot to keep the programs far from the verifier's limit.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use vigil_sensor_bpf::hook_names as names;

use crate::hooks::kernel::{HookBpf, PinDir};
use crate::hooks::programs::HookPrograms;
use crate::kernel::features::{self, Features};

/// The budget the project holds every program to (the kernel's limit is 1,000,000).
pub const DEFAULT_BUDGET: u32 = 150_000;

/// One program's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Checked {
    pub program: String,
    /// `loaded`, `failed` (the kernel refused it) or `skipped` (this kernel lacks what it needs).
    pub status: &'static str,
    pub verified_insns: Option<u32>,
    pub load_ms: Option<f64>,
    /// Why it failed or was skipped.
    pub detail: Option<String>,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel_release: String,
    pub budget: u32,
    pub programs: Vec<Checked>,
}

impl Report {
    /// Every program that could load did, within the budget.
    pub fn ok(&self) -> bool {
        self.programs.iter().all(|p| match p.status {
            "loaded" => p.verified_insns.is_none_or(|n| n <= self.budget),
            "failed" => false,
            _ => true,
        })
    }

    /// A table for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "kernel {}, budget {} verified instructions per program\n",
            self.kernel_release, self.budget
        );
        for p in &self.programs {
            let insns = p
                .verified_insns
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into());
            let ms = p
                .load_ms
                .map(|m| format!("{m:.1} ms"))
                .unwrap_or_else(|| "-".into());
            let over = match p.verified_insns {
                Some(n) if n > self.budget => "  OVER BUDGET",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  {:<20} {:<8} {:>8} insns {:>10}{over}{}",
                p.program,
                p.status,
                insns,
                ms,
                p.detail
                    .as_deref()
                    .map(|d| format!("  ({d})"))
                    .unwrap_or_default()
            );
        }
        out
    }
}

fn skipped(program: &str, why: &str) -> Checked {
    Checked {
        program: program.into(),
        status: "skipped",
        verified_insns: None,
        load_ms: None,
        detail: Some(why.into()),
    }
}

fn failed(program: &str, why: String) -> Checked {
    Checked {
        program: program.into(),
        status: "failed",
        verified_insns: None,
        load_ms: None,
        detail: Some(why),
    }
}

/// What a hook program kind needs from the kernel, or `None` when it can always be tried.
fn missing(f: &Features, program: &str) -> Option<&'static str> {
    match program {
        names::TRACEPOINT_PROG
        | names::KPROBE_PROG
        | names::KRETPROBE_PROG
        | names::UPROBE_PROG
            if !f.cookie =>
        {
            Some("no BPF cookies: the *_id variant serves instead")
        }
        names::SYS_ENTER_TP_PROG | names::SYS_EXIT_TP_PROG if !f.syscall_tracepoint => {
            Some("no per-syscall tracepoints")
        }
        names::SYS_ENTER_PROG | names::SYS_EXIT_PROG if !f.btf_tracepoint => {
            Some("no BTF tracepoints")
        }
        names::LSM_PROG if !f.bpf_lsm => Some("BPF-LSM not active"),
        _ => None,
    }
}

/// Loads everything and reports. Errors only when the check itself cannot run (no BTF, no
/// bpffs); a program the kernel refuses is a `failed` row.
pub fn run(budget: u32) -> Result<Report, crate::error::SensorError> {
    let btf = crate::kernel::bpf::kernel_btf()?;
    let f = features::probe_with(&btf);
    let pins = Arc::new(PinDir::scratch()?);
    let mut programs = Vec::new();
    match crate::kernel::bpf::load(&pins, &btf, 1 << 20, 1024) {
        Ok(process) => {
            for p in &process.programs {
                programs.push(Checked {
                    program: p.name.clone(),
                    status: "loaded",
                    verified_insns: p.verified_insns,
                    load_ms: Some(p.last_load.as_secs_f64() * 1000.0),
                    detail: None,
                });
            }
        }
        Err(e) => programs.push(failed("process object", e.to_string())),
    }
    // The task iterator of the heal after loss (it reads the process table pinned above).
    match crate::process::heal::TaskIter::load(&pins, &btf) {
        Ok(it) => programs.push(Checked {
            program: it.stats.name.clone(),
            status: "loaded",
            verified_insns: it.stats.verified_insns,
            load_ms: Some(it.stats.last_load.as_secs_f64() * 1000.0),
            detail: None,
        }),
        Err(e) => programs.push(failed(vigil_sensor_bpf::ITER_TASKS_PROG, e.to_string())),
    }
    let (_maps, mut hooks) = HookBpf::open(pins.clone(), &btf, 0, f.cookie)?;
    for &name in names::PROGRAMS {
        if let Some(why) = missing(&f, name) {
            programs.push(skipped(name, why));
            continue;
        }
        let start = Instant::now();
        let result = match name {
            names::TRACEPOINT_ID_PROG
            | names::KPROBE_ID_PROG
            | names::KRETPROBE_ID_PROG
            | names::UPROBE_ID_PROG
            | names::LSM_PROG => {
                let hook = (name == names::LSM_PROG).then_some("file_open");
                HookPrograms::load_instance(&hooks.pins(), &[name], 1, hook)
                    .map(|(_, t)| t.first().and_then(|t| t.insns))
            }
            _ => hooks.ensure(name).map(|()| {
                hooks
                    .stats_handle()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(name)
                    .and_then(|s| s.verified_insns)
            }),
        };
        programs.push(match result {
            Ok(insns) => Checked {
                program: name.into(),
                status: "loaded",
                verified_insns: insns,
                load_ms: Some(start.elapsed().as_secs_f64() * 1000.0),
                detail: None,
            },
            Err(e) => failed(name, e),
        });
    }
    // Self-protection's programs (`--self-protection`).
    match crate::kernel::protect::check(&pins, &btf, f.bpf_lsm) {
        Ok(rows) => {
            for (name, result, took) in rows {
                programs.push(match result {
                    None => skipped(name, "BPF-LSM not active"),
                    Some(Ok(insns)) => Checked {
                        program: name.into(),
                        status: "loaded",
                        verified_insns: insns,
                        load_ms: Some(took.as_secs_f64() * 1000.0),
                        detail: None,
                    },
                    Some(Err(e)) => failed(name, e),
                });
            }
        }
        Err(e) => programs.push(failed("protect object", e.to_string())),
    }
    Ok(Report {
        kernel_release: f.kernel_release,
        budget,
        programs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &'static str, insns: Option<u32>) -> Checked {
        Checked {
            program: "p".into(),
            status,
            verified_insns: insns,
            load_ms: Some(1.0),
            detail: None,
        }
    }

    #[test]
    fn a_program_over_budget_or_refused_fails_the_check_and_a_skipped_one_does_not() {
        let report = |rows: Vec<Checked>| Report {
            kernel_release: "k".into(),
            budget: 100,
            programs: rows,
        };
        assert!(report(vec![row("loaded", Some(100)), row("skipped", None)]).ok());
        assert!(!report(vec![row("loaded", Some(101))]).ok());
        assert!(!report(vec![row("failed", None)]).ok());
        assert!(
            report(vec![row("loaded", Some(101))])
                .text()
                .contains("OVER BUDGET")
        );
    }

    #[test]
    fn cookie_programs_are_skipped_without_cookies() {
        let f = Features::default();
        assert!(missing(&f, names::KPROBE_PROG).is_some());
        assert!(missing(&f, names::KPROBE_ID_PROG).is_none());
        let f = Features {
            cookie: true,
            ..Default::default()
        };
        assert!(missing(&f, names::KPROBE_PROG).is_none());
    }
}
