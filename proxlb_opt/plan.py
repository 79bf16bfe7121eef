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

from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.errors import InternalError, UnsafePlanError
from proxlb_opt.rules import RuleSet

PLAN_FORMAT_VERSION = 1
REASON_ORDER = ("maintenance", "pin", "affinity", "anti-affinity", "balance")


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


def reasons(cluster: Cluster, rules: RuleSet) -> list[str]:
    """Why each guest would move: the first of maintenance, pin, affinity, anti-affinity, else balance."""
    node = np.asarray(cluster.guest_node)
    maintenance = {m.node for m in rules.maintenance}
    out = ["balance"] * cluster.n_guests
    for group in rules.anti_affinities:
        counts = np.bincount(node[list(group.members)], minlength=cluster.n_nodes)
        if counts.max() > group.per_node_cap:
            for g in group.members:
                out[g] = "anti-affinity"
    for group in rules.affinities:
        if len(set(node[list(group.members)].tolist())) > 1:
            for g in group.members:
                out[g] = "affinity"
    for g in np.flatnonzero(rules.mandatory):
        out[g] = "maintenance" if int(node[g]) in maintenance else "pin"
    for group in rules.affinities:  # partners follow a guest that must leave
        lead = [out[g] for g in group.members if rules.mandatory[g]]
        if lead:
            for g in group.members:
                if out[g] in ("balance", "affinity"):
                    out[g] = lead[0]
    return out


def diff(cluster: Cluster, rules: RuleSet, target: np.ndarray, time_model: TimeModel) -> list[Step]:
    """The direct moves from the current placement to `target`, unsequenced."""
    why = reasons(cluster, rules)
    moved = np.flatnonzero(np.asarray(target) != np.asarray(cluster.guest_node))
    return [Step(guest=int(g), source=int(cluster.guest_node[g]), target=int(target[g]), reason=why[g],
                 seconds=time_model.seconds(cluster, int(g))) for g in moved]


# ----------------------------------------------------------------------------- instant state


class _Occupancy:
    """Hard-limit loads per node as waves start and end; the single source of truth for sequencing."""

    def __init__(self, cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray):
        self.cluster, self.rules, self.loads = cluster, rules, loads
        self.placement = np.array(placement, dtype=np.int64)
        self.load = np.stack([lim.base + np.bincount(self.placement, lim.demand, cluster.n_nodes).astype(np.int64)
                              for lim in loads.hard_limits], axis=1)  # int64[n, limits]
        self.limit = np.stack([lim.limit for lim in loads.hard_limits], axis=1)
        self.demand = np.stack([lim.demand for lim in loads.hard_limits], axis=1)  # int64[g, limits]
        self.anti_groups_of: dict[int, list[int]] = {}
        for i, group in enumerate(rules.anti_affinities):
            for g in group.members:
                self.anti_groups_of.setdefault(g, []).append(i)

    def members_on(self, group_index: int, node: int, extra: list[int]) -> int:
        group = self.rules.anti_affinities[group_index]
        resident = sum(1 for g in group.members if self.placement[g] == node)
        return resident + sum(1 for g in extra if g in group.members)

    def can_receive(self, g: int, node: int, incoming_load: np.ndarray, incoming_guests: list[int]) -> bool:
        if not self.cluster.node_online[node] or not self.rules.eligible[node]:
            return False
        if np.any(self.load[node] + incoming_load[node] + self.demand[g] > self.limit[node]):
            return False
        for i in self.anti_groups_of.get(g, ()):
            if self.members_on(i, node, incoming_guests) + 1 > self.rules.anti_affinities[i].per_node_cap:
                return False
        return True

    def finish(self, steps: list[Step]) -> None:
        for s in steps:
            self.load[s.source] -= self.demand[s.guest]
            self.load[s.target] += self.demand[s.guest]
            self.placement[s.guest] = s.target


# ----------------------------------------------------------------------------- sequencing


def sequence(cluster: Cluster, rules: RuleSet, loads: LoadModel, steps: list[Step], limits: Limits,
             exact_time_limit: float = 0.0) -> Plan:
    """Order `steps` into capacity-safe waves.

    First a list-scheduling heuristic: mandatory moves first, then longest first, each wave filled
    with every step that can start safely. When nothing can start, one blocked guest is parked on
    a node with room (an extra hop); when no parking node exists, UnsafePlanError names the guests
    and the nodes that block them. Then, with `exact_time_limit` > 0 and a plan of direct steps
    of moderate size, the CP-SAT wave model (cpsat/waves.py) may regroup the steps into fewer or
    shorter waves; the result is replayed and kept only when it is shorter.
    """
    state = _Occupancy(cluster, rules, loads, cluster.guest_node)
    pending = sorted(steps, key=lambda s: (REASON_ORDER.index(s.reason), -s.seconds, s.guest))
    done: list[Step] = []
    wave, clock, parks = 0, 0.0, 0
    while pending:
        chosen = _fill_wave(state, pending, limits)
        if not chosen:
            parks += 1
            if parks > len(steps) + 1:  # parking must converge: each guest parks at most about once
                raise UnsafePlanError("no capacity-safe order found: parking guests does not resolve the blockage; "
                                      + "; ".join(_blockers(cluster, state, pending)[:4]),
                                      blockers=tuple(_blockers(cluster, state, pending)),
                                      guests=_blocked_guests(state, pending))
            pending, parked = _park_one(cluster, rules, state, pending)
            chosen = [parked]
        length = max(s.seconds for s in chosen)
        for s in chosen:
            done.append(replace(s, wave=wave, start_s=clock, end_s=clock + s.seconds))
        chosen_ids = {id(s) for s in chosen}
        pending = [s for s in pending if id(s) not in chosen_ids]
        state.finish(chosen)
        wave, clock = wave + 1, clock + length
    plan = Plan(steps=tuple(done), final_placement=state.placement.copy())
    if exact_time_limit > 0:
        plan = _shorten_with_cpsat(cluster, rules, loads, plan, limits, exact_time_limit)
    return plan


