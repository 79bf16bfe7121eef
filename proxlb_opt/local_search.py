"""Unit-move local search: a fast, vectorized, rule-aware descent on the spread, within the allowance.

It starts from a valid placement (the repair's, or a better incumbent) and repeatedly applies the move
that lowers the spread most *per migration*: a whole unit (an affinity group moves as one and costs
its member count; bringing a guest back to its original node gives a migration back) from one of the
most loaded nodes to any node that takes it under every hard limit and rule (feasibility.py). When no
single move lowers the spread, it tries swaps of two units between a loaded and a light node, and
then moves that keep the spread but lower Σ percent² (they walk off plateaus where several nodes share
the maximum). It stops when nothing helps, the allowance is used up, or the deadline passes.

Evaluation is vectorized over (unit, target node) by the feasibility module (`unit_targets`,
`spreads_after`, `move_delta`). The search is deterministic, and the budget only ends it: with a
larger budget it makes the same first moves, so its spread never rises with the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt.deadline import Deadline
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import Problem

EPS = 1e-9
#: Most loaded nodes whose units are tried as single moves, least loaded nodes tried as their targets
#: (plus each resource's most and least loaded node), and node pairs tried for swaps.
SOURCES = 3
TARGETS = 12
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


    # ------------------------------------------------------------------------- moves

    def _best_move(self, plateau: bool) -> list[tuple[int, int]] | None:
        pct = self.occ.percent()
        weights = self.p.balance.weights
        current = self._spread(pct)
        weighted = pct[self.eligible] @ weights
        ranked = np.argsort(weighted, kind="stable")
        sources = {int(self.eligible[i]) for i in ranked[::-1][:SOURCES]}
        sources |= {int(self.eligible[np.argmax(pct[self.eligible, r])]) for r in range(pct.shape[1])}
        targets = {int(self.eligible[i]) for i in ranked[:TARGETS]}
        targets |= {int(self.eligible[np.argmin(pct[self.eligible, r])]) for r in range(pct.shape[1])}
        budget = self._budget_left()
        best_key, best = None, None
        for s in sorted(sources):
            units = self.occ.units_on(s)
            nodes = np.array(sorted(targets - {s}), dtype=np.int64)
            if units.size == 0 or nodes.size == 0:
                continue
            delta = self.occ.move_delta(units, s, nodes)
            feasible = self.occ.unit_targets(units, nodes) & (delta <= budget)
            if not feasible.any():
                continue
            spread, squares = self.occ.spreads_after(units, s, nodes)
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
            i, column = np.unravel_index(int(np.argmax(per)), per.shape)
            t = int(nodes[column])
            key = (float(per[i, column]), -int(self.unit_cost[units[i]]), -int(units[i]), -t)
            if best_key is None or key > best_key:
                best_key, best = key, [(int(units[i]), t)]
        return best

    def _spread(self, pct: np.ndarray) -> float:
        part = pct[self.eligible]
        return float(((part.max(axis=0) - part.min(axis=0)) * self.p.balance.weights).sum())

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
        cost = self.occ.move_delta(us, s)[:, t][:, None] + self.occ.move_delta(ut, t)[:, s][None, :]
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
        units = self.occ.units_on(node)
        if units.size > SWAP_UNITS:
            size = self.unit_balance[units] @ self.p.balance.weights
            units = units[np.argsort(-size, kind="stable")[:SWAP_UNITS]]
        return units
