"""The competitors, each run in its own process, and the one independent judge of their answers.

Every competitor returns an `Answer`: a target placement (guest index → node index), the order in
which it would execute the moves (waves of steps), the wall seconds it spent planning and the peak
resident memory of its process. `judge()` then scores every answer with the same code, none of it
a competitor's own: `check.violations` and `check.spread` on the placement, the migrations and GiB
it moves, and `plan.replay` of the competitor's own order ("capacity-safe order": while a live
migration runs, the guest holds memory on both nodes; no node may go over a hard limit at any moment).

Competitors:

* `run_proxlb_opt(..., "cpsat" | "greedy" | "unit-greedy")`: proxlb-opt's planner (`planner.make_plan`),
  its ProxLB-style greedy pass and the plain unit greedy from a repair (the fair comparator), in a child
  python process (`python -m benchmarks.competitors --worker`);
* `run_proxlb(...)`: ProxLB 2.3.0 itself, in its own venv, as a dry run with JSON output
  (`-d -j`) against proxlb-opt's PVE API simulator serving the same cluster;
* `run_proxlb_solver(...)`: proxlb-solver 0.1.1 through its Python API (`solve`) with its default
  settings, driven by benchmarks/drivers/solver_run.py in the competitor venv.

Peak memory is the child's `ru_maxrss` as the kernel reports it to `wait4` for that one child:
measured from the outside, per run, whatever the child is.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.generate import generate_cluster
from proxlb_opt import check
from proxlb_opt.cluster import Cluster, cluster_from_dict
from proxlb_opt.config import Settings
from proxlb_opt.plan import Limits, Plan, Step, TimeModel, replay
from proxlb_opt.problem import Problem, build_problem

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DRIVERS = BENCH_DIR / "drivers"
MIB = 1024 * 1024
#: How much a competitor may overrun its own time limit before it is stopped and recorded as timed out.
TIMEOUT_GRACE_S = 120.0
#: The unit greedy has no time limit (it runs until no move helps): 64x10000-hard with no budget takes
#: ~35 s, plus as long again to record its order step by step. It is stopped after this long.
UNIT_GREEDY_TIMEOUT_S = 900.0
#: Time for `optimizer.find_repair` when the unit greedy's repair heuristic finds nothing.
UNIT_GREEDY_REPAIR_S = 10.0


# ----------------------------------------------------------------------------- instances


@dataclass(frozen=True, eq=False)
class Instance:
    """One generated cluster: the model mapping, the Cluster and the model file the children read."""

    n_nodes: int
    n_guests: int
    seed: int
    rules: bool
    maintenance: bool
    model: dict = field(repr=False)
    cluster: Cluster = field(repr=False)
    path: Path
    shape: str = "mild"  # generate_cluster's shape: mild, or a hard shape (hard, enterprise)

    @property
    def size(self) -> str:
        return f"{self.n_nodes}x{self.n_guests}"

    @property
    def variant(self) -> str:
        """rules, plain or maintenance for the mild shape; the shape's name (hard, enterprise) otherwise."""
        if self.shape != "mild":
            return self.shape
        return "maintenance" if self.maintenance else ("rules" if self.rules else "plain")

    @property
    def name(self) -> str:
        return f"{self.size}-{self.variant}"


def make_instance(n_nodes: int, n_guests: int, seed: int, rules: bool, maintenance: bool, workdir: Path,
                  shape: str = "mild") -> Instance:
    model = generate_cluster(n_nodes, n_guests, seed, rules=rules, maintenance=maintenance, shape=shape)
    variant = shape if shape != "mild" else ("maintenance" if maintenance else ("rules" if rules else "plain"))
    name = f"{n_nodes}x{n_guests}-{variant}-s{seed}"
    model["cluster"] = name
    path = Path(workdir) / f"{name}.json"
    path.write_text(json.dumps(model), encoding="utf-8")
    return Instance(n_nodes, n_guests, seed, rules, maintenance, model, cluster_from_dict(model, source=name), path,
                    shape)


