"""Executing a plan on the live cluster, wave by wave, re-checking live state before every step.

Before each migration the live cluster is read again (one `/cluster/resources` request plus the
HA requests; local-disk facts are reused from the first read) and the step is re-validated
(`recheck`): the guest still exists and sits on the source, is not locked, and the feasibility
module (the one every planner uses) still allows it on the target: online, not in maintenance,
every hard limit (used memory, local disk and, without overprovisioning, assigned memory, which
stopped guests count for too, and vCPUs) with the target's live load, pins and anti-affinity.
Migrations still under way are held on their targets as PVE holds them: this run's own, and any
other guest whose config carries `lock: migrate` (another run, PVE's HA manager, an admin). For
those the target is read from the task's log ("starting migration of VM 100 to node 'pve2'");
when it cannot be read the guest is assumed to be heading for the very node being checked, the
conservative choice, so two uncoordinated runs cannot fill one node from both sides (what is left
is the moment between one run's read and its migrate call; the single-instance lock closes it on
one machine). A step that no longer applies is *skipped* (a guest already on its target is
skipped as done-by-someone-else), never *failed*.

A step's outcome comes from the cluster, not from one HTTP answer. Starting: a migrate call whose answer
was lost, or that a proxy answered 5xx, is never sent again: the guest's tasks on the source (listed
just before the call) and its location say whether it started; without a trace it is followed for a
while (`pickup_grace`) and is *failed* only if the guest stays on its source. Only a call that surely
never left (no host could be connected to) is sent once more. Waiting: the task is read by its UPID (an
HA guest's short `hamigrate` task is followed to the real one), and where the task ended, or cannot be
read, the guest's location decides: *done* means the guest is on its target, *failed* means it is not
(the task failed, or PVE refused the call). Read errors are retried until `max_job_validation`; an
outcome still open then is *unknown*: "still running in PVE" with the UPID, never failed. The steps of a
wave start together; the next wave starts when every task of this one has ended. A failed step stops the
later steps that depend on it (the same guest's next hop, moves into the node it did not free); an
unknown one does not (the live re-check sees what it holds).

Every way out ends with the report (`ApplyReport`): a cluster that cannot be read any more, a
refused login, an internal error and a signal all stop the starting of migrations, let the running
ones be settled, and are reported with the steps. When a step did not run as planned, the live
cluster is read once more and the rules it breaks are named (affinity split, anti-affinity over its
cap, a node over a hard limit's capacity, a guest off its pins), marked new when the run's first
read did not break them, with the moves that would repair them (repair.py).

Exit codes (`ApplyReport.exit_code`): 0 every step done or skipped; 6 a step failed; 7 no failure
but an outcome unknown (still running in PVE); 3 the cluster could not be read or the login was
refused mid-run; 70 an internal error; 130/143 interrupted by SIGINT/SIGTERM (`Interrupt`: start
nothing new, wait up to `optimizer.interrupt_wait` for the running migrations; a second signal
stops waiting and reports what still runs in PVE).

A plan file is only applied to the cluster it was made for (`check_plan_target`: the cluster's name
and node set). Waves are numbered from 1, as plan files write them; files from before that (the
same format version, waves from 0) are read with their waves shifted by one.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import signal as signals
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np

from proxlb_opt.adapters.proxmox import (AnswerLost, ApiCallError, AuthError, ProxmoxClient, collect_model,
                                         guest_resource, guest_tasks, pve_version, start_migration, task_log,
                                         task_status)
from proxlb_opt.cluster import Cluster, cluster_from_dict, without_nodes
from proxlb_opt.config import Settings
from proxlb_opt.errors import (ApplyError, CollectionError, InputError, InternalError, OutcomeUnknownError,
                               ProxlbOptError, StoppedBySignal)
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.limits import MAX_SECONDS, MAX_VMID, MAX_WAVE, is_decimal
from proxlb_opt.problem import build_problem

log = logging.getLogger("proxlb_opt.apply")

DONE, SKIPPED, FAILED, UNKNOWN = "done", "skipped", "failed", "unknown"
PENDING, RUNNING = "pending", "running"
MIGRATE_TASKS = ("qmigrate", "vzmigrate", "hamigrate")
#: How long the HA manager may take to turn an ended `hamigrate` request into a migration (PVE's CRM and LRM
#: rounds are 10 s each) before a guest that never left its source counts as not migrated.
HA_PICKUP_GRACE_S = 30.0
#: Attempts of one migrate call: the first, and one more only when the first was surely never sent.
MIGRATE_ATTEMPTS = 2
_TARGET_IN_LOG = re.compile(r"to node '?([A-Za-z0-9][A-Za-z0-9.\-]*)'?")


@dataclass(frozen=True)
class PlannedStep:
    """One migrate call read from a plan (JSON `migrations[]` entry)."""

    vmid: int
    name: str
    type: str
    source: str
    target: str
    wave: int  # from 1, as in the plan file and on screen
    hop: int = 0
    reason: str = "balance"
    predicted_s: float = 0.0  # the plan's predicted duration (for the ETA)

    @classmethod
    def from_json(cls, entry: dict, where: str) -> "PlannedStep":
        try:
            return cls(vmid=int(entry["vmid"]), name=str(entry.get("name", entry["vmid"])),
                       type=str(entry.get("type", "vm")), source=str(entry["from"]), target=str(entry["to"]),
                       wave=int(entry["wave"]), hop=int(entry.get("hop", 0) or 0),
                       reason=str(entry.get("reason", "balance")), predicted_s=float(entry.get("seconds") or 0.0))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"{where}: migration entry needs vmid, from, to and wave ({exc.__class__.__name__})") from None


@dataclass
class StepResult:
    step: PlannedStep
    state: str = PENDING  # pending | running, then done | skipped | failed | unknown
    message: str = ""
    upid: str | None = None
    seconds: float = 0.0
    # While running: when it started (our clock); the task's end as PVE reported it ((ok, exitstatus) or None);
    # since when it is followed without a task of its own (an HA request handed to the HA manager, or a task
    # that could not be found), and the guest's tasks listed before the migrate call; the last read error.
    started_at: float = 0.0
    task_end: tuple[bool, str] | None = None
    follow_since: float | None = None
    known_before: frozenset[str] = frozenset()
    read_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        s = self.step
        return {"vmid": s.vmid, "name": s.name, "type": s.type, "from": s.source, "to": s.target, "wave": s.wave,
                "hop": s.hop, "reason": s.reason, "state": self.state, "message": self.message, "upid": self.upid,
                "seconds": round(self.seconds, 1)}


@dataclass(frozen=True)
class BrokenRule:
    """A rule the live cluster breaks after the run: its family (checker's names), what, and whether the
    run's first read already broke it."""

    rule: str
    what: str
    new: bool

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "what": self.what, "new": self.new}


