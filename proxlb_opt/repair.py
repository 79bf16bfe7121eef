"""The repair stage: the mandatory part of a plan, solved on its own before any balancing.

What must change whatever the budget: guests on maintenance nodes or off their pins, affinity groups
split over several nodes, anti-affinity groups crowded on a node, and nodes over a hard limit's
capacity of a physical limit (used memory, local disk; relieved as far as the other nodes have room;
see loads.py for why assigned memory and vCPUs are only never made worse). `repair` finds a placement where every
rule holds with as few moves as it can (a fast heuristic, then CP-SAT to prove or improve the move
count when time allows) and the lowest spread among those it tries. Its answer is a valid starting
point for every budget: `Problem.with_repair` records how many moves it took (the allowance of every
later search is that many plus the budget) and tightens each over-full node's limit to what the
repair reached.

The heuristic, unit by unit (an affinity group moves as one):
1. units that must move (split, or a member outside its allowed nodes), most constrained first, go to
   the node that needs the fewest of their members to move, then the least loaded one; when no node
   has room, the units in the way on a candidate node are moved elsewhere first ("make room");
2. anti-affinity groups over their cap on a node send their extra members to nodes that can take them;
3. nodes over a physical limit's capacity send units, largest first, to nodes that stay within theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.explain import infeasible_error
from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic
from proxlb_opt.deadline import Deadline
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import Problem

#: How many units "make room" may move out of one candidate node before giving up on it.
MAX_EVICTIONS = 8


@dataclass(frozen=True)
class RepairResult:
    placement: np.ndarray  # int64[g]: every rule holds
    moves: int
    proven_minimal: bool  # the move count is proven minimal (CP-SAT), not just found
    excess: np.ndarray  # int64[n, k]: how far each node stays over a hard limit's capacity
    notes: tuple[str, ...] = ()
    # Whether "every node within capacity" is decided exactly: zero excess (a placement), or CP-SAT proved
    # that no placement reaches zero.
    excess_proven: bool = False
    #: The placement of the repair heuristic, when it found one: deterministic, so the allowance (its move
    #: count plus the budget) is the same on every run, and the unit greedy starts from it.
    heuristic: np.ndarray | None = None
    heuristic_moves: int | None = None

    @property
    def allowance_moves(self) -> int:
        """The moves the allowance grants the repair: the heuristic's count, else this repair's."""
        return self.moves if self.heuristic_moves is None else max(self.moves, self.heuristic_moves)

    def placements(self) -> list[np.ndarray]:
        return [self.placement] if self.heuristic is None else [self.placement, self.heuristic]


def needs_repair(problem: Problem) -> bool:
    """True when the current placement breaks a rule or a node is over a physical limit's capacity."""
    occ = Occupancy(problem)
    return bool(occ.broken_rules()) or bool((occ.hard > problem.hard.goal).any())


def repair_heuristic(problem: Problem, deadline: Deadline | None = None) -> RepairResult | None:
    """A placement where every rule holds, or None when these simple steps cannot find one."""
    occ = Occupancy(problem.with_budget(None))
    fixed: set[int] = set()
    for u in _units_to_fix(problem, occ):
        if deadline is not None and deadline.expired():
            return None
        if not _place_unit(occ, u, fixed):
            return None
        fixed.add(u)
    if not _spread_anti_affinity(occ, fixed):
        return None
    _relieve_over_capacity(occ, fixed)
    if occ.broken_rules():
        return None
    excess = np.maximum(0, occ.hard - problem.hard.goal)
    return RepairResult(placement=occ.placement.copy(), moves=occ.moves(),
                        proven_minimal=occ.moves() <= lower_bound_moves(problem) and not excess.any(), excess=excess,
                        excess_proven=not excess.any())


def tightened_limits(problem: Problem, *placements: np.ndarray) -> np.ndarray:
    """int64[n, k]: each node's limit after the repair: its goal, or the most load a repair left it at."""
    hard = problem.hard
    load = np.max([hard.load(p) for p in placements], axis=0)
    return np.maximum(hard.goal, np.minimum(hard.limit, load))


# ----------------------------------------------------------------------------- units that must move


