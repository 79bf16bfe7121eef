"""Heuristic search around CP-SAT for clusters too large for one exact model.

* `repair_and_descend`: a rule-aware first incumbent. Mandatory moves first (guests that must
  leave, split affinity groups, crowded anti-affinity groups), then steepest descent: the single
  move from a most-loaded node to a least-loaded node that lowers the spread most, within the
  budget, until none helps. Every move keeps every hard limit and rule.
* `large_neighbourhood_search`: from the incumbent, repeatedly frees the guests of a few of the
  most and least loaded nodes (plus a few random ones), keeps everything else where it is, and
  lets CP-SAT re-solve that sub-problem with the incumbent as hint; better answers replace it.
* `budget_bound`: a lower bound on the spread reachable with a migration budget (a relaxation:
  no node can shed more than its B largest movable guests, nor take more than B guests' worth, and
  the final band holds the capacity-weighted mean because the load is conserved).
All answers are judged by `check` like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from proxlb_opt import check
from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.cpsat.solve import SolverSettings, solve_placement
from proxlb_opt.rules import RuleSet

Score = tuple[float, int]


def score(cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray) -> Score:
    """What every planner minimizes, lexicographically: spread, then migration cost + preferences."""
    return (round(check.spread(cluster, loads, rules, placement), 6),
            check.migration_cost(loads, cluster, placement) + check.preference_penalty(rules, placement))


class _State:
    """Placement with incremental node loads for fast move evaluation."""

    def __init__(self, cluster: Cluster, rules: RuleSet, loads: LoadModel, budget: int | None, placement: np.ndarray):
        self.c, self.rules, self.loads, self.budget = cluster, rules, loads, budget
        self.placement = np.array(placement, dtype=np.int64)
        self.original = np.asarray(cluster.guest_node, dtype=np.int64)
        self.columns = [loads.resource_index(r) for r in loads.resources]
        self.weights = np.array(loads.weights, dtype=float) / sum(loads.weights)
        self.cap = loads.capacity[:, self.columns].astype(float)
        self.demand = loads.demand[:, self.columns].astype(float)
        self.balance = (loads.base[:, self.columns] + self._sum(loads.demand[:, self.columns])).astype(float)
        self.hard_demand = np.stack([lim.demand for lim in loads.hard_limits], axis=1)
        self.hard_limit = np.stack([lim.limit for lim in loads.hard_limits], axis=1)
        self.hard_load = np.stack([lim.base for lim in loads.hard_limits], axis=1) + self._sum(self.hard_demand)
        self.eligible = np.flatnonzero(rules.eligible)
        self.in_affinity = np.zeros(cluster.n_guests, dtype=bool)
        for group in rules.affinities:
            self.in_affinity[list(group.members)] = True
        self.anti_of: dict[int, list[int]] = {}
        for i, group in enumerate(rules.anti_affinities):
            for g in group.members:
                self.anti_of.setdefault(g, []).append(i)
        self.anti_count = np.zeros((len(rules.anti_affinities), cluster.n_nodes), dtype=int)
        for i, group in enumerate(rules.anti_affinities):
            np.add.at(self.anti_count[i], self.placement[list(group.members)], 1)

    def _sum(self, per_guest: np.ndarray) -> np.ndarray:
        out = np.zeros((self.c.n_nodes, per_guest.shape[1]), dtype=np.int64)
        np.add.at(out, self.placement, per_guest)
        return out

    def percent(self) -> np.ndarray:
        return 100.0 * self.balance / self.cap

    def spread(self) -> float:
        pct = self.percent()[self.eligible]
        if len(self.eligible) < 2:
            return 0.0
        return float(((pct.max(axis=0) - pct.min(axis=0)) * self.weights).sum())

    def budget_used(self) -> int:
        return int(((self.placement != self.original) & ~self.rules.budget_free).sum())

    def budget_delta(self, g: int, target: int) -> int:
        if self.rules.budget_free[g]:
            return 0
        return int(target != self.original[g]) - int(self.placement[g] != self.original[g])

    def fits(self, g: int, target: int) -> bool:
        if not self.rules.allowed[g, target] or target == self.placement[g]:
            return False
        if np.any(self.hard_load[target] + self.hard_demand[g] > self.hard_limit[target]):
            return False
        for i in self.anti_of.get(g, ()):
            if self.anti_count[i, target] + 1 > self.rules.anti_affinities[i].per_node_cap:
                return False
        return True

    def move(self, g: int, target: int) -> None:
        source = self.placement[g]
        self.balance[source] -= self.demand[g]
        self.balance[target] += self.demand[g]
        self.hard_load[source] -= self.hard_demand[g]
        self.hard_load[target] += self.hard_demand[g]
        for i in self.anti_of.get(g, ()):
            self.anti_count[i, source] -= 1
            self.anti_count[i, target] += 1
        self.placement[g] = target


# ----------------------------------------------------------------------------- repair + descent


def repair_and_descend(cluster: Cluster, rules: RuleSet, loads: LoadModel, budget: int | None,
                       deadline: float) -> np.ndarray | None:
    """A valid placement within the budget, or None when the simple repairs cannot make one."""
    state = _State(cluster, rules, loads, budget, cluster.guest_node)
    if not _repair(state):
        return None
    _descend(state, deadline)
    if check.violations(cluster, rules, loads, state.placement, budget):
        return None
    return state.placement


def _best_target(state: _State, guests: list[int], exclude: int | None = None) -> int | None:
    """The eligible node (other than `exclude`) where all `guests` fit together with the lowest spread."""
    best, best_spread = None, np.inf
    for n in state.eligible:
        n = int(n)
        if n == exclude or not all(state.rules.allowed[g, n] for g in guests):
            continue
        moving = [g for g in guests if state.placement[g] != n]
        extra = state.hard_demand[moving].sum(axis=0) if moving else 0
        if np.any(state.hard_load[n] + extra > state.hard_limit[n]):
            continue
        if not _anti_ok(state, moving, n):
            continue
        trial = [(g, int(state.placement[g])) for g in moving]
        for g in moving:
            state.move(g, n)
        spread = state.spread()
        for g, back in trial:
            state.move(g, back)
        if spread < best_spread:
            best, best_spread = n, spread
    return best


def _anti_ok(state: _State, moving: list[int], n: int) -> bool:
    extra: dict[int, int] = {}
    for g in moving:
        for i in state.anti_of.get(g, ()):
            extra[i] = extra.get(i, 0) + 1
    return all(state.anti_count[i, n] + k <= state.rules.anti_affinities[i].per_node_cap for i, k in extra.items())


def _repair(state: _State) -> bool:
    rules, c = state.rules, state.c
    for group in rules.affinities:
        members = list(group.members)
        nodes = set(state.placement[members].tolist())
        if len(nodes) > 1 or rules.mandatory[members].any():
            anchors = {int(state.placement[g]) for g in members if not rules.movable[g]}
            target = anchors.pop() if anchors else _best_target(state, members)
            if target is None or not all(rules.allowed[g, target] for g in members):
                return False
            for g in members:
                if state.placement[g] != target:
                    state.move(g, target)
    order = sorted(np.flatnonzero(rules.mandatory & ~state.in_affinity), key=lambda g: -state.demand[g].sum())
    for g in order:
        target = _best_target(state, [int(g)])
        if target is None:
            return False
        state.move(int(g), target)
    for i, group in enumerate(rules.anti_affinities):
        for n in np.flatnonzero(state.anti_count[i] > group.per_node_cap):
            extra = [g for g in group.members if state.placement[g] == n and rules.movable[g]
                     and not state.in_affinity[g]][: state.anti_count[i, n] - group.per_node_cap]
            for g in extra:
                target = _best_target(state, [g], exclude=int(n))
                if target is None:
                    return False
                state.move(g, target)
    caps = np.array([group.per_node_cap for group in rules.anti_affinities], dtype=int)
    return bool((state.anti_count <= caps[:, None]).all()) if caps.size else True


def _descend(state: _State, deadline: float, max_steps: int = 100_000) -> None:
    for _ in range(max_steps):
        if time.perf_counter() > deadline:
            return
        move = _best_move(state)
        if move is None:
            return
        state.move(*move)


def _best_move(state: _State) -> tuple[int, int] | None:
    """The move that lowers (spread, Σ squared percent) most: the second term walks off plateaus where
    several nodes share the maximum and no single move can lower the spread yet."""
    pct = state.percent()
    eligible = state.eligible
    if len(eligible) < 2:
        return None
    weighted = pct[eligible] @ state.weights
    order = eligible[np.argsort(weighted)]
    per_resource_hi = {int(eligible[np.argmax(pct[eligible, r])]) for r in range(pct.shape[1])}
    per_resource_lo = {int(eligible[np.argmin(pct[eligible, r])]) for r in range(pct.shape[1])}
    sources = list(per_resource_hi | {int(n) for n in order[-2:]})
    targets = list(per_resource_lo | {int(n) for n in order[:3]})
    current = (round(state.spread(), 9), 0.0)
    best: tuple[tuple[float, float], int, int] | None = None
    budget_left = None if state.budget is None else state.budget - state.budget_used()
    for s in sources:
        guests = np.flatnonzero((state.placement == s) & state.rules.movable & ~state.in_affinity)
        if guests.size == 0:
            continue
        for t in targets:
            if t == s:
                continue
            spreads, squares = _spreads_after(state, pct, s, t, guests)
            keys = sorted(range(len(guests)), key=lambda i: (round(spreads[i], 9), squares[i]))
            for idx in keys[:8]:
                key = (round(float(spreads[idx]), 9), float(squares[idx]))
                if key >= current or (best is not None and key >= best[0]):
                    break
                g = int(guests[idx])
                if budget_left is not None and state.budget_delta(g, t) > budget_left:
                    continue
                if state.fits(g, t):
                    best = (key, g, t)
                    break
    return None if best is None else (best[1], best[2])


def _spreads_after(state: _State, pct: np.ndarray, s: int, t: int, guests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spread after moving each of `guests` from s to t, and the change of Σ_r w_r · percent² (vectorized)."""
    others = np.array([n for n in state.eligible if n not in (s, t)], dtype=np.int64)
    delta = 100.0 * state.demand[guests]  # [k, r]
    new_s = pct[s] - delta / state.cap[s]
    new_t = pct[t] + delta / state.cap[t]
    if others.size:
        hi = np.maximum(np.maximum(pct[others].max(axis=0), new_s), new_t)
        lo = np.minimum(np.minimum(pct[others].min(axis=0), new_s), new_t)
    else:
        hi, lo = np.maximum(new_s, new_t), np.minimum(new_s, new_t)
    squares = (new_s ** 2 + new_t ** 2 - pct[s] ** 2 - pct[t] ** 2) @ state.weights
    return (hi - lo) @ state.weights, squares


