"""Cluster state of the PVE simulator: nodes, guests, tasks, faults, HA and a virtual clock.

Owns everything that changes while the simulator runs, and PVE's migrate semantics (the checks
made before a task is forked, the checks made inside the task, `lock: migrate`, the HA detour
through a `hamigrate` task, UPIDs, task logs and exit statuses), the HA manager's actions (its
decisions are ha.py's: refusing, co-migrating, moving guests off a node in maintenance and back,
and back onto the nodes a rule allows), the fault counters and node events (faults.py), and the
settings a test changes at run time: HA master, datacenter `crs`, per-resource HA options, HA
rules, PSI values. It knows nothing about HTTP.

One lock guards all of it. Time-driven changes (a migration ending, a node event at a moment, a
CRM round) are applied lazily, whenever the state is read or written, so no background thread is
needed and the manual `advance()` and the scaled wall clock behave the same. Readers get an
immutable `Snapshot`; records are frozen and replaced on change, so a snapshot is a cheap shallow
copy that API views can use without the lock.

Units inside are the model's (MiB, milli-cores); the API views convert to bytes and fractions.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

import numpy as np

from proxlb_opt.cluster import Cluster, HaRule, with_placement
from proxlb_opt.limits import is_decimal
from proxlb_opt.simulator import ha, psi
from proxlb_opt.simulator.faults import TASK_ERROR_DEFAULT, Faults, NodeEvent, RequestFault

__all__ = ["Faults", "NodeEvent", "PveError", "RequestFault", "SimState", "Snapshot", "TASK_ERROR_DEFAULT",
           "VirtualClock"]

MIB = 1024 * 1024
BOOT_AGE_S = 12 * 86400.0  # nodes have been up this long when the simulator starts
HA_REQUEST_S = 1.0  # a `hamigrate` task only queues a CRM command
HA_PICKUP_S = 4.0  # the CRM/LRM round until the real migration task starts
PREPARE_FAIL_S = 1.0  # a migration that dies in its prepare phase
HA_LOG_LIMIT = 10_000
SHARED_STORAGE = "ceph-vm"
LOCAL_STORAGE = "local"
AUTO = "auto"  # the HA master is the first online node

# The datacenter `crs` property string (pve-cluster DataCenterConfig.pm, PVE 9.2): key → kind.
CRS_FORMAT: Mapping[str, tuple[str, ...]] = {
    "ha": ("enum", "basic", "static", "dynamic"),
    "ha-rebalance-on-start": ("boolean",),
    "ha-auto-rebalance": ("boolean",),
    "ha-auto-rebalance-threshold": ("number", "0", "100"),
    "ha-auto-rebalance-method": ("enum", "bruteforce", "topsis"),
    "ha-auto-rebalance-hold-duration": ("number", "0", ""),
    "ha-auto-rebalance-margin": ("number", "0", "100"),
}


class PveError(Exception):
    """An API error as PVE reports it: HTTP status, message (also the reason phrase), field errors."""

    def __init__(self, status: int, message: str, errors: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors) if errors else None


def param_error(**errors: str) -> PveError:
    """PVE's `raise_param_exc`: 400 with per-field messages."""
    return PveError(400, "Parameter verification failed.", errors)


class VirtualClock:
    """Simulated epoch seconds: wall time scaled by `time_scale` plus manual advances.

    `time_scale` is simulated seconds per real second; 0 freezes the clock (advance only).
    Not locked itself: SimState calls it under its lock.
    """

    def __init__(self, time_scale: float = 1.0, start: float | None = None):
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self.time_scale = float(time_scale)
        self._start = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()
        self._advanced = 0.0

    def now(self) -> float:
        return self._start + (time.monotonic() - self._mono0) * self.time_scale + self._advanced

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._advanced += float(seconds)

    def set_scale(self, time_scale: float) -> None:
        """Change the speed from now on; the time already passed stays."""
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self._start, self._mono0, self._advanced = self.now(), time.monotonic(), 0.0
        self.time_scale = float(time_scale)


@dataclass(frozen=True)
class NodeRec:
    name: str
    nodeid: int
    ip: str
    cpu_milli: int
    mem_mib: int
    disk_mib: int
    base_cpu_milli: int  # host overhead: reported usage minus the guests' share at seed time
    base_mem_mib: int
    base_disk_mib: int
    online: bool  # as in the model or set at run time; faults can take it offline too
    maintenance: bool  # shown as HA maintenance (the LRM's "maintenance mode")
    boot_time: float
    # Whether the simulated CRM acts on the maintenance (refuses HA migrations to the node, moves
    # HA guests off). Only maintenance switched on while running does: a model's maintenance flag
    # is reported but left alone, so seeded scenarios keep their meaning.
    crm_maintenance: bool = False


@dataclass(frozen=True)
class GuestRec:
    vmid: int
    name: str
    kind: str  # "qemu" | "lxc"
    node: str
    running: bool
    cpu_milli: int
    cpu_used_milli: int
    mem_mib: int
    mem_used_mib: int
    disk_mib: int
    disk_used_mib: int
    local_disk: bool
    tags: tuple[str, ...]
    pool: str | None
    ha: bool
    lock: str | None
    template: bool
    started_at: float
    target: str | None = None  # set while a migration holds resources on the target node
    hastate: str | None = None  # HA CRM state for HA-managed guests
    failback: bool = False  # HA resource option: go back to the rule's preferred nodes
    auto_rebalance: bool = True  # HA resource option (PVE 9.2): may move in automatic rebalancing
    ha_fallback: str | None = None  # the node it left for maintenance, to return to


