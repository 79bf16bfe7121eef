"""Rolling maintenance (pure): drain nodes one at a time for an upgrade, each step a checked, replayed plan.

Step by step: the node goes into maintenance, the planner (planner.plan_problem, migration budget 0:
only what must move) evacuates it, the node is upgraded and comes back; its guests stay where they
went, and the node may receive guests again in later steps. Every intermediate state is a plan's
final placement (check.violations) reached by a replayed sequence of migrations (plan.replay), so
capacity and every rule hold throughout.

The order. Every movable guest on a node of the rolling set moves at least once (it is still there
when its node's turn comes, or it left earlier), so the total migrations are at least the movable
guests on those nodes that may run elsewhere; when no eligible node is outside the set, the first
node's evacuees all land on nodes still to come, and those with two or more allowed nodes move again:
`lower_bound` adds the fewest such evacuees of any node. A guest sent to a node that is drained later moves again, so a
good order sends evacuees to nodes already done (or outside the set). The order is chosen on a fast
simulation (the feasibility module, each unit to an allowed node with room, nodes already done
first, then the least loaded; a guest that may run on its own node only stays there, shut down while
the node is down): with at most `EXACT_ORDER_NODES` nodes every order is searched
(depth-first, cut by the lower bound), otherwise a greedy order (at each step the node whose
evacuation sends the fewest guests to nodes still to come, then the fewest, then the least memory).
The chosen order's steps are then planned for real, each evacuee restricted to the nodes already done
or outside the set when that has a placement (the planner falls back to every node otherwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from proxlb_opt.cluster import Cluster, with_placement
from proxlb_opt.config import Settings
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InfeasibleError, InputError, SolveTimeoutError, UnsafePlanError
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.plan import TimeModel
from proxlb_opt.planner import PlanResult, plan_problem, time_model
from proxlb_opt.problem import Problem, build_problem

#: Up to this many nodes every order is searched (on the simulation); above it a greedy order.
EXACT_ORDER_NODES = 7


@dataclass(frozen=True)
class RollingStep:
    node: str
    result: PlanResult | None  # None: the node could not be drained (see `problem`)
    problem: str = ""
    stays: tuple[int, ...] = ()  # vmids that may run on this node only: they stay, shut down while it is down

    @property
    def migrations(self) -> int:
        return 0 if self.result is None else len(self.result.plan.steps)

    @property
    def seconds(self) -> float:
        return 0.0 if self.result is None else self.result.plan.predicted_seconds


@dataclass(frozen=True)
class Rolling:
    nodes: tuple[str, ...]  # the order
    steps: tuple[RollingStep, ...]
    order_method: str  # exhaustive | greedy
    orders_searched: int
    lower_bound: int  # migrations any order needs at least
    simulated_migrations: int  # the chosen order on the simulation
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return all(s.result is not None for s in self.steps) and len(self.steps) == len(self.nodes)

    @property
    def migrations(self) -> int:
        return sum(s.migrations for s in self.steps)

    @property
    def predicted_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def proven_minimal(self) -> bool:
        """The total is the least any order could need: it equals the lower bound."""
        return self.complete and self.migrations <= self.lower_bound


# ----------------------------------------------------------------------------- simulation


@dataclass
class _State:
    occ: Occupancy
    moves: int
    seconds: float
    memory: int


def _simulate_step(problem: Problem, state: _State, node: int, done: set[int], outside: np.ndarray,
                   times: TimeModel) -> tuple[_State, int] | None:
    """Evacuate `node` on a copy of the state: (new state, guests sent to nodes still to come), or None
    when a unit has nowhere to go."""
    occ = state.occ.copy()
    p = problem
    preferred = outside.copy()
    preferred[list(done)] = True
    to_come = 0
    moves, seconds, memory = state.moves, state.seconds, state.memory
    units = [int(u) for u in np.unique(p.unit_of[(occ.placement == node) & (p.unit_of >= 0)])]
    for u in sorted(units, key=lambda u: (-float(p.unit_balance[u].sum()), u)):
        members = p.units[u]
        on = members[occ.placement[members] == node]
        if on.size == 0:
            continue
        if not (p.unit_allowed[u] & p.rules.eligible & (np.arange(p.cluster.n_nodes) != node)).any():
            continue  # may run on this node only: it stays, shut down during the maintenance
        ok = occ.targets(members)
        ok[node] = False
        if not ok.any():
            return None
        nodes = np.flatnonzero(ok)
        bal = p.balance
        load = (100.0 * (occ.balance[nodes] + p.unit_balance[u]) / bal.cap[nodes]) @ bal.weights
        rank = np.lexsort((nodes, load, ~preferred[nodes]))
        target = int(nodes[rank[0]])
        if not preferred[target]:
            to_come += len(on)
        occ.move(members, target)
        c = p.cluster
        for g in on:
            moves += 1
            seconds += times.seconds(c, int(g))
            memory += int(c.guest_mem_used_mib[g]) if c.guest_running[g] else 0
    return _State(occ, moves, seconds, memory), to_come


def _lower_bound(problem: Problem, nodes: list[int]) -> int:
    """Movable guests on the nodes to drain that may run on some other eligible node each move at least once.
    When every eligible node is to be drained, the first node's evacuees land on nodes still to come, and
    each one with two or more allowed nodes must leave that one too: at least the fewest such evacuees of
    any node more."""
    eligible = problem.rules.eligible
    leaving, twice = [], []
    for n in nodes:
        others = eligible.copy()
        others[n] = False
        on = np.flatnonzero((problem.current == n) & problem.rules.movable)
        go = on[(problem.rules.allowed[on] & others).any(axis=1)]
        leaving.append(int(go.size))
        twice.append(int(((problem.rules.allowed[go] & eligible).sum(axis=1) >= 2).sum()))
    outside = eligible.copy()
    outside[nodes] = False
    return sum(leaving) + (min(twice) if twice and not outside.any() else 0)


def choose_order(problem: Problem, nodes: list[int], times: TimeModel,
                 deadline: Deadline) -> tuple[list[int], str, int, int]:
    """(order, method, orders searched, simulated migrations). Exhaustive on few nodes, greedy otherwise."""
    outside = problem.rules.eligible.copy()
    outside[nodes] = False
    start = _State(Occupancy(problem), 0, 0.0, 0)
    greedy, greedy_cost = _greedy_order(problem, nodes, start, outside, times)
    if len(nodes) > EXACT_ORDER_NODES:
        return greedy, "greedy", 1, greedy_cost[0] if greedy_cost else -1
    best = [greedy, greedy_cost]
    searched = [0]
    leaves = {}
    for n in nodes:
        others = problem.rules.eligible.copy()
        others[n] = False
        leaves[n] = problem.rules.movable & (problem.rules.allowed & others).any(axis=1)
    floor = _lower_bound(problem, nodes)
    complete = [True]

    def visit(order: list[int], state: _State, done: set[int]) -> None:
        if deadline.expired():
            complete[0] = False
            return
        if len(order) == len(nodes):
            searched[0] += 1
            cost = (state.moves, state.seconds)
            if best[1] is None or cost < best[1]:
                best[0], best[1] = list(order), cost
            return
        remaining = [n for n in nodes if n not in done]
        # Lower bound of any completion: what moved so far plus every guest still on a node to come that can leave it.
        bound = state.moves + sum(int(((state.occ.placement == n) & leaves[n]).sum()) for n in remaining)
        if best[1] is not None and bound > best[1][0]:
            return
        for n in remaining:
            step = _simulate_step(problem, state, n, done, outside, times)
            if step is None:
                continue
            visit(order + [n], step[0], done | {n})

    visit([], start, set())
    method = "exhaustive" if complete[0] else "greedy"
    if best[1] is not None and best[1][0] <= floor:
        method = "exhaustive"  # the simulation reached the lower bound: no order can do better
    return best[0], method, searched[0], best[1][0] if best[1] else -1


def _greedy_order(problem: Problem, nodes: list[int], start: _State, outside: np.ndarray,
                  times: TimeModel) -> tuple[list[int], tuple[int, float] | None]:
    """At each step the node whose evacuation sends the fewest guests to nodes still to come, then moves the
    fewest guests, then the least memory; unorderable nodes go last (the real plan reports them)."""
    order, state, done = [], start, set()
    remaining = list(nodes)
    while remaining:
        options = []
        for n in remaining:
            step = _simulate_step(problem, state, n, done, outside, times)
            if step is not None:
                new, to_come = step
                options.append(((to_come, new.moves - state.moves, new.memory - state.memory, n), n, new))
        if not options:
            return order + remaining, None
        _, n, state = min(options, key=lambda o: o[0])
        order.append(n)
        done.add(n)
        remaining.remove(n)
    return order, (state.moves, state.seconds)


# ----------------------------------------------------------------------------- the real steps


def rolling(cluster: Cluster, settings: Settings, nodes: tuple[str, ...] = (),
            deadline: Deadline | None = None) -> Rolling:
    """The order to drain `nodes` (default: every eligible node) one at a time, and each step's plan."""
    started = time.perf_counter()
    deadline = deadline or Deadline(settings.time_limit)
    base = build_problem(cluster, settings)
    c = base.cluster
    if nodes:
        index = []
        for name in nodes:
            n = c.node_index(name)
            if n is None:
                raise InputError(f"--rolling: unknown node {name!r} (nodes: {', '.join(c.node_names)})")
            if not base.rules.eligible[n]:
                raise InputError(f"--rolling: {name} is offline or already in maintenance")
            index.append(n)
    else:
        index = [int(n) for n in base.eligible_nodes]
    if len(base.eligible_nodes) < 2:
        raise InputError("--rolling: a rolling maintenance needs at least two eligible nodes")
    times = time_model(settings)
    order, method, searched, simulated = choose_order(base, sorted(set(index)), times,
                                                      deadline.sub(deadline.remaining() * 0.2))
    notes: list[str] = []
    if method == "greedy" and len(index) <= EXACT_ORDER_NODES:
        notes.append("the search over every order ran out of time: the best order found is used")
    steps: list[RollingStep] = []
    state = c
    done: set[int] = set()
    outside = base.rules.eligible.copy()
    outside[index] = False
    for i, n in enumerate(order):
        share = deadline.sub(deadline.remaining() / (len(order) - i))
        step = _plan_step(state, settings, n, done, outside, share)
        steps.append(step)
        if step.result is None:
            notes.append(f"stopped at {c.node_names[n]}: {step.problem}")
            break
        state = with_placement(step.result.problem.cluster, step.result.placement)
        done.add(n)
    return Rolling(nodes=tuple(c.node_names[n] for n in order), steps=tuple(steps), order_method=method,
                   orders_searched=searched, lower_bound=_lower_bound(base, index), simulated_migrations=simulated,
                   seconds=time.perf_counter() - started, notes=tuple(notes))


