//! Attach points: the kernel locations hooks run at. Each has an id (`vigil_attach[id]` lists its
//! hooks, at most `ATTACH_HOOKS`) that the program running there learns from a BPF cookie, from
//! the syscall number (`vigil_sys_attach`, for the syscall programs), or from its own `.rodata`
//! when it was loaded for that point alone (BPF-LSM; kernels without cookies).

use std::collections::HashMap;
use std::path::PathBuf;

use vigil_sensor_bpf::abi::{self, AttachHooks};
use vigil_sensor_bpf::hook_names as names;

use super::kernel::{HookMaps, LiveKernel};
use super::links::Link;
use super::lower::{KernelInfo, Mechanism};
use super::programs::{HookPrograms, Instance, InstanceTarget};
use super::slots::Slots;
use super::snapshot::PointSnap;

/// Where hooks run, normalised so that hooks that must share a program run share one point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AttachKey {
    /// A tracepoint hook's event.
    Tp {
        subsystem: String,
        event: String,
    },
    /// A syscall on its own tracepoints (`syscalls/sys_enter_<name>`, and `sys_exit_<name>`
    /// while return hooks need it).
    SysTp {
        name: String,
        nr: u32,
    },
    /// A syscall on the raw `sys_enter`/`sys_exit` route.
    Raw {
        nr: u32,
    },
    /// A kernel function; `ret`: the kretprobe too.
    Kprobe {
        function: String,
        ret: bool,
    },
    Uprobe {
        path: PathBuf,
        symbol: String,
        offset: u64,
    },
    Lsm {
        hook: String,
    },
}

impl AttachKey {
    pub fn of(m: &Mechanism, return_probe: bool) -> AttachKey {
        match m {
            Mechanism::SyscallTracepoint { name, nr } => AttachKey::SysTp {
                name: name.clone(),
                nr: *nr,
            },
            Mechanism::Tracepoint { subsystem, event } => AttachKey::Tp {
                subsystem: subsystem.clone(),
                event: event.clone(),
            },
            Mechanism::SysEnter { nr } => AttachKey::Raw { nr: *nr },
            Mechanism::Kprobe { function } => AttachKey::Kprobe {
                function: function.clone(),
                ret: return_probe,
            },
            Mechanism::Uprobe {
                path,
                symbol,
                offset,
            } => AttachKey::Uprobe {
                path: path.clone(),
                symbol: symbol.clone(),
                offset: *offset,
            },
            Mechanism::Lsm { hook } => AttachKey::Lsm { hook: hook.clone() },
        }
    }

    /// The programs serving this point: shared ones (loaded once) or, with `Some`, a per-point
    /// instance of these.
    pub fn programs(&self, cookies: bool) -> (Vec<&'static str>, bool) {
        match self {
            AttachKey::Tp { .. } if cookies => (vec![names::TRACEPOINT_PROG], false),
            AttachKey::Tp { .. } => (vec![names::TRACEPOINT_ID_PROG], true),
            // The exit program is loaded with the entry one: a return hook may come later.
            AttachKey::SysTp { .. } => (
                vec![names::SYS_ENTER_TP_PROG, names::SYS_EXIT_TP_PROG],
                false,
            ),
            AttachKey::Raw { .. } => (vec![names::SYS_ENTER_PROG, names::SYS_EXIT_PROG], false),
            AttachKey::Kprobe { ret, .. } if cookies => {
                let mut v = vec![names::KPROBE_PROG];
                if *ret {
                    v.push(names::KRETPROBE_PROG);
                }
                (v, false)
            }
            AttachKey::Kprobe { ret, .. } => {
                let mut v = vec![names::KPROBE_ID_PROG];
                if *ret {
                    v.push(names::KRETPROBE_ID_PROG);
                }
                (v, true)
            }
            AttachKey::Uprobe { .. } if cookies => (vec![names::UPROBE_PROG], false),
            AttachKey::Uprobe { .. } => (vec![names::UPROBE_ID_PROG], true),
            AttachKey::Lsm { .. } => (vec![names::LSM_PROG], true),
        }
    }

    /// The LSM hook a per-point LSM program is loaded for.
    pub fn lsm_hook(&self) -> Option<&str> {
        match self {
            AttachKey::Lsm { hook } => Some(hook),
            _ => None,
        }
    }
}

