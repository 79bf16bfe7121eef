"""A lower bound on the spread any plan within the migration allowance can reach (the "band" relaxation).

It states how far a plan is from the best possible when CP-SAT cannot prove it (large clusters), and
it is added to the exact model as a valid cut (hi − lo ≥ bound) so the solver's own bound starts
there. See models/FORMULATION.md, "Budget bound".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt import check
from proxlb_opt.problem import Problem


def budget_bound(problem: Problem) -> float:
    """A lower bound on the weighted spread reachable within the problem's allowance (0 when unlimited)."""
    return weighted_bound(problem, budget_bounds(problem))


def weighted_bound(problem: Problem, per_resource: dict[str, float]) -> float:
    """Per-resource spread bounds combined with the resource weights, like the weighted spread."""
    loads = problem.loads
    return sum(w * per_resource[r] for r, w in zip(loads.resources, loads.weights)) / sum(loads.weights)


@dataclass(frozen=True)
class MoveClasses:
    """How a relaxation counts moves: `free` guests may leave and arrive without using the pool of
    `budget` moves; `optional` guests each use one move of it."""

    free: np.ndarray  # bool[g]
    optional: np.ndarray  # bool[g]
    budget: int


def budget_bounds(problem: Problem) -> dict[str, float]:
    """Per balanced resource, a spread no plan within the allowance can beat (percentage points).

    Guests that must move (mandatory) move in every plan; the others ("optional") may use what is
    left of the allowance: allowance − the number of mandatory guests.

    A relaxation ("band" bound): for the final spread to be S, all eligible nodes must fit in some band
    [lo, lo + S]. A node above the band needs at least k outgoing moves, k being how many of its
    largest optional guests it must shed (after its mandatory guests, which leave anyway); a node
    below needs at least k incoming moves of the largest optional guests allowed there. Every move
    has one source and one target, so both the outgoing and the incoming counts must fit what is left.
    The load is conserved, so the band must also contain the nodes' capacity-weighted mean percent,
    and the incoming guests of all nodes below the band are distinct: together they need at least as
    many moves as the cluster's largest optional guests take to cover the total gain.
    The smallest S for which some band passes is the bound (band starts on a grid, each cell tested
    optimistically, so the bound stays valid).

    A second count of the same relaxation keeps apart the moves the rules' repair must spend (see
    `repair_reserved`); the higher of the two bounds holds.
    """
    loads, rules = problem.loads, problem.rules
    if problem.allowance is None or np.flatnonzero(rules.eligible).size < 2:
        return {r: 0.0 for r in loads.resources}
    mandatory = int(rules.mandatory.sum())
    plain = MoveClasses(free=rules.movable & rules.mandatory, optional=rules.movable & ~rules.mandatory,
                        budget=max(0, problem.allowance - mandatory))
    reserved = repair_reserved(problem)
    out = {}
    for r in loads.resources:
        i = loads.resource_index(r)
        out[r] = max([_band_bound(problem, i, classes) for classes in (plain, reserved) if classes is not None])
    return out


def repair_reserved(problem: Problem) -> MoveClasses | None:
    """The relaxation with the repair's share of the allowance kept apart, or None when no rule reserves any.

    A split affinity unit (no member mandatory) must end on one node: at least `size − most members on
    one of its allowed nodes` of its members move. A crowded anti-affinity group must thin out: on each
    node at least `members there − its per-node cap − mandatory members there` of its other members
    leave. Counting only groups with no guest in common, those moves go to the groups' own members, so
    the other optional guests share at most `allowance − mandatory − Σ reserved` moves. The relaxation
    lets the counted groups' members move freely (any of them, anywhere allowed): every real plan is
    one of its cases, so the bound stays valid, and it is far tighter where repairs eat most of a
    small allowance (a budget-0 plan on a cluster with many broken rules).
    """
    rules, current = problem.rules, problem.current
    counted = np.zeros(problem.cluster.n_guests, dtype=bool)
    reserved = 0
    for u, moves in problem.split_units:
        reserved += moves
        counted[problem.units[u]] = True
    for group, members in zip(rules.anti_affinities, problem.anti_members):
        if members.size == 0 or counted[members].any():
            continue
        on = current[members]
        need = 0
        for n in np.unique(on):
            here = members[on == n]
            need += max(0, here.size - group.per_node_cap - int(rules.mandatory[here].sum()))
        if need:
            reserved += need
            counted[members[rules.movable[members] & ~rules.mandatory[members]]] = True
    if not reserved:
        return None
    pool = problem.allowance - int(rules.mandatory.sum()) - reserved
    return MoveClasses(free=rules.movable & (rules.mandatory | counted),
                       optional=rules.movable & ~rules.mandatory & ~counted, budget=max(0, pool))