@dataclass
class ApplyReport:
    results: list[StepResult] = field(default_factory=list)
    #: Why the run stopped starting migrations before the plan's end (None: it did not).
    stopped: str | None = None
    #: The error that stopped it (collection, login, internal), reported after the steps.
    error: ProxlbOptError | None = None
    signal: int | None = None  # the signal that interrupted it
    broken: list[BrokenRule] = field(default_factory=list)
    repair: list[dict[str, Any]] = field(default_factory=list)  # moves that would repair `broken`
    rules_note: str = ""  # why the rules could not be checked after the run, if they could not

    def count(self, state: str) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def ok(self) -> bool:
        return self.count(FAILED) == 0

    @property
    def still_running(self) -> list[StepResult]:
        return [r for r in self.results if r.state == UNKNOWN]

    def exit_code(self) -> int:
        """The process exit code: a signal first, then an error that stopped the run, a failure, an unknown."""
        if self.signal is not None:
            return 128 + self.signal
        if self.error is not None:
            return self.error.exit_code
        if self.count(FAILED):
            return ApplyError.exit_code
        if self.count(UNKNOWN):
            return OutcomeUnknownError.exit_code
        return 0

    def as_error(self) -> ProxlbOptError | None:
        """The error the CLI exits with after printing the report (None: exit 0)."""
        code = self.exit_code()
        if not code:
            return None
        counts = f"done {self.count(DONE)}, skipped {self.count(SKIPPED)}, failed {self.count(FAILED)}, " \
                 f"unknown {self.count(UNKNOWN)}"
        if self.signal is not None:
            return StoppedBySignal(self.signal, f"stopped by {signal_name(self.signal)} ({counts}); see the report above")
        if self.error is not None:
            error = self.error.__class__(f"{self.error} ({counts}; see the report above)") \
                if not isinstance(self.error, InternalError) else InternalError(f"{self.error} ({counts})")
            return error
        if self.count(FAILED):
            return ApplyError(f"{self.count(FAILED)} migration(s) failed ({counts}); see the report above")
        return OutcomeUnknownError(f"{self.count(UNKNOWN)} migration(s) of unknown outcome, possibly still running "
                                   f"in PVE ({counts}); see the report above")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "done": self.count(DONE), "skipped": self.count(SKIPPED), "failed": self.count(FAILED),
            "unknown": self.count(UNKNOWN), "steps": [r.as_dict() for r in self.results],
            "still_running": [{"vmid": r.step.vmid, "name": r.step.name, "upid": r.upid} for r in self.still_running],
            "broken_rules": [b.as_dict() for b in self.broken], "repair": list(self.repair),
            "exit_code": self.exit_code(),
        }
        if self.stopped:
            out["stopped"] = self.stopped
        if self.error is not None:
            out["error"] = str(self.error)
        if self.signal is not None:
            out["signal"] = signal_name(self.signal)
        if self.rules_note:
            out["rules_note"] = self.rules_note
        return out


