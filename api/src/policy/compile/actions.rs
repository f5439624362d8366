//! matchActions / matchReturnActions lowered to [`ir::Action`].

use crate::policy::PolicyError;
use crate::policy::ir;
use crate::policy::limits::*;
use crate::policy::schema::quote;
use crate::policy::types::*;
use crate::policy::values::*;

use super::{Cx, HookClass, HookCx};

use ActionName as A;

fn action_name(a: ActionName) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn action_kind(a: ActionName) -> ir::ActionKind {
    match a {
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
    }
}

impl Cx<'_> {
    pub(super) fn action(
        &mut self,
        p: &str,
        a: &ActionSelector,
        hcx: &HookCx,
        on_return: bool,
    ) -> Option<ir::Action> {
        let name = action_name(a.action);
        if !self.action_supported(p, a) {
            return None;
        }
        let before = self.errs.len();
        self.action_parameters(p, a, &name);
        self.action_placement(p, a, hcx, on_return, &name);
        let mut out = ir::Action {
            kind: action_kind(a.action) as i32,
            ..Default::default()
        };
        self.action_arguments(p, a, hcx, &mut out);
        (self.errs.len() == before).then_some(out)
    }

    /// Reject actions Vigil does not implement (the action is dropped) and imaHash.
    fn action_supported(&mut self, p: &str, a: &ActionSelector) -> bool {
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
            return false;
        }
        if a.ima_hash {
            self.err(PolicyError::not_supported(
                format!("{p}.imaHash"),
                "IMA hashes (imaHash)",
                "imaHash: false",
            ));
        }
        true
    }

    /// Every parameter given must belong to the action.
    fn action_parameters(&mut self, p: &str, a: &ActionSelector, name: &str) {
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
    }

    /// The action must make sense on this hook class and at this point (call or return).
    fn action_placement(
        &mut self,
        p: &str,
        a: &ActionSelector,
        hcx: &HookCx,
        on_return: bool,
        name: &str,
    ) {
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
                quote(name),
                reason,
                "Post, NoPost, Sigkill, Signal (any hook); Override (kprobes, syscalls, LSM hooks); TrackSock/UntrackSock (kprobes); NotifyEnforcer (with spec.enforcers)",
            ));
        }
    }

    /// Check and lower the action's own arguments into `out`.
    fn action_arguments(
        &mut self,
        p: &str,
        a: &ActionSelector,
        hcx: &HookCx,
        out: &mut ir::Action,
    ) {
        let kprobe_like = matches!(hcx.class, HookClass::Kprobe | HookClass::Syscall);
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
            A::TrackSock | A::UntrackSock => self.sock_argument(p, a, hcx, kprobe_like, out),
            A::GetUrl => self.url_argument(p, a, out),
            A::DnsLookup => self.fqdn_argument(p, a, out),
            A::Post => self.post_options(p, a, out),
            _ => {}
        }
    }

    /// TrackSock/UntrackSock: argSock names a sock argument.
    fn sock_argument(
        &mut self,
        p: &str,
        a: &ActionSelector,
        hcx: &HookCx,
        kprobe_like: bool,
        out: &mut ir::Action,
    ) {
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

    /// GetUrl: argUrl is an http(s) URL.
    fn url_argument(&mut self, p: &str, a: &ActionSelector, out: &mut ir::Action) {
        match a.arg_url.as_deref() {
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
        }
    }

    /// DnsLookup: argFqdn is a domain name.
    fn fqdn_argument(&mut self, p: &str, a: &ActionSelector, out: &mut ir::Action) {
        match a.arg_fqdn.as_deref() {
            None => self.err(PolicyError::MissingField {
                path: format!("{p}.argFqdn"),
                accepted: "a domain name such as example.com".into(),
            }),
            Some(d) => {
                let ok = !d.is_empty()
                    && d.len() <= MAX_FQDN_LEN
                    && d.trim_end_matches('.').split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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
        }
    }

    /// Post: stack traces and the rate limit.
    fn post_options(&mut self, p: &str, a: &ActionSelector, out: &mut ir::Action) {
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
}