struct Point {
    id: u32,
    hooks: Vec<u32>,
    /// Return hooks among them (syscall tracepoint points link `sys_exit_<name>` for them).
    exit_users: usize,
    /// Pinned where the kernel allows; [`Link::detach`] removes them.
    links: Vec<Link>,
    /// The `sys_exit_<name>` link while `exit_users > 0`.
    exit_link: Option<Link>,
}

/// Every attach point of the sensor.
pub struct AttachPoints {
    points: HashMap<AttachKey, Point>,
    ids: Slots,
    /// The raw `sys_enter`/`sys_exit` links, while any syscall is on that route.
    raw_links: Vec<Link>,
    cookies: bool,
}

impl std::fmt::Debug for AttachPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachPoints")
            .field("points", &self.points.len())
            .finish_non_exhaustive()
    }
}

/// What creating a point needs besides the points themselves.
pub struct AttachCx<'a> {
    pub maps: &'a mut HookMaps,
    pub kernel: &'a LiveKernel,
    pub programs: &'a mut HookPrograms,
}

/// The `sys_exit_<name>` link of syscall tracepoint point `id`.
fn exit_link(cx: &mut AttachCx<'_>, key: &AttachKey, id: u32) -> Result<Option<Link>, String> {
    match key {
        AttachKey::SysTp { name, .. } => cx
            .programs
            .attach_syscall_tracepoint(name, true, &format!("p{id}-exit"))
            .map(Some),
        _ => Ok(None),
    }
}

fn detach_all(links: Vec<Link>) {
    links.into_iter().for_each(Link::detach);
}

impl AttachPoints {
    /// `cookies`: the kernel has BPF cookies (`bpf_get_attach_cookie`), so kprobes and uprobes
    /// share one program each.
    pub fn new(cookies: bool) -> Self {
        AttachPoints {
            points: HashMap::new(),
            // Attach id 0 means "no hook" in the routes.
            ids: Slots::new(abi::MAX_ATTACH, 1),
            raw_links: Vec::new(),
            cookies,
        }
    }

    pub fn cookies(&self) -> bool {
        self.cookies
    }

    pub fn contains(&self, key: &AttachKey) -> bool {
        self.points.contains_key(key)
    }

    /// An attach id for a point about to be created with a per-point instance.
    pub fn reserve_id(&mut self) -> Result<u32, String> {
        self.ids
            .alloc()
            .ok_or_else(|| format!("all {} attach points are in use", abi::MAX_ATTACH - 1))
    }

    pub fn release_id(&mut self, id: u32) {
        self.ids.free(id);
    }