def _shorten_with_cpsat(cluster: Cluster, rules: RuleSet, loads: LoadModel, plan: Plan, limits: Limits,
                        time_limit: float) -> Plan:
    """Re-assign direct steps to waves with the CP-SAT wave model; keep whichever plan is shorter and safe."""
    from proxlb_opt.cpsat.waves import MAX_EXACT_STEPS, WaveProblem, seconds, solve_waves

    steps = list(plan.steps)
    if len(steps) < 2 or len(steps) > MAX_EXACT_STEPS or plan.parking_hops or limits.parallel < 2:
        return plan  # one migration at a time: every safe order takes the same time
    occupancy = _Occupancy(cluster, rules, loads, cluster.guest_node)
    index = {s.guest: i for i, s in enumerate(steps)}
    anti_groups = []
    for group in rules.anti_affinities:
        member_steps = [index[g] for g in group.members if g in index]
        if member_steps:
            fixed = np.bincount([cluster.guest_node[g] for g in group.members if g not in index],
                                minlength=cluster.n_nodes)
            anti_groups.append((group.per_node_cap, member_steps, {int(n): int(c) for n, c in enumerate(fixed) if c}))
    problem = WaveProblem(
        sources=np.array([s.source for s in steps]), targets=np.array([s.target for s in steps]),
        durations=np.array([seconds(s.seconds) for s in steps]), demand=occupancy.demand[[s.guest for s in steps]],
        initial_load=occupancy.load, limit=occupancy.limit, parallel=limits.parallel,
        incoming=limits.incoming_per_node, outgoing=limits.outgoing_per_node, anti_groups=anti_groups,
        n_nodes=cluster.n_nodes)
    waves = solve_waves(problem, np.array([s.wave for s in steps]), time_limit)
    if waves is None:
        return plan
    candidate = _timed(steps, waves, plan.final_placement)
    if candidate.predicted_seconds >= plan.predicted_seconds - 1e-9:
        return plan
    if replay(cluster, rules, loads, candidate, limits):
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


def _fill_wave(state: _Occupancy, pending: list[Step], limits: Limits) -> list[Step]:
    n = state.cluster.n_nodes
    incoming_load = np.zeros_like(state.load)
    incoming_guests: list[int] = []
    ins, outs = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    chosen: list[Step] = []
    busy: set[int] = set()
    for s in pending:
        if len(chosen) >= limits.parallel:
            break
        if s.guest in busy or state.placement[s.guest] != s.source:
            continue  # a guest's second hop waits for its first
        if ins[s.target] >= limits.incoming_per_node or outs[s.source] >= limits.outgoing_per_node:
            continue
        if not state.can_receive(s.guest, s.target, incoming_load, incoming_guests):
            continue
        chosen.append(s)
        busy.add(s.guest)
        incoming_load[s.target] += state.demand[s.guest]
        incoming_guests.append(s.guest)
        ins[s.target] += 1
        outs[s.source] += 1
    return chosen


def _park_one(cluster: Cluster, rules: RuleSet, state: _Occupancy, pending: list[Step]) -> tuple[list[Step], Step]:
    """Split one blocked step s→t into s→p now and p→t later; UnsafePlanError when no p has room."""
    empty = np.zeros_like(state.load)
    for s in sorted(pending, key=lambda x: x.hop):  # park a guest that has not been parked yet, first
        if state.placement[s.guest] != s.source:
            continue
        for p in _parking_candidates(cluster, rules, state, s):
            if not state.can_receive(s.guest, p, empty, []):
                continue
            first = replace(s, target=p, via=p, hop=1)
            second = replace(s, source=p, via=p, hop=2)
            rest = [second if x is s else x for x in pending]
            return rest, first
    raise UnsafePlanError(_blocked_message(cluster, state, pending), blockers=tuple(_blockers(cluster, state, pending)),
                          guests=_blocked_guests(state, pending))


def _blocked_guests(state: _Occupancy, pending: list[Step]) -> tuple[int, ...]:
    return tuple(sorted({s.guest for s in pending if state.placement[s.guest] == s.source}))


