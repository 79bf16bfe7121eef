"""Migrations and plans: diff a target placement, sequence it into capacity-safe waves, replay it.

A Plan is data: an ordered tuple of Steps (one real migrate call each) grouped in waves. All steps
of a wave run in parallel; a wave starts when the previous one has ended. While a step runs, its
guest occupies memory, CPU and local disk on both source and target. `replay` re-checks every
invariant wave by wave, independently of how the order was made; a plan that fails replay is
never shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from proxlb_opt.cluster import Cluster
from proxlb_opt.cpsat.waves import MAX_EXACT_STEPS, WaveProblem, solve_waves
from proxlb_opt.errors import InternalError, UnsafePlanError
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import Problem

#: 2: each migration carries `detail`, `spread_without`, `gain_pp` and `relieves`; the plan carries `budget`,
#: `target_spread`, `budget_choice` and `held[]`. `apply` reads versions 1 and 2.
PLAN_FORMAT_VERSION = 2
REASON_ORDER = ("maintenance", "pin", "affinity", "anti-affinity", "capacity", "balance")


@dataclass(frozen=True)
class TimeModel:
    """Predicted migration times (see models/FORMULATION.md, "Time model")."""

    bandwidth_mib_s: float = 1024.0
    dirty_rate_factor: float = 1.2  # live pre-copy sends RAM about this many times over
    live_overhead_s: float = 5.0  # setup, final stop-and-copy, resume
    restart_overhead_s: float = 15.0  # container shutdown + start on the target
    offline_overhead_s: float = 2.0

    def seconds(self, cluster: Cluster, g: int) -> float:
        disk = float(cluster.guest_disk_used_mib[g]) if cluster.guest_local_disk[g] else 0.0
        if not cluster.guest_running[g]:
            return self.offline_overhead_s + disk / self.bandwidth_mib_s
        if cluster.guest_is_ct[g]:
            return self.restart_overhead_s + disk / self.bandwidth_mib_s
        ram = float(cluster.guest_mem_used_mib[g]) * self.dirty_rate_factor
        return self.live_overhead_s + (ram + disk) / self.bandwidth_mib_s

    def downtime(self, cluster: Cluster, g: int) -> float:
        """Seconds the guest is unavailable: the whole move for containers (restart mode), ~0 for live VMs."""
        if not cluster.guest_running[g]:
            return 0.0
        return self.seconds(cluster, g) if cluster.guest_is_ct[g] else 0.0


@dataclass(frozen=True)
class Limits:
    """Concurrency limits of the sequencer (ProxLB's balancing.parallel / parallel_jobs and per-node ones)."""

    parallel: int = 1
    incoming_per_node: int = 1
    outgoing_per_node: int = 1


@dataclass(frozen=True)
class Step:
    """One migrate call: guest g from `source` to `target` (node indices)."""

    guest: int
    source: int
    target: int
    reason: str
    seconds: float
    wave: int = -1
    start_s: float = 0.0
    end_s: float = 0.0
    via: int | None = None  # parking node when this step is one hop of a parked move
    hop: int = 0  # 0: direct; 1: to the parking node; 2: from it to the final target


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    final_placement: np.ndarray = field(repr=False)

    @property
    def waves(self) -> int:
        return 1 + max((s.wave for s in self.steps), default=-1)

    @property
    def predicted_seconds(self) -> float:
        return max((s.end_s for s in self.steps), default=0.0)

    @property
    def guests_moved(self) -> int:
        return len({s.guest for s in self.steps})

    @property
    def parking_hops(self) -> int:
        return sum(1 for s in self.steps if s.hop == 1)


# ----------------------------------------------------------------------------- diff


def reasons(problem: Problem) -> list[str]:
    """Why each guest would move: maintenance, pin, affinity, anti-affinity, capacity, else balance.

    Judged on the placement before the plan: the guest sits on a maintenance node or off its pins;
    its affinity group is split; its anti-affinity group is crowded on its node; its node is over a
    hard limit's capacity. Partners of a guest that must leave follow it for the same reason.
    """
    cluster, rules = problem.cluster, problem.rules
    node = problem.current
    maintenance = {m.node for m in rules.maintenance}
    out = ["balance"] * cluster.n_guests
    hard = problem.hard
    over = (hard.load(node) > hard.goal).any(axis=1) if hard.names else np.zeros(cluster.n_nodes, dtype=bool)
    for g in np.flatnonzero(over[node]):
        out[g] = "capacity"
    for i, n, _ in Occupancy(problem).crowded():
        for g in rules.anti_affinities[i].members:
            if node[g] == n:
                out[g] = "anti-affinity"
    for group in rules.affinities:
        if len(set(node[list(group.members)].tolist())) > 1:
            for g in group.members:
                out[g] = "affinity"
    for g in np.flatnonzero(rules.mandatory):
        out[g] = "maintenance" if int(node[g]) in maintenance else "pin"
    for members in problem.units:  # partners follow a guest that must leave
        lead = [out[g] for g in members if rules.mandatory[g]]
        if lead:
            for g in members:
                if out[g] in ("balance", "affinity", "capacity"):
                    out[g] = lead[0]
    return out


def diff(problem: Problem, target: np.ndarray, time_model: TimeModel) -> list[Step]:
    """The direct moves from the current placement to `target`, unsequenced."""
    cluster = problem.cluster
    why = reasons(problem)
    moved = np.flatnonzero(np.asarray(target) != problem.current)
    return [Step(guest=int(g), source=int(cluster.guest_node[g]), target=int(target[g]), reason=why[g],
                 seconds=time_model.seconds(cluster, int(g))) for g in moved]


# ----------------------------------------------------------------------------- sequencing


def sequence(problem: Problem, steps: list[Step], limits: Limits, exact_time_limit: float = 0.0) -> Plan:
    """Order `steps` into capacity-safe waves.

    First a list-scheduling heuristic: mandatory moves first, then longest first, each wave filled
    with every step that can start safely (feasibility.Occupancy, with each running migration held on
    both nodes). When nothing can start, one blocked guest is parked on a node with room (an extra
    hop); when no parking node exists, UnsafePlanError names the guests and the nodes that block them.
    Then, with `exact_time_limit` > 0 and a plan of direct steps of moderate size, the CP-SAT wave
    model (cpsat/waves.py) may regroup the steps into fewer or shorter waves; the result is replayed
    and kept only when it is shorter.
    """
    cluster = problem.cluster
    state = Occupancy(problem)
    waiting = sorted(steps, key=lambda s: (REASON_ORDER.index(s.reason), -s.seconds, s.guest))
    started: set[int] = set()  # ids of waiting steps already placed in a wave, dropped from `waiting` lazily
    done: list[Step] = []
    wave, clock, parks, remaining = 0, 0.0, 0, len(waiting)
    while remaining:
        if 2 * len(started) > len(waiting):  # compact now and then: linear in total, not per wave
            waiting, started = [s for s in waiting if id(s) not in started], set()
        chosen = _fill_wave(state, waiting, limits, started)
        if not chosen:
            parks += 1
            pending = [s for s in waiting if id(s) not in started]
            if parks > len(steps) + 1:  # parking must converge: each guest parks at most about once
                blockers = _blockers(cluster, state, pending)
                raise UnsafePlanError("no capacity-safe order found: parking guests does not resolve the blockage; "
                                      + "; ".join(blockers[:4]), blockers=tuple(blockers),
                                      guests=_blocked_guests(state, pending))
            waiting, parked = _park_one(problem, state, pending)  # the second hop replaces the step
            started, remaining = set(), remaining + 1
            chosen = [parked]
            state.start(parked.guest, parked.target)
        length = max(s.seconds for s in chosen)
        for s in chosen:
            done.append(replace(s, wave=wave, start_s=clock, end_s=clock + s.seconds))
            state.finish(s.guest)
            started.add(id(s))
        remaining -= len(chosen)
        wave, clock = wave + 1, clock + length
    plan = Plan(steps=tuple(done), final_placement=state.placement.copy())
    if exact_time_limit > 0:
        plan = _shorten_with_cpsat(problem, plan, limits, exact_time_limit)
    return plan


def _shorten_with_cpsat(problem: Problem, plan: Plan, limits: Limits, time_limit: float) -> Plan:
    """Re-assign direct steps to waves with the CP-SAT wave model; keep whichever plan is shorter and safe."""
    steps = list(plan.steps)
    if len(steps) < 2 or len(steps) > MAX_EXACT_STEPS or plan.parking_hops or limits.parallel < 2:
        return plan  # one migration at a time: every safe order takes the same time
    wave_problem = WaveProblem.of(problem, [(s.guest, s.source, s.target, s.seconds) for s in steps],
                                  limits.parallel, limits.incoming_per_node, limits.outgoing_per_node)
    waves = solve_waves(wave_problem, np.array([s.wave for s in steps]), time_limit)
    if waves is None:
        return plan
    candidate = _timed(steps, waves, plan.final_placement)
    if candidate.predicted_seconds >= plan.predicted_seconds - 1e-9:
        return plan
    if replay(problem, candidate, limits):
        return plan  # never trust the model over the replay
    return candidate


def _timed(steps: list[Step], waves: np.ndarray, final_placement: np.ndarray) -> Plan:
    """Steps with wave numbers, start and end times; longest steps first within a wave."""
    order = sorted(range(len(steps)), key=lambda i: (int(waves[i]), -steps[i].seconds, steps[i].guest))
    lengths: dict[int, float] = {}
    for i in order:
        lengths[int(waves[i])] = max(lengths.get(int(waves[i]), 0.0), steps[i].seconds)
    starts, clock = {}, 0.0
    for w in sorted(lengths):
        starts[w] = clock
        clock += lengths[w]
    out = [replace(steps[i], wave=int(waves[i]), start_s=starts[int(waves[i])],
                   end_s=starts[int(waves[i])] + steps[i].seconds) for i in order]
    return Plan(steps=tuple(out), final_placement=final_placement)


def _fill_wave(state: Occupancy, pending: list[Step], limits: Limits, started: set[int]) -> list[Step]:
    """Start every pending step that can start safely now; each started step holds its guest on both nodes."""
    n = state.problem.cluster.n_nodes
    ins, outs = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    chosen: list[Step] = []
    for s in pending:
        if len(chosen) >= limits.parallel:
            break
        if id(s) in started:
            continue
        if s.guest in state.running or state.placement[s.guest] != s.source:
            continue  # a guest's second hop waits for its first
        if ins[s.target] >= limits.incoming_per_node or outs[s.source] >= limits.outgoing_per_node:
            continue
        if not state.may_move([s.guest], s.target, keep_groups=False):
            continue
        state.start(s.guest, s.target)
        chosen.append(s)
        ins[s.target] += 1
        outs[s.source] += 1
    return chosen


def _park_one(problem: Problem, state: Occupancy, pending: list[Step]) -> tuple[list[Step], Step]:
    """Split one blocked step s→t into s→p now and p→t later; UnsafePlanError when no p has room."""
    for s in sorted(pending, key=lambda x: x.hop):  # park a guest that has not been parked yet, first
        if state.placement[s.guest] != s.source:
            continue
        for p in _parking_candidates(problem, state, s):
            if not state.may_move([s.guest], p, keep_groups=False):
                continue
            first = replace(s, target=p, via=p, hop=1)
            second = replace(s, source=p, via=p, hop=2)
            rest = [second if x is s else x for x in pending]
            return rest, first
    blockers = _blockers(problem.cluster, state, pending)
    raise UnsafePlanError("no capacity-safe order exists and no node has room to park a guest: "
                          + "; ".join(blockers[:4]), blockers=tuple(blockers), guests=_blocked_guests(state, pending))


def _blocked_guests(state: Occupancy, pending: list[Step]) -> tuple[int, ...]:
    return tuple(sorted({s.guest for s in pending if state.placement[s.guest] == s.source}))


def _parking_candidates(problem: Problem, state: Occupancy, s: Step) -> list[int]:
    nodes = [int(n) for n in np.flatnonzero(problem.rules.allowed[s.guest]) if n not in (s.source, s.target)]
    limit = problem.hard.limit
    headroom = lambda n: float(np.min((limit[n] - state.hard[n]) / np.maximum(1, limit[n])))  # noqa: E731
    return sorted(nodes, key=lambda n: (-headroom(n), n))


def _blockers(cluster: Cluster, state: Occupancy, pending: list[Step]) -> list[str]:
    out = []
    waiting = {s.guest for s in pending}
    for s in pending:
        if state.placement[s.guest] != s.source:
            continue
        residents = [g for g in np.flatnonzero(state.placement == s.target) if int(g) in waiting]
        names = ", ".join(cluster.guest_label(int(g)) for g in residents) or "its current load"
        why = state.why_not([s.guest], s.target, keep_groups=False) or "a concurrency limit"
        out.append(f"{cluster.guest_label(s.guest)} cannot enter {cluster.node_names[s.target]} until {names} "
                   f"leaves ({why})")
    return out


# ----------------------------------------------------------------------------- replay


def replay(problem: Problem, plan: Plan, limits: Limits) -> list[str]:
    """Re-check every step wave by wave; returns the problems (empty: the plan is safe).

    Independent of how the order was made: it only reads the steps and their waves, and asks the
    feasibility module, step by step, whether each may start while the wave's earlier steps run.
    """
    cluster = problem.cluster
    problems: list[str] = []
    state = Occupancy(problem)
    by_wave: dict[int, list[Step]] = {}
    for s in plan.steps:
        by_wave.setdefault(s.wave, []).append(s)
    for wave in sorted(by_wave):
        steps = by_wave[wave]
        problems += _replay_limits(cluster, steps, limits, wave)
        started = []
        for s in steps:
            label = cluster.guest_label(s.guest)
            if state.placement[s.guest] != s.source or s.guest in state.running:
                problems.append(f"wave {wave}: {label} is not on {cluster.node_names[s.source]}")
                continue
            why = state.why_not([s.guest], s.target, keep_groups=False)
            if why is not None:
                problems.append(f"wave {wave}: {label} → {cluster.node_names[s.target]}: {why}")
            state.start(s.guest, s.target)
            started.append(s.guest)
        for g in started:
            state.finish(g)
    if not np.array_equal(state.placement, plan.final_placement):
        problems.append("the steps do not lead to the planned placement")
    return problems


def _replay_limits(cluster: Cluster, steps: list[Step], limits: Limits, wave: int) -> list[str]:
    problems = []
    if len(steps) > limits.parallel:
        problems.append(f"wave {wave}: {len(steps)} migrations exceed the parallel limit {limits.parallel}")
    ins = np.bincount([s.target for s in steps], minlength=cluster.n_nodes)
    outs = np.bincount([s.source for s in steps], minlength=cluster.n_nodes)
    if ins.max(initial=0) > limits.incoming_per_node or outs.max(initial=0) > limits.outgoing_per_node:
        problems.append(f"wave {wave}: per-node migration limits exceeded")
    guests = [s.guest for s in steps]
    if len(set(guests)) != len(guests):
        problems.append(f"wave {wave}: a guest migrates twice at once")
    return problems


def check_plan(problem: Problem, plan: Plan, limits: Limits) -> None:
    """Replay or raise InternalError: an unsafe plan is our bug, never output."""
    problems = replay(problem, plan, limits)
    if problems:
        raise InternalError("replay rejected the migration plan: " + "; ".join(problems[:3]))
