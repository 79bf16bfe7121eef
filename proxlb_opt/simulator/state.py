"""Cluster state of the PVE simulator: nodes, guests, tasks, faults and a virtual clock.

Owns everything that changes while the simulator runs, and PVE's migrate semantics (the checks
made before a task is forked, the checks made inside the task, `lock: migrate`, the HA detour
through a `hamigrate` task, UPIDs, task logs and exit statuses). It knows nothing about HTTP.

One lock guards all of it. Time-driven changes (a migration ending) are applied lazily, whenever
the state is read or written, so no background thread is needed and the manual `advance()` and the
scaled wall clock behave the same. Readers get an immutable `Snapshot`; records are frozen and
replaced on change, so a snapshot is a cheap shallow copy that API views can use without the lock.

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

MIB = 1024 * 1024
TASK_ERROR_DEFAULT = "migration problems"
BOOT_AGE_S = 12 * 86400.0  # nodes have been up this long when the simulator starts
HA_REQUEST_S = 1.0  # a `hamigrate` task only queues a CRM command
HA_PICKUP_S = 4.0  # the CRM/LRM round until the real migration task starts
PREPARE_FAIL_S = 1.0  # a migration that dies in its prepare phase


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


def _frozen_map(value: Mapping | Iterable | None, default: str) -> Mapping[int, str]:
    if not value:
        return MappingProxyType({})
    if isinstance(value, Mapping):
        return MappingProxyType({int(k): str(v) for k, v in value.items()})
    return MappingProxyType({int(k): default for k in value})


@dataclass(frozen=True)
class Faults:
    """Injected failures; set at start or replaced at run time (`SimState.set_faults`).

    Task faults are decided when a migration task starts. Transport faults (delay, drops) apply to
    every HTTP request; the drop counter and the random generator restart when faults are set.
    """

    locked: Mapping[int, str] = field(default_factory=dict)  # vmid → config lock, e.g. "backup"
    offline_nodes: frozenset[str] = frozenset()  # 595 when routed to, `offline` in lists
    task_error: Mapping[int, str] = field(default_factory=dict)  # vmid → exitstatus; guest stays
    task_hang: frozenset[int] = frozenset()  # vmids whose migration task never ends
    task_warnings: frozenset[int] = frozenset()  # vmids whose task ends "WARNINGS: 1" (guest moves)
    no_quorum: bool = False  # writes fail with "cluster not ready - no quorum?"
    delay: float = 0.0  # real seconds before every answer
    drop_first: int = 0  # close the connection without answering for the next N requests
    drop_probability: float = 0.0  # ... or with this probability (seeded)
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept sets, lists and dicts from callers; store immutable, normalised values.
        object.__setattr__(self, "locked", _frozen_map(self.locked, "backup"))
        object.__setattr__(self, "task_error", _frozen_map(self.task_error, TASK_ERROR_DEFAULT))
        object.__setattr__(self, "offline_nodes", frozenset(map(str, self.offline_nodes)))
        object.__setattr__(self, "task_hang", frozenset(map(int, self.task_hang)))
        object.__setattr__(self, "task_warnings", frozenset(map(int, self.task_warnings)))


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
    online: bool  # as in the model; faults can take it offline too
    maintenance: bool
    boot_time: float


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

    def node(self, name: str) -> NodeRec | None:
        return self.by_name.get(name)

    def is_online(self, name: str) -> bool:
        rec = self.node(name)
        return rec is not None and rec.online and name not in self.faults.offline_nodes

    @property
    def quorate(self) -> bool:
        online = sum(1 for n in self.nodes if self.is_online(n.name))
        return not self.faults.no_quorum and online * 2 > len(self.nodes)

    def lock_of(self, guest: GuestRec) -> str | None:
        return self.faults.locked.get(guest.vmid) or guest.lock

    def guests_on(self, node: str) -> list[GuestRec]:
        return [g for g in self.guests.values() if g.node == node]

    def sid(self, guest: GuestRec) -> str:
        return f"{'ct' if guest.kind == 'lxc' else 'vm'}:{guest.vmid}"


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
    """The mutable cluster behind the simulated API; every public method is thread-safe."""

    def __init__(self, cluster: Cluster, time_scale: float = 1.0, faults: Faults | None = None,
                 bandwidth_mib_s: float = 1024.0, start_time: float | None = None):
        self._lock = threading.RLock()
        self._seed = cluster
        self._clock = VirtualClock(time_scale, start_time)
        self.bandwidth_mib_s = float(bandwidth_mib_s)
        now = self._clock.now()
        self._nodes = _seed_nodes(cluster, now)
        self._guests: dict[int, GuestRec] = {g.vmid: g for g in _seed_guests(cluster, now)}
        self._tasks: dict[str, TaskRec] = {}
        self._events: list[tuple[float, int, Callable[[float], None]]] = []  # heap: (time, seq, fn)
        self._seq = itertools.count()
        self._pid = itertools.count(0x1A2B0, 7)
        self._version = 0
        self._cached: tuple[int, Snapshot] | None = None
        self._faults = Faults()
        self._drops_left = 0
        self._rng = random.Random(0)
        self.set_faults(faults or Faults())

    # ------------------------------------------------------------------ clock and faults

    def now(self) -> float:
        with self._lock:
            return self._clock.now()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward, finishing every task that ends meanwhile."""
        with self._lock:
            self._clock.advance(seconds)
            self._tick()

    @property
    def time_scale(self) -> float:
        return self._clock.time_scale

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._drops_left = max(0, int(faults.drop_first))
            self._rng = random.Random(faults.seed)
            self._bump()

    def should_drop(self) -> bool:
        """Transport fault: whether to close the connection instead of answering this request."""
        with self._lock:
            if self._drops_left > 0:
                self._drops_left -= 1
                return True
            p = self._faults.drop_probability
            return p > 0 and self._rng.random() < p

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
            _check_before_fork(snap, guest, opts)
            now = snap.now
            if guest.ha:
                return self._start_hamigrate(guest, target, opts, user, now)
            return self._start_migration(guest, target, opts, user, now)

    # ------------------------------------------------------------------ internals (lock held)

    def _bump(self) -> None:
        self._version += 1

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
            faults=self._faults, ha_rules=self._seed.ha_rules,
            by_name=MappingProxyType({n.name: n for n in self._nodes}),
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

    def _start_hamigrate(self, guest: GuestRec, target: str, opts: _MigrationOpts, user: str, now: float) -> str:
        label = "VM" if guest.kind == "qemu" else "CT"
        task = self._new_task(guest.node, "hamigrate", guest.vmid, user, now,
                              f"requesting HA migration for {label} {guest.vmid} to node {target}")
        self._set_guest(guest.vmid, hastate="migrate")
        self._at(now + HA_REQUEST_S, lambda at: self._finish_hamigrate(task.upid, guest.vmid, target, opts, at))
        return task.upid

    def _finish_hamigrate(self, upid: str, vmid: int, target: str, opts: _MigrationOpts, at: float) -> None:
        self._log(upid, at, final="OK", stamp=False)
        self._at(at + HA_PICKUP_S, lambda start: self._ha_lrm_migrate(vmid, target, opts, start))

    def _ha_lrm_migrate(self, vmid: int, target: str, opts: _MigrationOpts, at: float) -> None:
        guest = self._guests[vmid]
        if guest.node == target or guest.target is not None:
            self._set_guest(vmid, hastate=_ha_state(guest))
            return
        # The LRM migrates as root@pam: VMs live if running, containers in restart mode.
        lrm_opts = dataclasses.replace(opts, online=guest.running and guest.kind == "qemu",
                                       restart=guest.running and guest.kind == "lxc")
        self._start_migration(guest, target, lrm_opts, "root@pam", at)

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
        if guest.kind == "qemu" and guest.running and guest.local_disk and not opts.with_local_disks:
            return "can't live migrate attached local disks without with-local-disks option"
        return None

    def _duration(self, guest: GuestRec) -> float:
        copy = guest.disk_used_mib / self.bandwidth_mib_s if guest.local_disk else 0.0
        if guest.kind == "qemu":
            state = guest.mem_used_mib / self.bandwidth_mib_s if guest.running else 0.0
            return 3.0 + state + copy
        restart = 8.0 if guest.running else 0.0  # shutdown, then start on the target
        return 2.0 + restart + copy

    def _abort(self, upid: str, vmid: int, reason: str, start: float, at: float) -> None:
        self._log(upid, at, f"ERROR: migration aborted (duration {_fmt_duration(at - start)}): {reason}",
                  final="migration aborted")
        guest = self._guests[vmid]
        if guest.ha:
            self._set_guest(vmid, hastate=_ha_state(guest))

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