    /// Adds hook `slot` (`ret`: a return hook) to the point of `key`, creating the point where
    /// none is. `instance`: the per-point program loaded for it under a reserved id; consumed
    /// (or its id released) whatever happens. On error nothing of the hook remains.
    pub fn add(
        &mut self,
        cx: &mut AttachCx<'_>,
        key: &AttachKey,
        slot: u32,
        ret: bool,
        instance: Option<(u32, Instance)>,
    ) -> Result<(), String> {
        if let Some(p) = self.points.get_mut(key) {
            if let Some((id, _)) = instance {
                self.ids.free(id);
            }
            if p.hooks.len() >= abi::ATTACH_HOOKS {
                return Err(format!(
                    "{} hooks already share this attach point (at most {})",
                    p.hooks.len(),
                    abi::ATTACH_HOOKS
                ));
            }
            let mut hooks = p.hooks.clone();
            hooks.push(slot);
            let new_exit = if ret && p.exit_users == 0 {
                exit_link(cx, key, p.id)?
            } else {
                None
            };
            if let Err(e) = write_attach(cx.maps, p.id, &hooks) {
                if let Some(l) = new_exit {
                    l.detach();
                }
                return Err(e);
            }
            p.hooks = hooks;
            if ret {
                p.exit_users += 1;
            }
            if new_exit.is_some() {
                p.exit_link = new_exit;
            }
            return Ok(());
        }
        let (id, instance) = match instance {
            Some((id, inst)) => (id, Some(inst)),
            None => (self.reserve_id()?, None),
        };
        let result = write_attach(cx.maps, id, &[slot]).and_then(|()| {
            let links = self.create(cx, key, id, instance)?;
            let exit = if ret {
                match exit_link(cx, key, id) {
                    Ok(l) => l,
                    Err(e) => {
                        detach_all(links);
                        self.unroute(cx.maps, key);
                        return Err(e);
                    }
                }
            } else {
                None
            };
            Ok((links, exit))
        });
        match result {
            Ok((links, exit_link)) => {
                self.points.insert(
                    key.clone(),
                    Point {
                        id,
                        hooks: vec![slot],
                        exit_users: usize::from(ret),
                        links,
                        exit_link,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let _ = cx.maps.attach.set(id, AttachHooks::default(), 0);
                self.ids.free(id);
                Err(e)
            }
        }
    }

    /// The programs and routes of a new point `id` (the syscall number routed last, so that no
    /// program runs for it before its links exist). On error, what was done is undone.
    fn create(
        &mut self,
        cx: &mut AttachCx<'_>,
        key: &AttachKey,
        id: u32,
        instance: Option<Instance>,
    ) -> Result<Vec<Link>, String> {
        let pin = format!("p{id}");
        match key {
            AttachKey::Tp { subsystem, event } if self.cookies => {
                let event_id = cx.kernel.tracepoint(subsystem, event)?.id;
                let link = cx
                    .programs
                    .attach_tracepoint(subsystem, event, event_id, id, &pin)?;
                Ok(vec![link])
            }
            AttachKey::SysTp { name, nr } => {
                let link = cx.programs.attach_syscall_tracepoint(name, false, &pin)?;
                if let Err(e) = cx.maps.sys_attach.set(*nr, id, 0) {
                    link.detach();
                    return Err(format!("routing syscall {nr}: {e}"));
                }
                Ok(vec![link])
            }
            AttachKey::Raw { nr } => {
                if self.raw_links.is_empty() {
                    self.raw_links = cx.programs.attach_raw_syscalls()?;
                }
                if let Err(e) = cx.maps.sys_attach.set(*nr, id, 0) {
                    self.drop_raw_if_unused();
                    return Err(format!("routing syscall {nr}: {e}"));
                }
                Ok(Vec::new())
            }
            AttachKey::Kprobe { function, ret } if self.cookies => {
                let mut links = vec![cx.programs.attach_kprobe(function, false, id, &pin)?];
                if *ret {
                    match cx
                        .programs
                        .attach_kprobe(function, true, id, &format!("{pin}-ret"))
                    {
                        Ok(l) => links.push(l),
                        Err(e) => {
                            detach_all(links);
                            return Err(e);
                        }
                    }
                }
                Ok(links)
            }
            AttachKey::Uprobe {
                path,
                symbol,
                offset,
            } if self.cookies => Ok(vec![
                cx.programs.attach_uprobe(path, symbol, *offset, id, &pin)?,
            ]),
            _ => {
                let inst = match instance {
                    Some(i) => i,
                    // The point went away while this policy loaded: load its instance now.
                    None => {
                        let (progs, _) = key.programs(self.cookies);
                        let pins = cx.programs.pins();
                        let (inst, timings) =
                            HookPrograms::load_instance(&pins, &progs, id, key.lsm_hook())?;
                        cx.programs.record_instance(&timings);
                        inst
                    }
                };
                let target = match key {
                    AttachKey::Tp { subsystem, event } => {
                        InstanceTarget::Tracepoint { subsystem, event }
                    }
                    AttachKey::Kprobe { function, .. } => InstanceTarget::Kprobe { function },
                    AttachKey::Uprobe {
                        path,
                        symbol,
                        offset,
                    } => InstanceTarget::Uprobe {
                        path,
                        symbol,
                        offset: *offset,
                    },
                    _ => InstanceTarget::Lsm,
                };
                Ok(vec![cx.programs.attach_instance(inst, target, &pin)?])
            }
        }
    }

    /// Removes hook `slot` from the point of `key`; the last hook takes the point with it
    /// (links first, so no program runs for a point that is gone).
    pub fn remove(&mut self, maps: &mut HookMaps, key: &AttachKey, slot: u32, ret: bool) {
        let Some(p) = self.points.get_mut(key) else {
            return;
        };
        p.hooks.retain(|&s| s != slot);
        if ret && p.exit_users > 0 {
            p.exit_users -= 1;
            if p.exit_users == 0
                && let Some(l) = p.exit_link.take()
            {
                l.detach();
            }
        }
        if !p.hooks.is_empty() {
            let (id, hooks) = (p.id, p.hooks.clone());
            let _ = write_attach(maps, id, &hooks);
            return;
        }
        let p = self.points.remove(key).expect("present");
        if let Some(l) = p.exit_link {
            l.detach();
        }
        detach_all(p.links);
        self.unroute(maps, key);
        let _ = maps.attach.set(p.id, AttachHooks::default(), 0);
        self.ids.free(p.id);
    }

    /// Clears a syscall's route (and drops the raw programs when no syscall uses them).
    fn unroute(&mut self, maps: &mut HookMaps, key: &AttachKey) {
        if let AttachKey::Raw { nr } | AttachKey::SysTp { nr, .. } = key {
            let _ = maps.sys_attach.set(*nr, 0, 0);
        }
        if matches!(key, AttachKey::Raw { .. }) {
            self.drop_raw_if_unused();
        }
    }

    fn drop_raw_if_unused(&mut self) {
        if !self
            .points
            .keys()
            .any(|k| matches!(k, AttachKey::Raw { .. }))
        {
            detach_all(std::mem::take(&mut self.raw_links));
        }
    }

    /// What the next sensor needs to take these points over.
    pub fn snapshot(&self) -> (Vec<PointSnap>, Vec<String>) {
        let mut points: Vec<PointSnap> = self
            .points
            .iter()
            .map(|(key, p)| PointSnap {
                key: key.clone(),
                id: p.id,
                hooks: p.hooks.clone(),
                exit_users: p.exit_users,
                links: p.links.iter().filter_map(Link::pin_name).collect(),
                exit_link: p.exit_link.as_ref().and_then(Link::pin_name),
                unpinned: p
                    .links
                    .iter()
                    .chain(&p.exit_link)
                    .any(|l| l.pin_name().is_none()),
            })
            .collect();
        points.sort_by_key(|p| p.id);
        let raw = self.raw_links.iter().filter_map(Link::pin_name).collect();
        (points, raw)
    }

    /// Takes over the points the previous sensor left (their links pinned in `links_dir`). A
    /// link that cannot be opened fails the whole take-over: what is adopted must be complete.
    /// Returns the points whose links could not all be pinned: they are detached now (their
    /// pinned links too, so that nothing runs twice) and must be attached again
    /// ([`AttachPoints::reattach`]).
    pub fn restore(
        &mut self,
        points: &[PointSnap],
        raw: &[String],
        links_dir: &std::path::Path,
    ) -> Result<Vec<AttachKey>, String> {
        let open = |name: &String| Link::adopt(&links_dir.join(name));
        let mut detached = Vec::new();
        for p in points {
            if !self.ids.reserve(p.id) {
                return Err(format!("attach id {} taken twice", p.id));
            }
            let mut links = p.links.iter().map(open).collect::<Result<Vec<_>, _>>()?;
            let mut exit_link = p.exit_link.as_ref().map(open).transpose()?;
            if p.unpinned {
                detach_all(std::mem::take(&mut links));
                detach_all(exit_link.take().into_iter().collect());
                detached.push(p.key.clone());
            }
            self.points.insert(
                p.key.clone(),
                Point {
                    id: p.id,
                    hooks: p.hooks.clone(),
                    exit_users: p.exit_users,
                    links,
                    exit_link,
                },
            );
        }
        self.raw_links = raw.iter().map(open).collect::<Result<Vec<_>, _>>()?;
        Ok(detached)
    }

    /// Attaches a restored point again whose links ended with the previous sensor (see
    /// [`AttachPoints::restore`]): the same id, hooks and routes, new links.
    pub fn reattach(&mut self, cx: &mut AttachCx<'_>, key: &AttachKey) -> Result<(), String> {
        let (id, exit_users) = self
            .points
            .get(key)
            .map(|p| (p.id, p.exit_users))
            .ok_or_else(|| format!("no attach point {key:?}"))?;
        let links = self.create(cx, key, id, None)?;
        let exit = if exit_users > 0 {
            match exit_link(cx, key, id) {
                Ok(l) => l,
                Err(e) => {
                    detach_all(links);
                    return Err(e);
                }
            }
        } else {
            None
        };
        if let Some(p) = self.points.get_mut(key) {
            p.links = links;
            p.exit_link = exit;
        }
        Ok(())
    }

    /// Pin names of every link held, for finding pins nobody holds.
    pub fn pin_names(&self) -> std::collections::BTreeSet<String> {
        let (points, raw) = self.snapshot();
        points
            .into_iter()
            .flat_map(|p| p.links.into_iter().chain(p.exit_link))
            .chain(raw)
            .collect()
    }
}

fn write_attach(maps: &mut HookMaps, id: u32, hooks: &[u32]) -> Result<(), String> {
    let mut v = AttachHooks {
        n: hooks.len() as u32,
        ..Default::default()
    };
    v.hooks[..hooks.len()].copy_from_slice(hooks);
    maps.attach
        .set(id, v, 0)
        .map_err(|e| format!("writing attach point {id}: {e}"))
}