def _plan_step(state: Cluster, settings: Settings, node: int, done: set[int], outside: np.ndarray,
               deadline: Deadline) -> RollingStep:
    """Drain `node` from `state` with only the moves that must happen (budget 0), its guests preferring the
    nodes already done or outside the set."""
    name = state.node_names[node]
    step_settings = replace(settings, ignore_nodes=(), maintenance_nodes=tuple(settings.maintenance_nodes) + (name,),
                            max_migrations=0)
    loose = build_problem(state, step_settings, check_domains=False)
    stays = [int(state.guest_vmid[g]) for g in np.flatnonzero(loose.rules.movable & ~loose.rules.allowed.any(axis=1))
             if state.guest_node[g] == node]
    if stays:
        step_settings = replace(step_settings, ignore_guests=tuple(step_settings.ignore_guests) + tuple(map(str, stays)))
    problem = build_problem(state, step_settings)
    preferred = outside.copy()
    preferred[list(done)] = True
    mask = np.ones((state.n_guests, state.n_nodes), dtype=bool)
    leaving = np.flatnonzero(problem.current == node)
    mask[leaving] = preferred[None, :]
    attempts = [problem.restricted(mask), problem] if preferred.any() else [problem]
    last = ""
    for i, candidate in enumerate(attempts):
        try:
            sub = deadline.sub(deadline.remaining() * (0.5 if i == 0 and len(attempts) > 1 else 1.0))
            return RollingStep(name, plan_problem(candidate, "cpsat", sub), stays=tuple(stays))
        except (InfeasibleError, SolveTimeoutError, UnsafePlanError) as exc:
            last = str(exc)
    return RollingStep(name, None, last, stays=tuple(stays))