def _units_to_fix(problem: Problem, occ: Occupancy) -> list[int]:
    """Units split over nodes or with a member outside its allowed nodes, most constrained first."""
    out = []
    allowed_here = problem.rules.allowed[np.arange(problem.cluster.n_guests), occ.placement]
    for u, members in enumerate(problem.units):
        split = len(set(occ.placement[members].tolist())) > 1
        if split or not allowed_here[members].all():
            out.append(u)
    size = [float(problem.balance.demand[problem.units[u]].sum()) for u in out]
    choices = [int(problem.unit_allowed[u].sum()) for u in out]
    order = sorted(range(len(out)), key=lambda i: (choices[i], -size[i], out[i]))
    return [out[i] for i in order]


def _place_unit(occ: Occupancy, u: int, fixed: set[int]) -> bool:
    members = occ.problem.units[u]
    targets = occ.targets(members)
    if targets.any():
        occ.move(members, _best_target(occ, members, targets))
        return True
    for t in _candidates(occ, u):
        trial = occ.copy()
        if _make_room(trial, members, t, fixed | {u}):
            trial.move(members, t)
            _adopt(occ, trial)
            return True
    return False


def _best_target(occ: Occupancy, members: np.ndarray, targets: np.ndarray) -> int:
    """Fewest members moving, then the lowest weighted percent after the unit arrives, then node order."""
    p = occ.problem
    staying = np.bincount(occ.placement[members], minlength=p.cluster.n_nodes)
    demand = p.balance.demand[members].sum(axis=0)
    after = 100.0 * (occ.balance + demand) / p.balance.cap @ p.balance.weights
    nodes = np.flatnonzero(targets)
    return int(min(nodes, key=lambda n: (-staying[n], after[n], n)))


def _candidates(occ: Occupancy, u: int) -> list[int]:
    """Nodes the unit may run on, those with the most room first."""
    p = occ.problem
    nodes = np.flatnonzero(p.unit_allowed[u] & p.rules.eligible)
    room = ((p.hard.limit - occ.hard) / np.maximum(1, p.hard.limit)).min(axis=1) if p.hard.names else np.zeros(
        p.cluster.n_nodes)
    return sorted((int(n) for n in nodes), key=lambda n: (-room[n], n))


def _make_room(occ: Occupancy, members: np.ndarray, target: int, protected: set[int]) -> bool:
    """Move units out of `target` until `members` fit there; False when that does not work out."""
    p = occ.problem
    for _ in range(MAX_EVICTIONS):
        if occ.may_move(members, target):
            return True
        evictee = _evictee(occ, members, target, protected)
        if evictee is None:
            return False
        unit, destination = evictee
        occ.move(p.units[unit], destination)
        protected = protected | {unit}
    return occ.may_move(members, target)


def _evictee(occ: Occupancy, members: np.ndarray, target: int, protected: set[int]) -> tuple[int, int] | None:
    """The unit on `target` whose leaving helps most and that has somewhere to go, with its destination."""
    p = occ.problem
    need, blocking_groups = occ.shortfall(members, target)  # need > 0: that much must leave the target
    need = np.maximum(need, 0)
    units = [int(u) for u in np.unique(p.unit_of[(occ.placement == target) & (p.unit_of >= 0)])
             if int(u) not in protected and (occ.placement[p.units[int(u)]] == target).all()]
    if not units:
        return None
    units = np.array(units, dtype=np.int64)
    gain = np.minimum(p.unit_hard[units], need[None, :]).sum(axis=1) / max(1, int(need.sum()))
    helps_anti = np.array([any(i in blocking_groups for i in p.unit_anti[u]) for u in units], dtype=bool)
    useful = (gain > 0) | helps_anti
    if not useful.any():
        return None
    units, gain, helps_anti = units[useful], gain[useful], helps_anti[useful]
    targets = occ.unit_targets(units)
    targets[:, target] = False
    movable = targets.any(axis=1)
    if not movable.any():
        return None
    sizes = np.array([len(p.units[u]) for u in units])
    order = np.lexsort((units, sizes, -(gain + helps_anti)))
    best = next(i for i in order if movable[i])
    unit = int(units[best])
    return unit, _best_target(occ, p.units[unit], targets[best])


def _adopt(occ: Occupancy, trial: Occupancy) -> None:
    occ.placement, occ.hard, occ.balance, occ.anti = trial.placement, trial.hard, trial.balance, trial.anti