# ----------------------------------------------------------------------------- LNS


@dataclass(frozen=True)
class SearchStats:
    iterations: int
    improvements: int
    seconds: float


def large_neighbourhood_search(cluster: Cluster, rules: RuleSet, loads: LoadModel, solver: SolverSettings,
                               incumbent: np.ndarray, deadline: float, seed: int = 7,
                               max_free_guests: int = 250, sub_seconds: float = 0.6,
                               max_width: int = 2) -> tuple[np.ndarray, SearchStats]:
    """Many short CP-SAT sub-problems beat a few long ones here (measured on 32×2000: 18 × 0.6 s > 4 × 3 s)."""
    rng = np.random.default_rng(seed)
    best = np.array(incumbent, dtype=np.int64)
    best_score = score(cluster, rules, loads, best)
    eligible = np.flatnonzero(rules.eligible)
    width = max(1, min(max_width, len(eligible) // 4))
    start, iterations, improvements = time.perf_counter(), 0, 0
    columns = [loads.resource_index(r) for r in loads.resources]
    size = (loads.demand[:, columns] / np.maximum(1, loads.capacity[:, columns].mean(axis=0))).sum(axis=1)
    while time.perf_counter() < deadline - 0.2 and len(eligible) >= 2:
        iterations += 1
        nodes = _pick_nodes(cluster, rules, loads, best, eligible, width, rng)
        restrict = _neighbourhood(cluster, rules, best, nodes, max_free_guests, rng, size)
        remaining = deadline - time.perf_counter()
        result = solve_placement(cluster, rules, loads, solver, hint=best, restrict_to=restrict,
                                 time_limit=min(max(0.3, remaining), sub_seconds))
        if result.placement is not None:
            candidate_score = score(cluster, rules, loads, result.placement)
            if candidate_score < best_score and not check.violations(cluster, rules, loads, result.placement,
                                                                     solver.max_migrations):
                best, best_score = result.placement, candidate_score
                improvements += 1
                continue
        width = width + 1 if width < len(eligible) // 2 else max(1, len(eligible) // 4)
    return best, SearchStats(iterations, improvements, time.perf_counter() - start)


def _pick_nodes(cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray, eligible: np.ndarray,
                width: int, rng: np.random.Generator) -> np.ndarray:
    pct = check.node_percent(cluster, loads, placement)[:, [loads.resource_index(r) for r in loads.resources]]
    weighted = pct[eligible] @ (np.array(loads.weights, dtype=float) / sum(loads.weights))
    order = eligible[np.argsort(weighted)]
    chosen = set(order[:width].tolist()) | set(order[-width:].tolist())
    for r in range(pct.shape[1]):
        chosen.add(int(eligible[np.argmax(pct[eligible, r])]))
        chosen.add(int(eligible[np.argmin(pct[eligible, r])]))
    rest = [int(n) for n in eligible if n not in chosen]
    if rest:
        chosen |= set(rng.choice(rest, size=min(len(rest), max(1, width // 2)), replace=False).tolist())
    return np.array(sorted(chosen), dtype=np.int64)


def _neighbourhood(cluster: Cluster, rules: RuleSet, placement: np.ndarray, nodes: np.ndarray, max_free: int,
                   rng: np.random.Generator, demand_size: np.ndarray | None = None) -> np.ndarray:
    """bool[g, n]: free guests on `nodes` may go to any of `nodes` or back home; all others stay."""
    g_all = np.arange(cluster.n_guests)
    restrict = np.zeros((cluster.n_guests, cluster.n_nodes), dtype=bool)
    restrict[g_all, placement] = True
    # Guests on the chosen nodes, and guests moved away from them (bringing one home frees budget).
    on_selected = (np.isin(placement, nodes) | np.isin(cluster.guest_node, nodes)) & rules.movable
    free = np.flatnonzero(on_selected)
    if free.size > max_free:
        # Keep the guests that matter: those already moved (they hold the budget) and the largest ones;
        # fill the rest at random so that repeated neighbourhoods differ.
        moved = free[placement[free] != cluster.guest_node[free]]
        size = demand_size[free] if demand_size is not None else np.zeros(free.size)
        largest = free[np.argsort(-size, kind="stable")][: max_free // 2]
        keep = np.union1d(moved, largest)[:max_free]
        rest = np.setdiff1d(free, keep)
        extra = rng.choice(rest, size=min(rest.size, max(0, max_free - keep.size)), replace=False) if rest.size else []
        free = np.sort(np.union1d(keep, extra)).astype(np.int64)
    node_mask = np.zeros(cluster.n_nodes, dtype=bool)
    node_mask[nodes] = True
    for group in rules.affinities:  # a group moves as a whole or not at all
        members = list(group.members)
        if np.isin(members, free).any():
            free = np.union1d(free, [g for g in members if rules.movable[g]])
    restrict[free] |= node_mask
    restrict[free, cluster.guest_node[free]] = True
    return restrict


# ----------------------------------------------------------------------------- bound


def budget_bound(cluster: Cluster, rules: RuleSet, loads: LoadModel, budget: int | None) -> float:
    """A lower bound on the weighted spread reachable with `budget` optional moves (0 when unlimited)."""
    return weighted_bound(loads, budget_bounds(cluster, rules, loads, budget))


def weighted_bound(loads: LoadModel, per_resource: dict[str, float]) -> float:
    """Per-resource spread bounds combined with the resource weights, like the weighted spread."""
    return sum(w * per_resource[r] for r, w in zip(loads.resources, loads.weights)) / sum(loads.weights)


def budget_bounds(cluster: Cluster, rules: RuleSet, loads: LoadModel, budget: int | None) -> dict[str, float]:
    """Per balanced resource, a spread no plan with `budget` optional moves can beat (percentage points).

    A relaxation ("band" bound): for the final spread to be S, all eligible nodes must fit in some band
    [lo, lo + S]. A node above the band needs at least k outgoing moves, k being how many of its
    largest optional guests it must shed (after its budget-free guests, which leave for free); a node
    below needs at least k incoming moves of the largest optional guests allowed there. Every move
    has one source and one target, so both the outgoing and the incoming counts must fit the budget.
    The load is conserved, so the band must also contain the nodes' capacity-weighted mean percent,
    and the incoming guests of all nodes below the band are distinct: together they need at least as
    many moves as the cluster's largest optional guests take to cover the total gain.
    The smallest S for which some band passes is the bound (band starts on a grid, each cell tested
    optimistically, so the bound stays valid).
    """
    if budget is None or np.flatnonzero(rules.eligible).size < 2:
        return {r: 0.0 for r in loads.resources}
    return {r: _band_bound(cluster, rules, loads, loads.resource_index(r), budget) for r in loads.resources}


def _final_mean_percent(cluster: Cluster, rules: RuleSet, loads: LoadModel, r: int) -> float | None:
    """The capacity-weighted mean percent of the eligible nodes after any plan, or None when it is not
    fixed (a movable guest may end on a node outside the spread)."""
    eligible = rules.eligible
    current = np.asarray(cluster.guest_node)
    if (rules.allowed[rules.movable] & ~eligible[None, :]).any():
        return None
    # Unmovable guests stay where they are; every movable guest ends on an eligible node.
    ends_inside = rules.movable | eligible[current]
    total = float(loads.base[eligible, r].sum()) + float(loads.demand[ends_inside, r].sum())
    return 100.0 * total / float(loads.capacity[eligible, r].sum())


def _band_bound(cluster: Cluster, rules: RuleSet, loads: LoadModel, r: int, budget: int) -> float:
    eligible = np.flatnonzero(rules.eligible)
    current = np.asarray(cluster.guest_node)
    load = check.node_loads(cluster, loads, current)[:, r].astype(float)
    cap = loads.capacity[:, r].astype(float)
    demand = loads.demand[:, r].astype(float)
    optional = rules.movable & ~rules.budget_free
    free = rules.movable & rules.budget_free
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
    mean = _final_mean_percent(cluster, rules, loads, r)

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
