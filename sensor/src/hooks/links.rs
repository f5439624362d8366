//! Attachments and their pins. Every link the engine makes is pinned in its generation's
//! `links/` directory where the kernel allows it (a `bpf_link`: always for BTF tracepoints and
//! BPF-LSM, for perf events — kprobes, tracepoints, uprobes — from 5.15 on), so that it stays
//! attached when the sensor stops and the next sensor of the instance can take it over.
//! Dropping a [`Link`] therefore leaves a pinned one attached; [`Link::detach`] removes it.

use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::programs::links::{FdLink, PinnedLink};

use super::perf_link::PerfLink;

/// What keeps an attachment alive in this process.
#[derive(Debug)]
pub enum Handle {
    Tracepoint(aya::programs::trace_point::TracePointLink),
    Uprobe(aya::programs::uprobe::UProbeLink),
    BtfTracepoint(aya::programs::tp_btf::BtfTracePointLink),
    Lsm(aya::programs::lsm::LsmLink),
    Perf(PerfLink),
    /// A per-point program instance whose link could not be pinned: the link is in it.
    Instance(Box<Ebpf>),
    Pinned(PinnedLink),
    /// Nothing: the attachment was lost (logged where it happened).
    Gone,
}

/// Something attached (see the module's documentation).
#[derive(Debug)]
pub struct Link {
    /// Held for its `Drop`, which closes what keeps an unpinned attachment alive.
    #[allow(dead_code)]
    handle: Handle,
    pin: Option<PathBuf>,
}

impl Link {
    /// `handle`, pinned at `pin` where that is possible. `perf_links`: perf-event attachments
    /// are `bpf_link`s on this kernel (5.15+), so they can be pinned.
    pub fn new(handle: Handle, pin: Option<PathBuf>, perf_links: bool) -> Link {
        let Some(path) = pin else {
            return Link { handle, pin: None };
        };
        let fd: Result<FdLink, Handle> = match handle {
            Handle::BtfTracepoint(l) => Ok(l.into()),
            Handle::Lsm(l) => Ok(l.into()),
            Handle::Tracepoint(l) if perf_links => FdLink::try_from(l)
                .map_err(|_| unreachable_handle("a tracepoint link that is not a bpf_link")),
            Handle::Uprobe(l) if perf_links => FdLink::try_from(l)
                .map_err(|_| unreachable_handle("a uprobe link that is not a bpf_link")),
            Handle::Perf(l) => {
                return match crate::kernel::bpf_syscall::pin(l.link_fd(), &path) {
                    Ok(()) => Link {
                        handle: Handle::Perf(l),
                        pin: Some(path),
                    },
                    Err(e) => {
                        tracing::warn!("{e}: this attachment ends with the sensor");
                        Link {
                            handle: Handle::Perf(l),
                            pin: None,
                        }
                    }
                };
            }
            other => Err(other),
        };
        match fd {
            Ok(fd) => match fd.pin(&path) {
                Ok(pinned) => Link {
                    handle: Handle::Pinned(pinned),
                    pin: Some(path),
                },
                Err(e) => {
                    // aya does not give the link back when pinning fails: it is detached.
                    tracing::error!(
                        "pinning {}: {e}: the attachment was dropped",
                        path.display()
                    );
                    Link {
                        handle: Handle::Gone,
                        pin: None,
                    }
                }
            },
            Err(handle) => Link { handle, pin: None },
        }
    }

    /// A link the previous sensor pinned at `path`.
    pub fn adopt(path: &Path) -> Result<Link, String> {
        let pinned = PinnedLink::from_pin(path)
            .map_err(|e| format!("opening the pinned link {}: {e}", path.display()))?;
        Ok(Link {
            handle: Handle::Pinned(pinned),
            pin: Some(path.to_path_buf()),
        })
    }

    /// The pin's file name, when pinned.
    pub fn pin_name(&self) -> Option<String> {
        self.pin
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }

    /// Detaches for good: the pin goes, then the last descriptor.
    pub fn detach(self) {
        if let Some(p) = &self.pin
            && let Err(e) = std::fs::remove_file(p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!("removing the pinned link {}: {e}", p.display());
        }
    }
}

fn unreachable_handle(what: &str) -> Handle {
    tracing::error!("{what}: the attachment was dropped");
    Handle::Gone
}