# ----------------------------------------------------------------------------- anti-affinity


def _spread_anti_affinity(occ: Occupancy, fixed: set[int]) -> bool:
    p = occ.problem
    for i, n, extra in occ.crowded():
        group = p.rules.anti_affinities[i]
        movers = [int(p.unit_of[g]) for g in group.members
                  if occ.placement[g] == n and p.unit_of[g] >= 0 and int(p.unit_of[g]) not in fixed]
        for u in sorted(set(movers), key=lambda u: (len(p.units[u]), u)):
            if extra <= 0:
                break
            if _place_away(occ, u, n, fixed):
                extra -= p.unit_anti[u].get(i, 0)
    return not occ.crowded()


def _place_away(occ: Occupancy, u: int, source: int, fixed: set[int]) -> bool:
    p = occ.problem
    members = p.units[u]
    targets = occ.targets(members)
    targets[source] = False
    if targets.any():
        occ.move(members, _best_target(occ, members, targets))
        fixed.add(u)
        return True
    for t in _candidates(occ, u):
        if t == source:
            continue
        trial = occ.copy()
        if _make_room(trial, members, t, fixed | {u}):
            trial.move(members, t)
            _adopt(occ, trial)
            fixed.add(u)
            return True
    return False


# ----------------------------------------------------------------------------- over capacity


def _relieve_over_capacity(occ: Occupancy, fixed: set[int]) -> None:
    """Move units off nodes over a physical limit's capacity, largest first, to nodes that stay within theirs."""
    p = occ.problem
    goal = p.hard.goal
    for n, k in zip(*np.nonzero(occ.hard > goal)):
        n, k = int(n), int(k)
        units = np.unique(p.unit_of[(occ.placement == n) & (p.unit_of >= 0)])
        units = [int(u) for u in units if int(u) not in fixed and (occ.placement[p.units[int(u)]] == n).all()]
        units.sort(key=lambda u: (-int(p.hard.demand[p.units[u], k].sum()), u))
        for u in units:
            if occ.hard[n, k] <= goal[n, k]:
                break
            members = p.units[u]
            if p.hard.demand[members, k].sum() <= 0:
                continue
            targets = occ.targets(members)
            targets[n] = False
            within = (occ.hard + p.hard.demand[members].sum(axis=0) <= goal).all(axis=1)
            targets &= within
            if targets.any():
                occ.move(members, _best_target(occ, members, targets))
                fixed.add(u)


# ----------------------------------------------------------------------------- CP-SAT


def repair_exact(problem: Problem, solver: SolverSettings, time_limit: float,
                 hint: RepairResult | None, restrict: np.ndarray | None = None) -> RepairResult | None:
    """CP-SAT on the repair model: least excess over capacity, then fewest moves, then lowest spread.

    `restrict` (bool[g, n]) limits where guests may go (large clusters); the move count is then the
    fewest within that neighbourhood, not proven for the whole cluster. None: no answer in time;
    InfeasibleError when the rules cannot all hold.
    """
    unbounded = problem.with_budget(None)
    options = BuildOptions(repair=True, hint=None if hint is None else hint.placement, restrict_to=restrict)
    result = solve_lexicographic(unbounded, solver, options, time_limit, stages=("excess", "moves", "spread", "order"))
    if result.infeasible:
        if restrict is None:
            raise infeasible_error(unbounded, time_limit=max(1.0, time_limit))
        return None
    if not result.found:
        return None
    placement = result.placement
    occ = Occupancy(unbounded, placement)
    proven = restrict is None and result.proven.get("excess", False) and result.proven.get("moves", False)
    excess = np.maximum(0, occ.hard - problem.hard.goal)
    return RepairResult(placement=placement, moves=occ.moves(), proven_minimal=proven, excess=excess,
                        excess_proven=not excess.any() or (restrict is None and result.proven.get("excess", False)))


def lower_bound_moves(problem: Problem) -> int:
    """Moves any repair needs at least: every guest off its allowed nodes, plus per split affinity unit
    the members not on the node that holds most of them (when that node is allowed)."""
    return int(problem.rules.mandatory.sum()) + sum(moves for _, moves in problem.split_units)