@dataclass(frozen=True)
class TaskRec:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str  # "root@pam" or "root@pam!tokenid", as in the UPID
    vmid: int
    status: str = "running"  # "running" | "stopped"
    exitstatus: str | None = None
    endtime: int | None = None
    log: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    cpu_used_milli: int
    mem_used_mib: int
    disk_used_mib: int


@dataclass(frozen=True)
class HistoryPoint:
    """One state of the simulated cluster: after change number `version`, at simulated time `now` (the
    clock when it was recorded; events due earlier run in order but are stamped when they ran).
    A guest with `target` set holds its resources on both nodes (a migration under way)."""

    version: int
    now: float
    nodes: tuple[NodeRec, ...]
    guests: Mapping[int, GuestRec]


PressureKey = tuple[str, object]  # ("node", name) or ("guest", vmid)


@dataclass(frozen=True)
class Snapshot:
    """A consistent, immutable view of the state at simulated time `now`."""

    now: float
    cluster_name: str
    local_node: str  # the node answering the API (the first one), for `/cluster/status` `local`
    nodes: tuple[NodeRec, ...]
    guests: Mapping[int, GuestRec]  # by vmid, in vmid order
    usage: Mapping[str, Usage]
    tasks: tuple[TaskRec, ...]  # creation order
    faults: Faults
    ha_rules: tuple[HaRule, ...]
    by_name: Mapping[str, NodeRec] = field(default_factory=dict)
    pve_version: str = "9.1.1"
    crs: Mapping[str, str] = field(default_factory=dict)  # datacenter `crs`, key → text as configured
    ha_master: str | None = AUTO  # a node name, AUTO, or None (no CRM master)
    pressure: Mapping[PressureKey, psi.History] = field(default_factory=dict)

    def node(self, name: str) -> NodeRec | None:
        return self.by_name.get(name)

    def is_online(self, name: str) -> bool:
        rec = self.node(name)
        return rec is not None and rec.online and name not in self.faults.offline_nodes

    @property
    def quorate(self) -> bool:
        online = sum(1 for n in self.nodes if self.is_online(n.name))
        return not self.faults.no_quorum and online * 2 > len(self.nodes)

    @property
    def master(self) -> str | None:
        """The node running the HA manager (CRM master): the chosen one while it is online, else
        the first online node, as another node takes the manager lock over."""
        if self.ha_master is None:
            return None
        if self.ha_master != AUTO and self.is_online(self.ha_master):
            return self.ha_master
        return next((n.name for n in self.nodes if self.is_online(n.name)), None)

    def lock_of(self, guest: GuestRec) -> str | None:
        return self.faults.locked.get(guest.vmid) or guest.lock

    def guests_on(self, node: str) -> list[GuestRec]:
        return [g for g in self.guests.values() if g.node == node]

    def sid(self, guest: GuestRec) -> str:
        return f"{'ct' if guest.kind == 'lxc' else 'vm'}:{guest.vmid}"

    def pressure_set(self, key: PressureKey, t: float | None = None) -> Mapping[str, float]:
        """PSI values a test set for a node or guest, in force at `t` (default: now)."""
        return psi.at(self.pressure.get(key, ()), self.now if t is None else t)