# ----------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """What a competitor returned; `error` set (and placement None) when it crashed, failed or timed out."""

    competitor: str
    placement: np.ndarray | None = None  # int64[g] node indices
    waves: tuple[tuple[tuple[int, int, int], ...], ...] | None = None  # per wave: (guest, source, target)
    limits: Limits | None = None  # concurrency limits its order claims to respect (for the replay)
    wall_s: float | None = None  # planning time as the competitor's process measured it
    process_s: float | None = None  # the whole child process, start to exit
    peak_rss_mib: float | None = None
    error: str | None = None
    timed_out: bool = False
    info: dict = field(default_factory=dict)  # competitor-specific: status, bound, budget, notes …


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mib: float
    timed_out: bool


def run_child(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> ChildResult:
    """Run `cmd`, wait for it with wait4 (its own peak RSS), kill its process group after `timeout` s."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(cwd) if cwd else None, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(None if timed_out else proc.returncode, out.read(), err.read(), wall,
                           usage.ru_maxrss / 1024.0, timed_out)


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _child_failure(competitor: str, child: ChildResult, timeout: float, what: str) -> Answer:
    if child.timed_out:
        error = f"timed out: stopped after {timeout:.0f} s"
    else:
        error = f"{what} exited with code {child.returncode}: {_tail(child.stderr or child.stdout, 6)}"
    return Answer(competitor, error=error, timed_out=child.timed_out, process_s=child.wall_s,
                  peak_rss_mib=child.peak_rss_mib)


# ----------------------------------------------------------------------------- proxlb-opt


def run_proxlb_opt(instance: Instance, algorithm: str, max_migrations: int | None, time_limit: float,
                   label: str | None = None, timeout: float | None = None) -> Answer:
    """proxlb-opt's planner ("cpsat"), its ProxLB-style greedy pass ("greedy") or the plain unit greedy from a
    repair ("unit-greedy") in a child process. `time_limit` is the planner's (make_plan's deadline starts in
    the child); the greedy passes have none."""
    job = {"kind": "plan", "model": str(instance.path), "algorithm": algorithm, "max_migrations": max_migrations,
           "time_limit": time_limit}
    default_timeout = UNIT_GREEDY_TIMEOUT_S if algorithm == "unit-greedy" else time_limit * 3 + TIMEOUT_GRACE_S
    return _run_worker(job, label or f"proxlb-opt {algorithm}", timeout or default_timeout)


def min_budget_to_reach(instance: Instance, target_spread: float, hi: int, time_limit: float,
                        timeout: float | None = None) -> Answer:
    """Bisection over budgets 0..hi for the smallest at which cpsat's spread ≤ target_spread (one child)."""
    job = {"kind": "min_budget", "model": str(instance.path), "target_spread": target_spread, "hi": int(hi),
           "time_limit": time_limit}
    probes = max(1, math.ceil(math.log2(hi + 2))) + 1
    return _run_worker(job, "proxlb-opt cpsat (min budget)", timeout or probes * (time_limit * 2 + 5) + TIMEOUT_GRACE_S)