def signal_name(signum: int) -> str:
    try:
        return signals.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupt:
    """What signals ask of a run, set from the I/O shell's signal handlers (cli.py, service.py).

    The first signal sets `stop`: no migration starts any more, the running ones are waited for up to
    `optimizer.interrupt_wait` seconds. A second one sets `abandon`: stop waiting, report what still
    runs in PVE. `signal()` only sets events; handlers call it from a helper thread (`from_handler`)
    because an Event's lock may be held by the very thread a handler interrupts.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abandon = threading.Event()
        self.signum: int | None = None
        self._lock = threading.Lock()

    def signal(self, signum: int) -> None:
        with self._lock:
            if self.stop.is_set():
                self.abandon.set()
                return
            self.signum = int(signum)
            self.stop.set()

    def from_handler(self, signum: int, frame: Any = None) -> None:
        """A signal handler: hands the signal to `signal()` on a short-lived thread."""
        threading.Thread(target=self.signal, args=(signum,), name="proxlb-opt-signal", daemon=True).start()

    @property
    def name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else "interrupt"


def steps_from_plan(plan: dict, where: str = "plan") -> list[PlannedStep]:
    if not isinstance(plan, dict) or plan.get("version") not in (1, 2) or not isinstance(plan.get("migrations"), list):
        raise InputError(f"{where}: not a proxlb-opt plan (expected JSON with version 1 or 2 and migrations[])")
    steps = [PlannedStep.from_json(m, f"{where}: migrations[{i}]") for i, m in enumerate(plan["migrations"])]
    if any(s.wave < 0 for s in steps):
        raise InputError(f"{where}: migrations[].wave must not be negative")
    if any(not 0 < s.vmid <= MAX_VMID or s.wave > MAX_WAVE or not 0 <= s.hop <= MAX_WAVE
           or not 0 <= s.predicted_s <= MAX_SECONDS for s in steps):
        raise InputError(f"{where}: migrations[]: vmid, wave, hop or seconds out of range")
    if any(s.wave == 0 for s in steps):
        # Written before waves were numbered from 1 (same format version 1): the order is what counts,
        # so shift to the numbering the plan table and the events use.
        steps = [replace(s, wave=s.wave + 1) for s in steps]
    return sorted(steps, key=lambda s: (s.wave, s.hop))


def check_plan_target(plan: dict, cluster_name: str, node_names: Iterable[str], ignore_nodes: Iterable[str],
                      where: str = "plan") -> None:
    """Refuse (InputError) a plan made for another cluster: its name and its node set must be the live ones.

    The plan lists the nodes it planned over (after `ignore_nodes`); so does the comparison.
    """
    planned = plan.get("cluster") if isinstance(plan, dict) else None
    if not isinstance(planned, str):
        raise InputError(f"{where}: names no cluster; make the plan with `proxlb-opt plan --json`")
    if planned != cluster_name:
        raise InputError(f"{where}: made for cluster {planned!r}, but the API answers for cluster {cluster_name!r}; "
                         f"refusing to apply it (make a new plan for this cluster)")
    entries = plan.get("nodes")
    if not isinstance(entries, list):
        return
    planned_nodes = {str(e.get("name")) for e in entries if isinstance(e, dict)}
    live = set(node_names) - set(ignore_nodes)
    if planned_nodes != live:
        differences = []
        if live - planned_nodes:
            differences.append(f"not in the plan: {', '.join(sorted(live - planned_nodes))}")
        if planned_nodes - live:
            differences.append(f"not in the cluster: {', '.join(sorted(planned_nodes - live))}")
        raise InputError(f"{where}: made for other nodes of cluster {planned!r} ({'; '.join(differences)}); "
                         f"refusing to apply it (make a new plan)")


class LiveState:
    """Fresh reads of the live cluster for re-checks (local-disk facts reused from the first read)."""

    def __init__(self, client: ProxmoxClient, settings: Settings):
        self.client, self.settings = client, settings
        first = collect_model(client, read_configs=settings.read_guest_configs)
        self._local = {g["vmid"]: bool(g.get("local_disk")) for g in first["guests"]}
        self.cluster = self.first = self._build(first)
        self._targets: dict[str, str | None] = {}  # UPID → target read from its log

    def refresh(self) -> Cluster:
        model = collect_model(self.client, read_configs=False, local_disk_hint=lambda vmid: self._local.get(vmid))
        self.cluster = self._build(model)
        return self.cluster

    def _build(self, model: dict) -> Cluster:
        return without_nodes(cluster_from_dict(model, source="proxmox-api"), self.settings.ignore_nodes)

    def migrating(self, cluster: Cluster, known: Iterable[int]) -> dict[int, str | None]:
        """vmid → target of every guest under `lock: migrate` that is not in `known` (this run's own): the
        target named in its running migration task's log, None when that cannot be read."""
        out: dict[int, str | None] = {}
        skip = set(known)
        for g in range(cluster.n_guests):
            vmid = int(cluster.guest_vmid[g])
            if cluster.guest_lock[g] == "migrate" and vmid not in skip:
                out[vmid] = self._target_of(cluster.node_names[int(cluster.guest_node[g])], vmid)
        return out

    def _target_of(self, node: str, vmid: int) -> str | None:
        try:
            tasks = guest_tasks(self.client, node, vmid, since=0, source="active", strict=True)
        except (ApiCallError, CollectionError) as exc:
            log.debug("tasks of %s on %s unreadable (%s): its migration target is unknown", vmid, node, exc)
            return None
        for task in tasks:
            upid = str(task.get("upid") or "")
            if task.get("type") not in MIGRATE_TASKS or not upid:
                continue
            if upid not in self._targets:
                try:
                    lines = task_log(self.client, upid, limit=5)
                except (ApiCallError, CollectionError):
                    return None  # not remembered: asked again at the next re-check
                found = next((m.group(1) for m in (_TARGET_IN_LOG.search(line) for line in lines) if m), None)
                self._targets[upid] = found
            if self._targets[upid] is not None:
                return self._targets[upid]
        return None


def recheck(cluster: Cluster, settings: Settings, step: PlannedStep,
            running: dict[int, str | None] | None = None) -> tuple[str, str] | None:
    """None when the step may run now; otherwise (skipped, reason).

    The live cluster is judged with the feasibility module, every hard limit and rule included, with the
    migrations still running (`running`: vmid → target node) held on their targets as PVE holds them. A
    target of None (a migration whose target is not known) is held on this step's target: the worst case.
    """
    g = cluster.guest_index(step.vmid)
    if g is None:
        return SKIPPED, "guest no longer exists"
    node = cluster.node_names[int(cluster.guest_node[g])]
    if node == step.target:
        return SKIPPED, f"already on {step.target}"
    if node != step.source:
        return SKIPPED, f"now on {node}, not on {step.source}"
    if cluster.guest_lock[g]:
        return SKIPPED, f"locked ({cluster.guest_lock[g]})"
    if not cluster.node_online[int(cluster.guest_node[g])]:
        return SKIPPED, f"its node {node} is offline"
    t = cluster.node_index(step.target)
    if t is None:
        return SKIPPED, f"target {step.target} is not in the cluster"
    cluster = _without_reported_holds(cluster, running or {})
    try:
        # Without the domain check: a guest pinned to a node that went offline must not stop the whole run.
        problem = build_problem(cluster, settings, check_domains=False)
    except ProxlbOptError as exc:
        return SKIPPED, f"the live cluster's rules cannot be judged: {exc}"
    g, t = problem.cluster.guest_index(step.vmid), problem.cluster.node_index(step.target)
    if g is None or t is None:
        return SKIPPED, f"{step.source} or {step.target} is ignored (proxmox_cluster.ignore_nodes)"
    if not problem.rules.movable[g]:
        return SKIPPED, "the guest may no longer be moved (ignored, template, or type not balanced)"
    occ = Occupancy(problem)
    for vmid, target in sorted((running or {}).items()):
        other = problem.cluster.guest_index(vmid)
        n = t if target is None else problem.cluster.node_index(target)
        if other is not None and other != g and n is not None and occ.placement[other] != n \
                and other not in occ.running:
            occ.start(other, n)
    why = occ.why_not([g], t, keep_groups=False)
    return None if why is None else (SKIPPED, f"no longer allowed: {why}")


def _without_reported_holds(cluster: Cluster, running: dict[int, str | None]) -> Cluster:
    """`cluster` with the hold of each migration under way to a known target taken out of that target's
    reported used memory and local disk: the node's reported usage already carries (some of) it, and recheck
    adds the whole hold again (`Occupancy.start`). The host's overhead is clamped at 0 (loads.py), so a node's
    load is never judged below what it reports, nor a hold counted twice."""
    mem = np.array(cluster.node_mem_used_mib, dtype=np.int64)
    disk = np.array(cluster.node_disk_used_mib, dtype=np.int64)
    for vmid, target in running.items():
        g, n = cluster.guest_index(vmid), cluster.node_index(target) if target is not None else None
        if g is None or n is None or int(cluster.guest_node[g]) == n:
            continue
        if cluster.guest_running[g]:
            mem[n] -= int(cluster.guest_mem_used_mib[g])
        if cluster.guest_local_disk[g]:
            disk[n] -= int(cluster.guest_disk_used_mib[g])
    mem.setflags(write=False)
    disk.setflags(write=False)
    return dataclasses.replace(cluster, node_mem_used_mib=mem, node_disk_used_mib=disk)


def broken_rules(cluster: Cluster, settings: Settings, before: Cluster | None = None) -> list[BrokenRule]:
    """The rules `cluster` breaks, each marked new unless `before` broke it too (same names).

    Capacity is judged against the configured capacity of each hard limit: a plan's limit is never below
    the load it starts from, so only the capacity says that a node is over.
    """
    now = _rule_set(cluster, settings)
    earlier = _rule_set(before, settings) if before is not None else set(now)
    return [BrokenRule(rule, what, (rule, what) not in earlier) for rule, what in sorted(now)]


def _rule_set(cluster: Cluster, settings: Settings) -> set[tuple[str, str]]:
    problem = build_problem(cluster, settings, check_domains=False)
    occ = Occupancy(problem)
    found = {(rule, what) for rule, what in occ.broken_rules() if rule not in ("capacity", "budget")}
    hard = problem.hard
    c = problem.cluster
    for n, k in zip(*np.nonzero(occ.hard > hard.capacity)):
        found.add(("capacity", f"{c.node_names[n]}: {hard.names[k]} {int(occ.hard[n, k])} {hard.units[k]} over "
                               f"{int(hard.capacity[n, k])}"))
    return found


def repair_moves(cluster: Cluster, settings: Settings) -> list[dict[str, Any]]:
    """The moves of the repair heuristic (repair.py) that make every rule hold again; [] when it finds none."""
    from proxlb_opt.repair import repair_heuristic

    problem = build_problem(cluster, settings, check_domains=False)
    result = repair_heuristic(problem)
    if result is None:
        return []
    c = problem.cluster
    return [{"vmid": int(c.guest_vmid[g]), "name": c.guest_names[g], "from": c.node_names[int(c.guest_node[g])],
             "to": c.node_names[int(result.placement[g])]}
            for g in np.flatnonzero(result.placement != problem.current)]


class _Halt(Exception):
    """The run cannot go on starting migrations (the cluster cannot be read, the login was refused)."""

    def __init__(self, error: ProxlbOptError):
        super().__init__(str(error))
        self.error = error


@dataclass
class Executor:
    """Runs steps wave by wave; `emit` receives one event dict per state change (progress, JSON lines).

    `sleep` (tests) replaces the waits between polls; by default they wait on the interrupt's events, so a
    signal is answered at once. `interrupt` is set by the signal handlers of the CLI or the service.
    """

    client: ProxmoxClient
    settings: Settings
    emit: Callable[[dict[str, Any]], None] = lambda event: None
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] = time.monotonic
    interrupt: Interrupt | None = None
    #: How long a migration without a task of its own may take to show one (HA_PICKUP_GRACE_S; tests shorten it).
    pickup_grace: float = HA_PICKUP_GRACE_S
    _is_pve9: bool | None = None

    def run(self, steps: list[PlannedStep]) -> ApplyReport:
        report = ApplyReport(results=[StepResult(step) for step in steps])
        self._report = report
        self._stop_at: float | None = None
        live: LiveState | None = None
        try:
            live = self._retry("read the cluster", lambda: LiveState(self.client, self.settings), interruptible=True)
            for wave in sorted({s.wave for s in steps}):
                if live is None or self._stopping(report):
                    break
                started: list[StepResult] = []
                try:
                    for result in report.results:
                        if result.step.wave != wave or result.state != PENDING:
                            continue
                        if self._stopping(report):
                            break
                        self._start(live, result, report)
                        if result.state == RUNNING:
                            started.append(result)
                except _Halt as halt:
                    report.error, report.stopped = halt.error, str(halt.error)
                except Exception as exc:  # noqa: BLE001 - our bug: the wave's migrations are still waited for
                    self._internal(report, exc)
                self._wait(started)  # whatever stopped the starts, what runs is settled
                for result in started:
                    if result.state == FAILED:
                        self._skip_dependents(report, result)
        except _Halt as halt:
            report.error, report.stopped = halt.error, str(halt.error)
        except Exception as exc:  # noqa: BLE001 - our bug: still settle what runs and report
            self._internal(report, exc)
        finally:
            self._settle(report)
        if self.interrupt is not None and self.interrupt.stop.is_set():
            report.signal = self.interrupt.signum
        self._check_rules(report, live)
        return report

    def _internal(self, report: ApplyReport, exc: Exception) -> None:
        log.debug("internal error during apply", exc_info=True)
        if report.error is None:
            report.error = InternalError(f"internal error during apply (please report): "
                                         f"{exc.__class__.__name__}: {exc}")
            report.stopped = str(report.error)

    # ------------------------------------------------------------------ starting

    def _stopping(self, report: ApplyReport) -> bool:
        if self.interrupt is not None and self.interrupt.stop.is_set():
            self._noticed(report)
            return True
        return report.stopped is not None

    def _noticed(self, report: ApplyReport) -> None:
        """The first time this run sees the stop event: say so at once (with what it now waits for) and note
        when, for `interrupt_wait`."""
        if self._stop_at is not None:
            return
        self._stop_at = self.clock()
        if report.stopped is None:
            report.stopped = f"{self.interrupt.name}: no further migration was started"
        running = [r for r in report.results if r.state == RUNNING]
        self.emit({"event": "interrupt", "signal": self.interrupt.name, "running": len(running),
                   "wait": self.settings.interrupt_wait, "upids": [r.upid for r in running if r.upid]})

    def _start(self, live: LiveState, result: StepResult, report: ApplyReport) -> None:
        step = result.step
        cluster = self._retry("re-read the cluster", live.refresh, interruptible=True)
        if cluster is None:
            return  # a signal came while the cluster could not be read: the step stays unstarted
        own = {r.step.vmid: r.step.target for r in report.results if r.state in (RUNNING, UNKNOWN)}
        holds: dict[int, str | None] = {**live.migrating(cluster, own), **own}
        verdict = recheck(cluster, self.settings, step, holds)
        if verdict is not None:
            self._finish(result, verdict[0], verdict[1])
            return
        g = cluster.guest_index(step.vmid)
        kind = cluster.guest_type(g)
        running, local = bool(cluster.guest_running[g]), bool(cluster.guest_local_disk[g])
        conntrack = self.settings.with_conntrack_state and running and self._pve9()
        for attempt in range(1, MIGRATE_ATTEMPTS + 1):
            before = self._known_tasks(step)
            try:
                upid = start_migration(self.client, step.vmid, kind, step.source, step.target, running=running,
                                       local_disk=local, with_conntrack_state=conntrack)
            except AuthError as exc:
                self._finish(result, FAILED, f"migrate refused: {exc}")
                raise _Halt(exc) from None
            except ApiCallError as exc:
                if not exc.from_proxy:  # PVE itself answered: refused, nothing started
                    self._finish(result, FAILED, f"migrate refused: {exc}")
                    return
                why = f"{exc} (answered by a proxy; it may have started)"
            except AnswerLost as exc:
                why = str(exc)
            except CollectionError as exc:
                # No host could be reached: the call never left this machine, so sending it again is safe.
                if attempt < MIGRATE_ATTEMPTS and not self._stopping(report):
                    log.warning("migrate %s: %s; the request was not sent: sending it once more", step.vmid, exc)
                    self._pause(self.settings.poll_interval)
                    continue
                self._finish(result, FAILED, f"migrate not sent: {exc} (the guest stays on {step.source})")
                return
            else:
                self._running(result, upid, before)
                return
            # The call may have been carried out: it is never sent again. The guest's tasks (against those listed
            # just before) and its location say whether it started.
            log.warning("migrate %s: %s; looking for its task", step.vmid, why)
            found = self._find_started(step, before)
            if found == "moved":
                self._finish(result, DONE, f"migrated (the answer to migrate was lost: {why}; "
                                           f"the guest is on {step.target})")
            elif found == "unknowable":
                self._finish(result, UNKNOWN, f"the answer to migrate was lost ({why}) and the cluster cannot "
                                              f"be read: the migration may be running in PVE")
            elif found is not None:
                task = found if found.startswith("UPID:") else None
                self._running(result, task, before, note=f"the answer to migrate was lost ({why}); "
                                                         f"{'found its task' if task else 'it is under way'}")
            else:
                # No trace yet: followed like an HA request; a task that appears is read, a guest that stays on
                # its source, unlocked, for `pickup_grace` seconds was not migrated.
                self._running(result, None, before, note=f"the answer to migrate was lost ({why}); no task yet")
            return

    def _running(self, result: StepResult, upid: str | None, before: set[str] | None, note: str = "") -> None:
        result.upid = upid
        result.state = RUNNING
        result.started_at = result.seconds = self.clock()
        result.known_before = frozenset(before or ())
        if upid is None:
            result.follow_since = result.started_at  # no task to read: its tasks and location decide
        result.message = note
        self.emit({"event": "start", **result.as_dict()})

    def _known_tasks(self, step: PlannedStep) -> set[str] | None:
        """The UPIDs of the guest's tasks on its source before a migrate call (None: unreadable)."""
        try:
            return {str(t.get("upid")) for t in guest_tasks(self.client, step.source, step.vmid, since=0,
                                                           strict=True)}
        except (ApiCallError, CollectionError):
            return None

    def _find_started(self, step: PlannedStep, before: set[str] | None) -> str | None:
        """After a migrate call without an answer: a UPID of the migration it started, "locked" (it runs, its
        task is not listed), "moved" (the guest is on its target), None (it did not start) or "unknowable"."""
        deadline = self.clock() + min(60.0, float(self.settings.max_job_validation))
        while True:
            try:
                item = guest_resource(self.client, step.vmid)
                tasks = guest_tasks(self.client, step.source, step.vmid, since=0, strict=True)
                break
            except (ApiCallError, CollectionError) as exc:
                if self.clock() >= deadline or self._abandoned():
                    log.warning("migrate %s: cannot tell whether it started: %s", step.vmid, exc)
                    return "unknowable"
                self._pause(self.settings.poll_interval)
        if item is not None and item.get("node") == step.target and not item.get("lock"):
            return "moved"
        for task in tasks:  # newest first
            upid = str(task.get("upid") or "")
            if task.get("type") in MIGRATE_TASKS and upid and (before is None and "status" not in task
                                                               or before is not None and upid not in before):
                return upid
        if item is not None and (item.get("lock") == "migrate" or item.get("hastate") in ("migrate", "relocate")):
            return "locked"
        return None

    def _pve9(self) -> bool:
        """with-conntrack-state exists from PVE 9 on; asked once per run."""
        if self._is_pve9 is None:
            major = pve_version(self.client).split(".")[0]
            self._is_pve9 = is_decimal(major) and int(major) >= 9
        return self._is_pve9

    # ------------------------------------------------------------------ waiting

    def _wait(self, running: list[StepResult]) -> None:
        """Poll until every step has an outcome, `max_job_validation` has passed, or a signal says stop."""
        deadline = self.clock() + self.settings.max_job_validation
        pending = [r for r in running if r.state == RUNNING]
        while pending:
            for result in list(pending):
                self._poll(result)
                if result.state != RUNNING:
                    pending.remove(result)
            if not pending or self._abandoned():
                break
            now = self.clock()
            if now > deadline or now > self._stop_deadline():
                break
            self._pause(self.settings.poll_interval)
        for result in pending:
            self._unknown(result)

    def _stop_deadline(self) -> float:
        """When waiting ends after a signal: `interrupt_wait` from when this run noticed it (at most one poll
        interval after it came, since pauses wake on it)."""
        if self.interrupt is None or not self.interrupt.stop.is_set():
            return float("inf")
        self._noticed(self._report)
        return self._stop_at + self.settings.interrupt_wait

    def _abandoned(self) -> bool:
        return self.interrupt is not None and self.interrupt.abandon.is_set()

    def _poll(self, result: StepResult) -> None:
        """One look at a running step: its task, and where the task ended or is unreadable, the guest."""
        if result.follow_since is not None:
            self._follow(result)
            return
        if result.task_end is None:
            try:
                status = task_status(self.client, result.upid)
            except (ApiCallError, CollectionError) as exc:
                result.read_error = f"cannot read the task status: {exc}"
                status = None
            if status is not None and status.get("status") == "stopped":
                exit_status = str(status.get("exitstatus", ""))
                ok = exit_status == "OK" or exit_status.startswith("WARNINGS")
                if ":hamigrate:" in result.upid and ok:
                    # An HA guest: the request was queued; the HA manager starts the real migration task.
                    result.follow_since = self.clock()
                    self._follow(result)
                    return
                result.task_end = (ok, exit_status)
            elif status is not None:
                return  # still running: nothing to decide
        self._decide(result)

    def _follow(self, result: StepResult) -> None:
        """A migration without a task of ours to read (handed to the HA manager, or its task not found): the
        migration task that appears for the guest is read from then on; until then its location and HA state
        decide, and a guest that stays on its source, unlocked, for HA_PICKUP_GRACE_S was not migrated."""
        step = result.step
        since = int(result.upid.split(":")[4], 16) - 1 if result.upid and result.upid.count(":") >= 8 else 0
        try:
            tasks = guest_tasks(self.client, step.source, step.vmid, since, strict=True)
        except (ApiCallError, CollectionError) as exc:
            result.read_error = f"cannot read the guest's tasks: {exc}"
            tasks = []
        real = next((str(t["upid"]) for t in tasks if t.get("type") in ("qmigrate", "vzmigrate") and t.get("upid")
                     and str(t["upid"]) not in result.known_before and str(t["upid"]) != result.upid), None)
        if real:
            result.upid, result.follow_since, result.task_end = real, None, None
            self._poll(result)
            return
        item = self._location(result)
        if item is None:
            return
        if item.get("node") == step.target and not item.get("lock"):
            self._finish(result, DONE, "migrated" + (" (by the HA manager)" if item.get("hastate") else ""))
        elif not item:
            self._finish(result, SKIPPED, "the guest no longer exists")
        elif item.get("lock") == "migrate" or item.get("hastate") in ("migrate", "relocate"):
            result.follow_since = self.clock()  # under way: keep waiting
        elif item.get("node") != step.source:
            self._finish(result, SKIPPED, f"now on {item.get('node')}, not on {step.target} (moved by PVE or "
                                          f"someone else)")
        elif self.clock() - result.follow_since > self.pickup_grace:
            self._finish(result, FAILED, f"not migrated: no migration task appeared within {self.pickup_grace:g} s "
                                         f"and the guest is still on {step.source}")

    def _location(self, result: StepResult) -> dict | None:
        """The guest's /cluster/resources item, {} when the cluster has no such guest, None when unreadable."""
        try:
            item = guest_resource(self.client, result.step.vmid)
        except (ApiCallError, CollectionError) as exc:
            result.read_error = f"cannot read where the guest is: {exc}"
            return None
        return {} if item is None else item

    def _decide(self, result: StepResult) -> None:
        """The task ended or cannot be read: the guest's location decides (with the task's word, if any)."""
        step = result.step
        item = self._location(result)
        if item is None:
            return  # unreadable: asked again at the next poll
        node, lock = item.get("node"), item.get("lock")
        end = result.task_end
        if node == step.target and not lock:
            if end is None:
                note = "migrated (the task could not be read; the guest is on its target)"
            elif end[0]:
                note = "migrated (with warnings)" if end[1].startswith("WARNINGS") else "migrated"
            else:
                note = f"migrated (the task reported {end[1]!r}, but the guest is on its target)"
            self._finish(result, DONE, note)
        elif end is None:
            return  # no word from the task yet and the guest has not arrived: keep waiting
        elif not item:
            self._finish(result, SKIPPED, "the guest no longer exists")
        elif lock == "migrate":
            return  # the task says it ended but the config is still locked: PVE is cleaning up
        elif node == step.source:
            reason = f"task failed: {end[1]}" if not end[0] else f"the task ended {end[1]!r} but the guest is still " \
                                                                   f"on {step.source}"
            self._finish(result, FAILED, reason)
        else:
            self._finish(result, SKIPPED, f"now on {node}, not on {step.target} (moved by someone else)")

    def _unknown(self, result: StepResult) -> None:
        step = result.step
        if result.upid is not None:
            where = f"still running in PVE after {self.clock() - result.started_at:.0f} s (UPID {result.upid})"
        else:
            where = "outcome unknown: the migration may still be running in PVE"
        if self.interrupt is not None and self.interrupt.stop.is_set():
            cause = f"; not waited for after {self.interrupt.name}"
        elif result.task_end is not None or result.read_error:
            cause = f"; {result.read_error}" if result.read_error else ""
        else:
            cause = f"; balancing.max_job_validation ({self.settings.max_job_validation} s) passed"
        self._finish(result, UNKNOWN, f"{where}{cause}; check {step.vmid} on {step.source} and {step.target}")

    # ------------------------------------------------------------------ the end

    def _settle(self, report: ApplyReport) -> None:
        """Nothing stays pending or running in the report: running steps get a last look, the rest a reason."""
        running = [r for r in report.results if r.state == RUNNING]
        if running:
            try:
                if not self._abandoned():
                    for result in running:
                        self._poll(result)
            except Exception:  # noqa: BLE001 - the report matters more than this last look
                log.debug("last look at running migrations failed", exc_info=True)
            for result in running:
                if result.state == RUNNING:
                    self._unknown(result)
        why = report.stopped or "the run stopped"
        for result in report.results:
            if result.state == PENDING:
                self._finish(result, SKIPPED, f"not started: {why}")

    def _check_rules(self, report: ApplyReport, live: LiveState | None) -> None:
        """When a step did not run as planned: the rules the live cluster breaks now, and how to repair them."""
        if all(r.state == DONE for r in report.results) or self._abandoned():
            return
        try:
            after = self._retry("read the cluster after the run", live.refresh if live is not None else
                                (lambda: LiveState(self.client, self.settings).cluster), budget=30.0)
            report.broken = broken_rules(after, self.settings, live.first if live is not None else None)
            if report.broken:
                report.repair = repair_moves(after, self.settings)
        except _Halt as exc:
            report.rules_note = f"the rules could not be checked after the run: {exc}"
        except Exception as exc:  # noqa: BLE001 - a report without this part is better than none
            log.debug("rules check after the run failed", exc_info=True)
            report.rules_note = f"the rules could not be checked after the run: {exc.__class__.__name__}: {exc}"

    # ------------------------------------------------------------------ helpers

    def _retry(self, what: str, read: Callable[[], Any], budget: float | None = None,
               interruptible: bool = False) -> Any:
        """`read()`, repeated on read errors until `max_job_validation` (or `budget`) seconds have passed; then
        _Halt. A refused login is not repeated, nor is anything once a second signal asked to stop waiting.
        `interruptible`: None instead of more tries once a signal asked to start nothing new."""
        deadline = self.clock() + (self.settings.max_job_validation if budget is None else budget)
        pause = self.settings.poll_interval
        while True:
            try:
                return read()
            except AuthError as exc:
                raise _Halt(exc) from None
            except (ApiCallError, CollectionError) as exc:
                if interruptible and self.interrupt is not None and self.interrupt.stop.is_set():
                    return None
                if self.clock() >= deadline or self._abandoned():
                    raise _Halt(CollectionError(f"cannot {what}: {exc}")) from None
                log.warning("cannot %s (%s); trying again", what, exc)
                self._pause(pause)
                pause = min(pause * 2, 30.0)

    def _pause(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif self.interrupt is None:
            time.sleep(seconds)
        elif self.interrupt.stop.is_set():
            self.interrupt.abandon.wait(seconds)
        else:
            self.interrupt.stop.wait(seconds)

    def _finish(self, result: StepResult, state: str, message: str) -> None:
        if result.state == RUNNING:
            result.seconds = self.clock() - result.started_at
            if result.message:  # how it started (a lost answer): kept in the report
                message = f"{message}; {result.message}"
        elif result.state == PENDING:
            result.seconds = 0.0
        result.state, result.message = state, message
        self.emit({"event": state, **result.as_dict()})

    def _skip_dependents(self, report: ApplyReport, failed: StepResult) -> None:
        for result in report.results:
            if result.state != PENDING:
                continue
            s = result.step
            if s.vmid == failed.step.vmid or s.target == failed.step.source:
                self._finish(result, SKIPPED, f"depends on the failed migration of {failed.step.vmid} "
                                              f"({failed.step.source} → {failed.step.target})")
