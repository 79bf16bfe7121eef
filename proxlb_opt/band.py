"""Band construction: aim every node at a target band [lo, lo + S] with as few moves as possible.

When the budget is small compared with how lopsided the cluster is, moving one guest at a time from
the most to the least loaded node (the greedies, the local search) lowers the spread very little per
move: the maximum is held by several full nodes and the minimum by several empty ones, and all of
them must change before the spread does. This stage works the other way round, like the budget bound
(bounds.py) but with real guests: it picks a band, lets every node above it shed its units (fewest
moves: the smallest unit that alone gets it under the band, else the largest), sends those units to
the nodes below the band (largest first, to the node furthest below that takes it within the band),
then fills the nodes still below the band with units from the nodes with the most to spare. Every
move is asked of the feasibility module; the allowance is never exceeded (a band that needs more
moves is left half-way, and that placement is still a valid candidate).

Bands are searched by bisection on S (between the budget bound and today's spread), with a few band
positions around the capacity-weighted mean for each S; the best placement (the checker's spread,
then migration cost) is returned. Measured on the 40 × 750 lopsided model at a 25-move budget: the
unit greedy reaches 82.6 pp, this stage about 60 pp (CP-SAT on the whole model, 60 s: 59.0 pp).
"""

from __future__ import annotations

import numpy as np

from proxlb_opt import check
from proxlb_opt.deadline import Deadline
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import Problem

#: Bisection steps on the band width, and band positions tried per width.
STEPS = 10
POSITIONS = (0.5, 0.3, 0.7)


def band_search(problem: Problem, start: np.ndarray, deadline: Deadline, floor: float = 0.0) -> np.ndarray:
    """The best placement reached by aiming at target bands, starting from the valid placement `start`."""
    if problem.eligible_nodes.size < 2:
        return start
    best = np.array(start, dtype=np.int64)
    best_score = check.score(problem, best)
    mean = _mean_percent(problem, start)
    unit_pp = _unit_percent(problem)
    low, high = max(0.0, floor), check.spread(problem, start)
    for _ in range(STEPS):
        if deadline.expired() or high - low < 0.05:
            break
        width = (low + high) / 2
        reached = False
        for position in POSITIONS:
            if deadline.expired():
                break
            lo = mean - position * width
            placement = _aim(problem, start, unit_pp, lo, lo + width)
            score = check.score(problem, placement)
            if score < best_score:
                best, best_score = placement, score
            reached |= score[0] <= width + 1e-6
        if reached:
            high = width
        else:
            low = width
    return best


def _unit_percent(problem: Problem) -> np.ndarray:
    """float[u, n]: the weighted percentage points each unit adds to each node."""
    bal = problem.balance
    demand = np.zeros((len(problem.units), bal.demand.shape[1]))
    for u, members in enumerate(problem.units):
        demand[u] = bal.demand[members].sum(axis=0)
    return 100.0 * (demand[:, None, :] / bal.cap[None, :, :]) @ bal.weights


def _mean_percent(problem: Problem, placement: np.ndarray) -> float:
    """The capacity-weighted mean of the weighted percent over the eligible nodes."""
    occ = Occupancy(problem, placement)
    eligible = problem.eligible_nodes
    bal = problem.balance
    per_resource = 100.0 * occ.balance[eligible].sum(axis=0) / bal.cap[eligible].sum(axis=0)
    return float(per_resource @ bal.weights)


class _Aim:
    """One attempt at a band: the occupancy, the moves left, and the weighted percent of each unit per node."""

    def __init__(self, problem: Problem, start: np.ndarray, unit_pp: np.ndarray):
        self.p = problem
        self.occ = Occupancy(problem, start)
        allowance = problem.allowance
        self.allowance = np.inf if allowance is None else allowance
        self.unit_pp = unit_pp

    def pct(self) -> np.ndarray:
        return self.occ.percent() @ self.p.balance.weights

    def units_on(self, node: int) -> list[int]:
        return [int(u) for u in self.occ.units_on(node)]

    def cost(self, unit: int, target: int) -> int:
        members = self.p.units[unit]
        home = self.p.current[members]
        return int((home != target).sum() - (home != self.occ.placement[members]).sum())

    def move(self, unit: int, target: int) -> bool:
        if self.occ.moves() + self.cost(unit, target) > self.allowance:
            return False
        self.occ.move(self.p.units[unit], target)
        return True


def _aim(problem: Problem, start: np.ndarray, unit_pp: np.ndarray, lo: float, hi: float) -> np.ndarray:
    aim = _Aim(problem, start, unit_pp)
    pool = _shed(aim, hi)
    _place(aim, pool, lo, hi)
    _fill(aim, lo, hi)
    return aim.occ.placement.copy()


def _shed(aim: _Aim, hi: float) -> list[tuple[int, int]]:
    """(unit, source) pairs that the nodes above the band give up, fewest per node."""
    pct = aim.pct()
    pool = []
    for n in aim.p.eligible_nodes[np.argsort(-pct[aim.p.eligible_nodes], kind="stable")]:
        n = int(n)
        excess = pct[n] - hi
        if excess <= 0:
            break
        units = [u for u in aim.units_on(n) if (aim.p.unit_allowed[u] & aim.p.rules.eligible).sum() > 1]
        size = {u: float(aim.unit_pp[u, n]) for u in units}
        while excess > 1e-9 and units:
            enough = [u for u in units if size[u] >= excess]
            unit = min(enough, key=lambda u: (size[u], u)) if enough else max(units, key=lambda u: (size[u], -u))
            units.remove(unit)
            pool.append((unit, n))
            excess -= size[unit]
    return pool


def _place(aim: _Aim, pool: list[tuple[int, int]], lo: float, hi: float) -> None:
    """Largest first, each shed unit to the node furthest below the band that takes it within the band."""
    for unit, source in sorted(pool, key=lambda item: (-float(aim.unit_pp[item[0], item[1]]), item[0])):
        if aim.occ.placement[aim.p.units[unit][0]] != source:
            continue
        pct = aim.pct()
        targets = aim.occ.targets(aim.p.units[unit])
        targets[source] = False
        after = pct + aim.unit_pp[unit]
        within = targets & (after <= hi + 1e-9)
        below = within & (pct < lo)
        choice = below if below.any() else within
        if not choice.any():
            continue
        nodes = np.flatnonzero(choice)
        aim.move(unit, int(nodes[np.argmin(pct[nodes])]))


def _fill(aim: _Aim, lo: float, hi: float) -> None:
    """Raise the nodes still below the band with units from the nodes with the most to spare."""
    eligible = aim.p.eligible_nodes
    for _ in range(len(eligible)):
        pct = aim.pct()
        low = [int(n) for n in eligible[np.argsort(pct[eligible], kind="stable")] if pct[n] < lo - 1e-9]
        if not low:
            return
        target = low[0]
        need = lo - pct[target]
        moved = False
        for donor in eligible[np.argsort(-pct[eligible], kind="stable")]:
            donor = int(donor)
            if donor == target or pct[donor] <= lo:
                break
            spare = pct[donor] - lo
            candidates = [u for u in aim.units_on(donor)
                          if aim.unit_pp[u, donor] <= spare + 1e-9 and pct[target] + aim.unit_pp[u, target] <= hi + 1e-9]
            candidates = [u for u in candidates if aim.occ.may_move(aim.p.units[u], target)]
            if not candidates:
                continue
            unit = min(candidates, key=lambda u: (abs(float(aim.unit_pp[u, target]) - need), u))
            moved = aim.move(unit, target)
            break
        if not moved:
            return