def _run_worker(job: dict, competitor: str, timeout: float) -> Answer:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
        job_path = handle.name
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
        child = run_child([sys.executable, "-m", "benchmarks.competitors", "--worker", job_path], timeout, env=env,
                          cwd=REPO_DIR)
    finally:
        os.unlink(job_path)
    if child.timed_out or child.returncode != 0:
        return _child_failure(competitor, child, timeout, "the planner process")
    try:
        result = json.loads(child.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Answer(competitor, error=f"unreadable worker output: {_tail(child.stdout + child.stderr, 4)}",
                      process_s=child.wall_s, peak_rss_mib=child.peak_rss_mib)
    common = dict(process_s=child.wall_s, peak_rss_mib=child.peak_rss_mib, wall_s=result.get("wall_s"),
                  info=result.get("info", {}))
    if result.get("error"):
        return Answer(competitor, error=result["error"], **common)
    limits = Limits(**result["limits"]) if result.get("limits") else None
    # An empty order (no move) is an order too: the replay then only checks that nothing moved.
    waves = (tuple(tuple(tuple(step) for step in wave) for wave in result["waves"])
             if result.get("waves") is not None else None)
    return Answer(competitor, placement=np.asarray(result["placement"], dtype=np.int64), waves=waves, limits=limits,
                  **common)


def _worker(job_path: str) -> int:
    """Child side: plan once (or bisect budgets) and print one JSON line."""
    from proxlb_opt.errors import ProxlbOptError
    from proxlb_opt.greedy import proxlb_greedy
    from proxlb_opt.planner import limits as planner_limits
    from proxlb_opt.planner import make_plan

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    cluster = cluster_from_dict(json.loads(Path(job["model"]).read_text(encoding="utf-8")), source=job["model"])
    out: dict[str, Any]
    if job["kind"] == "min_budget":
        out = _bisect_budget(cluster, job)
    elif job["algorithm"] == "unit-greedy":
        try:
            out = _unit_greedy_job(cluster, job)
        except ProxlbOptError as exc:  # no repair found: recorded as this run's error
            out = {"error": f"{exc.__class__.__name__}: {exc}"}
    elif job["algorithm"] == "greedy":
        settings = Settings(max_migrations=job["max_migrations"], time_limit=job["time_limit"])
        start = time.perf_counter()
        problem = build_problem(cluster, settings)
        result = proxlb_greedy(problem, job["max_migrations"])
        wall = time.perf_counter() - start
        out = {"placement": result.placement.tolist(), "wall_s": wall,
               "waves": [[step] for step in proxlb_order(problem.cluster, result.placement)],
               "limits": {"parallel": 1, "incoming_per_node": 1, "outgoing_per_node": 1},
               "info": {"balancing_moves": result.balancing_moves, "maintenance_moves": result.maintenance_moves}}
    else:
        settings = Settings(max_migrations=job["max_migrations"], time_limit=job["time_limit"])
        start = time.perf_counter()
        try:
            result = make_plan(cluster, settings, "cpsat")
        except ProxlbOptError as exc:
            print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}", "wall_s": time.perf_counter() - start}))
            return 0
        wall = time.perf_counter() - start
        by_wave: dict[int, list] = {}
        for s in result.plan.steps:
            by_wave.setdefault(s.wave, []).append([s.guest, s.source, s.target])
        lim = planner_limits(settings)
        out = {"placement": np.asarray(result.placement).tolist(), "wall_s": wall,
               "waves": [by_wave[w] for w in sorted(by_wave)],
               "limits": {"parallel": lim.parallel, "incoming_per_node": lim.incoming_per_node,
                          "outgoing_per_node": lim.outgoing_per_node},
               "info": {"status": result.status, "bound": result.bound, "gap": result.gap,
                        "cost_proven": result.cost_proven,
                        "optimality_tolerance": result.settings.optimality_tolerance,
                        "reported_spread": result.spread_after,
                        "budget": result.budget if job["max_migrations"] == "auto" else job["max_migrations"],
                        "budget_choice": None if result.budget_choice is None else result.budget_choice.why,
                        "solve_seconds": result.solve_seconds, "sequence_seconds": result.sequence_seconds,
                        "mandatory_moves": result.mandatory_moves, "repair_moves": result.problem.repair_moves,
                        "greedy_spread": result.greedy_spread, "unit_greedy_spread": result.unit_greedy_spread,
                        "steps": len(result.plan.steps),
                        "waves": result.plan.waves, "parking_hops": result.plan.parking_hops,
                        "notes": list(result.notes)}}
    print(json.dumps(out))
    return 0


def _unit_greedy_job(cluster: Cluster, job: dict) -> dict:
    """The fair comparator as the planner prepares it (optimizer.optimize): the repair, the problem with the
    repair's moves and tightened limits (allowance: repair moves + budget), then `unit_greedy` from there.

    The repair is `repair_heuristic`, or `optimizer.find_repair` (CP-SAT, 10 s) when the heuristic finds none;
    the planner's own repair may differ (it asks CP-SAT for fewer moves when the heuristic's count is not
    proven minimal). As in `planner.plan_problem`: nothing to do leaves the placement as it is, and with the
    spread within balanciness only the repair is done (budget 0). The timed part ends with the placement;
    the order (`unit_greedy_order`) is derived after it."""
    from proxlb_opt.deadline import Deadline
    from proxlb_opt.greedy import unit_greedy
    from proxlb_opt.optimizer import find_repair
    from proxlb_opt.planner import needs_action
    from proxlb_opt.repair import repair_heuristic, tightened_limits

    budget = job["max_migrations"]
    settings = Settings(max_migrations=budget, time_limit=job["time_limit"])
    start = time.perf_counter()
    problem = build_problem(cluster, settings)
    info: dict[str, Any] = {"budget": budget}
    if not needs_action(problem):
        return {"placement": problem.current.tolist(), "wall_s": time.perf_counter() - start, "waves": [],
                "limits": {"parallel": 1, "incoming_per_node": 1, "outgoing_per_node": 1},
                "info": dict(info, repair_moves=0, note="balanced: nothing to do")}
    if check.spread(problem, problem.current) <= settings.balanciness and problem.budget != 0:
        problem = problem.with_budget(0)
        info["note"] = "spread within balanciness: only the repair (budget 0), as the planner does"
    repaired = repair_heuristic(problem)
    info["repair"] = "heuristic"
    if repaired is None:
        repaired = find_repair(problem, Deadline(UNIT_GREEDY_REPAIR_S), [])
        info["repair"] = "optimizer.find_repair"
    fair = problem.with_repair(repaired.moves, tightened_limits(problem, repaired.placement))
    placement = unit_greedy(fair, repaired.placement)
    wall = time.perf_counter() - start
    order = unit_greedy_order(problem, fair, repaired.placement, placement)
    info.update(repair_moves=repaired.moves, repair_proven_minimal=repaired.proven_minimal,
                allowance=fair.allowance, repair_spread=check.spread(fair, repaired.placement))
    return {"placement": placement.tolist(), "wall_s": wall, "waves": [[step] for step in order],
            "limits": {"parallel": 1, "incoming_per_node": 1, "outgoing_per_node": 1}, "info": info}


