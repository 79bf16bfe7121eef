"""Seeded, deterministic generator of realistic Proxmox VE cluster models (model format v1).

`generate_cluster(n_nodes, n_guests, seed)` returns a mapping that `proxlb_opt.cluster.cluster_from_dict`
accepts; `python -m benchmarks.generate --nodes 16 --guests 800 --seed 1 -o file.yaml` writes one.
The same arguments always give the same mapping (one `numpy.random.default_rng(seed)`, no global state).

Where the numbers come from (copies in benchmarks/data/, origin and terms in its README.md):

* node shapes: the (cores, memory) pairs of the Alibaba openb 2023 nodes, weighted by how often they
  occur, mapped into what Proxmox VE clusters run (16 to 128 cores, memory snapped to a usual DIMM
  population between 64 GiB and 1 TiB). A cluster mostly uses one shape, sometimes a second one for a
  batch of newer nodes (the highest-numbered ones).
* guest sizes: the exact (vCPU, memory) flavours of the Azure 2017 VM arrivals, drawn by their share.
  A quarter of the guests are containers; they are smaller: half the memory of the drawn flavour and at
  most 4 cores.
* utilisation: a Bitbrains VM of a similar core count is drawn per guest for its mean CPU utilisation
  (cpu_usage = vCPUs x utilisation) and its memory-used ratio (mapping in `_host_rss_fraction`).

How a cluster is put together, so that every rule is satisfiable by construction:

1. Guest sizes are drawn first; then the node shape is chosen so that the assigned memory is about
   `fill` of the cluster memory. When no shape can hold the guests (very many guests per node), the
   flavour draw is tilted towards the small flavours (weights x memory^-alpha, alpha increasing).
2. A placement P0 that respects every capacity limit and every rule is built: anti-affinity members
   on distinct nodes, affinity groups as one unit, largest first. Each node aims at its own target
   fraction of memory (spread by `imbalance`), so some nodes are much fuller than others. A pinned
   guest's pins are its node in P0, sometimes plus one more node.
3. The initial placement is P0 with a few deliberate faults the planner has to repair: one
   anti-affinity group in five (rounded) has two members on one node, and with `maintenance=True`
   node 0 (left empty in P0) receives a share of the movable guests. P0 itself stays a valid answer,
   so a plan without violations always exists.

Capacity invariants of the initial placement (the planner's default hard limits): per node, assigned
memory <= memory - 5 GiB (the host keeps ~4 GiB of overhead in memory_used), assigned vCPUs <= 2 x cores,
local disk used <= disk.

Hard shapes (`shape="hard"` or `"enterprise"`; `--shape` on the command line) start the way real clusters
do: lopsided, over-committed and with broken rules, yet always with a valid answer.

* hard: nodes in tiers of 128, 256 and 512 GiB (16 : 14 : 10 of every 40 nodes, smallest first), threads
  proportionate to memory (one per 4 GiB, more when the guests' vCPUs need them; a newer batch per tier
  with 1.25 x), Azure guest sizes tilted so that assigned memory is ~`fill` (0.75) of the cluster.
* enterprise: Bitbrains VMs as they are (cores, provisioned memory, their own utilisation) on identical
  nodes, memory in 64 GiB steps for the same fill.

1. Rules as in the mild generator, plus a strict node-affinity and a positive resource-affinity HA rule;
   ignored guests are tagged `plb_ignore_legacy`. Pinned guests are pinned to big nodes.
2. A reference placement that breaks no rule and keeps every hard limit with overprovisioning off (the
   invariants above), mildly uneven. Ignored guests sit on hot nodes; the guests whose pin starts broken
   sit on the biggest hot nodes, which are their pins. `reference_cluster` returns it.
3. The start is derived from it by moving guests. Faults: 40 % of the affinity groups split over 2-3
   nodes, 40 % of the anti-affinity groups with members joined on one node, 40 % of the pinned guests
   moved off their (soon full) pinned node, one guest of the strict HA node-affinity rule outside its
   nodes, the negative HA pair joined, the positive HA pair split. Skew: a fifth of the nodes (spread over
   the tiers in proportion, so they hold ~a fifth of the memory) are filled with free guests to 95.5-97.5 %
   used memory (never above 98.5 %: it is physical RAM), which takes their assigned memory well above their
   memory; a third (leaning to the big tier) gives first and is left at 15 % or less; the others give down to
   30-45 %, and lower only if the hot nodes are still short. Only hot nodes go over their limits.
   Ignored, locked, template and rule guests do not move in this step.

The skew fractions hold from about 20 nodes up; smaller hard instances are coarser (a hot node may stay
just short of 95 %), but the reference and the broken rules hold at any size.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

DATA_DIR = Path(__file__).resolve().parent / "data"
AZURE_FILE = "azure2017_v1_vm_size_distribution.csv"
BITBRAINS_FILE = "bitbrains_rnd_vm_summary.csv"
ALIBABA_FILE = "alibaba_openb2023_nodes.csv"

GIB = 1024  # MiB
HOST_OVERHEAD_MIB = 4 * GIB  # nominal host overhead (kernel, pve services, small ZFS ARC) in memory_used
HOST_RESERVE_MIB = 5 * GIB  # assigned memory never goes into the last 5 GiB: the overhead plus its jitter
VCPU_PER_CORE = 2  # the planner's default limit: assigned vCPUs <= 2 x cores
MAX_NODE_FILL = 0.92  # highest fraction of (memory - reserve) a node aims at in the uneven placement
SIZING_MEM_LIMIT = 0.82  # a node shape is usable when the guests need at most this much of its memory ...
SIZING_VCPU_LIMIT = 0.80  # ... and of its vCPU limit (room left for the uneven placement)
MEMORY_STEPS_GIB = np.array([64, 96, 128, 192, 256, 384, 512, 768, 1024])
CORE_RANGE = (16, 128)
DISK_STEPS_GIB = (960, 1920, 3840, 7680, 15360, 30720)  # local NVMe sizes (as binary units)
SYSTEM_DISK_GIB = 16

CT_SHARE = 0.25
STOPPED_SHARE = 0.10
LOCAL_DISK_SHARE = 0.30
PIN_SHARE = 0.03
IGNORE_SHARE = 0.02
ANTI_VIOLATED_SHARE = 0.2
TILTS = (0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, 3.0, 4.0)

SHAPES = ("mild", "hard", "enterprise")
HARD_SHAPES = ("hard", "enterprise")
HARD_TIERS_GIB = (128, 256, 512)  # node memory per tier; the oldest, smallest nodes get the lowest numbers
HARD_TIER_SHARE = (16, 14, 10)  # nodes per tier out of 40, scaled to any node count
GIB_PER_THREAD = 4  # at least one thread per 4 GiB of memory (512 GiB: 128 threads)
NEWER_THREADS = 1.25  # a newer batch within a tier has this many times the threads
HARD_VCPU_SHARE = 0.7  # all guests' vCPUs are at most this share of the cluster's vCPU limit
HARD_TILT_RANGE = (-4.0, 8.0)  # flavour tilts searched for the hard shape's guest sizes
REFERENCE_IMBALANCE = 0.3  # the valid reference placement is only mildly uneven
HOT_SHARE = 0.2  # nodes filled to HOT_USED at the start
COLD_LEAN = (1.0, 3.0, 9.0)  # weight of a node to be cold, by tier from the smallest memory up
COLD_SHARE = 1 / 3  # nodes drained to COLD_USED at the start
HOT_USED = (0.955, 0.975)  # used memory / memory a hot node is filled to (at least), per node
USED_CEILING = 0.985  # no node uses more of its memory at the start: it is physical RAM
WARM_USED = 0.80  # displaced and drained guests go to nodes that stay below this
COLD_USED = (0.04, 0.15)  # used memory / memory a cold node is drained to (at most), per node
MIDDLE_FLOOR = (0.30, 0.45)  # the other nodes give guests to the hot ones down to this, per node
HARD_FILL = 0.75  # default fill of the hard shapes: with the traces' used/assigned ratio (~0.45) the hot
#                   fifth at 95 % leaves enough used memory for the middle nodes to stay above 25 %
BROKEN_SHARE = 0.4  # of the affinity groups, anti-affinity groups and pinned guests, broken at the start
ENTERPRISE_MAX_GUEST_GIB = 64  # larger Bitbrains VMs (up to 511 GiB) are left out of the enterprise shape

SERVICES = ("shop", "crm", "wiki", "billing", "portal", "tickets", "search", "cms", "chat", "hr")
SERVICE_ROLES = ("app", "db", "cache", "worker")
REPLICATED = ("pg", "etcd", "k8s-cp", "dns", "ldap", "es", "redis", "haproxy", "mongo", "kafka")
VM_ROLES = (("web", 10), ("app", 10), ("api", 6), ("db", 5), ("cache", 3), ("mq", 3), ("k8s-node", 8), ("ci", 4),
            ("build", 3), ("mon", 2), ("log", 2), ("es", 3), ("file", 2), ("mail", 1), ("win-rds", 3), ("win-dc", 1),
            ("erp", 2), ("dev", 8), ("test", 6), ("jump", 1))
CT_ROLES = (("dns", 2), ("proxy", 4), ("nginx", 4), ("redis", 3), ("mon", 2), ("git", 1), ("ci", 3), ("log", 2),
            ("web", 4), ("dev", 4))
BIG_ROLES = ("db", "es", "erp", "k8s-node", "win-rds")  # roles for guests of 28 GiB and more
INFRA_ROLES = {"dns", "proxy", "nginx", "mon", "log", "git", "ci", "jump", "win-dc", "mail", "build"}
DEV_ROLES = {"dev", "test"}


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class Catalog:
    """The public data, reduced to what the generator draws from."""

    flavor_vcpus: np.ndarray  # int[f]  Azure flavours with a non-zero share
    flavor_mem_mib: np.ndarray  # int[f]
    flavor_share: np.ndarray  # float[f], sums to 1
    util_bucket: np.ndarray  # int[b]   Bitbrains rows: core bucket 1, 2, 4 or 8
    util_mem_fraction: np.ndarray  # float[b] host-RSS fraction of assigned memory
    util_cpu: np.ndarray  # float[b] mean CPU utilisation, 0..1
    util_vm: np.ndarray  # int[b]   Bitbrains VM id (one row per VM and month)
    util_cores: np.ndarray  # int[b]   the VM's cores and provisioned memory (enterprise shape)
    util_mem_mib: np.ndarray  # int[b]
    shape_cores: np.ndarray  # int[s]  mapped node shapes
    shape_mem_gib: np.ndarray  # int[s]
    shape_weight: np.ndarray  # float[s], sums to 1


def _read_csv(name: str) -> list[dict[str, str]]:
    with open(DATA_DIR / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _core_bucket(cores: np.ndarray) -> np.ndarray:
    cores = np.asarray(cores)
    return np.select([cores <= 1, cores <= 2, cores <= 6], [1, 2, 4], 8)


def _host_rss_fraction(used_over_provisioned: np.ndarray) -> np.ndarray:
    """Bitbrains memory-used ratio -> memory_used / memory as a Proxmox host reports it.

    Bitbrains' "memory used" is the guest's *active* memory: median 5.5 % of provisioned, p95 41 %.
    A hypervisor sees far more: a guest touches its RAM for page cache and, without ballooning, those
    pages stay resident, so the RSS of a VM (and the cgroup usage of a container) is typically 40-90 %
    of its assigned memory. We keep Bitbrains' order and shape but map the ratio r (clipped to 0..1)
    with a concave function into 0.35..0.95: 0.35 + 0.60 * sqrt(r), giving median ~0.49, p95 ~0.74,
    and 0.95 for guests that use all their memory.
    """
    return 0.35 + 0.60 * np.sqrt(np.clip(used_over_provisioned, 0.0, 1.0))


def _snap_memory_gib(gib: np.ndarray) -> np.ndarray:
    """Nearest usual memory size (in log scale) between 64 GiB and 1 TiB."""
    distance = np.abs(np.log(np.asarray(gib, dtype=float)[:, None]) - np.log(MEMORY_STEPS_GIB[None, :]))
    return MEMORY_STEPS_GIB[np.argmin(distance, axis=1)]


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    azure = [r for r in _read_csv(AZURE_FILE) if float(r["pct_arrivals_all"]) > 0]
    share = np.array([float(r["pct_arrivals_all"]) for r in azure])

    bitbrains = [r for r in _read_csv(BITBRAINS_FILE)
                 if int(r["cpu_cores"]) > 0 and float(r["mem_provisioned_gib"]) > 0]  # 24 rows carry no sizes
    provisioned = np.array([float(r["mem_provisioned_gib"]) for r in bitbrains])
    used = np.array([float(r["mem_used_gib_mean"]) for r in bitbrains])

    # Alibaba nodes -> Proxmox shapes: cores clipped to 16..128, memory snapped to a usual size.
    nodes = _read_csv(ALIBABA_FILE)
    cores = np.clip(np.array([int(r["cpu_milli"]) // 1000 for r in nodes]), *CORE_RANGE)
    memory = _snap_memory_gib(np.array([int(r["memory_mib"]) / 1024 for r in nodes]))
    shapes, counts = np.unique(np.stack([cores, memory], axis=1), axis=0, return_counts=True)

    def ro(values: Any, dtype: Any) -> np.ndarray:
        array = np.asarray(values, dtype=dtype)
        array.setflags(write=False)
        return array

    return Catalog(
        flavor_vcpus=ro([int(r["vcpus"]) for r in azure], np.int64),
        flavor_mem_mib=ro([round(float(r["memory_gb"]) * 1024) for r in azure], np.int64),
        flavor_share=ro(share / share.sum(), float),
        util_bucket=ro(_core_bucket(np.array([int(r["cpu_cores"]) for r in bitbrains])), np.int64),
        util_mem_fraction=ro(_host_rss_fraction(used / provisioned), float),
        util_cpu=ro(np.clip([float(r["cpu_util_pct_mean"]) / 100 for r in bitbrains], 0.0, 1.0), float),
        util_vm=ro([int(r["vm_id"]) for r in bitbrains], np.int64),
        util_cores=ro([int(r["cpu_cores"]) for r in bitbrains], np.int64),
        util_mem_mib=ro(np.round(provisioned * 1024), np.int64),
        shape_cores=ro(shapes[:, 0], np.int64),
        shape_mem_gib=ro(shapes[:, 1], np.int64),
        shape_weight=ro(counts / counts.sum(), float),
    )


# ----------------------------------------------------------------------------- sizing


@dataclass
class _Sizes:
    is_ct: np.ndarray
    vcpus: np.ndarray
    mem: np.ndarray  # MiB


def _flavor_weights(cat: Catalog, tilt: float, usable: np.ndarray | None = None) -> np.ndarray:
    """Flavour shares tilted towards small (tilt > 0) or large (tilt < 0) memory; unnormalised."""
    weights = cat.flavor_share * (cat.flavor_mem_mib / GIB) ** (-tilt)
    return weights if usable is None else weights * usable


def _draw_sizes(rng: np.random.Generator, cat: Catalog, n: int, tilt: float,
                usable: np.ndarray | None = None) -> _Sizes:
    weights = _flavor_weights(cat, tilt, usable)
    flavor = rng.choice(len(weights), size=n, p=weights / weights.sum())
    is_ct = rng.random(n) < CT_SHARE
    vcpus = cat.flavor_vcpus[flavor].copy()
    mem = cat.flavor_mem_mib[flavor].copy()
    vcpus[is_ct] = np.minimum(vcpus[is_ct], 4)
    mem[is_ct] = _ct_memory(mem[is_ct])
    return _Sizes(is_ct, vcpus, mem)


def _ct_memory(vm_mem: np.ndarray) -> np.ndarray:
    """A container's memory for a drawn flavour: half of it, in 128 MiB steps, at least 512 MiB."""
    return np.maximum(512, (vm_mem // 2 + 64) // 128 * 128)


def _shape_fit(cat: Catalog, sizes: _Sizes, n_nodes: int, n_base: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Per catalog shape: can a cluster of it hold the guests, and |log(achieved fill / wanted fill)|."""
    total_mem, total_vcpu = float(sizes.mem.sum()), float(sizes.vcpus.sum())
    node_mem = cat.shape_mem_gib * GIB
    ok = ((total_mem <= SIZING_MEM_LIMIT * n_base * (node_mem - HOST_RESERVE_MIB))
          & (total_vcpu <= SIZING_VCPU_LIMIT * n_base * VCPU_PER_CORE * cat.shape_cores))
    if len(sizes.mem):  # the largest guest must fit an empty node, with room to spare
        ok &= (sizes.mem.max() <= 0.75 * (node_mem - HOST_RESERVE_MIB)) & (
            sizes.vcpus.max() <= VCPU_PER_CORE * cat.shape_cores // 2)
    achieved = np.maximum(total_mem / (n_nodes * node_mem), 1e-9)
    return ok, np.abs(np.log(achieved / fill))


def _pick(rng: np.random.Generator, score: np.ndarray, fallback: np.ndarray) -> int:
    if not np.isfinite(score).all() or score.sum() <= 0:
        score = fallback
    return int(rng.choice(len(score), p=score / score.sum()))


def _size_cluster(rng: np.random.Generator, cat: Catalog, n_nodes: int, n_guests: int, n_base: int,
                  fill: float) -> tuple[_Sizes, np.ndarray, np.ndarray]:
    """Guest sizes and node shapes (cores[n], memory GiB[n]) with assigned memory ~ fill of the cluster."""
    best: tuple[float, float, _Sizes, np.ndarray, np.ndarray] | None = None
    for tilt in TILTS:
        sizes = _draw_sizes(rng, cat, n_guests, tilt)
        ok, dev = _shape_fit(cat, sizes, n_nodes, n_base, fill)
        if ok.any():
            d = float(dev[ok].min())
            if best is None or d < best[0]:
                best = (d, tilt, sizes, ok, dev)
            if d <= math.log(1.2):
                break
    if best is None:
        raise ValueError(f"{n_guests} guests do not fit on {n_nodes} nodes of any shape (at most "
                         f"{int(cat.shape_mem_gib.max())} GiB and {int(cat.shape_cores.max())} cores per node)")
    _, tilt, sizes, ok, dev = best
    fallback = np.where(ok, cat.shape_weight, 0.0)
    primary = _pick(rng, np.where(ok, cat.shape_weight * np.exp(-0.5 * (dev / 0.15) ** 2), 0.0), fallback)
    shape = np.full(n_nodes, primary)
    if n_nodes >= 4 and rng.random() < 0.5:
        near = ok & (np.arange(len(ok)) != primary) & (dev <= dev[primary] + 0.4)
        if near.any():
            second = _pick(rng, np.where(near, cat.shape_weight * np.exp(-0.5 * (dev / 0.3) ** 2), 0.0),
                           np.where(near, cat.shape_weight, 0.0))
            newer = int(rng.integers(1, n_nodes // 2 + 1))
            shape[n_nodes - newer:] = second
    cores, mem_gib = cat.shape_cores[shape], cat.shape_mem_gib[shape]

    # Redraw a few times at the chosen tilt and keep the draw closest to the wanted fill that still fits.
    base = slice(n_nodes - n_base, n_nodes)
    mem_room = SIZING_MEM_LIMIT * float((mem_gib[base] * GIB - HOST_RESERVE_MIB).sum())
    vcpu_room = SIZING_VCPU_LIMIT * float(VCPU_PER_CORE * cores[base].sum())
    target = fill * float(mem_gib.sum() * GIB)
    biggest_mem = 0.75 * float(mem_gib.min() * GIB - HOST_RESERVE_MIB)
    biggest_vcpu = VCPU_PER_CORE * int(cores.min()) // 2
    candidates = [sizes] + [_draw_sizes(rng, cat, n_guests, tilt) for _ in range(5)]
    fitting = [s for s in candidates if s.mem.sum() <= mem_room and s.vcpus.sum() <= vcpu_room
               and (not len(s.mem) or (s.mem.max() <= biggest_mem and s.vcpus.max() <= biggest_vcpu))] or [sizes]
    sizes = min(fitting, key=lambda s: abs(float(s.mem.sum()) - target))
    return sizes, cores, mem_gib


# ----------------------------------------------------------------------------- placement


class _Placer:
    """Puts units (lists of guests that go together) on nodes, aiming at per-node memory targets."""

    def __init__(self, sizes: _Sizes, cores: np.ndarray, mem_gib: np.ndarray, target: np.ndarray):
        self.mem = sizes.mem
        self.vcpus = sizes.vcpus
        self.mem_cap = mem_gib * GIB - HOST_RESERVE_MIB
        self.vcpu_cap = VCPU_PER_CORE * cores
        self.target = target
        self.assigned = np.zeros(len(cores), dtype=np.int64)
        self.vcpu_used = np.zeros(len(cores), dtype=np.int64)
        self.node = np.full(len(sizes.mem), -1, dtype=np.int64)

    def fits(self, members: Sequence[int], allowed: np.ndarray) -> np.ndarray:
        m, v = int(self.mem[members].sum()), int(self.vcpus[members].sum())
        return allowed & (self.assigned + m <= self.mem_cap) & (self.vcpu_used + v <= self.vcpu_cap)

    def put(self, members: Sequence[int], n: int) -> None:
        members = list(members)
        old = self.node[members]
        for g, o in zip(members, old):
            if o >= 0:
                self.assigned[o] -= self.mem[g]
                self.vcpu_used[o] -= self.vcpus[g]
        self.node[members] = n
        self.assigned[n] += int(self.mem[members].sum())
        self.vcpu_used[n] += int(self.vcpus[members].sum())

    def place(self, members: Sequence[int], allowed: np.ndarray) -> int:
        fit = self.fits(members, allowed)
        if not fit.any():
            raise ValueError(f"cannot place {len(members)} guest(s) of {int(self.mem[list(members)].sum())} MiB: "
                             f"the cluster is too full (lower fill or add nodes)")
        n = int(np.argmax(np.where(fit, self.target - self.assigned, -np.inf)))
        self.put(members, n)
        return n


def _node_targets(rng: np.random.Generator, mem_cap: np.ndarray, base: np.ndarray, total: float,
                  imbalance: float) -> np.ndarray:
    """Assigned-memory target per node: fractions spread by `imbalance` around a common level."""
    k = int(base.sum())
    z = rng.permutation(np.linspace(-1.0, 1.0, k)) if k > 1 else np.zeros(k)
    ratio = np.clip(1.0 + imbalance * (z + rng.normal(0.0, 0.1, k)), 0.03, None)
    cap = mem_cap[base].astype(float)
    lo, hi = 0.0, MAX_NODE_FILL / ratio.min()
    for _ in range(60):  # level so that sum(min(level * ratio, MAX_NODE_FILL) * cap) == total
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (np.minimum(mid * ratio, MAX_NODE_FILL) * cap).sum() < total else (lo, mid)
    target = np.zeros(len(mem_cap))
    target[base] = np.minimum(hi * ratio, MAX_NODE_FILL) * cap
    return target


# ----------------------------------------------------------------------------- rules


@dataclass
class _Rules:
    affinity: list[tuple[str, list[int]]]
    anti: list[tuple[str, list[int]]]
    pins: dict[int, list[int]]  # guest -> node indices (how many in _choose_rules, which after placement)
    ignored: list[int]
    locked: list[int]
    templates: list[int]
    ha_prefer: list[int]  # guests of the node-affinity HA rule
    ha_prefer_nodes: list[int]
    ha_apart: list[int]  # guests of the negative resource-affinity HA rule
    # Hard shapes only (empty or default in the mild generator):
    ha_pin: list[int] = field(default_factory=list)  # guests of the strict node-affinity HA rule
    ha_pin_nodes: list[int] = field(default_factory=list)
    ha_together: list[int] = field(default_factory=list)  # guests of the positive resource-affinity HA rule
    ignore_tag: str = "plb_ignore_vm"
    ignore_name: str | None = None  # name prefix of the ignored guests (their role otherwise)

    @property
    def frozen(self) -> set[int]:
        return set(self.ignored) | set(self.locked) | set(self.templates) | set(self.pins)

    @property
    def members(self) -> set[int]:
        """Every guest some rule names or that cannot move."""
        groups = [m for _, m in self.affinity] + [m for _, m in self.anti]
        groups += [self.ha_prefer, self.ha_apart, self.ha_pin, self.ha_together]
        return self.frozen | {g for members in groups for g in members}


def _numbered(names: Sequence[str], i: int) -> str:
    """names[i], with a round number appended once the list wraps: shop, crm, ..., shop2, crm2, ..."""
    return names[i % len(names)] + (str(i // len(names) + 1) if i >= len(names) else "")


def _choose_rules(rng: np.random.Generator, sizes: _Sizes, cores: np.ndarray, mem_gib: np.ndarray,
                  eligible: np.ndarray, enabled: bool) -> _Rules:
    rules = _Rules([], [], {}, [], [], [], [], [], [])
    n_guests = len(sizes.mem)
    if not enabled or n_guests < 10:
        return rules
    n_elig = int(eligible.sum())
    elig_nodes = np.flatnonzero(eligible)
    # Rule members are small guests (1/16 of the smallest node), so any combination of them fits.
    small = (sizes.mem <= (int(mem_gib.min()) * GIB - HOST_RESERVE_MIB) // 16) & (sizes.vcpus <= int(cores.min()) // 4)
    pool = list(rng.permutation(np.flatnonzero(small)))

    def take(count: int) -> list[int]:
        out = pool[:count]
        del pool[:count]
        return [int(g) for g in out]

    for i in range(min(50, max(1, n_guests // 80))):
        members = take(int(rng.integers(2, 5)))
        if len(members) < 2:
            break
        rules.affinity.append((_numbered(SERVICES, i), members))
    if n_elig >= 2:
        for j in range(min(40, max(1, n_guests // 120))):
            size = n_elig if (j == 0 and n_elig <= 6) else min(n_elig, 2 + int(rng.poisson(1.0)))
            members = take(size)
            if len(members) < 2:
                break
            rules.anti.append((_numbered(REPLICATED, j), members))
    for g in take(round(PIN_SHARE * n_guests)):
        count = 2 if (n_elig >= 2 and rng.random() < 0.3) else 1
        rules.pins[g] = [-1] * count
    if n_guests >= 20 and n_elig >= 2:
        rules.ha_prefer = take(2)
        rules.ha_prefer_nodes = [int(n) for n in rng.choice(elig_nodes, size=2, replace=False)]
        rules.ha_apart = take(2)
    unused = set(int(g) for g in pool)
    rest = [int(g) for g in rng.permutation(n_guests) if int(g) in unused or not small[g]]
    rules.ignored = rest[:round(IGNORE_SHARE * n_guests)]
    del rest[:len(rules.ignored)]
    rules.locked = rest[:min(5, 2 + n_guests // 5000)]
    del rest[:len(rules.locked)]
    rules.templates = [g for g in rest if not sizes.is_ct[g]][:1] if n_guests >= 30 else []
    return rules


# ----------------------------------------------------------------------------- the generator


def _size_text(mib: int) -> str:
    mib = int(mib)
    return f"{mib // GIB}G" if mib % GIB == 0 and mib else f"{mib}M"


def _cores(value: float) -> float | int:
    value = round(float(value), 3)
    return int(value) if value.is_integer() else value


def generate_cluster(n_nodes: int, n_guests: int, seed: int, *, rules: bool = True, maintenance: bool = False,
                     name: str | None = None, fill: float | None = None, imbalance: float = 0.6,
                     shape: str = "mild") -> dict:
    """A realistic cluster model mapping (format v1); the same arguments give the same mapping.

    fill: assigned memory of all guests as a fraction of the cluster's memory (default 0.65; approximate:
    node shapes are discrete; capped near 0.8 so an uneven placement still fits, lower with `maintenance`
    on small clusters so that node 0 can be drained). imbalance: 0 aims at equal node fill, 1 spreads the
    node targets from ~0 to twice the mean. rules: plb_* tags, locks, a template and two HA rules
    (clusters of fewer than 10 guests get none). maintenance: node 0 is in maintenance mode; its guests
    fit on the other nodes. ValueError when the guests cannot fit on `n_nodes` nodes of any shape.

    shape: "mild" (the above), or one of the hard shapes (module docstring): "hard" (tiered nodes) or
    "enterprise" (Bitbrains guests on identical nodes). They start lopsided, over-committed and with broken
    rules; `reference_cluster` gives their valid reference placement. They take fill in [0.6, 0.8]
    (default 0.75), need at least 5 nodes and 8 guests per node, and have no maintenance variant;
    imbalance is mild-only.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if shape != "mild":
        if maintenance:
            raise ValueError("the hard shapes have no maintenance variant")
        return _generate_shaped(n_nodes, n_guests, seed, shape, rules, name, fill, at_reference=False)
    fill = 0.65 if fill is None else fill
    if n_nodes < 1 or n_guests < 0:
        raise ValueError("need at least one node and a non-negative number of guests")
    if maintenance and n_nodes < 2:
        raise ValueError("maintenance needs at least two nodes (node 0 must be drained somewhere)")
    if not 0.0 < fill <= 0.95 or not 0.0 <= imbalance <= 1.0:
        raise ValueError("fill must be in (0, 0.95] and imbalance in [0, 1]")
    cat = load_catalog()
    rng = np.random.default_rng(seed)
    n_base = n_nodes - 1 if maintenance else n_nodes
    wanted_fill = min(fill, 0.8 * n_base / n_nodes) if maintenance else fill
    sizes, cores, mem_gib = _size_cluster(rng, cat, n_nodes, n_guests, n_base, wanted_fill)

    base = np.ones(n_nodes, dtype=bool)
    if maintenance:
        base[0] = False
    rule_set = _choose_rules(rng, sizes, cores, mem_gib, base, rules)
    mem_cap = mem_gib * GIB - HOST_RESERVE_MIB
    placer = _Placer(sizes, cores, mem_gib, _node_targets(rng, mem_cap, base, float(sizes.mem.sum()), imbalance))

    # P0: anti-affinity members first (small, one per node), then affinity groups and singles, largest
    # first. Pinned guests are placed like any other; their pins follow from where they landed.
    anti_groups = [members for _, members in rule_set.anti] + ([rule_set.ha_apart] if rule_set.ha_apart else [])
    for members in anti_groups:
        free = base.copy()
        for g in members:
            free[placer.place([g], free)] = False
    units = [members for _, members in rule_set.affinity]
    in_units = {g for members in anti_groups + units for g in members}
    units += [[int(g)] for g in range(n_guests) if int(g) not in in_units]
    units.sort(key=lambda members: (-int(sizes.mem[members].sum()), members[0]))
    for members in units:
        placer.place(members, base)
    base_nodes = np.flatnonzero(base)
    for g, pins in rule_set.pins.items():
        here = int(placer.node[g])
        others = base_nodes[base_nodes != here]
        extra = rng.choice(others, size=min(len(pins) - 1, len(others)), replace=False) if len(pins) > 1 else []
        rule_set.pins[g] = sorted({here, *(int(n) for n in extra)})

    # Faults to repair: one anti-affinity group in five has two members on one node; node 0
    # (maintenance) gets guests.
    n_faults = round(ANTI_VIOLATED_SHARE * len(rule_set.anti))
    for k in sorted(rng.choice(len(rule_set.anti), size=n_faults, replace=False)) if n_faults else []:
        members = rule_set.anti[int(k)][1]
        node = int(placer.node[members[0]])
        one = np.zeros(n_nodes, dtype=bool)
        one[node] = True
        if placer.fits([members[1]], one)[node]:
            placer.put([members[1]], node)
    if maintenance:
        _fill_maintenance_node(rng, placer, rule_set, units, mem_cap, wanted_fill, imbalance)

    return _to_model(rng, sizes, cores, mem_gib, placer.node, rule_set, maintenance,
                     name or f"gen-{n_nodes}n-{n_guests}g-s{seed}")


def _fill_maintenance_node(rng: np.random.Generator, placer: _Placer, rule_set: _Rules, units: list[list[int]],
                           mem_cap: np.ndarray, fill: float, imbalance: float) -> None:
    """Move movable units from P0 onto node 0 until it holds about its share."""
    frozen = rule_set.frozen
    anti_of = {g: members for _, members in rule_set.anti for g in members}
    for g in rule_set.ha_apart:
        anti_of[g] = rule_set.ha_apart
    goal = min(MAX_NODE_FILL, fill * (1 + 0.5 * imbalance)) * mem_cap[0]
    only0 = np.zeros(len(mem_cap), dtype=bool)
    only0[0] = True
    candidates = units + [[g] for g in anti_of]
    for i in rng.permutation(len(candidates)):
        members = candidates[int(i)]
        if placer.assigned[0] >= goal:
            break
        if frozen.intersection(members) or placer.node[members[0]] == 0:
            continue
        siblings = anti_of.get(members[0], [])
        if any(placer.node[s] == 0 for s in siblings):
            continue
        if placer.assigned[0] + placer.mem[members].sum() <= goal and placer.fits(members, only0)[0]:
            placer.put(members, 0)


def _pick_roles(rng: np.random.Generator, sizes: _Sizes) -> list[str]:
    vm_names, vm_w = zip(*VM_ROLES)
    ct_names, ct_w = zip(*CT_ROLES)
    n = len(sizes.mem)
    vm_pick = rng.choice(len(vm_names), size=n, p=np.array(vm_w) / sum(vm_w))
    ct_pick = rng.choice(len(ct_names), size=n, p=np.array(ct_w) / sum(ct_w))
    big_pick = rng.integers(0, len(BIG_ROLES), size=n)
    roles = []
    for g in range(n):
        if sizes.is_ct[g]:
            roles.append(ct_names[ct_pick[g]])
        elif sizes.mem[g] >= 28 * GIB:
            roles.append(BIG_ROLES[big_pick[g]])
        else:
            roles.append(vm_names[vm_pick[g]])
    return roles


@dataclass
class _Usage:
    """Per guest: what it uses and where its disks live (drawn before placement in the hard shapes)."""

    running: np.ndarray  # bool[g]
    mem_used: np.ndarray  # int[g] MiB, 0 when stopped
    cpu_used: np.ndarray  # float[g] cores, 0 when stopped
    local: np.ndarray  # bool[g] disks on the node's local storage
    disk: np.ndarray  # int[g] MiB
    disk_used: np.ndarray  # int[g] MiB


def _draw_usage(rng: np.random.Generator, sizes: _Sizes, templates: Sequence[int],
                row: np.ndarray | None = None) -> _Usage:
    """Utilisation from Bitbrains: `row` per guest, or a VM of the same core bucket drawn per guest."""
    cat = load_catalog()
    n_guests = len(sizes.mem)
    if row is None:
        bucket = _core_bucket(sizes.vcpus)
        row = np.zeros(n_guests, dtype=np.int64)
        for b in np.unique(bucket):
            rows = np.flatnonzero(cat.util_bucket == b)
            where = np.flatnonzero(bucket == b)
            row[where] = rows[rng.integers(0, len(rows), size=len(where))]
    running = rng.random(n_guests) >= STOPPED_SHARE
    running[list(templates)] = False
    mem_used = np.where(running, np.maximum(64, np.round(sizes.mem * cat.util_mem_fraction[row])), 0).astype(np.int64)
    cpu_used = np.where(running, np.round(sizes.vcpus * cat.util_cpu[row], 3), 0.0)
    local = rng.random(n_guests) < LOCAL_DISK_SHARE
    disk_gib = np.where(sizes.is_ct,
                        rng.choice([4, 8, 16, 32, 64], size=n_guests, p=[0.2, 0.35, 0.25, 0.15, 0.05]),
                        rng.choice([32, 64, 100, 128, 256, 512], size=n_guests, p=[0.25, 0.3, 0.15, 0.15, 0.1, 0.05]))
    disk = disk_gib * GIB
    disk_used = np.round(disk * rng.uniform(0.15, 0.85, n_guests)).astype(np.int64)
    return _Usage(running, mem_used, cpu_used, local, disk, disk_used)


def _draw_host(rng: np.random.Generator, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per node: host memory overhead (MiB, ~4 GiB) and host CPU use (cores)."""
    overhead = HOST_OVERHEAD_MIB + rng.integers(-512, 769, n_nodes)
    return overhead, rng.uniform(0.2, 0.8, n_nodes)


def _disk_step_gib(need_gib: float) -> int:
    """The smallest usual local-disk size of at least `need_gib`."""
    return next((s for s in DISK_STEPS_GIB if s >= need_gib), int(math.ceil(need_gib / 1024)) * 1024)


def _to_model(rng: np.random.Generator, sizes: _Sizes, cores: np.ndarray, mem_gib: np.ndarray, node_of: np.ndarray,
              rule_set: _Rules, maintenance: bool, name: str, usage: _Usage | None = None,
              host: tuple[np.ndarray, np.ndarray] | None = None, node_disk_gib: int | None = None) -> dict:
    """The model mapping. usage, host and node_disk_gib are drawn here unless given (the hard shapes
    draw them before placing); the mild generator's draws keep their order, so its output is unchanged."""
    n_nodes, n_guests = len(cores), len(sizes.mem)
    width = max(2, len(str(n_nodes)))
    node_names = [f"pve{i + 1:0{width}d}" for i in range(n_nodes)]

    u = usage if usage is not None else _draw_usage(rng, sizes, rule_set.templates)
    running, mem_used, cpu_used, local, disk, disk_used = (u.running, u.mem_used, u.cpu_used, u.local, u.disk,
                                                           u.disk_used)
    vmids = 100 + np.cumsum(np.where(rng.random(n_guests) < 0.03, rng.integers(2, 40, n_guests), 1)) - 1
    ha = (rng.random(n_guests) < 0.1) & ~sizes.is_ct
    ha[rule_set.ha_prefer + rule_set.ha_apart + rule_set.ha_pin + rule_set.ha_together] = True
    extra_tag = rng.random(n_guests) < 0.08

    # Names, pools and tags.
    roles = _pick_roles(rng, sizes)
    prefix = list(roles)
    tags: list[list[str]] = [[] for _ in range(n_guests)]
    pools: list[str | None] = [None] * n_guests
    for g in range(n_guests):
        if roles[g] in DEV_ROLES:
            pools[g] = "dev"
        elif roles[g] in INFRA_ROLES:
            pools[g] = "infra"
        elif rng.random() < 0.8:
            pools[g] = "prod"
        if roles[g].startswith("win-"):
            tags[g].append("windows")
        elif extra_tag[g]:
            tags[g].append("monitoring")
    for service, members in rule_set.affinity:
        for k, g in enumerate(members):
            prefix[g] = f"{service}-{SERVICE_ROLES[k % len(SERVICE_ROLES)]}"
            pools[g] = service
            tags[g].append(f"plb_affinity_{service}")
    for role, members in rule_set.anti:
        for g in members:
            prefix[g] = role
            tags[g].append(f"plb_anti_affinity_{role.replace('-', '_')}")
    for g, pin_nodes in rule_set.pins.items():
        tags[g].extend(f"plb_pin_{node_names[n]}" for n in pin_nodes)
    for g in rule_set.ignored:
        tags[g].append(rule_set.ignore_tag)
        if rule_set.ignore_name:
            prefix[g] = f"{rule_set.ignore_name}-{roles[g]}"
    for g in rule_set.templates:
        prefix[g] = "tpl-debian"
    counters: dict[str, int] = {}
    names = []
    for g in range(n_guests):
        counters[prefix[g]] = counters.get(prefix[g], 0) + 1
        names.append(f"{prefix[g]}{counters[prefix[g]]:02d}")
    lock = {g: ("backup" if k % 2 == 0 else "snapshot") for k, g in enumerate(rule_set.locked)}

    guests = []
    for g in range(n_guests):
        entry: dict[str, Any] = {
            "vmid": int(vmids[g]), "name": names[g], "type": "ct" if sizes.is_ct[g] else "vm",
            "node": node_names[int(node_of[g])], "status": "running" if running[g] else "stopped",
            "cpus": int(sizes.vcpus[g]), "cpu_usage": _cores(cpu_used[g]),
            "memory": _size_text(sizes.mem[g]), "memory_used": _size_text(mem_used[g]),
            "disk": _size_text(disk[g]), "disk_used": _size_text(disk_used[g]), "local_disk": bool(local[g]),
        }
        if tags[g]:
            entry["tags"] = sorted(tags[g])
        if pools[g]:
            entry["pool"] = pools[g]
        if ha[g]:
            entry["ha"] = True
        if g in lock:
            entry["lock"] = lock[g]
        if g in rule_set.templates:
            entry["template"] = True
        guests.append(entry)

    # Nodes: reported usage is the guests' plus host overhead; local disk sized for the busiest node.
    mem_sum = np.bincount(node_of, weights=mem_used, minlength=n_nodes) if n_guests else np.zeros(n_nodes)
    cpu_sum = np.bincount(node_of, weights=cpu_used, minlength=n_nodes) if n_guests else np.zeros(n_nodes)
    local_used = (np.bincount(node_of, weights=np.where(local, disk_used, 0), minlength=n_nodes)
                  if n_guests else np.zeros(n_nodes))
    overhead, host_cpu = host if host is not None else _draw_host(rng, n_nodes)
    if node_disk_gib is None:
        node_disk_gib = _disk_step_gib((local_used.max() / GIB + SYSTEM_DISK_GIB) / 0.55)
    nodes = []
    for n in range(n_nodes):
        entry = {
            "name": node_names[n], "cpus": int(cores[n]), "memory": _size_text(int(mem_gib[n]) * GIB),
            "disk": _size_text(node_disk_gib * GIB),
            "memory_used": _size_text(int(mem_sum[n]) + int(overhead[n])),
            "cpu_usage": _cores(cpu_sum[n] + host_cpu[n]),
            "disk_used": _size_text(int(local_used[n]) + SYSTEM_DISK_GIB * GIB),
            "status": "online",
        }
        if maintenance and n == 0:
            entry["maintenance"] = True
        nodes.append(entry)

    def resource(g: int) -> str:
        return f"{'ct' if sizes.is_ct[g] else 'vm'}:{int(vmids[g])}"

    data: dict[str, Any] = {"version": 1, "cluster": name, "nodes": nodes, "guests": guests}
    ha_rules = []
    if rule_set.ha_prefer:
        first, second = rule_set.ha_prefer_nodes
        ha_rules.append({"rule": f"prefer-{node_names[first]}", "type": "node-affinity",
                         "resources": ",".join(resource(g) for g in rule_set.ha_prefer),
                         "nodes": f"{node_names[first]}:2,{node_names[second]}:1", "strict": False})
    if rule_set.ha_apart:
        ha_rules.append({"rule": "keep-ha-pair-apart", "type": "resource-affinity",
                         "resources": ",".join(resource(g) for g in rule_set.ha_apart),
                         "affinity": "negative", "strict": True})
    if rule_set.ha_pin:
        ha_rules.append({"rule": "only-" + "-".join(node_names[n] for n in rule_set.ha_pin_nodes),
                         "type": "node-affinity", "resources": ",".join(resource(g) for g in rule_set.ha_pin),
                         "nodes": ",".join(node_names[n] for n in rule_set.ha_pin_nodes), "strict": True})
    if rule_set.ha_together:
        ha_rules.append({"rule": "keep-ha-pair-together", "type": "resource-affinity",
                         "resources": ",".join(resource(g) for g in rule_set.ha_together),
                         "affinity": "positive", "strict": True})
    if ha_rules:
        data["ha_rules"] = ha_rules
    return data


# ----------------------------------------------------------------------------- hard shapes


@dataclass
class _Layout:
    """The roles of the nodes of a hard instance (bool[n] each)."""

    big: np.ndarray  # the largest memory: where pinned guests are pinned
    hot: np.ndarray  # ~ a fifth, at >= 95 % used memory at the start
    cold: np.ndarray  # ~ a third, below 25 % used memory at the start
    pin_full: np.ndarray  # the biggest hot nodes (big ones unless the cluster is tiny): broken pins point here


@dataclass
class _Faults:
    """The rules a hard instance starts with broken (the reference placement keeps them all)."""

    affinity: list[int]  # indices into _Rules.affinity: members split over 2-3 nodes
    anti: list[int]  # indices into _Rules.anti: members joined on one node
    pins: list[int]  # pinned guests, pinned to a full (hot) node of the largest hot memory and sitting elsewhere


def _apportion(total: int, shares: Sequence[float]) -> np.ndarray:
    """Integer counts summing to `total` in the proportions of `shares` (largest remainder, ties to the first)."""
    exact = total * np.asarray(shares, dtype=float) / float(sum(shares))
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[:total - int(counts.sum())]:
        counts[i] += 1
    return counts


def _pick_by_tier(rng: np.random.Generator, rank: np.ndarray, eligible: np.ndarray, k: int,
                  lean: Sequence[float]) -> np.ndarray:
    """bool[n]: k eligible nodes, apportioned over the tiers by eligible nodes x lean, random within a tier."""
    tiers = np.unique(rank)
    groups = [np.flatnonzero(eligible & (rank == t)) for t in tiers]
    weights = [len(nodes) * _lean(lean, rank)[nodes[0]] if len(nodes) else 0.0 for nodes in groups]
    chosen = np.zeros(len(rank), dtype=bool)
    for nodes, count in zip(groups, _apportion(k, weights)):
        chosen[rng.choice(nodes, size=min(int(count), len(nodes)), replace=False)] = True
    return chosen


def _lean(weights: Sequence[float], rank: np.ndarray) -> np.ndarray:
    """float[n]: the weight of each node's tier; the largest memory gets the last weight."""
    return np.asarray(weights, dtype=float)[np.maximum(0, len(weights) - 1 - int(rank.max()) + rank)]


def _layout(rng: np.random.Generator, mem_gib: np.ndarray) -> _Layout:
    """Hot and cold nodes. The hot fifth is spread over the tiers in proportion, so that it holds about a
    fifth of the memory: more would leave too little used memory for the middle nodes (the traces'
    used/assigned ratio is ~0.45). The cold third leans to the big (new) nodes, as in a cluster that grew."""
    n_nodes = len(mem_gib)
    rank = np.searchsorted(np.unique(mem_gib), mem_gib)  # tier, 0 for the smallest memory
    everywhere = np.ones(n_nodes, dtype=bool)
    hot = _pick_by_tier(rng, rank, everywhere, max(1, round(HOT_SHARE * n_nodes)), (1.0,))
    cold = _pick_by_tier(rng, rank, ~hot, max(1, round(COLD_SHARE * n_nodes)), COLD_LEAN)
    return _Layout(mem_gib == mem_gib.max(), hot, cold, hot & (mem_gib == mem_gib[hot].max()))


def _hard_sizes(rng: np.random.Generator, cat: Catalog, n_guests: int, mem_gib: np.ndarray, fill: float) -> _Sizes:
    """Azure flavours, tilted (continuously) so that the guests' memory is about `fill` of the cluster's.

    Only flavours of at most half the smallest node's usable memory are drawn, so that the reference
    placement never has to squeeze a giant guest onto a small node.
    """
    usable = (cat.flavor_mem_mib <= (int(mem_gib.min()) * GIB - HOST_RESERVE_MIB) // 2).astype(float)
    per_flavor = (1 - CT_SHARE) * cat.flavor_mem_mib + CT_SHARE * _ct_memory(cat.flavor_mem_mib)

    def mean_mib(tilt: float) -> float:  # falls as the tilt rises
        weights = _flavor_weights(cat, tilt, usable)
        return float((weights * per_flavor).sum() / weights.sum())

    want = fill * float(mem_gib.sum()) * GIB / max(1, n_guests)
    lo, hi = HARD_TILT_RANGE
    if mean_mib(hi) > want:
        raise ValueError(f"{n_guests} guests are too many for {len(mem_gib)} nodes of the hard shape "
                         f"({int(mem_gib.sum())} GiB in all) even with the smallest flavours")
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_mib(mid) > want else (lo, mid)
    return _draw_sizes(rng, cat, n_guests, hi, usable)


def _hard_threads(rng: np.random.Generator, mem_gib: np.ndarray, tier: np.ndarray, sizes: _Sizes) -> np.ndarray:
    """Threads per node, proportionate to memory: one per GIB_PER_THREAD GiB, or more when the guests' vCPUs
    need them (at most HARD_VCPU_SHARE of the vCPU limit in all); per tier, a batch of newer nodes (the
    highest-numbered, up to half the tier) has NEWER_THREADS times as many."""
    per_gib = max(1 / GIB_PER_THREAD,
                  float(sizes.vcpus.sum()) / (VCPU_PER_CORE * HARD_VCPU_SHARE * float(mem_gib.sum())))
    threads = np.ceil(mem_gib * per_gib / 8).astype(np.int64) * 8
    for t in np.unique(tier):
        nodes = np.flatnonzero(tier == t)
        newer = nodes[len(nodes) - int(rng.integers(0, len(nodes) // 2 + 1)):]
        threads[newer] = np.ceil(threads[newer] * NEWER_THREADS / 8).astype(np.int64) * 8
    return np.maximum(threads, int(sizes.vcpus.max(initial=1)))


def _enterprise_guests(rng: np.random.Generator, cat: Catalog, n_guests: int) -> tuple[_Sizes, np.ndarray]:
    """Bitbrains VMs as they are: cores, provisioned memory and (row[g]) their own utilisation.

    Distinct VMs (one of their months) while there are enough, rows drawn with repetition beyond that.
    VMs above ENTERPRISE_MAX_GUEST_GIB (a handful of up to 511 GiB) are left out.
    """
    ok = np.flatnonzero(cat.util_mem_mib <= ENTERPRISE_MAX_GUEST_GIB * GIB)
    vms = np.unique(cat.util_vm[ok])
    if n_guests <= len(vms):
        months = {int(v): ok[cat.util_vm[ok] == v] for v in vms}
        row = np.array([rng.choice(months[int(v)]) for v in rng.choice(vms, size=n_guests, replace=False)],
                       dtype=np.int64)
    else:
        row = rng.choice(ok, size=n_guests)
    mem = np.maximum(512, (cat.util_mem_mib[row] + 64) // 128 * 128)  # 128 MiB steps, as PVE sizes them
    return _Sizes(np.zeros(n_guests, dtype=bool), cat.util_cores[row].astype(np.int64), mem), row


def _enterprise_nodes(n_nodes: int, sizes: _Sizes, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """One node shape for all: memory in 64 GiB steps (e.g. 320 GiB = 10 x 32 GiB DIMMs) so that the guests
    fill about `fill` of it, one thread per GIB_PER_THREAD GiB or more when the guests' vCPUs need them."""
    total_gib = float(sizes.mem.sum()) / GIB
    biggest_gib = float(sizes.mem.max(initial=0)) / GIB
    mem = max(64, round(total_gib / (fill * n_nodes) / 64) * 64, math.ceil(2 * biggest_gib / 64) * 64)
    need = float(sizes.vcpus.sum()) / (VCPU_PER_CORE * HARD_VCPU_SHARE * n_nodes)
    threads = max(math.ceil(max(mem / GIB_PER_THREAD, need) / 8) * 8, int(sizes.vcpus.max(initial=1)))
    return np.full(n_nodes, threads, dtype=np.int64), np.full(n_nodes, mem, dtype=np.int64)


def _some(rng: np.random.Generator, count: int) -> list[int]:
    """A sorted random BROKEN_SHARE of range(count), at least one when count > 0."""
    k = min(count, max(1, round(BROKEN_SHARE * count))) if count else 0
    return sorted(int(i) for i in rng.choice(count, size=k, replace=False)) if k else []


def _choose_hard_rules(rng: np.random.Generator, sizes: _Sizes, cores: np.ndarray, mem_gib: np.ndarray,
                       enabled: bool) -> tuple[_Rules, _Faults]:
    """The mild rule mix, plus a strict node-affinity and a positive resource-affinity HA rule, ignored guests
    tagged as legacy, and which of them start broken."""
    rule_set = _choose_rules(rng, sizes, cores, mem_gib, np.ones(len(cores), dtype=bool), enabled)
    if not enabled or len(sizes.mem) < 10:
        return rule_set, _Faults([], [], [])
    rule_set.ignore_tag, rule_set.ignore_name = "plb_ignore_legacy", "legacy"
    small = (sizes.mem <= (int(mem_gib.min()) * GIB - HOST_RESERVE_MIB) // 16) & (sizes.vcpus <= int(cores.min()) // 4)
    taken = rule_set.members
    spare = [int(g) for g in rng.permutation(np.flatnonzero(small)) if int(g) not in taken]
    if len(spare) >= 4:
        rule_set.ha_pin, rule_set.ha_together = spare[:2], spare[2:4]
        rule_set.ha_pin_nodes = sorted(int(n) for n in rng.choice(len(cores), size=2, replace=False))
    pinned = sorted(rule_set.pins)
    faults = _Faults(_some(rng, len(rule_set.affinity)), _some(rng, len(rule_set.anti)),
                     [pinned[i] for i in _some(rng, len(pinned))])
    return rule_set, faults


def _place_reference(rng: np.random.Generator, sizes: _Sizes, cores: np.ndarray, mem_gib: np.ndarray,
                     rule_set: _Rules, faults: _Faults, layout: _Layout) -> np.ndarray:
    """int[g] node: the valid placement a hard instance is derived from; fixes the pins (in rule_set).

    Every rule holds and so does every hard limit with overprovisioning off (assigned memory <= memory
    - 5 GiB, vCPUs <= 2 x threads); node targets are only mildly uneven. Ignored (legacy) guests land on
    hot nodes and stay there; pinned guests on big nodes, those whose pin starts broken on the
    biggest hot nodes.
    """
    n_nodes, n_guests = len(cores), len(sizes.mem)
    everywhere = np.ones(n_nodes, dtype=bool)
    mem_cap = mem_gib * GIB - HOST_RESERVE_MIB
    placer = _Placer(sizes, cores, mem_gib,
                     _node_targets(rng, mem_cap, everywhere, float(sizes.mem.sum()), REFERENCE_IMBALANCE))
    for g in rule_set.ignored:
        placer.place([g], layout.hot if placer.fits([g], layout.hot).any() else everywhere)
    broken = set(faults.pins)
    for g in sorted(rule_set.pins):
        where = layout.pin_full if g in broken else layout.big
        here = placer.place([g], where)
        others = np.flatnonzero(where & (np.arange(n_nodes) != here))
        extra = rng.choice(others, size=min(len(rule_set.pins[g]) - 1, len(others)), replace=False)
        rule_set.pins[g] = sorted({here, *(int(n) for n in extra)})
    if rule_set.ha_pin:
        allowed = np.zeros(n_nodes, dtype=bool)
        allowed[rule_set.ha_pin_nodes] = True
        for g in rule_set.ha_pin:
            placer.place([g], allowed)
    for members in [m for _, m in rule_set.anti] + ([rule_set.ha_apart] if rule_set.ha_apart else []):
        free = everywhere.copy()
        for g in members:
            free[placer.place([g], free)] = False
    units = [m for _, m in rule_set.affinity] + ([rule_set.ha_together] if rule_set.ha_together else [])
    placed = set(np.flatnonzero(placer.node >= 0).tolist()) | {g for m in units for g in m}
    units += [[g] for g in range(n_guests) if g not in placed]
    units.sort(key=lambda members: (-int(sizes.mem[members].sum()), members[0]))
    for members in units:
        placer.place(members, everywhere)
    return placer.node.copy()


class _Start:
    """The starting placement while it is derived from the reference: per node used memory (what the host
    reports), assigned memory and vCPUs. Only the hot nodes may go over their assigned-memory and vCPU
    limits; no node goes over its physical memory."""

    def __init__(self, reference: np.ndarray, sizes: _Sizes, usage: _Usage, overhead: np.ndarray,
                 cores: np.ndarray, mem_gib: np.ndarray, hot: np.ndarray):
        n_nodes = len(mem_gib)
        self.node = reference.copy()
        self.mem_used, self.mem, self.vcpus = usage.mem_used, sizes.mem, sizes.vcpus
        self.size = mem_gib * GIB
        self.mem_cap = self.size - HOST_RESERVE_MIB
        self.vcpu_cap = VCPU_PER_CORE * cores
        self.hot = hot
        self.used = overhead + np.bincount(reference, weights=usage.mem_used, minlength=n_nodes).astype(np.int64)
        self.assigned = np.bincount(reference, weights=sizes.mem, minlength=n_nodes).astype(np.int64)
        self.vcpu = np.bincount(reference, weights=sizes.vcpus, minlength=n_nodes).astype(np.int64)

    def takes(self, g: int, n: int, ceiling: float) -> bool:
        """Can node n take g, using at most `ceiling` of its memory (and, unless hot, within its limits)?"""
        if self.used[n] + self.mem_used[g] > ceiling * self.size[n]:
            return False
        return bool(self.hot[n] or (self.assigned[n] + self.mem[g] <= self.mem_cap[n]
                                    and self.vcpu[n] + self.vcpus[g] <= self.vcpu_cap[n]))

    def move(self, g: int, n: int) -> None:
        old = self.node[g]
        for load, amount in ((self.used, self.mem_used[g]), (self.assigned, self.mem[g]), (self.vcpu, self.vcpus[g])):
            load[old] -= amount
            load[n] += amount
        self.node[g] = n

    def away(self, rng: np.random.Generator, g: int, nodes: np.ndarray, avoid: Sequence[int]) -> int | None:
        """A random node of `nodes`, not in `avoid`, that takes g staying below WARM_USED."""
        for n in rng.permutation(nodes):
            if int(n) not in avoid and self.takes(g, int(n), WARM_USED):
                return int(n)
        return None


def _break_rules(rng: np.random.Generator, start: _Start, rule_set: _Rules, faults: _Faults, layout: _Layout) -> None:
    """Move rule members so that the faults hold: split affinity groups, joined anti-affinity groups, pinned
    guests away from their pinned node, and each HA rule broken once. Displaced guests go to non-hot nodes."""
    calm = np.flatnonzero(~layout.hot)
    for i in faults.affinity:
        members = rule_set.affinity[i][1]
        parts = min(len(members), int(rng.integers(2, 4)))  # 2 or 3 nodes
        homes = [int(start.node[members[0]])]
        for g in members[1:parts]:
            n = start.away(rng, g, calm, homes)
            if n is not None:
                homes.append(n)
        others = homes[1:]
        for k, g in enumerate(members[1:] if others else []):  # every other node gets at least one member
            if start.takes(g, others[k % len(others)], USED_CEILING):
                start.move(g, others[k % len(others)])
    for i in faults.anti:
        members = rule_set.anti[i][1]
        joining = members[1:1 + int(rng.integers(1, len(members)))]
        for home in [int(start.node[g]) for g in members if g not in joining]:  # the first node that takes them
            if all(start.takes(g, home, USED_CEILING) for g in joining):
                for g in joining:
                    start.move(g, home)
                break
    for g in faults.pins:
        n = start.away(rng, g, calm, rule_set.pins[g])
        if n is not None:
            start.move(g, n)
    if rule_set.ha_pin:
        n = start.away(rng, rule_set.ha_pin[0], calm, rule_set.ha_pin_nodes)
        if n is not None:
            start.move(rule_set.ha_pin[0], n)
    if rule_set.ha_apart:
        first, second = rule_set.ha_apart
        for g, home in ((second, int(start.node[first])), (first, int(start.node[second]))):
            if start.takes(g, home, USED_CEILING):
                start.move(g, home)
                break
    if rule_set.ha_together:
        first, second = rule_set.ha_together
        n = start.away(rng, second, calm, [int(start.node[first])])
        if n is not None:
            start.move(second, n)


def _pile_on_hot(rng: np.random.Generator, start: _Start, free: np.ndarray, layout: _Layout) -> None:
    """Move free running guests onto the hot nodes until each uses its goal (HOT_USED) of its memory, never
    more than USED_CEILING; the hot nodes end far over their assigned-memory limit.

    Cold nodes give first, down to their goal (COLD_USED), then the middle ones down to a floor
    (MIDDLE_FLOOR), and below these only if the hot nodes are still short. Within that, guests with little
    unused memory go first (with noise): many small, busy guests pile up, which keeps the hot nodes'
    over-commitment lower than big idle ones would.
    """
    hot = np.flatnonzero(layout.hot)
    goal = rng.uniform(*HOT_USED, len(hot)) * start.size[hot]
    ceiling = USED_CEILING * start.size[hot]
    floor = np.where(layout.cold, rng.uniform(*COLD_USED, len(layout.cold)),
                     rng.uniform(*MIDDLE_FLOOR, len(layout.cold))) * start.size
    donors = np.flatnonzero(free & ~layout.hot[start.node] & (start.mem_used > 0))
    idle = (start.mem[donors] - start.mem_used[donors]) * rng.uniform(0.5, 1.5, len(donors))
    order = donors[np.lexsort((idle, ~layout.cold[start.node[donors]]))]
    for floors in (floor, np.zeros_like(floor)):
        for g in order:
            used = start.used[hot]
            short = used < goal
            if not short.any():
                return
            source = start.node[g]
            fits = short & (used + start.mem_used[g] <= ceiling)
            if layout.hot[source] or start.used[source] - start.mem_used[g] < floors[source] or not fits.any():
                continue
            # The largest gap first: big guests go to big nodes, small ones top the rest up.
            start.move(int(g), int(hot[np.argmax(np.where(fits, goal - used, -np.inf))]))


def _drain_cold(rng: np.random.Generator, start: _Start, free: np.ndarray, layout: _Layout) -> None:
    """Move free running guests off each cold node, to the least used middle node that takes them (within
    its limits, below WARM_USED), until it is below its goal (COLD_USED)."""
    middle = np.flatnonzero(~layout.hot & ~layout.cold)
    cold = np.flatnonzero(layout.cold)
    goals = rng.uniform(*COLD_USED, len(cold)) * start.size[cold]
    for c, goal in zip(cold, goals):
        for g in rng.permutation(np.flatnonzero(free & (start.node == c) & (start.mem_used > 0))):
            if start.used[c] <= goal:
                break
            for n in middle[np.argsort(start.used[middle] / start.size[middle], kind="stable")]:
                if start.takes(int(g), int(n), WARM_USED):
                    start.move(int(g), int(n))
                    break


def _local_disk_mib(node_of: np.ndarray, usage: _Usage, n_nodes: int) -> np.ndarray:
    return np.bincount(node_of, weights=np.where(usage.local, usage.disk_used, 0), minlength=n_nodes)


def _generate_shaped(n_nodes: int, n_guests: int, seed: int, shape: str, rules: bool, name: str | None,
                     fill: float | None, at_reference: bool) -> dict:
    """A hard-shape instance at its start placement, or (at_reference) at its reference placement."""
    fill = HARD_FILL if fill is None else fill
    if n_nodes < 5 or n_guests < 8 * n_nodes:
        raise ValueError("the hard shapes need at least 5 nodes and 8 guests per node")
    if not 0.6 <= fill <= 0.8:
        raise ValueError("the hard shapes need fill in [0.6, 0.8]: the hot nodes must fill up, the reference must fit")
    cat = load_catalog()
    rng = np.random.default_rng(seed)
    if shape == "hard":
        tier = np.repeat(np.arange(len(HARD_TIERS_GIB)), _apportion(n_nodes, HARD_TIER_SHARE))
        mem_gib = np.array(HARD_TIERS_GIB, dtype=np.int64)[tier]
        sizes, row = _hard_sizes(rng, cat, n_guests, mem_gib, fill), None
        cores = _hard_threads(rng, mem_gib, tier, sizes)
    else:
        sizes, row = _enterprise_guests(rng, cat, n_guests)
        cores, mem_gib = _enterprise_nodes(n_nodes, sizes, fill)
    layout = _layout(rng, mem_gib)
    rule_set, faults = _choose_hard_rules(rng, sizes, cores, mem_gib, rules)
    usage = _draw_usage(rng, sizes, rule_set.templates, row)
    host = _draw_host(rng, n_nodes)
    reference = _place_reference(rng, sizes, cores, mem_gib, rule_set, faults, layout)

    start = _Start(reference, sizes, usage, host[0], cores, mem_gib, layout.hot)
    _break_rules(rng, start, rule_set, faults, layout)
    free = np.ones(n_guests, dtype=bool)
    free[list(rule_set.members)] = False
    _pile_on_hot(rng, start, free, layout)
    _drain_cold(rng, start, free, layout)

    # Local storage sized for both placements: the piled-up start at <= 90 %, the reference at <= 55 %.
    need_gib = max(_local_disk_mib(start.node, usage, n_nodes).max() / GIB / 0.9,
                   _local_disk_mib(reference, usage, n_nodes).max() / GIB / 0.55) + SYSTEM_DISK_GIB / 0.55
    return _to_model(rng, sizes, cores, mem_gib, reference if at_reference else start.node, rule_set, False,
                     name or f"{shape}-{n_nodes}n-{n_guests}g-s{seed}", usage, host, _disk_step_gib(need_gib))


def reference_cluster(n_nodes: int, n_guests: int, seed: int, *, shape: str = "hard", rules: bool = True,
                      name: str | None = None, fill: float | None = None) -> dict:
    """The instance `generate_cluster(..., shape=shape)` makes, with every guest at its reference placement.

    Same nodes, guests (in the same order), tags and HA rules; only the guests' `node` and the nodes'
    reported usage differ. The reference placement breaks no rule and keeps every hard limit with
    overprovisioning off, so `proxlb_opt.check.violations` finds nothing in it, judged against either
    model; judged against this one (whose limits are not relaxed to an over-full start) it finds the
    start's capacity violations too. Only for the hard shapes ("hard", "enterprise").
    """
    if shape not in HARD_SHAPES:
        raise ValueError(f"reference_cluster is for the hard shapes {', '.join(HARD_SHAPES)}, not {shape!r}")
    return _generate_shaped(n_nodes, n_guests, seed, shape, rules, name, fill, at_reference=True)


# ----------------------------------------------------------------------------- output


def _flow(item: Any) -> str:
    return yaml.dump(item, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), default_flow_style=True,
                     sort_keys=False, width=1 << 20).strip()


def to_yaml(data: dict, header: Sequence[str] = ()) -> str:
    """Model YAML with one flow mapping per node, guest and HA rule (compact and diff-friendly)."""
    lines = [f"# {line}" if line else "#" for line in header]
    lines += [f"version: {data['version']}", f"cluster: {_flow(data['cluster'])}", "nodes:"]
    lines += [f"  - {_flow(entry)}" for entry in data["nodes"]]
    lines.append("guests:" if data["guests"] else "guests: []")
    lines += [f"  - {_flow(entry)}" for entry in data["guests"]]
    if data.get("ha_rules"):
        lines.append("ha_rules:")
        lines += [f"  - {_flow(entry)}" for entry in data["ha_rules"]]
    return "\n".join(lines) + "\n"


def summary(data: dict) -> list[str]:
    """A few figures of a generated model: sizes, fill and per-node used memory."""
    from proxlb_opt.cluster import cluster_from_dict

    c = cluster_from_dict(data)
    assigned = np.bincount(c.guest_node, weights=c.guest_mem_mib, minlength=c.n_nodes)
    used_pct = 100 * c.node_mem_used_mib / c.node_mem_mib
    shapes = sorted({f"{int(k) // 1000}c/{int(m) // GIB}G" for k, m in zip(c.node_cpu_milli, c.node_mem_mib)})
    return [
        f"{c.n_nodes} nodes ({', '.join(shapes)}), {c.n_guests} guests ({int(c.guest_is_ct.sum())} CTs, "
        f"{int((~c.guest_running).sum())} stopped, {int(c.guest_local_disk.sum())} on local disk)",
        f"assigned memory {100 * assigned.sum() / c.node_mem_mib.sum():.1f} % of the cluster; node memory used "
        f"{used_pct.min():.1f} % .. {used_pct.max():.1f} % (spread {used_pct.max() - used_pct.min():.1f} pp)",
    ]


def shape_summary(data: dict) -> list[str]:
    """The figures of a hard instance: per memory tier its nodes and their used memory, the skew, the nodes
    over their assigned-memory limit, and the rules `proxlb_opt.check` finds broken at the start (with
    ProxLB's defaults; its capacity limits are relaxed to the start's load, hence counted here directly)."""
    from proxlb_opt import check
    from proxlb_opt.cluster import cluster_from_dict
    from proxlb_opt.config import Settings
    from proxlb_opt.problem import build_problem

    c = cluster_from_dict(data)
    used = 100 * c.node_mem_used_mib / c.node_mem_mib
    lines = []
    for mem in sorted(set(c.node_mem_mib.tolist())):
        tier = c.node_mem_mib == mem
        threads = c.node_cpu_milli[tier] // 1000
        lines.append(f"{int(mem) // GIB} GiB x {int(tier.sum())} ({int(threads.min())}-{int(threads.max())} threads): "
                     f"used memory {used[tier].min():.1f} .. {used[tier].max():.1f} %")
    hot = np.flatnonzero(used >= 95)
    assigned = 100 * np.bincount(c.guest_node, weights=c.guest_mem_mib, minlength=c.n_nodes) / c.node_mem_mib
    lines.append(f"{len(hot)} nodes at >= 95 % used memory hold {100 * np.isin(c.guest_node, hot).mean():.0f} % of "
                 f"the guests; {int((used < 25).sum())} nodes below 25 %; assigned memory above node memory on "
                 f"{int((assigned > 100).sum())} nodes (up to {assigned.max():.0f} %)")
    found: dict[str, int] = {}
    for v in check.violations(build_problem(c, Settings()).with_budget(None), c.guest_node):
        found[v.rule] = found.get(v.rule, 0) + 1
    families = ("affinity", "anti-affinity", "pin")
    lines.append("broken at the start: " + ", ".join(f"{found.get(k, 0)} {k}" for k in families))
    return lines


SOURCES = {
    "mild": ["Sizes from the Azure 2017 VM distribution, utilisation from Bitbrains GWA-T-12, node shapes from",
             "Alibaba openb 2023 (see benchmarks/data/README.md for origin, terms and citations)."],
    "hard": ["Hard shape (benchmarks/generate.py): tiered nodes; sizes from the Azure 2017 VM distribution,",
             "utilisation from Bitbrains GWA-T-12 (see benchmarks/data/README.md for origin, terms and citations)."],
    "enterprise": ["Enterprise shape (benchmarks/generate.py): identical nodes; Bitbrains GWA-T-12 VMs with their own",
                   "sizes and utilisation (see benchmarks/data/README.md for origin, terms and citations)."],
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--guests", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-rules", dest="rules", action="store_false", help="no plb_* tags, locks or HA rules")
    parser.add_argument("--maintenance", action="store_true", help="put the first node in maintenance mode")
    parser.add_argument("--shape", choices=SHAPES, default="mild",
                        help="mild (default), or a hard shape that starts lopsided, over-committed and with broken "
                             "rules: hard (tiered nodes), enterprise (Bitbrains VMs on identical nodes)")
    parser.add_argument("--fill", type=float, default=None,
                        help="assigned memory / cluster memory (default 0.65; hard shapes 0.75, in [0.6, 0.8])")
    parser.add_argument("--imbalance", type=float, default=0.6, help="0 even .. 1 very uneven (default 0.6; mild only)")
    parser.add_argument("--name", default=None, help="cluster name")
    parser.add_argument("-o", "--output", default="-", help="file to write (.yaml, or .json); '-' for stdout")
    args = parser.parse_args(argv)
    try:
        data = generate_cluster(args.nodes, args.guests, args.seed, rules=args.rules, maintenance=args.maintenance,
                                name=args.name, fill=args.fill, imbalance=args.imbalance, shape=args.shape)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    facts = summary(data) + (shape_summary(data) if args.shape != "mild" else [])
    command = ["python", "-m", "benchmarks.generate"] + list(sys.argv[1:] if argv is None else argv)
    if args.output != "-" and args.output.lower().endswith(".json"):
        text = json.dumps(data, indent=1) + "\n"
    else:
        text = to_yaml(data, [
            "proxlb-opt cluster model (format v1), generated; do not edit by hand, regenerate instead:",
            "  " + shlex.join(command),
            *SOURCES[args.shape],
            *facts,
        ])
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        for line in facts:
            print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