def _parking_candidates(cluster: Cluster, rules: RuleSet, state: _Occupancy, s: Step) -> list[int]:
    nodes = [int(n) for n in np.flatnonzero(rules.allowed[s.guest]) if n not in (s.source, s.target)]
    headroom = lambda n: float(np.min((state.limit[n] - state.load[n]) / np.maximum(1, state.limit[n])))  # noqa: E731
    return sorted(nodes, key=lambda n: (-headroom(n), n))


def _blockers(cluster: Cluster, state: _Occupancy, pending: list[Step]) -> list[str]:
    out = []
    for s in pending:
        if state.placement[s.guest] != s.source:
            continue
        target = s.target
        residents = [g for g in np.flatnonzero(state.placement == target)
                     if any(p.guest == g for p in pending)]
        names = ", ".join(cluster.guest_label(int(g)) for g in residents) or "its current load"
        out.append(f"{cluster.guest_label(s.guest)} cannot enter {cluster.node_names[target]} until {names} leaves")
    return out


def _blocked_message(cluster: Cluster, state: _Occupancy, pending: list[Step]) -> str:
    blockers = _blockers(cluster, state, pending)
    return "no capacity-safe order exists and no node has room to park a guest: " + "; ".join(blockers[:4])


# ----------------------------------------------------------------------------- replay


def replay(cluster: Cluster, rules: RuleSet, loads: LoadModel, plan: Plan, limits: Limits) -> list[str]:
    """Re-check every invariant wave by wave; returns the problems (empty: the plan is safe).

    Independent of `sequence`: it only reads the steps, their waves and the LoadModel/RuleSet.
    """
    problems: list[str] = []
    placement = np.array(cluster.guest_node, dtype=np.int64)
    demand = np.stack([lim.demand for lim in loads.hard_limits], axis=1)
    limit = np.stack([lim.limit for lim in loads.hard_limits], axis=1)
    names = [lim.name for lim in loads.hard_limits]
    base = np.stack([lim.base for lim in loads.hard_limits], axis=1)
    by_wave: dict[int, list[Step]] = {}
    for s in plan.steps:
        by_wave.setdefault(s.wave, []).append(s)
    for wave in sorted(by_wave):
        steps = by_wave[wave]
        problems += _replay_wave(cluster, rules, placement, steps, limits, wave)
        during = base + _sum_rows(placement, demand, cluster.n_nodes)
        for s in steps:
            during[s.target] += demand[s.guest]  # held on both nodes while it runs
        for n, k in zip(*np.nonzero(during > limit)):
            problems.append(f"wave {wave}: {cluster.node_names[n]} {names[k]} {int(during[n, k])} exceeds {int(limit[n, k])}")
        problems += _replay_anti_affinity(cluster, rules, placement, steps, wave)
        for s in steps:
            placement[s.guest] = s.target
    if not np.array_equal(placement, plan.final_placement):
        problems.append("the steps do not lead to the planned placement")
    return problems


def _sum_rows(placement: np.ndarray, demand: np.ndarray, n_nodes: int) -> np.ndarray:
    out = np.zeros((n_nodes, demand.shape[1]), dtype=np.int64)
    np.add.at(out, placement, demand)
    return out


def _replay_wave(cluster: Cluster, rules: RuleSet, placement: np.ndarray, steps: list[Step], limits: Limits,
                 wave: int) -> list[str]:
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
    maintenance = {m.node for m in rules.maintenance}
    for s in steps:
        label = cluster.guest_label(s.guest)
        if placement[s.guest] != s.source:
            problems.append(f"wave {wave}: {label} is not on {cluster.node_names[s.source]}")
        if s.target in maintenance or not cluster.node_online[s.target]:
            problems.append(f"wave {wave}: {label} sent to unavailable node {cluster.node_names[s.target]}")
        if not rules.allowed[s.guest, s.target]:
            problems.append(f"wave {wave}: {label} visits {cluster.node_names[s.target]}, outside its allowed nodes")
    return problems


def _replay_anti_affinity(cluster: Cluster, rules: RuleSet, placement: np.ndarray, steps: list[Step],
                          wave: int) -> list[str]:
    problems = []
    incoming = {s.guest: s.target for s in steps}
    for group in rules.anti_affinities:
        counts = np.zeros(cluster.n_nodes, dtype=int)
        for g in group.members:
            counts[placement[g]] += 1
            if g in incoming:
                counts[incoming[g]] += 1
        before = np.bincount(np.asarray(cluster.guest_node)[list(group.members)], minlength=cluster.n_nodes)
        # A pre-existing violation may persist while it is repaired; it must never grow.
        for n in np.flatnonzero((counts > group.per_node_cap) & (counts > before)):
            problems.append(f"wave {wave}: {group.source}: {int(counts[n])} members on {cluster.node_names[n]}")
    return problems


def check_plan(cluster: Cluster, rules: RuleSet, loads: LoadModel, plan: Plan, limits: Limits) -> None:
    """Replay or raise InternalError: an unsafe plan is our bug, never output."""
    problems = replay(cluster, rules, loads, plan, limits)
    if problems:
        raise InternalError("replay rejected the migration plan: " + "; ".join(problems[:3]))