def unit_greedy_order(problem: Problem, fair: Problem, repaired: np.ndarray,
                      placement: np.ndarray) -> list[list[int]]:
    """The unit greedy's moves one at a time, in the order it made them: (guest, source, target) steps.

    `problem`: before the repair (the limits the judge's replay keeps); `fair`: after it, what `unit_greedy`
    ran on; `repaired`: the repair's placement; `placement`: the unit greedy's. First the repair's moves (the
    repair reports no order: each step is the first of the remaining ones, in ProxLB's listing order, that
    may start under `problem`'s limits, or the first when none may, which the replay then reports); then the
    unit greedy's, unit by unit as it moved them, members by index. A guest the repair and the greedy both
    moved migrates twice, as it would when each stage is carried out as it was decided.
    """
    from proxlb_opt.greedy import unit_greedy

    steps = _first_that_fits(problem, repaired)
    # unit_greedy asks its deadline once before each move and its state is the placement alone, so a deadline
    # that expires after one question replays it move by move from where the last call stopped.
    current = np.asarray(repaired, dtype=np.int64)
    while True:
        after = unit_greedy(fair, current, _one_move_deadline())
        moved = np.flatnonzero(after != current)
        if moved.size == 0:
            break
        steps += [[int(g), int(current[g]), int(after[g])] for g in moved]
        current = after
    if not np.array_equal(current, placement):
        raise RuntimeError("the unit greedy's moves replayed one by one do not lead to its placement")
    return steps


def _one_move_deadline():
    """A Deadline whose clock reads 0 twice (its start, the first `expired()`) and 2 s after: one loop turn."""
    from proxlb_opt.deadline import Deadline

    reads = itertools.count()
    return Deadline(1.0, clock=lambda: 0.0 if next(reads) < 2 else 2.0)


def _first_that_fits(problem: Problem, target: np.ndarray) -> list[list[int]]:
    from proxlb_opt.feasibility import Occupancy

    cl = problem.cluster
    occ = Occupancy(problem.with_budget(None))
    pending = [int(g) for g in np.flatnonzero(np.asarray(target) != problem.current)]
    pending.sort(key=lambda g: (int(cl.guest_node[g]), int(cl.guest_vmid[g])))
    steps = []
    while pending:
        i = next((i for i, g in enumerate(pending) if occ.why_not([g], int(target[g]), keep_groups=False) is None), 0)
        g = pending.pop(i)
        steps.append([g, int(occ.placement[g]), int(target[g])])
        occ.move([g], int(target[g]))
    return steps


