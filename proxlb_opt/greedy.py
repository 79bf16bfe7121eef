"""Two greedy baselines: ProxLB's balancing pass as it behaves, and a plain, fair unit greedy.

**ProxLB-style** (`proxlb_greedy`), re-implemented from ProxLB 2.3.0's observable behaviour (not its
code): guests on maintenance nodes go one by one to the node with the lowest percent, with no capacity
check; then, while ProxLB would still balance (the gap between the highest and lowest node exceeds
`balanciness` or the highest node is at a `*_threshold`; in mode psi while something is hot; with
`enforce_pinning` always: triggers.py), affinity groups
(a guest without an affinity tag is a group of one), smallest first, ties by used memory (ascending,
or descending with `balance_larger_guests_first`), go to the node with the lowest percent; a member
moves only while its node is the most loaded one and it fits the target's free memory; anti-affinity
members take the next node not yet used by their group, pinned guests the least loaded of their pins;
one pass, at most `max_migrations` balancing moves. It may break rules; the checker says so.

**Unit greedy** (`unit_greedy`), the fair comparator: start from the repair (every rule holds), then
repeatedly move the best unit (one guest, or a whole affinity group) from the most loaded node to the
least loaded node that can take one, "best" being the move that lowers the spread most; every hard
limit and rule is kept (feasibility.py) and the allowance is respected. It stops when no such move
lowers the spread.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from proxlb_opt.deadline import Deadline
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import Problem
from proxlb_opt.rules import AFFINITY_PREFIX
from proxlb_opt.triggers import static_reasons, threshold_reasons

EPS = 1e-9
#: Target nodes the unit greedy evaluates at once, least loaded first.
GREEDY_BATCH = 8


@dataclass(frozen=True)
class GreedyResult:
    placement: np.ndarray  # int64[g]
    balancing_moves: int
    maintenance_moves: int


# ----------------------------------------------------------------------------- ProxLB-style


class _ProxlbState:
    """Node loads while guests are moved one at a time, as ProxLB keeps them."""

    def __init__(self, problem: Problem):
        self.p = problem
        self.occ = Occupancy(problem)
        used = [k for k, name in enumerate(problem.hard.names) if name == "used memory"]
        self.used_memory = used[0] if used else None

    def percent(self) -> np.ndarray:
        return self.occ.percent() @ self.p.balance.weights

    def gap(self) -> float:
        pct = self.percent()[self.p.eligible_nodes]
        return float(pct.max() - pct.min()) if pct.size > 1 else 0.0

    def still_balancing(self, always: bool) -> bool:
        """ProxLB's check before each group: `always` holds the reasons that moves cannot change."""
        if always:
            return True
        if self.p.settings.mode == "psi":
            return False
        return self.gap() > self.p.settings.balanciness or bool(threshold_reasons(self.p, self.occ.percent()))

    def lowest(self, among: np.ndarray | None = None) -> int | None:
        nodes = self.p.eligible_nodes if among is None else np.intersect1d(among, self.p.eligible_nodes)
        if nodes.size == 0:
            return None
        return int(nodes[np.argmin(self.percent()[nodes])])

    def highest(self) -> int:
        nodes = self.p.eligible_nodes
        return int(nodes[np.argmax(self.percent()[nodes])])

    def fits_memory(self, g: int, n: int) -> bool:
        """ProxLB checks only that the guest's used memory is below the target's free memory."""
        if self.used_memory is None:
            return True
        k = self.used_memory
        free = self.p.hard.capacity[n, k] - self.occ.hard[n, k]
        return self.p.hard.demand[g, k] < free


def proxlb_greedy(problem: Problem, max_migrations: int | None = None) -> GreedyResult:
    state = _ProxlbState(problem)
    maintenance_moves = _drain_maintenance(state)
    if not problem.rules.eligible.any():
        return GreedyResult(state.occ.placement.copy(), 0, maintenance_moves)
    moves = 0
    anti_used: dict[str, list[int]] = defaultdict(list)
    always = bool(static_reasons(problem))
    for group in _proxlb_groups(problem):
        if not state.still_balancing(always):
            break
        target = state.lowest()
        for g in group:
            if max_migrations is not None and moves >= max_migrations:
                return GreedyResult(state.occ.placement.copy(), moves, maintenance_moves)
            if state.occ.placement[g] != state.highest():
                break
            if target is None or not state.fits_memory(g, target):
                continue
            node = _anti_affinity_target(state, g, anti_used, target)
            node = _pin_target(state, g, node)
            if node is not None and node != state.occ.placement[g]:
                state.occ.move([g], node)
                moves += 1
    return GreedyResult(state.occ.placement.copy(), moves, maintenance_moves)


def _drain_maintenance(state: _ProxlbState) -> int:
    moved = 0
    maintenance_nodes = [m.node for m in state.p.rules.maintenance]
    for g in np.flatnonzero(np.isin(state.occ.placement, maintenance_nodes) & state.p.rules.movable):
        target = state.lowest()
        if target is not None:
            state.occ.move([int(g)], target)
            moved += 1
    return moved


