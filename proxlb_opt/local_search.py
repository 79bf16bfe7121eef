"""Unit-move local search: a fast, vectorized, rule-aware descent on the spread, within the allowance.

It starts from a valid placement (the repair's, or a better incumbent) and repeatedly applies the move
that lowers the spread most *per migration*: a whole unit (an affinity group moves as one and costs
its member count; bringing a guest back to its original node gives a migration back) from one of the
most loaded nodes to any node that takes it under every hard limit and rule (feasibility.py). When no
single move lowers the spread, it tries swaps of two units between a loaded and a light node, and
then moves that keep the spread but lower Σ percent² (they walk off plateaus where several nodes share
the maximum). It stops when nothing helps, the allowance is used up, or the deadline passes.

Evaluation is vectorized over (unit, target node): the spread after a move needs each resource's
maximum and minimum over the nodes *other than* the source and the target, read from the three
highest and three lowest nodes. The search is deterministic, and the budget only ends it: with a
larger budget it makes the same first moves, so its spread never rises with the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt.deadline import Deadline
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import Problem

EPS = 1e-9
#: Most loaded nodes whose units are tried as single moves, and node pairs tried for swaps.
SOURCES = 3
SWAP_NODES = 3
#: Units per node considered for swaps (largest first).
SWAP_UNITS = 60


@dataclass(frozen=True)
class SearchResult:
    placement: np.ndarray
    steps: int  # moves and swaps applied


def improve(problem: Problem, start: np.ndarray, deadline: Deadline, max_steps: int = 100_000) -> SearchResult:
    """Descend from the valid placement `start`; the answer keeps every rule and the allowance."""
    search = _Search(problem, start)
    steps = 0
    while steps < max_steps and not deadline.expired():
        if not search.step():
            break
        steps += 1
    return SearchResult(search.occ.placement.copy(), steps)


class _Search:
    def __init__(self, problem: Problem, start: np.ndarray):
        self.p = problem
        self.occ = Occupancy(problem, start)
        self.eligible = problem.eligible_nodes
        self.unit_balance = problem.unit_balance
        self.unit_cost = np.array([int(problem.loads.migration_cost[m].sum()) for m in problem.units], dtype=np.int64)
        self.original = problem.current

    # ------------------------------------------------------------------------- one step

    def step(self) -> bool:
        if self.eligible.size < 2:
            return False
        move = self._best_move(plateau=False)
        if move is None:
            move = self._best_swap()
        if move is None:
            move = self._best_move(plateau=True)
        if move is None:
            return False
        for unit, target in move:
            self.occ.move(self.p.units[unit], target)
        return True

    def _budget_left(self) -> float:
        allowance = self.p.allowance
        return np.inf if allowance is None else allowance - self.occ.moves()

    def _units_on(self, node: int) -> np.ndarray:
        """Units wholly on `node` (gathered units only: the repair gathered every split group)."""
        units = np.unique(self.p.unit_of[(self.occ.placement == node) & (self.p.unit_of >= 0)])
        return np.array([u for u in units if (self.occ.placement[self.p.units[u]] == node).all()], dtype=np.int64)

    def _move_delta(self, units: np.ndarray, source: int) -> np.ndarray:
        """int[U, n]: change of the move count when each unit goes from `source` to each node."""
        n = self.p.cluster.n_nodes
        home = np.zeros((units.size, n), dtype=np.int64)
        for i, u in enumerate(units):
            np.add.at(home[i], self.original[self.p.units[u]], 1)
        return home[:, [source]] - home

    def _feasible(self, units: np.ndarray, source: int) -> np.ndarray:
        """bool[U, n]: where each unit (now on `source`) may move."""
        ok = self.occ.unit_targets(units)
        ok[:, source] = False
        return ok

    # ------------------------------------------------------------------------- moves

    def _best_move(self, plateau: bool) -> list[tuple[int, int]] | None:
        pct = self.occ.percent()
        weights = self.p.balance.weights
        current = self._spread(pct)
        weighted = pct[self.eligible] @ weights
        sources = {int(self.eligible[i]) for i in np.argsort(-weighted)[:SOURCES]}
        sources |= {int(self.eligible[np.argmax(pct[self.eligible, r])]) for r in range(pct.shape[1])}
        budget = self._budget_left()
        best_key, best = None, None
        for s in sorted(sources):
            units = self._units_on(s)
            if units.size == 0:
                continue
            feasible = self._feasible(units, s)
            delta = self._move_delta(units, s)
            feasible &= delta <= budget
            if not feasible.any():
                continue
            spread, squares = self._after_moves(pct, s, self.unit_balance[units])
            gain = current - spread
            if plateau:
                good = feasible & (gain > -EPS) & (squares < -EPS)
                per = -squares / np.maximum(delta, 0.5)
            else:
                good = feasible & (gain > EPS)
                per = gain / np.maximum(delta, 0.5)
            if not good.any():
                continue
            per = np.where(good, per, -np.inf)
            i, t = np.unravel_index(int(np.argmax(per)), per.shape)
            key = (float(per[i, t]), -int(self.unit_cost[units[i]]), -int(units[i]), -int(t))
            if best_key is None or key > best_key:
                best_key, best = key, [(int(units[i]), int(t))]
        return best

    def _spread(self, pct: np.ndarray) -> float:
        part = pct[self.eligible]
        return float(((part.max(axis=0) - part.min(axis=0)) * self.p.balance.weights).sum())

    def _after_moves(self, pct: np.ndarray, s: int, demand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spread and Δ Σ w·percent² after moving each unit (demand[U, r]) from s to each node: [U, n] each."""
        cap = self.p.balance.cap
        weights = self.p.balance.weights
        new_s = pct[s][None, :] - 100.0 * demand / cap[s][None, :]  # [U, r]
        new_t = pct[None, :, :] + 100.0 * demand[:, None, :] / cap[None, :, :]  # [U, n, r]
        hi_rest, lo_rest = self._extremes_without(pct, s)  # [n, r]: over eligible nodes other than s and t
        hi = np.maximum(np.maximum(hi_rest[None], new_s[:, None, :]), new_t)
        lo = np.minimum(np.minimum(lo_rest[None], new_s[:, None, :]), new_t)
        spread = (hi - lo) @ weights
        squares = ((new_s ** 2 - pct[s] ** 2)[:, None, :] + new_t ** 2 - pct[None] ** 2) @ weights
        return spread, squares

    def _extremes_without(self, pct: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
        """float[n, r]: max and min percent over eligible nodes except s and the column's own node t."""
        part = pct[self.eligible]
        n_nodes, n_res = pct.shape
        hi = np.full((n_nodes, n_res), -np.inf)
        lo = np.full((n_nodes, n_res), np.inf)
        order = np.argsort(part, axis=0, kind="stable")
        t_nodes = np.arange(n_nodes)
        for r in range(n_res):
            top = [int(self.eligible[i]) for i in order[::-1][:3, r]]
            bottom = [int(self.eligible[i]) for i in order[:3, r]]
            hi[:, r] = _first_not(top, pct[:, r], s, t_nodes, -np.inf)
            lo[:, r] = _first_not(bottom, pct[:, r], s, t_nodes, np.inf)
        return hi, lo

    # ------------------------------------------------------------------------- swaps

    def _best_swap(self) -> list[tuple[int, int]] | None:
        pct = self.occ.percent()
        weights = self.p.balance.weights
        current = self._spread(pct)
        weighted = pct[self.eligible] @ weights
        order = self.eligible[np.argsort(weighted)]
        budget = self._budget_left()
        best_key, best = None, None
        for s in order[::-1][:SWAP_NODES]:
            for t in order[:SWAP_NODES]:
                if s == t:
                    continue
                found = self._swap_between(pct, current, int(s), int(t), budget)
                if found is not None and (best_key is None or found[0] > best_key):
                    best_key, best = found
        return best

    def _swap_between(self, pct: np.ndarray, current: float, s: int, t: int, budget: float):
        p = self.p
        us, ut = self._largest_units(s), self._largest_units(t)
        if us.size == 0 or ut.size == 0:
            return None
        net = self.unit_balance[us][:, None, :] - self.unit_balance[ut][None, :, :]  # [A, B, r] from s to t
        cap = p.balance.cap
        new_s = pct[s] - 100.0 * net / cap[s]
        new_t = pct[t] + 100.0 * net / cap[t]
        others = np.array([n for n in self.eligible if n not in (s, t)], dtype=np.int64)
        if others.size:
            hi = np.maximum(np.maximum(pct[others].max(axis=0), new_s), new_t)
            lo = np.minimum(np.minimum(pct[others].min(axis=0), new_s), new_t)
        else:
            hi, lo = np.maximum(new_s, new_t), np.minimum(new_s, new_t)
        gain = current - (hi - lo) @ p.balance.weights
        ok = (gain > EPS) & self.occ.swaps_within_limits(us, s, ut, t)
        cost = self._move_delta(us, s)[:, t][:, None] + self._move_delta(ut, t)[:, s][None, :]
        ok &= cost <= budget
        if not ok.any():
            return None
        per = np.where(ok, gain / np.maximum(cost, 0.5), -np.inf)
        for _ in range(8):  # anti-affinity is checked on the best few only: it needs the exact counts
            a, b = np.unravel_index(int(np.argmax(per)), per.shape)
            if per[a, b] == -np.inf:
                return None
            if self.occ.swap_keeps_anti_affinity(int(us[a]), s, int(ut[b]), t):
                return (float(per[a, b]), -int(us[a]), -int(ut[b])), [(int(us[a]), t), (int(ut[b]), s)]
            per[a, b] = -np.inf
        return None

    def _largest_units(self, node: int) -> np.ndarray:
        units = self._units_on(node)
        if units.size > SWAP_UNITS:
            size = self.unit_balance[units] @ self.p.balance.weights
            units = units[np.argsort(-size, kind="stable")[:SWAP_UNITS]]
        return units


def _first_not(candidates: list[int], values: np.ndarray, s: int, t_nodes: np.ndarray, empty: float) -> np.ndarray:
    """For every node t: values of the first candidate that is neither s nor t (`empty` if none is left)."""
    out = np.full(t_nodes.size, empty)
    settled = np.zeros(t_nodes.size, dtype=bool)
    for c in candidates:
        if c == s:
            continue
        take = ~settled & (t_nodes != c)
        out[take] = values[c]
        settled |= take
    return out