def _bisect_budget(cluster: Cluster, job: dict) -> dict:
    """Smallest budget b in [0, hi] with cpsat spread ≤ target (spread assumed non-increasing in b)."""
    from proxlb_opt.errors import ProxlbOptError
    from proxlb_opt.planner import make_plan

    target, hi, limit = float(job["target_spread"]), int(job["hi"]), float(job["time_limit"])
    start = time.perf_counter()
    probes: list[dict] = []
    cache: dict[int, Any] = {}

    def probe(budget: int):
        if budget not in cache:
            try:
                res = make_plan(cluster, Settings(max_migrations=budget, time_limit=limit), "cpsat")
                cache[budget] = res
                probes.append({"budget": budget, "spread": res.spread_after, "moves": res.plan.guests_moved,
                               "status": res.status})
            except ProxlbOptError as exc:
                cache[budget] = None
                probes.append({"budget": budget, "error": f"{exc.__class__.__name__}: {exc}"})
        return cache[budget]

    def reaches(budget: int) -> bool:
        res = probe(budget)
        return res is not None and res.spread_after <= target + 1e-9

    if not reaches(hi):
        return {"error": f"cpsat does not reach spread {target:.2f} pp within {hi} balancing moves",
                "wall_s": time.perf_counter() - start, "info": {"probes": probes}}
    lo_fail, hi_ok = -1, hi
    if reaches(0):
        hi_ok = 0
    else:
        lo_fail = 0
        while hi_ok - lo_fail > 1:
            mid = (lo_fail + hi_ok) // 2
            if reaches(mid):
                hi_ok = mid
            else:
                lo_fail = mid
    best = cache[hi_ok]
    return {"placement": np.asarray(best.placement).tolist(), "wall_s": time.perf_counter() - start,
            "info": {"budget": hi_ok, "spread": best.spread_after, "probes": probes, "status": best.status}}


def proxlb_order(cluster: Cluster, placement: np.ndarray) -> list[list[int]]:
    """ProxLB's execution order: guests as its API listing yields them (by node, then vmid), one at a time."""
    moved = np.flatnonzero(np.asarray(placement) != np.asarray(cluster.guest_node))
    moved = sorted(moved, key=lambda g: (int(cluster.guest_node[g]), int(cluster.guest_vmid[g])))
    return [[int(g), int(cluster.guest_node[g]), int(placement[g])] for g in moved]


# ----------------------------------------------------------------------------- ProxLB 2.3.0


def proxlb_config(server: Any, cluster: Cluster, settings: Settings, use_token: bool = False) -> str:
    """A ProxLB 2.3.0 proxlb.yaml for the simulator (no CA path in ProxLB: REQUESTS_CA_BUNDLE carries it)."""
    q = json.dumps  # JSON strings are valid YAML scalars
    maintenance = [cluster.node_names[n] for n in np.flatnonzero(cluster.node_maintenance)]
    auth = ([f"  token_id: {q(server.token_name)}", f"  token_secret: {q(server.token_secret)}"] if use_token
            else [f"  pass: {q(server.password)}"])
    return "\n".join([
        "# written by proxlb-opt's benchmark for a throwaway PVE API simulator",
        "proxmox_api:",
        f"  hosts: [{q(server.address)}]",
        f"  user: {q(server.user)}",
        *auth,
        "  ssl_verification: true",
        "  timeout: 120",
        "proxmox_cluster:",
        f"  maintenance_nodes: {json.dumps(maintenance)}",
        f"  overprovisioning: {str(settings.overprovisioning).lower()}",
        "balancing:",
        "  enable: true",
        "  balance_types: [vm, ct]",
        f"  method: {settings.method}",
        f"  mode: {settings.mode}",
        f"  balanciness: {int(settings.balanciness)}",
        "  parallel: false",
        "service:",
        "  daemon: false",
        "  log_level: WARNING",
        "",
    ])


def parse_proxlb_json(stdout: str) -> dict:
    """ProxLB prints its logs and a closing line on stdout too; the JSON document starts at a line '{'."""
    lines = stdout.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip("\r\n") == "{":
            text = "".join(lines[i:])
            return json.JSONDecoder().raw_decode(text)[0]
    raise ValueError("no JSON document in ProxLB's output")


def proxlb_moves(cluster: Cluster, data: dict) -> tuple[np.ndarray, list[list[int]], list[str]]:
    """ProxLB's JSON → (target placement, its order of moves, problems); unknown guests or nodes are problems."""
    placement = np.array(cluster.guest_node, dtype=np.int64)
    order, problems = [], []
    for key, guest in data.get("guests", {}).items():
        g = cluster.guest_index(int(guest.get("id", -1)))
        if g is None:
            problems.append(f"guest {key} (id {guest.get('id')}) is not in the cluster")
            continue
        target = cluster.node_index(str(guest.get("node_target")))
        source = cluster.node_index(str(guest.get("node_current")))
        if target is None or source is None:
            problems.append(f"guest {key}: unknown node {guest.get('node_current')} -> {guest.get('node_target')}")
            continue
        if source != cluster.guest_node[g]:
            problems.append(f"guest {key}: ProxLB saw it on {guest.get('node_current')}, the model on "
                            f"{cluster.node_names[cluster.guest_node[g]]}")
        if target != source:
            placement[g] = target
            order.append([int(g), int(source), int(target)])
    return placement, order, problems


