"""Executing a plan on the live cluster, wave by wave, re-checking live state before every step.

Before each migration the live cluster is read again (one `/cluster/resources` request plus the
HA requests; local-disk facts are reused from the first read) and the step is re-validated: the
guest still exists and sits on the source, is not locked, and the feasibility module (the one every
planner uses) still allows it on the target: online, not in maintenance, every hard limit with the
target's live load and the migrations still running held on their targets, pins and anti-affinity. A step that no longer applies is *skipped* (a guest
already on its target is skipped as done-by-someone-else), never *failed*. The steps of a wave
start together; the next wave starts when every task of this one has ended. A failed step stops
the later steps that depend on it (the same guest's next hop, moves into the node it did not
free). The report lists done / skipped / failed; any failure gives exit code 6.

A plan file is only applied to the cluster it was made for (`check_plan_target`: the cluster's name
and node set). Waves are numbered from 1, as plan files write them; files from before that (the
same format version, waves from 0) are read with their waves shifted by one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable


from proxlb_opt.adapters.proxmox import (ApiCallError, ProxmoxClient, collect_model, guest_tasks, pve_version,
                                         start_migration, task_status)
from proxlb_opt.cluster import Cluster, cluster_from_dict, without_nodes
from proxlb_opt.config import Settings
from proxlb_opt.errors import CollectionError, InputError
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.limits import MAX_SECONDS, MAX_VMID, MAX_WAVE
from proxlb_opt.problem import build_problem

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


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
    state: str = "pending"  # done | skipped | failed
    message: str = ""
    upid: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        s = self.step
        return {"vmid": s.vmid, "name": s.name, "type": s.type, "from": s.source, "to": s.target, "wave": s.wave,
                "hop": s.hop, "reason": s.reason, "state": self.state, "message": self.message, "upid": self.upid,
                "seconds": round(self.seconds, 1)}


@dataclass
class ApplyReport:
    results: list[StepResult] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def ok(self) -> bool:
        return self.count(FAILED) == 0

    def summary(self) -> dict[str, Any]:
        return {"done": self.count(DONE), "skipped": self.count(SKIPPED), "failed": self.count(FAILED),
                "steps": [r.as_dict() for r in self.results]}


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
        self.cluster = self._build(first)

    def refresh(self) -> Cluster:
        model = collect_model(self.client, read_configs=False, local_disk_hint=lambda vmid: self._local.get(vmid))
        self.cluster = self._build(model)
        return self.cluster

    def _build(self, model: dict) -> Cluster:
        return without_nodes(cluster_from_dict(model, source="proxmox-api"), self.settings.ignore_nodes)


def recheck(cluster: Cluster, settings: Settings, step: PlannedStep,
            running: dict[int, str] | None = None) -> tuple[str, str] | None:
    """None when the step may run now; otherwise (skipped, reason).

    The live cluster is judged with the feasibility module, every hard limit and rule included, with the
    migrations still running (`running`: vmid → target node) held on their targets as PVE holds them.
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
    t = cluster.node_index(step.target)
    if t is None:
        return SKIPPED, f"target {step.target} is not in the cluster"
    problem = build_problem(cluster, settings)
    g, t = problem.cluster.guest_index(step.vmid), problem.cluster.node_index(step.target)
    if g is None or t is None:
        return SKIPPED, f"{step.source} or {step.target} is ignored (proxmox_cluster.ignore_nodes)"
    if not problem.rules.movable[g]:
        return SKIPPED, "the guest may no longer be moved (ignored, template, or type not balanced)"
    occ = Occupancy(problem)
    for vmid, target in (running or {}).items():
        other, n = problem.cluster.guest_index(vmid), problem.cluster.node_index(target)
        if other is not None and n is not None and occ.placement[other] != n:
            occ.start(other, n)
    why = occ.why_not([g], t, keep_groups=False)
    return None if why is None else (SKIPPED, f"no longer allowed: {why}")