def _proxlb_groups(problem: Problem) -> list[list[int]]:
    """Affinity groups by tag (the last tag wins, as in ProxLB), singletons otherwise, smallest first."""
    cluster = problem.cluster
    by_tag: dict[str, list[int]] = defaultdict(list)
    singles: list[list[int]] = []
    for g in np.flatnonzero(problem.rules.movable):
        tags = [t for t in cluster.guest_tags[g] if t.startswith(AFFINITY_PREFIX)]
        if tags:
            by_tag[tags[-1]].append(int(g))
        else:
            singles.append([int(g)])
    groups = list(by_tag.values()) + singles
    used = np.where(cluster.guest_running, cluster.guest_mem_used_mib, 0)
    sign = -1 if problem.settings.balance_larger_guests_first else 1
    return sorted(groups, key=lambda members: (len(members), sign * int(used[members].sum()), members[0]))


def _anti_affinity_target(state: _ProxlbState, g: int, used: dict[str, list[int]], target: int) -> int:
    for group in state.p.rules.anti_affinities:
        if g not in group.members:
            continue
        for n in state.p.eligible_nodes:
            if int(n) not in used[group.name]:
                used[group.name].append(int(n))
                return int(n)
    return target


def _pin_target(state: _ProxlbState, g: int, target: int | None) -> int | None:
    pinned = [p for p in state.p.rules.pins if p.guest == g]
    if not pinned:
        return target
    allowed = np.array(sorted(set.intersection(*(set(p.nodes) for p in pinned))), dtype=np.int64)
    return state.lowest(allowed) if allowed.size else target


# ----------------------------------------------------------------------------- unit greedy


def unit_greedy(problem: Problem, start: np.ndarray, deadline: Deadline | None = None) -> np.ndarray:
    """From the valid placement `start` (the repair), move the best unit from the most to the least
    loaded node that can take one, while that lowers the spread; every rule and the allowance hold."""
    return unit_greedy_path(problem, start, deadline).final


@dataclass(frozen=True)
class GreedyPath:
    """The unit greedy's steps in order: a valid placement after every step, the spread falling at each."""

    start: np.ndarray  # int64[g]
    units: tuple[np.ndarray, ...]  # the members moved at each step
    targets: tuple[int, ...]
    moves: tuple[int, ...]  # guests away from their node (the allowance's count) after each step
    final: np.ndarray

    def within(self, allowance: int) -> np.ndarray:
        """The placement after the last step whose move count fits `allowance` (the lowest spread that does:
        the spread falls at every step); `start` when none does."""
        last = max((i for i, m in enumerate(self.moves) if m <= allowance), default=-1)
        placement = self.start.copy()
        for members, target in zip(self.units[:last + 1], self.targets[:last + 1]):
            placement[members] = target
        return placement


def unit_greedy_path(problem: Problem, start: np.ndarray, deadline: Deadline | None = None) -> GreedyPath:
    """The unit greedy (see `unit_greedy`), step by step: with no allowance, one run gives a plan for every
    budget (`GreedyPath.within`)."""
    occ = Occupancy(problem, start)
    eligible = problem.eligible_nodes
    allowance = problem.allowance
    units, targets, moves = [], [], []
    while eligible.size >= 2 and (deadline is None or not deadline.expired()):
        if allowance is not None and occ.moves() >= allowance:
            break
        move = _best_unit_move(problem, occ, allowance)
        if move is None:
            break
        occ.move(problem.units[move[0]], move[1])
        units.append(problem.units[move[0]])
        targets.append(move[1])
        moves.append(occ.moves())
    return GreedyPath(start=np.asarray(start, dtype=np.int64).copy(), units=tuple(units), targets=tuple(targets),
                      moves=tuple(moves), final=occ.placement.copy())


def _best_unit_move(problem: Problem, occ: Occupancy, allowance: int | None) -> tuple[int, int] | None:
    """The unit from the most loaded node whose move to the least loaded node that can take one lowers the
    spread most (the next least loaded node when none fits there)."""
    pct = occ.percent() @ problem.balance.weights
    eligible = problem.eligible_nodes
    source = int(eligible[np.argmax(pct[eligible])])
    units = occ.units_on(source)
    if units.size == 0:
        return None
    before = occ.spread()
    order = eligible[np.argsort(pct[eligible], kind="stable")]
    order = order[: int(np.flatnonzero(order == source)[0])]  # only nodes less loaded than the source
    # The least loaded nodes first: the answer is almost always among them, and each batch is one
    # vectorized evaluation.
    for start in range(0, order.size, GREEDY_BATCH):
        nodes = order[start:start + GREEDY_BATCH]
        allowed = occ.unit_targets(units, nodes)
        if allowance is not None:
            allowed &= occ.moves() + occ.move_delta(units, source, nodes) <= allowance
        spread, _ = occ.spreads_after(units, source, nodes)
        better = allowed & (spread < before - EPS)
        for column, target in enumerate(nodes):
            if better[:, column].any():
                best = np.where(better[:, column], spread[:, column], np.inf)
                return int(units[int(np.argmin(best))]), int(target)
    return None