def run_proxlb(instance: Instance, settings: Settings, python: Path, timeout: float = 3600.0,
               throttle: bool = False, workdir: Path | None = None, use_token: bool = False) -> Answer:
    """ProxLB 2.3.0 for real (own venv, own process), dry run with JSON, against the simulator serving `instance`."""
    from proxlb_opt.simulator import SimulatorServer

    workdir = Path(workdir or tempfile.mkdtemp(prefix="proxlb-bench-"))
    server = SimulatorServer(instance.cluster, port=0, ca_dir=str(workdir / "ca"))
    server.start()
    try:
        config = workdir / f"proxlb-{instance.name}.yaml"
        config.write_text(proxlb_config(server, instance.cluster, settings, use_token), encoding="utf-8")
        env = dict(os.environ)
        env.update(REQUESTS_CA_BUNDLE=str(server.ca_file), NO_PROXY="127.0.0.1,localhost,::1",
                   no_proxy="127.0.0.1,localhost,::1", PYTHONUNBUFFERED="1")
        cmd = [os.path.abspath(python), str(DRIVERS / "proxlb_run.py"), *([] if throttle else ["--no-throttle"]), "--",
               "-c", str(config), "-d", "-j"]
        child = run_child(cmd, timeout, env=env, cwd=workdir)
        requests = server.request_count
    finally:
        server.stop()
    info: dict[str, Any] = {"requests": requests.total, "requests_by_path": dict(requests.by_path),
                            "throttle": throttle}
    for line in child.stderr.splitlines():
        if line.startswith('{"proxlb_run"'):
            info.update(json.loads(line)["proxlb_run"])
    if child.timed_out or child.returncode != 0:
        answer = _child_failure("ProxLB 2.3.0", child, timeout, "ProxLB")
        tail = _tail(child.stdout + "\n" + child.stderr, 15)
        return replace(answer, error=f"{answer.error}\n{tail}" if tail else answer.error, info=info)
    try:
        data = parse_proxlb_json(child.stdout)
    except ValueError as exc:
        return Answer("ProxLB 2.3.0", error=f"{exc}: {_tail(child.stdout + child.stderr, 10)}", process_s=child.wall_s,
                      peak_rss_mib=child.peak_rss_mib, info=info)
    placement, order, problems = proxlb_moves(instance.cluster, data)
    info["problems"] = problems
    info["guests_seen"] = len(data.get("guests", {}))
    info["log_tail"] = [line for line in child.stdout.splitlines() if " - ProxLB - " in line][-5:]
    return Answer("ProxLB 2.3.0", placement=placement, waves=tuple((tuple(step),) for step in order),
                  limits=Limits(1, 1, 1), wall_s=child.wall_s, process_s=child.wall_s,
                  peak_rss_mib=child.peak_rss_mib, info=info)


# ----------------------------------------------------------------------------- proxlb-solver 0.1.1