@dataclass
class Executor:
    """Runs steps wave by wave; `emit` receives one event dict per state change (progress, JSON lines)."""

    client: ProxmoxClient
    settings: Settings
    emit: Callable[[dict[str, Any]], None] = lambda event: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _is_pve9: bool | None = None

    def run(self, steps: list[PlannedStep]) -> ApplyReport:
        live = LiveState(self.client, self.settings)
        report = ApplyReport(results=[StepResult(step) for step in steps])
        waves = sorted({s.wave for s in steps})
        for wave in waves:
            running = []
            for result in report.results:
                if result.step.wave != wave or result.state != "pending":
                    continue
                self._start(live, result, {r.step.vmid: r.step.target for r in running})
                if result.state == "running":
                    running.append(result)
            self._wait(running)
            for result in running:
                if result.state == FAILED:
                    self._skip_dependents(report, result)
        return report

    def _start(self, live: LiveState, result: StepResult, running: dict[int, str]) -> None:
        step = result.step
        try:
            cluster = live.refresh()
        except CollectionError as exc:
            self._finish(result, FAILED, f"cannot re-read the cluster: {exc}")
            return
        verdict = recheck(cluster, self.settings, step, running)
        if verdict is not None:
            self._finish(result, verdict[0], verdict[1])
            return
        g = cluster.guest_index(step.vmid)
        try:
            result.upid = start_migration(
                self.client, step.vmid, cluster.guest_type(g), step.source, step.target,
                running=bool(cluster.guest_running[g]), local_disk=bool(cluster.guest_local_disk[g]),
                with_conntrack_state=self.settings.with_conntrack_state and self._pve9(),
            )
        except (ApiCallError, CollectionError) as exc:
            self._finish(result, FAILED, f"migrate refused: {exc}")
            return
        result.state = "running"
        result.seconds = self.clock()
        self.emit({"event": "start", **result.as_dict()})

    def _pve9(self) -> bool:
        """with-conntrack-state exists from PVE 9 on; asked once per run."""
        if self._is_pve9 is None:
            major = pve_version(self.client).split(".")[0]
            self._is_pve9 = major.isdigit() and int(major) >= 9
        return self._is_pve9

    def _wait(self, running: list[StepResult]) -> None:
        deadline = self.clock() + self.settings.max_job_validation
        pending = list(running)
        followed: dict[int, str] = {}
        while pending:
            for result in list(pending):
                upid = followed.get(id(result), result.upid)
                state = self._poll(result, upid, followed)
                if state is not None:
                    pending.remove(result)
            if pending and self.clock() > deadline:
                for result in pending:
                    self._finish(result, FAILED, f"task still running after {self.settings.max_job_validation} s "
                                                 f"(balancing.max_job_validation); not waited for")
                return
            if pending:
                self.sleep(self.settings.poll_interval)

    def _poll(self, result: StepResult, upid: str, followed: dict[int, str]) -> str | None:
        try:
            status = task_status(self.client, upid)
        except (ApiCallError, CollectionError) as exc:
            self._finish(result, FAILED, f"cannot read task status: {exc}")
            return FAILED
        if status.get("status") != "stopped":
            return None
        exit_status = str(status.get("exitstatus", ""))
        if exit_status != "OK" and not exit_status.startswith("WARNINGS"):
            self._finish(result, FAILED, f"task failed: {exit_status}")
            return FAILED
        if ":hamigrate:" in upid and id(result) not in followed:
            # An HA guest: the real qmigrate/vzmigrate is started by the HA stack after this short task.
            real = self._find_real_task(result)
            if real:
                followed[id(result)] = real
                return None
        note = " (with warnings)" if exit_status.startswith("WARNINGS") else ""
        self._finish(result, DONE, f"migrated{note}")
        return DONE

    def _find_real_task(self, result: StepResult) -> str | None:
        since = int(result.upid.split(":")[4], 16) - 1 if result.upid else 0  # UPID field 4: start time
        for _ in range(max(1, int(30 / max(self.settings.poll_interval, 0.01)))):
            for task in guest_tasks(self.client, result.step.source, result.step.vmid, since):
                if task.get("type") in ("qmigrate", "vzmigrate") and task.get("upid"):
                    return str(task["upid"])
            self.sleep(self.settings.poll_interval)
        return None

    def _finish(self, result: StepResult, state: str, message: str) -> None:
        if result.state == "running":
            result.seconds = self.clock() - result.seconds
        else:
            result.seconds = 0.0
        result.state, result.message = state, message
        self.emit({"event": state, **result.as_dict()})

    def _skip_dependents(self, report: ApplyReport, failed: StepResult) -> None:
        for result in report.results:
            if result.state != "pending":
                continue
            s = result.step
            if s.vmid == failed.step.vmid or s.target == failed.step.source:
                self._finish(result, SKIPPED, f"depends on the failed migration of {failed.step.vmid} "
                                              f"({failed.step.source} → {failed.step.target})")
