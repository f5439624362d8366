// SPDX-License-Identifier: GPL-2.0-only
/*
 * The maps every object shares, and nothing else: what a sensor opens to take over the pinned
 * maps of the previous sensor (or to create them) without relocating the hook programs it may
 * never need to load. Declared by the same headers the programs use, so the definitions are
 * the same.
 */
#define __VIGIL_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "vigil_abi.h"
#include "vigil_common.h"
#include "hook_maps.h"

char LICENSE[] SEC("license") = "GPL";