def solver_cluster(cluster: Cluster, settings: Settings) -> dict:
    """proxlb-opt Cluster → keyword arguments of proxlb_solver.Cluster (models.py of proxlb-solver 0.1.1).

    Faithful field by field, with the same rules proxlb-opt derives (tags, HA rules, pools, locks, maintenance):
    node cores, memory and the reserve; local storage available to guests as `storage_free` (so that its
    Σ disks ≤ storage_free equals proxlb-opt's local-disk limit); per guest vCPUs, assigned memory (the
    solver's model has no used-memory field: it balances and limits assigned memory), CPU usage of
    running guests, used local disk; affinity / anti-affinity groups as hard rules (a group with more
    members than eligible nodes becomes soft: the solver's hard form allows one member per node); pins;
    unmovable guests (ignore tags, locks, templates) as `ignore`; non-eligible nodes as maintenance.
    Soft node preferences (HA node-affinity, strict: 0) have no counterpart and are left out.
    """
    problem = build_problem(cluster, settings)
    cl, rules, loads = problem.cluster, problem.rules, problem.loads
    disk_limit = next(lim for lim in loads.hard_limits if lim.name == "local disk")
    names = [str(int(v)) for v in cl.guest_vmid]
    nodes = []
    for n, node in enumerate(cl.node_names):
        mem_reserve = int(cl.node_mem_mib[n] - loads.capacity[n, 0])
        cpu_reserve = int(round((int(cl.node_cpu_milli[n]) - int(loads.capacity[n, 1])) / 1000))
        nodes.append({
            "name": node, "cpu_total": int(cl.node_cpu_milli[n] // 1000), "memory_total": int(cl.node_mem_mib[n]) * MIB,
            "memory_reserve": max(0, mem_reserve) * MIB, "cpu_reserve": max(0, cpu_reserve),
            "storage_free": {"local": max(0, int(disk_limit.limit[n] - disk_limit.base[n])) * MIB},
            "maintenance": bool(not rules.eligible[n]),
        })
    vms = []
    for g in range(cl.n_guests):
        vms.append({
            "name": names[g], "node": cl.node_names[cl.guest_node[g]],
            "cpu": max(1, int(math.ceil(int(cl.guest_cpu_milli[g]) / 1000))),
            "memory": int(cl.guest_mem_mib[g]) * MIB,
            "cpu_usage": (int(cl.guest_cpu_used_milli[g]) / 1000.0) if cl.guest_running[g] else 0.0,
            "disks": {"local": int(cl.guest_disk_used_mib[g]) * MIB} if cl.guest_local_disk[g] else {},
            "vm_type": "ct" if cl.guest_is_ct[g] else "vm",
        })
    n_eligible = int(rules.eligible.sum())
    origin = lambda source: "pve" if source.lower().startswith("ha") else "plb"  # noqa: E731
    constraints = {
        "affinity": [{"name": a.name, "origin": origin(a.source), "vms": [names[g] for g in a.members], "hard": True}
                     for a in rules.affinities if len(a.members) > 1],
        "anti_affinity": [{"name": a.name, "origin": origin(a.source), "vms": [names[g] for g in a.members],
                           "hard": a.per_node_cap <= 1 and len(a.members) <= n_eligible}
                          for a in rules.anti_affinities if len(a.members) > 1],
        "pin": [{"vm": names[p.guest], "nodes": [cl.node_names[n] for n in p.nodes]} for p in rules.pins],
        "ignore": [names[g] for g in np.flatnonzero(~rules.movable)],
    }
    return {"name": cl.name, "description": f"proxlb-opt benchmark instance {cl.name}",
            "balancing": {"cpu_overcommit": settings.cpu_overcommit}, "nodes": nodes, "vms": vms,
            "constraints": constraints, "expect": {}}


def run_proxlb_solver(instance: Instance, settings: Settings, python: Path, time_limit: float,
                      timeout: float | None = None, workdir: Path | None = None) -> Answer:
    """proxlb-solver's `solve(cluster, time_limit_s)` with its defaults, in the competitor venv."""
    label = f"proxlb-solver {time_limit:g}s"
    workdir = Path(workdir or tempfile.mkdtemp(prefix="proxlb-bench-"))
    path = workdir / f"solver-{instance.name}.json"
    path.write_text(json.dumps(solver_cluster(instance.cluster, settings)), encoding="utf-8")
    timeout = timeout or time_limit * 3 + TIMEOUT_GRACE_S
    child = run_child([os.path.abspath(python), str(DRIVERS / "solver_run.py"), str(path), f"{time_limit:g}"], timeout,
                      cwd=workdir)
    if child.timed_out or child.returncode != 0:
        progress = [line for line in child.stderr.splitlines() if line.startswith('{"progress"')]
        answer = _child_failure(label, child, timeout, "proxlb-solver")
        if child.timed_out:
            stage = "after solve(), in its planner" if progress else "in solve() (model building or search)"
            answer = replace(answer, error=f"{answer.error} ({stage})")
        return answer
    try:
        result = json.loads(child.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Answer(label, error=f"unreadable driver output: {_tail(child.stdout + child.stderr, 4)}",
                      process_s=child.wall_s, peak_rss_mib=child.peak_rss_mib)
    info = {k: result.get(k) for k in ("status", "load_gap", "objective", "solve_seconds", "plan_seconds",
                                       "import_seconds", "feasible")}
    wall = (result.get("solve_seconds") or 0.0) + (result.get("plan_seconds") or 0.0)
    if not result.get("feasible"):
        return Answer(label, error=f"no placement: status {result.get('status')}", wall_s=wall,
                      process_s=child.wall_s, peak_rss_mib=child.peak_rss_mib, info=info)
    cl = instance.cluster
    index = {str(int(v)): g for g, v in enumerate(cl.guest_vmid)}
    placement = np.array(cl.guest_node, dtype=np.int64)
    for name, node in result["placements"].items():
        placement[index[name]] = cl.node_index(node)
    plan = result.get("plan") or {}
    waves = None
    if "steps" in plan:
        waves = tuple(tuple((index[vm], cl.node_index(src), cl.node_index(dst)) for vm, src, dst in step)
                      for step in plan["steps"] if step)
        info.update(path_feasible=plan.get("path_feasible"), temp_moves=len(plan.get("temp_moves", [])),
                    pve_deferred=len(plan.get("pve_deferred", [])))
    else:
        info["plan_error"] = plan.get("error")
    # Its planner's own limits: max_parallel_migrations 2 and max_node_inflow 1 (defaults); outgoing unlimited.
    return Answer(label, placement=placement, waves=waves, limits=Limits(2, 1, cl.n_guests), wall_s=wall,
                  process_s=child.wall_s, peak_rss_mib=child.peak_rss_mib, info=info)


# ----------------------------------------------------------------------------- the judge


def judge(instance: Instance, settings: Settings, answer: Answer) -> dict:
    """The same independent figures for every answer (None where the competitor produced no placement)."""
    record: dict[str, Any] = {
        "competitor": answer.competitor, "ok": answer.error is None, "error": answer.error,
        "timed_out": answer.timed_out, "wall_s": _r(answer.wall_s, 3), "process_s": _r(answer.process_s, 3),
        "peak_rss_mib": _r(answer.peak_rss_mib, 1), "info": answer.info,
        "spread": None, "migrations": None, "balancing_moves": None, "gib_moved": None, "local_disk_gib_moved": None,
        "violations": None, "violation_messages": [], "capacity_safe_order": None, "order_problems": [],
        "bound": None, "gap": None, "moves": None,
    }
    if answer.placement is None:
        return record
    problem = build_problem(instance.cluster, settings).with_budget(None)
    cl, rules = problem.cluster, problem.rules
    placement = np.asarray(answer.placement, dtype=np.int64)
    found = check.violations(problem, placement)
    moved = placement != cl.guest_node
    record.update(
        spread=round(check.spread(problem, placement), 4),
        migrations=int(moved.sum()),
        balancing_moves=int((moved & ~rules.mandatory).sum()),
        gib_moved=round(float(np.where(cl.guest_running, cl.guest_mem_used_mib, 0)[moved].sum()) / 1024, 2),
        local_disk_gib_moved=round(float(np.where(cl.guest_local_disk, cl.guest_disk_used_mib, 0)[moved].sum()) / 1024,
                                   2),
        violations=len(found), violation_messages=[f"{v.rule}: {v.message}" for v in found[:5]],
        moves=[[int(cl.guest_vmid[g]), cl.node_names[cl.guest_node[g]], cl.node_names[placement[g]]]
               for g in np.flatnonzero(moved)],
    )
    if answer.waves is not None and answer.limits is not None:
        tm = TimeModel()
        steps = [Step(guest=g, source=s, target=t, reason="balance", seconds=tm.seconds(cl, g), wave=w)
                 for w, wave in enumerate(answer.waves) for g, s, t in wave]
        problems = replay(problem, Plan(steps=tuple(steps), final_placement=placement), answer.limits)
        record.update(capacity_safe_order=not problems, order_problems=problems[:5], order_steps=len(steps))
    bound = answer.info.get("bound")
    if bound is not None:
        record.update(bound=round(bound, 4), gap=round(max(0.0, record["spread"] - bound), 4))
    return record


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        raise SystemExit(_worker(sys.argv[2]))
    print("usage: python -m benchmarks.competitors --worker JOB.json (internal; see benchmarks/run.py)",
          file=sys.stderr)
    raise SystemExit(2)
