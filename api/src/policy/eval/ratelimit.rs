//! `rateLimit` on Post, replayed over a sequence of events.
//!
//! The kernel keys its rate-limit table by hook, scope (thread id, process id, or nothing for
//! `global`) and the first 64 bytes plus the length of the argument data as it lays them out
//! (integers as 8 bytes, strings and paths as their bytes, sockets and sockaddrs as fixed
//! records); an event is dropped when the same key was posted less than the interval before.
//! Here the same layout is rebuilt from the event's arguments, so "identical" means what it
//! means to the kernel (without the hash collisions). Times are the events' own.

use std::collections::HashMap;
use std::net::IpAddr;

use super::args::{extend, read_args};
use super::view::{ArgView, EventView};
use crate::policy::ir::{Action, Hook, RateLimitScope};

/// Bytes of argument data that identify "the same event".
const KEY_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    hook: u32,
    scope: u32,
    head: [u8; KEY_BYTES],
    len: usize,
}

/// The kernel's rate-limit table, for one policy.
#[derive(Debug, Default, Clone)]
pub struct RateLimits {
    last: HashMap<Key, u64>,
}

fn addr16(a: Option<&IpAddr>) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        Some(IpAddr::V4(v)) => out[..4].copy_from_slice(&v.octets()),
        Some(IpAddr::V6(v)) => out = v.octets(),
        None => {}
    }
    out
}

/// The argument data of the call as the kernel lays it out in its record.
fn arg_data(h: &Hook, ev: &EventView) -> Vec<u8> {
    let specs = read_args(h);
    let mut out = Vec::new();
    for (i, a) in ev.args.iter().enumerate() {
        match a {
            ArgView::Int(raw) => {
                let v = specs.get(i).map_or(*raw, |s| extend(*raw, s.r#type()));
                out.extend_from_slice(&v.to_le_bytes());
            }
            ArgView::Text { bytes, .. } => out.extend_from_slice(bytes),
            ArgView::Sock(s) => {
                for v in [
                    s.family,
                    s.sock_type.unwrap_or(0),
                    s.protocol.unwrap_or(0),
                    s.state.unwrap_or(0),
                    s.sport,
                    s.dport,
                ] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&addr16(s.saddr.as_ref()));
                out.extend_from_slice(&addr16(s.daddr.as_ref()));
                out.extend_from_slice(&s.cookie.to_le_bytes());
            }
            ArgView::Sockaddr(s) => {
                out.extend_from_slice(&s.family.to_le_bytes());
                out.extend_from_slice(&s.port.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&addr16(s.addr.as_ref()));
            }
            ArgView::Unreadable => {}
            // Credentials and other records: their field name stands in for their bytes.
            ArgView::Opaque(name) => out.extend_from_slice(name.as_bytes()),
        }
    }
    out
}

impl RateLimits {
    /// Whether the Post action `a` of hook `h` (position `hook_id`) drops the event `ev`;
    /// records the post when it does not, as the kernel does. `Err` when the event lacks what
    /// the key or the clock needs.
    pub(crate) fn limited(
        &mut self,
        hook_id: u32,
        h: &Hook,
        a: &Action,
        ev: &EventView,
    ) -> Result<bool, String> {
        let now = ev.time_ns.ok_or_else(|| "event has no time".to_string())?;
        let p = ev.process.as_ref();
        let scope = match a.rate_limit_scope() {
            RateLimitScope::Thread => p
                .and_then(|p| p.tid)
                .ok_or_else(|| "event has no tid (rateLimitScope thread)".to_string())?,
            RateLimitScope::Process => p
                .and_then(|p| p.pid)
                .ok_or_else(|| "event has no pid (rateLimitScope process)".to_string())?,
            _ => 0,
        };
        let data = arg_data(h, ev);
        let mut head = [0u8; KEY_BYTES];
        let n = data.len().min(KEY_BYTES);
        head[..n].copy_from_slice(&data[..n]);
        let key = Key {
            hook: hook_id,
            scope,
            head,
            len: data.len(),
        };
        let interval = a.rate_limit_ms.saturating_mul(1_000_000);
        if let Some(last) = self.last.get(&key)
            && now.wrapping_sub(*last) < interval
        {
            return Ok(true);
        }
        self.last.insert(key, now);
        Ok(false)
    }
}