@dataclass
class _MigrationOpts:
    online: bool = False
    restart: bool = False
    with_local_disks: bool = False


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class SimState:
    """The mutable cluster behind the simulated API; every public method is thread-safe.

    Options: `pve_version` (what `/version` reports; 9.2 adds HA `auto-rebalance` fields and
    node `host-arch`, 9.2.6 the default `affinity` of node-affinity rules), `crs` (the datacenter
    `crs` property string or a dict), `ha_master` (node name, AUTO or None), `ha_failback` (the
    HA resources' `failback` option: with it the CRM moves guests back to a node-affinity rule's
    highest-priority nodes and, after maintenance, to the node they left, as PVE's default does;
    off by default so that a migration to a non-preferred node stays where it was sent).
    """

    def __init__(self, cluster: Cluster, time_scale: float = 1.0, faults: Faults | None = None,
                 bandwidth_mib_s: float = 1024.0, start_time: float | None = None, *,
                 pve_version: str = "9.1.1", crs: str | Mapping[str, object] | None = None,
                 ha_master: str | None = AUTO, ha_failback: bool = False):
        self._lock = threading.RLock()
        self._seed = cluster
        self._clock = VirtualClock(time_scale, start_time)
        self.bandwidth_mib_s = float(bandwidth_mib_s)
        now = self._clock.now()
        self._nodes = _seed_nodes(cluster, now)
        self._guests: dict[int, GuestRec] = {g.vmid: dataclasses.replace(g, failback=ha_failback)
                                             for g in _seed_guests(cluster, now)}
        self._tasks: dict[str, TaskRec] = {}
        self._events: list[tuple[float, int, Callable[[float], None]]] = []  # heap: (time, seq, fn)
        self._seq = itertools.count()
        self._pid = itertools.count(0x1A2B0, 7)
        self._version = 0
        self._cached: tuple[int, Snapshot] | None = None
        self._pve_version = pve_version
        self._crs = parse_crs(crs)
        self._ha_master = self._check_master(ha_master)
        self._ha_rules = tuple(cluster.ha_rules)
        self._pressure: dict[PressureKey, psi.History] = {}
        self._ha_log: list[tuple[float, str]] = []
        self._crm_rounds: set[float] = set()
        self._faults = Faults()
        self._fault_gen = 0
        self._drops_left = 0
        self._request_hits: list[int] = []
        self._migrate_calls = 0
        self._rng = random.Random(0)
        self._history: list[HistoryPoint] | None = None  # off until record_history(): tests replay it
        self.set_faults(faults or Faults())

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        with self._lock:
            return self._clock.now()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward, running everything due meanwhile (each at its own time)."""
        with self._lock:
            self._clock.advance(seconds)
            self._tick()

    def advance_to(self, when: float) -> None:
        """Move simulated time forward to the epoch second `when` (no-op if already past)."""
        with self._lock:
            self.advance(max(0.0, when - self._clock.now()))

    @property
    def time_scale(self) -> float:
        return self._clock.time_scale

    def set_time_scale(self, time_scale: float) -> None:
        """Change how fast simulated time follows real time (0 freezes it; advance() still works)."""
        with self._lock:
            self._tick()
            self._clock.set_scale(time_scale)

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Replace all faults at once; counters, the random generator and node-event triggers restart."""
        with self._lock:
            now = self._tick()
            self._faults = faults
            self._fault_gen += 1
            self._drops_left = max(0, int(faults.drop_first))
            self._request_hits = [0] * len(faults.requests)
            self._migrate_calls = 0
            self._rng = random.Random(faults.seed)
            gen = self._fault_gen
            for event in faults.node_events:
                if event.at is not None:
                    self._at(max(event.at, now), lambda at, ev=event: self._timed_node_event(ev, gen, at))
            self._bump()
            self._tick()

    def update_faults(self, **changes: object) -> Faults:
        """Replace some fields of the current faults (atomically); the new Faults."""
        with self._lock:
            faults = dataclasses.replace(self._faults, **changes)
            self.set_faults(faults)
            return faults

    def should_drop(self) -> bool:
        """Transport fault: whether to close the connection instead of answering this request."""
        with self._lock:
            if self._drops_left > 0:
                self._drops_left -= 1
                return True
            p = self._faults.drop_probability
            return p > 0 and self._rng.random() < p

    def request_fault(self, method: str, path: str, template: str | None) -> RequestFault | None:
        """The request fault that hits this request, if any; every matching fault counts it."""
        with self._lock:
            now = self._tick()
            hit = None
            for i, rule in enumerate(self._faults.requests):
                if rule.matches(method, path, template, now):
                    self._request_hits[i] += 1
                    if hit is None and rule.fires(self._request_hits[i]):
                        hit = rule
            return hit

    # ------------------------------------------------------------------ run-time settings

    def set_maintenance(self, node: str, on: bool = True) -> None:
        """Switch a node's HA maintenance (ha-manager crm-command node-maintenance enable|disable).

        On: the LRM reports "maintenance mode" and, one CRM round later, running HA guests migrate
        away (VMs live, containers in restart mode) to where the rules allow; HA migrations to the
        node are ignored. Off: they come back to it. Non-HA guests are not touched.
        """
        with self._lock:
            now = self._tick()
            self._set_node(node, maintenance=on, crm_maintenance=on)
            self._ha_note(now, f"node '{node}': {'enable' if on else 'disable'} maintenance mode")
            self._schedule_crm(now + HA_PICKUP_S)

    def set_node_online(self, node: str, online: bool = True) -> None:
        """Take a node offline (595 when routed to, `offline`/`unknown` in lists) or bring it back."""
        with self._lock:
            now = self._tick()
            self._set_node(node, online=online)
            self._ha_note(now, f"node '{node}': {'online' if online else 'offline'}")
            self._schedule_crm(now + HA_PICKUP_S)

    def set_ha_master(self, node: str | None = AUTO) -> None:
        """Which node `/cluster/ha/status/current` names as the HA manager master (None: no master)."""
        with self._lock:
            self._ha_master = self._check_master(node)
            self._bump()

    def set_crs(self, crs: str | Mapping[str, object] | None) -> None:
        """The datacenter `crs` option, as a property string ("ha=dynamic,ha-auto-rebalance=1") or dict."""
        with self._lock:
            self._crs = parse_crs(crs)
            self._bump()

    def set_ha_resource(self, vmid: int, *, failback: bool | None = None, auto_rebalance: bool | None = None) -> None:
        """An HA resource's options (`failback`, PVE 9.2's `auto-rebalance`)."""
        with self._lock:
            guest = self._guests[int(vmid)]
            if not guest.ha:
                raise ValueError(f"guest {vmid} is not HA-managed")
            changes = {k: v for k, v in (("failback", failback), ("auto_rebalance", auto_rebalance)) if v is not None}
            self._set_guest(guest.vmid, **changes)

    def set_usage(self, vmid: int, *, memory_used_mib: int | None = None, cpu_used_milli: int | None = None) -> None:
        """A guest's live usage from now on (load that drifts between two rounds of a service)."""
        with self._lock:
            guest = self._guests[int(vmid)]
            changes = {}
            if memory_used_mib is not None:
                changes["mem_used_mib"] = max(0, min(int(memory_used_mib), guest.mem_mib))
            if cpu_used_milli is not None:
                changes["cpu_used_milli"] = max(0, int(cpu_used_milli))
            self._set_guest(guest.vmid, **changes)

    def set_ha_rules(self, rules: Iterable[HaRule]) -> None:
        """Replace the HA rules (`/cluster/ha/rules`); the CRM applies them in its next round."""
        with self._lock:
            now = self._tick()
            self._ha_rules = tuple(rules)
            self._bump()
            self._schedule_crm(now + HA_PICKUP_S)

    def set_pressure(self, target: str | int, **values: float) -> None:
        """Set PSI values (avg10 %) of a node (by name) or guest (by vmid) from now on.

        Fields not given keep their earlier set value, or the default from load (psi.py). rrddata
        shows set values from the moment they were set; earlier points keep what was in force then.
        """
        with self._lock:
            now = self._tick()
            key = self._pressure_key(target)
            checked = psi.check_values(values, node_level=key[0] == "node")
            history = self._pressure.get(key, ())
            merged = {**psi.at(history, now), **checked}
            self._pressure[key] = history + ((now, MappingProxyType(merged)),)
            self._bump()

    def clear_pressure(self, target: str | int) -> None:
        """Back to the defaults from load, from now on."""
        with self._lock:
            now = self._tick()
            key = self._pressure_key(target)
            self._pressure[key] = self._pressure.get(key, ()) + ((now, MappingProxyType({})),)
            self._bump()

    def ha_log(self) -> tuple[tuple[float, str], ...]:
        """What the simulated HA manager did and refused, as (simulated time, message), oldest first."""
        with self._lock:
            self._tick()
            return tuple(self._ha_log)

    # ------------------------------------------------------------------ history

    def record_history(self, on: bool = True) -> None:
        """From now on, keep every state the cluster passes through (each guest or node change), for tests
        that must show a property held at every instant, not only at the end; off: forget it."""
        with self._lock:
            self._tick()
            self._history = [self._history_point()] if on else None

    def history(self) -> tuple["HistoryPoint", ...]:
        """Every state since record_history(), oldest first (the current one last)."""
        with self._lock:
            self._tick()
            return tuple(self._history or ())

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._tick()
            if self._cached is None or self._cached[0] != self._version:
                self._cached = (self._version, self._build_snapshot(now))
            return dataclasses.replace(self._cached[1], now=now)

    def placement(self) -> dict[int, str]:
        """vmid → node name."""
        return {vmid: g.node for vmid, g in self.snapshot().guests.items()}

    def guest(self, vmid: int) -> GuestRec:
        return self.snapshot().guests[int(vmid)]

    def lock_of(self, vmid: int) -> str | None:
        snap = self.snapshot()
        return snap.lock_of(snap.guests[int(vmid)])

    def is_running(self, vmid: int) -> bool:
        return self.guest(vmid).running

    def node_usage(self, node: str) -> Usage:
        return self.snapshot().usage[node]

    def tasks(self) -> tuple[TaskRec, ...]:
        return self.snapshot().tasks

    def task(self, upid: str) -> TaskRec | None:
        with self._lock:
            self._tick()
            return self._tasks.get(upid)

    def to_cluster(self) -> Cluster:
        """The seed Cluster with current placement, running flags and locks (usage follows placement)."""
        snap = self.snapshot()
        seed = self._seed
        index = {name: i for i, name in enumerate(seed.node_names)}
        order = [snap.guests[int(v)] for v in seed.guest_vmid]
        moved = with_placement(seed, np.array([index[g.node] for g in order], dtype=np.int64))
        running = np.array([g.running for g in order], dtype=bool)
        running.setflags(write=False)
        return dataclasses.replace(moved, guest_running=running, guest_lock=tuple(snap.lock_of(g) for g in order))

    # ------------------------------------------------------------------ migrate

    def migrate(self, node: str, vmid: int, kind: str, params: Mapping[str, str], user: str) -> str:
        """POST .../{qemu|lxc}/{vmid}/migrate on `node`: PVE's pre-fork checks, then a task; its UPID."""
        with self._lock:
            snap = self.snapshot()
            target, opts = _migrate_params(params, kind)
            if target == node:
                raise param_error(target="target is local node.")
            if not snap.quorate:
                raise PveError(500, "cluster not ready - no quorum?")
            if snap.node(target) is None:
                raise PveError(500, f"no such cluster node '{target}'")
            guest = _guest_on(snap, node, vmid, kind)
            _check_before_fork(snap, guest, opts, target)
            now = snap.now
            if guest.ha:
                upid = self._start_hamigrate(guest, target, opts, user, now)
            else:
                upid = self._start_migration(guest, target, opts, user, now)
            self._count_migrate_call(now)
            return upid

    # ------------------------------------------------------------------ internals (lock held)

    def _bump(self) -> None:
        self._version += 1
        if self._history is not None:
            self._history.append(self._history_point())

    def _history_point(self) -> "HistoryPoint":
        return HistoryPoint(self._version, self._clock.now(), self._nodes, MappingProxyType(dict(self._guests)))

    def _tick(self) -> float:
        """Run every event due by now (in time order, each at its own time); the `now` used."""
        now = self._clock.now()
        while self._events and self._events[0][0] <= now:
            at, _, fn = heapq.heappop(self._events)
            fn(at)
        return now

    def _at(self, when: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), fn))

    def _build_snapshot(self, now: float) -> Snapshot:
        return Snapshot(
            now=now, cluster_name=self._seed.name or "cluster", local_node=self._nodes[0].name,
            nodes=self._nodes, guests=MappingProxyType(dict(sorted(self._guests.items()))),
            usage=MappingProxyType(self._usage()), tasks=tuple(self._tasks.values()),
            faults=self._faults, ha_rules=self._ha_rules,
            by_name=MappingProxyType({n.name: n for n in self._nodes}),
            pve_version=self._pve_version, crs=MappingProxyType(dict(self._crs)), ha_master=self._ha_master,
            pressure=MappingProxyType(dict(self._pressure)),
        )

    def _usage(self) -> dict[str, Usage]:
        cpu = {n.name: n.base_cpu_milli for n in self._nodes}
        mem = {n.name: n.base_mem_mib for n in self._nodes}
        disk = {n.name: n.base_disk_mib for n in self._nodes}
        for g in self._guests.values():
            # A live migration holds the guest's memory (and a local disk copy) on both nodes.
            holders = (g.node, g.target) if g.target else (g.node,)
            if g.running:
                cpu[g.node] += g.cpu_used_milli
                for n in holders:
                    mem[n] += g.mem_used_mib
            if g.local_disk:
                for n in holders:
                    disk[n] += g.disk_used_mib
        return {n: Usage(cpu[n], mem[n], disk[n]) for n in cpu}

    def _set_guest(self, vmid: int, **changes) -> GuestRec:
        rec = dataclasses.replace(self._guests[vmid], **changes)
        self._guests[vmid] = rec
        self._bump()
        return rec

    def _set_node(self, name: str, **changes) -> None:
        if name not in {n.name for n in self._nodes}:
            raise ValueError(f"no node {name!r}")
        self._nodes = tuple(dataclasses.replace(n, **changes) if n.name == name else n for n in self._nodes)
        self._bump()

    def _check_master(self, node: str | None) -> str | None:
        if node not in (None, AUTO) and node not in {n.name for n in self._nodes}:
            raise ValueError(f"no node {node!r}")
        return node

    def _pressure_key(self, target: str | int) -> PressureKey:
        if isinstance(target, str) and not is_decimal(target):
            if target not in {n.name for n in self._nodes}:
                raise ValueError(f"no node {target!r}")
            return ("node", target)
        if int(target) not in self._guests:
            raise ValueError(f"no guest {target}")
        return ("guest", int(target))

    def _ha_note(self, at: float, message: str) -> None:
        self._ha_log.append((at, message))
        del self._ha_log[:-HA_LOG_LIMIT]

    def _put_task(self, task: TaskRec) -> None:
        self._tasks[task.upid] = task
        self._bump()

    def _new_task(self, node: str, ttype: str, vmid: int, user: str, at: float, first_line: str) -> TaskRec:
        boot = next(n.boot_time for n in self._nodes if n.name == node)
        pid, pstart, start = next(self._pid), int((at - boot) * 100), int(at)
        upid = f"UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{ttype}:{vmid}:{user}:"
        task = TaskRec(upid, node, pid, pstart, start, ttype, str(vmid), user, vmid,
                       log=(f"{_fmt_time(at)} {first_line}",))
        self._put_task(task)
        return task

    def _log(self, upid: str, at: float, *lines: str, final: str | None = None, stamp: bool = True) -> None:
        task = self._tasks[upid]
        text = tuple(f"{_fmt_time(at)} {line}" if stamp else line for line in lines)
        if final is None:
            self._put_task(dataclasses.replace(task, log=task.log + text))
            return
        last = _last_line(final)
        self._put_task(dataclasses.replace(task, log=task.log + text + (last,), status="stopped",
                                           exitstatus=final, endtime=int(at)))

    # ---- node events (faults)

    def _count_migrate_call(self, now: float) -> None:
        self._migrate_calls += 1
        for event in self._faults.node_events:
            if event.after_migrations == self._migrate_calls:
                self._apply_node_event(event, now)

    def _timed_node_event(self, event: NodeEvent, gen: int, at: float) -> None:
        if gen == self._fault_gen:  # faults replaced meanwhile: this trigger is gone
            self._apply_node_event(event, at)

    def _apply_node_event(self, event: NodeEvent, at: float) -> None:
        on = event.state in ("maintenance", "online")
        if event.state in ("maintenance", "active"):
            self._set_node(event.node, maintenance=on, crm_maintenance=on)
            self._ha_note(at, f"node '{event.node}': {'enable' if on else 'disable'} maintenance mode")
        else:
            self._set_node(event.node, online=on)
            self._ha_note(at, f"node '{event.node}': {event.state}")
        self._schedule_crm(at + HA_PICKUP_S)

    # ---- the HA manager

    def _start_hamigrate(self, guest: GuestRec, target: str, opts: _MigrationOpts, user: str, now: float) -> str:
        label = "VM" if guest.kind == "qemu" else "CT"
        task = self._new_task(guest.node, "hamigrate", guest.vmid, user, now,
                              f"Requesting HA migration for {label} {guest.vmid} to node {target}")
        self._set_guest(guest.vmid, hastate="migrate")
        self._at(now + HA_REQUEST_S, lambda at: self._finish_hamigrate(task.upid, guest.vmid, target, opts, at))
        return task.upid

    def _finish_hamigrate(self, upid: str, vmid: int, target: str, opts: _MigrationOpts, at: float) -> None:
        """`ha-manager migrate`: refused for a negative partner on the target, else queued with the
        positive partners (pve-ha-manager queue_resource_motion and the CLI's motion output)."""
        snap = self._build_snapshot(at)
        sid = snap.sid(snap.guests[vmid])
        blockers = ha.blocking(snap, vmid, target)
        if blockers:
            lines = [f"cannot migrate resource '{sid}' to node '{target}':", ""]
            lines += [f"- resource '{snap.sid(snap.guests[b])}' on target node '{target}' in negative affinity"
                      f" with resource '{sid}'" for b in blockers]
            self._log(upid, at, *lines, final=f"command 'ha-manager migrate {sid} {target}' failed: exit code 255",
                      stamp=False)
            self._ha_note(at, f"crm command 'migrate {sid} {target}' error - service "
                              f"'{snap.sid(snap.guests[blockers[0]])}' on node '{target}' in negative affinity "
                              f"with service '{sid}'")
            self._set_guest(vmid, hastate=_ha_state(self._guests[vmid]))
            return
        along = ha.comigrating(snap, vmid, target)
        lines = [f"also migrate resource '{snap.sid(snap.guests[v])}' in positive affinity with resource '{sid}' "
                 f"to target node '{target}'" for v in along]
        self._log(upid, at, *lines, final="OK", stamp=False)
        for v in (vmid, *along):
            self._ha_note(at, f"got crm command: migrate {snap.sid(snap.guests[v])} {target}")
            if v != vmid:
                self._set_guest(v, hastate="migrate")
            self._at(at + HA_PICKUP_S, lambda start, v=v: self._ha_lrm_migrate(v, target, opts, start))

    def _ha_lrm_migrate(self, vmid: int, target: str, opts: _MigrationOpts, at: float) -> None:
        guest = self._guests[vmid]
        sid = f"{'ct' if guest.kind == 'lxc' else 'vm'}:{vmid}"
        if guest.node == target or guest.target is not None:
            self._set_guest(vmid, hastate=_ha_state(guest))
            return
        if target not in ha.active_nodes(self._build_snapshot(at)):
            # The CRM only moves services to online nodes; maintenance and dead nodes are not.
            self._ha_note(at, f"crm command error - node not online: migrate {sid} {target}")
            self._set_guest(vmid, hastate=_ha_state(guest))
            return
        # The LRM migrates as root@pam: VMs live if running, containers in restart mode.
        lrm_opts = dataclasses.replace(opts, online=guest.running and guest.kind == "qemu",
                                       restart=guest.running and guest.kind == "lxc")
        self._start_migration(guest, target, lrm_opts, "root@pam", at)

    def _schedule_crm(self, when: float) -> None:
        if when in self._crm_rounds:
            return
        self._crm_rounds.add(when)
        self._at(when, self._crm_round)

    def _crm_round(self, at: float) -> None:
        """One CRM round: every started HA service goes where select_node wants it."""
        self._crm_rounds.discard(at)
        for vmid in sorted(v for v, g in self._guests.items() if g.ha):
            guest = self._guests[vmid]
            if not guest.running or guest.target is not None or guest.hastate in ("migrate", "relocate"):
                continue
            node = next(n for n in self._nodes if n.name == guest.node)
            if not node.online or node.name in self._faults.offline_nodes:
                continue  # a dead node's services wait for fencing, which is not simulated
            if node.crm_maintenance and guest.ha_fallback is None:
                guest = self._set_guest(vmid, ha_fallback=node.name)
            elif not node.crm_maintenance and guest.ha_fallback == node.name:
                guest = self._set_guest(vmid, ha_fallback=None)  # back home: forget the fallback
            wanted = ha.select_node(self._build_snapshot(at), vmid, guest.failback)
            if wanted is not None and wanted != guest.node:
                self._crm_move(guest, wanted, at)

    def _crm_move(self, guest: GuestRec, target: str, at: float) -> None:
        sid = f"{'ct' if guest.kind == 'lxc' else 'vm'}:{guest.vmid}"
        if guest.ha_fallback not in (None, target, guest.node):
            guest = self._set_guest(guest.vmid, ha_fallback=None)  # PVE drops a fallback it cannot use
        if guest.kind == "qemu":
            self._ha_note(at, f"migrate service '{sid}' to node '{target}' (running)")
            state, opts = "migrate", _MigrationOpts(online=True)
        else:
            self._ha_note(at, f"relocate service '{sid}' to node '{target}'")
            state, opts = "relocate", _MigrationOpts(restart=True)
        self._set_guest(guest.vmid, hastate=state)
        self._start_migration(self._guests[guest.vmid], target, opts, "root@pam", at)

    # ---- migration tasks

    def _start_migration(self, guest: GuestRec, target: str, opts: _MigrationOpts, user: str, now: float) -> str:
        ttype = "qmigrate" if guest.kind == "qemu" else "vzmigrate"
        label = "VM" if guest.kind == "qemu" else "CT"
        ip = next(n.ip for n in self._nodes if n.name == target)
        task = self._new_task(guest.node, ttype, guest.vmid, user, now,
                              f"starting migration of {label} {guest.vmid} to node '{target}' ({ip})")
        failure = self._prepare_failure(guest, target, opts)
        if failure:
            self._at(now + PREPARE_FAIL_S, lambda at: self._abort(task.upid, guest.vmid, failure, now, at))
        else:
            self._begin_move(task, guest, target, now)
        return task.upid

    def _begin_move(self, task: TaskRec, guest: GuestRec, target: str, now: float) -> None:
        restarting = guest.kind == "lxc" and guest.running
        live = guest.kind == "qemu" and guest.running
        # Restart mode stops the container for the move; a live VM holds memory on both nodes.
        self._set_guest(guest.vmid, lock="migrate", target=target if live or guest.local_disk else None,
                        running=guest.running and not restarting)
        if restarting:
            self._log(task.upid, now, f"shutdown CT {guest.vmid}")
        if guest.vmid in self._faults.storage_error and guest.local_disk:
            # The local disk copy (phase 1) fails halfway: PVE logs the error, then aborts.
            error = self._storage_failure(guest, target)
            self._at(now + 1.0 + self._copy_time(guest) / 2,
                     lambda at: self._fail_copy(task.upid, guest.vmid, error, restarting, now, at))
            return
        if live:
            self._log(task.upid, now, f"starting VM {guest.vmid} on remote node '{target}'",
                      f"starting online/live migration on unix:/run/qemu-server/{guest.vmid}.migrate")
        if guest.vmid in self._faults.task_hang:
            return
        # Like the hang, the outcome is decided now: later fault changes do not alter a running task.
        error = self._faults.task_error.get(guest.vmid)
        outcome = error or ("WARNINGS: 1" if guest.vmid in self._faults.task_warnings else "OK")
        self._at(now + self._duration(guest),
                 lambda at: self._finish_migration(task.upid, guest.vmid, target, restarting, outcome, now, at))

    def _prepare_failure(self, guest: GuestRec, target: str, opts: _MigrationOpts) -> str | None:
        """Checks PVE makes inside the migration task (prepare phase); the message, or None."""
        lock = self._faults.locked.get(guest.vmid) or guest.lock
        if lock:
            return f"{'VM' if guest.kind == 'qemu' else 'CT'} is locked ({lock})"
        if guest.kind == "lxc" and guest.running:
            if opts.online:
                return "lxc live migration is currently not implemented"
            if not opts.restart:
                return "running container can only be migrated in restart mode"
        target_rec = next(n for n in self._nodes if n.name == target)
        if not target_rec.online or target in self._faults.offline_nodes:
            return "Can't connect to destination address using public key"
        if guest.kind == "lxc" and guest.vmid in self._faults.storage_error and not guest.local_disk:
            return f"storage '{SHARED_STORAGE}' is not available on node '{target}'"
        if guest.kind == "qemu" and guest.running and guest.local_disk and not opts.with_local_disks:
            return "can't live migrate attached local disks without with-local-disks option"
        return None

    def _storage_failure(self, guest: GuestRec, target: str) -> str:
        """PVE's phase-1 error for a local volume copy that failed (QemuMigrate/LXC::Migrate wording)."""
        volid = volume_id(guest)
        detail = self._faults.storage_error.get(guest.vmid)
        if not detail:
            ip = next(n.ip for n in self._nodes if n.name == target)
            fmt = "qcow2" if guest.kind == "qemu" else "raw"
            detail = (f"command 'set -o pipefail && pvesm export {volid} {fmt}+size - -with-snapshots 0 | "
                      f"/usr/bin/ssh -e none -o 'BatchMode=yes' -o 'HostKeyAlias={target}' root@{ip} -- pvesm import "
                      f"{volid} {fmt}+size - -with-snapshots 0 -allow-rename 1' failed: exit code 255")
        return f"storage migration for '{volid}' to storage '{LOCAL_STORAGE}' failed - {detail}"

    def _copy_time(self, guest: GuestRec) -> float:
        return guest.disk_used_mib / self.bandwidth_mib_s if guest.local_disk else 0.0

    def _duration(self, guest: GuestRec) -> float:
        copy = self._copy_time(guest)
        if guest.kind == "qemu":
            state = guest.mem_used_mib / self.bandwidth_mib_s if guest.running else 0.0
            return 3.0 + state + copy
        restart = 8.0 if guest.running else 0.0  # shutdown, then start on the target
        return 2.0 + restart + copy

    def _abort(self, upid: str, vmid: int, reason: str, start: float, at: float, logged: bool = False) -> None:
        """A migration that failed before the guest moved: PVE logs why and ends "migration aborted"."""
        lines = [f"ERROR: {reason}"] if logged else []
        lines.append(f"ERROR: migration aborted (duration {_fmt_duration(at - start)}): {reason}")
        self._log(upid, at, *lines, final="migration aborted")
        guest = self._guests[vmid]
        if guest.ha:
            self._set_guest(vmid, hastate=_ha_state(guest))

    def _fail_copy(self, upid: str, vmid: int, error: str, restarting: bool, start: float, at: float) -> None:
        """Phase 1 died copying a local disk: the target's copy is dropped, a stopped CT starts again."""
        guest = self._guests[vmid]
        self._set_guest(vmid, lock=None, target=None, running=guest.running or restarting)
        self._abort(upid, vmid, error, start, at, logged=True)

    def _finish_migration(self, upid: str, vmid: int, target: str, restarting: bool, outcome: str,
                          start: float, at: float) -> None:
        guest = self._guests[vmid]
        warn = outcome.startswith("WARNINGS")
        running = guest.running or restarting
        if outcome != "OK" and not warn:
            self._set_guest(vmid, lock=None, target=None, running=running)
            self._log(upid, at, f"ERROR: {outcome}", final=outcome)
        else:
            started = at if restarting else guest.started_at
            self._set_guest(vmid, node=target, lock=None, target=None, running=running, started_at=started)
            lines = ["WARN: simulated warning (fault injection)"] if warn else []
            if restarting:
                lines.append("start container on target node")
            lines.append(f"migration finished successfully (duration {_fmt_duration(at - start)})")
            self._log(upid, at, *lines, final=outcome)
        guest = self._guests[vmid]
        if guest.ha:
            self._set_guest(vmid, hastate=_ha_state(guest))
            self._schedule_crm(at + HA_PICKUP_S)