# ---------------------------------------------------------------------- pure helpers

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


def _check_before_fork(snap: Snapshot, guest: GuestRec, opts: _MigrationOpts) -> None:
    if guest.kind == "qemu":
        lock = snap.lock_of(guest)
        if lock:
            raise PveError(500, f"VM is locked ({lock})")
        if guest.running and not opts.online:
            raise PveError(500, "can't migrate running VM without --online")
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
        running, ha = bool(c.guest_running[g]), bool(c.guest_ha[g])
        out.append(GuestRec(
            vmid=vmid, name=c.guest_names[g], kind="lxc" if c.guest_is_ct[g] else "qemu",
            node=c.node_names[int(c.guest_node[g])], running=running,
            cpu_milli=int(c.guest_cpu_milli[g]), cpu_used_milli=int(c.guest_cpu_used_milli[g]),
            mem_mib=int(c.guest_mem_mib[g]), mem_used_mib=int(c.guest_mem_used_mib[g]),
            disk_mib=int(c.guest_disk_mib[g]), disk_used_mib=int(c.guest_disk_used_mib[g]),
            local_disk=bool(c.guest_local_disk[g]), tags=tuple(c.guest_tags[g]), pool=c.guest_pool[g],
            ha=ha, lock=c.guest_lock[g], template=bool(c.guest_template[g]),
            started_at=now - 3 * 86400.0 - (vmid % 97) * 600.0,
            hastate=("started" if running else "stopped") if ha else None,
        ))
    return out