def _final_mean_percent(problem: Problem, r: int) -> float | None:
    """The capacity-weighted mean percent of the eligible nodes after any plan, or None when it is not
    fixed (a movable guest may end on a node outside the spread)."""
    cluster, rules, loads = problem.cluster, problem.rules, problem.loads
    eligible = rules.eligible
    current = np.asarray(cluster.guest_node)
    if (rules.allowed[rules.movable] & ~eligible[None, :]).any():
        return None
    # Unmovable guests stay where they are; every movable guest ends on an eligible node.
    ends_inside = rules.movable | eligible[current]
    total = float(loads.base[eligible, r].sum()) + float(loads.demand[ends_inside, r].sum())
    return 100.0 * total / float(loads.capacity[eligible, r].sum())


def _band_bound(problem: Problem, r: int, classes: MoveClasses) -> float:
    cluster, rules, loads = problem.cluster, problem.rules, problem.loads
    budget, optional, free = classes.budget, classes.optional, classes.free
    eligible = np.flatnonzero(rules.eligible)
    current = np.asarray(cluster.guest_node)
    load = check.node_loads(problem, current)[:, r].astype(float)
    cap = loads.capacity[:, r].astype(float)
    demand = loads.demand[:, r].astype(float)
    out_prefix, in_prefix, out_free, in_free = [], [], [], []
    for n in eligible:
        here = current == n
        out_prefix.append(np.concatenate([[0.0], np.cumsum(np.sort(demand[here & optional])[::-1])]))
        out_free.append(float(demand[here & free].sum()))
        may_come = rules.allowed[:, n] & ~here
        in_prefix.append(np.concatenate([[0.0], np.cumsum(np.sort(demand[may_come & optional])[::-1])]))
        in_free.append(float(demand[may_come & free].sum()))
    pct = 100.0 * load[eligible] / cap[eligible]
    lo_grid = np.linspace(pct.min(), pct.max(), 401)
    step = lo_grid[1] - lo_grid[0]
    unreachable = budget + 1

    def moves_needed(prefix: list[np.ndarray], amount: np.ndarray) -> np.ndarray:
        """int[grid]: Σ over nodes of the fewest largest guests whose sum covers amount[grid, node]."""
        total = np.zeros(amount.shape[0], dtype=np.int64)
        for i in range(amount.shape[1]):
            k = np.searchsorted(prefix[i], amount[:, i] - 1e-9)
            k = np.where(amount[:, i] <= 1e-9, 0, k)
            total += np.where(k >= len(prefix[i]), unreachable, k)
        return total

    gain_needed = np.maximum(0.0, lo_grid[:, None] * cap[eligible] / 100.0 - load[eligible] - np.array(in_free))
    ins = moves_needed(in_prefix, gain_needed)
    # Each node alone may count the cluster's largest guests; together the incoming guests are distinct.
    largest = np.concatenate([[0.0], np.cumsum(np.sort(demand[optional])[::-1])])
    ins = np.maximum(ins, moves_needed([largest], gain_needed.sum(axis=1, keepdims=True)))
    mean = _final_mean_percent(problem, r)

    def feasible(spread: float) -> bool:
        hi = lo_grid + step + spread  # optimistic for every band start within [lo, lo + step]
        shed = np.maximum(0.0, load[eligible] - np.array(out_free) - hi[:, None] * cap[eligible] / 100.0)
        outs = moves_needed(out_prefix, shed)
        passes = (outs <= budget) & (ins <= budget)
        if mean is not None:
            # The load is conserved: the capacity-weighted mean percent lies between the least and the
            # most loaded node, so the band must contain it.
            passes &= (lo_grid <= mean + 1e-9) & (hi >= mean - 1e-9)
        return bool(np.any(passes))

    low, high = 0.0, float(pct.max() - pct.min())
    if feasible(0.0):
        return 0.0
    for _ in range(18):  # bisection to ~high / 2^18
        middle = (low + high) / 2
        if feasible(middle):
            high = middle
        else:
            low = middle
    return low