# ---------------------------------------------------------------------- pure helpers

def volume_id(guest: GuestRec) -> str:
    """The guest's disk volume: on the node's `local` storage or the shared `ceph-vm` pool."""
    if not guest.local_disk:
        return f"{SHARED_STORAGE}:vm-{guest.vmid}-disk-0"
    fmt = "qcow2" if guest.kind == "qemu" else "raw"
    return f"{LOCAL_STORAGE}:{guest.vmid}/vm-{guest.vmid}-disk-0.{fmt}"


def parse_crs(value: str | Mapping[str, object] | None) -> dict[str, str]:
    """The `crs` property string as PVE validates it: key → text, booleans as "1"/"0"."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        items = [tuple(part.split("=", 1)) for part in str(value).split(",") if part.strip()]
        if any(len(item) != 2 for item in items):
            raise ValueError(f"crs: every part must be key=value: {value!r}")
    out = {key.strip(): _crs_value(key.strip(), raw) for key, raw in items}
    needs = [k for k in out if k.startswith("ha-auto-rebalance-")]
    if needs and "ha-auto-rebalance" not in out:
        raise ValueError(f"crs: {needs} require ha-auto-rebalance")
    return out


def _crs_value(key: str, raw: object) -> str:
    kind = CRS_FORMAT.get(key)
    if kind is None:
        raise ValueError(f"crs: unknown key {key!r}; known: {sorted(CRS_FORMAT)}")
    text = str(raw).strip()
    if kind[0] == "boolean":
        if isinstance(raw, bool) or text.lower() in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            return "1" if (raw is True or text.lower() in ("1", "true", "yes", "on")) else "0"
        raise ValueError(f"crs: {key} must be a boolean, not {raw!r}")
    if kind[0] == "enum":
        if text not in kind[1:]:
            raise ValueError(f"crs: {key} must be one of {kind[1:]}, not {raw!r}")
        return text
    number = float(text)
    low, high = float(kind[1]), float(kind[2]) if kind[2] else float("inf")
    if not low <= number <= high:
        raise ValueError(f"crs: {key} must be between {kind[1]} and {kind[2] or 'N'}, not {raw!r}")
    return text


def _last_line(exitstatus: str) -> str:
    """The task log's last line, from which PVE decodes `exitstatus`."""
    if exitstatus == "OK":
        return "TASK OK"
    if exitstatus.startswith("WARNINGS"):
        return f"TASK {exitstatus}"
    return f"TASK ERROR: {exitstatus}"


def _ha_state(guest: GuestRec) -> str:
    return "started" if guest.running else "stopped"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MIGRATE_KEYS = {
    "qemu": {"target", "online", "with-local-disks", "targetstorage", "force", "migration_type",
             "migration_network", "bwlimit", "with-conntrack-state"},
    "lxc": {"target", "restart", "timeout", "online", "target-storage", "bwlimit"},
}


def parse_bool(params: Mapping[str, str], key: str) -> bool:
    value = str(params.get(key, "")).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise param_error(**{key: f"type check ('boolean') failed - got '{params.get(key)}'"})


def _migrate_params(params: Mapping[str, str], kind: str) -> tuple[str, _MigrationOpts]:
    unknown = sorted(set(params) - _MIGRATE_KEYS[kind])
    if unknown:
        raise param_error(**{k: "property is not defined in schema and the schema does not allow additional "
                                 "properties" for k in unknown})
    target = str(params.get("target") or "")
    if not target:
        raise param_error(target="property is missing and it is not optional")
    opts = _MigrationOpts(online=parse_bool(params, "online"))
    if kind == "qemu":
        opts.with_local_disks = parse_bool(params, "with-local-disks")
    else:
        opts.restart = parse_bool(params, "restart")
    return target, opts


def config_path(node: str, vmid: int, kind: str) -> str:
    return f"nodes/{node}/{'qemu-server' if kind == 'qemu' else 'lxc'}/{vmid}.conf"


def _guest_on(snap: Snapshot, node: str, vmid: int, kind: str) -> GuestRec:
    guest = snap.guests.get(int(vmid))
    if guest is None or guest.node != node or guest.kind != kind:
        raise PveError(500, f"Configuration file '{config_path(node, vmid, kind)}' does not exist")
    return guest


def _check_before_fork(snap: Snapshot, guest: GuestRec, opts: _MigrationOpts, target: str) -> None:
    if guest.kind == "qemu":
        lock = snap.lock_of(guest)
        if lock:
            raise PveError(500, f"VM is locked ({lock})")
        if guest.running and not opts.online:
            raise PveError(500, "can't migrate running VM without --online")
        if guest.vmid in snap.faults.storage_error and not guest.local_disk:
            # qemu-server checks shared storage availability on the target before forking.
            raise PveError(500, f"storage '{SHARED_STORAGE}' is not available on node '{target}'")
    elif guest.running and not (opts.online or opts.restart):
        raise PveError(500, "can't migrate running container without --online or --restart")


def _seed_nodes(c: Cluster, now: float) -> tuple[NodeRec, ...]:
    running = c.guest_running.astype(bool)
    local = c.guest_local_disk.astype(bool)
    out = []
    for n, name in enumerate(c.node_names):
        on = c.guest_node == n

        def guests_sum(values: np.ndarray, mask: np.ndarray) -> int:
            return int(values[on & mask].sum())

        out.append(NodeRec(
            name=name, nodeid=n + 1, ip=f"10.10.{n // 250}.{n % 250 + 1}",
            cpu_milli=int(c.node_cpu_milli[n]), mem_mib=int(c.node_mem_mib[n]), disk_mib=int(c.node_disk_mib[n]),
            base_cpu_milli=max(0, int(c.node_cpu_used_milli[n]) - guests_sum(c.guest_cpu_used_milli, running)),
            base_mem_mib=max(0, int(c.node_mem_used_mib[n]) - guests_sum(c.guest_mem_used_mib, running)),
            base_disk_mib=max(0, int(c.node_disk_used_mib[n]) - guests_sum(c.guest_disk_used_mib, local)),
            online=bool(c.node_online[n]), maintenance=bool(c.node_maintenance[n]),
            boot_time=now - BOOT_AGE_S - 3600.0 * n,
        ))
    return tuple(out)


def _seed_guests(c: Cluster, now: float) -> list[GuestRec]:
    out = []
    for g in range(c.n_guests):
        vmid = int(c.guest_vmid[g])
        running, is_ha = bool(c.guest_running[g]), bool(c.guest_ha[g])
        out.append(GuestRec(
            vmid=vmid, name=c.guest_names[g], kind="lxc" if c.guest_is_ct[g] else "qemu",
            node=c.node_names[int(c.guest_node[g])], running=running,
            cpu_milli=int(c.guest_cpu_milli[g]), cpu_used_milli=int(c.guest_cpu_used_milli[g]),
            mem_mib=int(c.guest_mem_mib[g]), mem_used_mib=int(c.guest_mem_used_mib[g]),
            disk_mib=int(c.guest_disk_mib[g]), disk_used_mib=int(c.guest_disk_used_mib[g]),
            local_disk=bool(c.guest_local_disk[g]), tags=tuple(c.guest_tags[g]), pool=c.guest_pool[g],
            ha=is_ha, lock=c.guest_lock[g], template=bool(c.guest_template[g]),
            started_at=now - 3 * 86400.0 - (vmid % 97) * 600.0,
            hastate=("started" if running else "stopped") if is_ha else None,
        ))
    return out
