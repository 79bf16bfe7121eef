"""Choosing the placement: repair first, then incumbents, then CP-SAT; the best valid answer wins.

The pipeline, all on one Problem and one Deadline:
(a) **repair**: the mandatory part alone (repair.py): a heuristic, then CP-SAT for the fewest moves
    when the heuristic's count is not already the minimum. Its answer is valid for every budget;
    the allowance of everything after it is its move count plus the budget. If no repair exists,
    the rules in conflict are named (InfeasibleError); if none was found in time, SolveTimeoutError
    (exit 5) — the only way this pipeline ends without a plan.
(b) **incumbents**: the ProxLB-style greedy (when its answer is valid), the unit greedy and the band
    construction (band.py) from the repair, and the unit-move local search from the best of them.
(c) **CP-SAT**, warm-started from the best incumbent: the whole model when it is small enough (it can
    prove optimality), large-neighbourhood search otherwise, or after the whole model when it did
    not prove its answer in its share of the time.
(d) the best valid placement (spread, then migration cost) among all of them is the answer, so it is
    never worse than either greedy at the same budget.

Time: each stage takes a share of what is left of the deadline; a share is kept for sequencing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from proxlb_opt import check
from proxlb_opt.band import band_search
from proxlb_opt.bounds import budget_bounds, weighted_bound
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.lns import large_neighbourhood_search
from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic, spread_pp, spread_units
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InternalError, SolveTimeoutError
from proxlb_opt.greedy import proxlb_greedy, unit_greedy
from proxlb_opt.local_search import improve
from proxlb_opt.problem import Problem
from proxlb_opt.repair import RepairResult, lower_bound_moves, repair_exact, repair_heuristic, tightened_limits

log = logging.getLogger("proxlb_opt.optimizer")

#: Above this many placement variables the whole model is not solved at once: LNS takes over.
FULL_MODEL_MAX_VARS = 6000
#: Share of the time left kept for diffing, sequencing and replay.
SEQUENCING_SHARE = 0.1
#: … and at least this much per move of the best incumbent (64 × 10,000: 0.2-0.35 ms per move to sequence,
#: then the replay and the report; measured).
SEQUENCING_SECONDS_PER_MOVE = 6e-4
#: Shares of the time left for the repair's CP-SAT stage and for the incumbents (greedies + local search).
REPAIR_SHARE = 0.25
INCUMBENT_SHARE = 0.5
#: Share of the search time the whole model gets before neighbourhood search takes over (unless proven).
EXACT_SHARE = 0.85
#: Tolerance between the solver's own spread and the checker's: both use 0.01 pp resolution per resource.
SPREAD_TOLERANCE = 0.02


@dataclass(frozen=True)
class Outcome:
    problem: Problem  # after the repair: its move count and tightened limits
    placement: np.ndarray
    status: str  # optimal | feasible
    bound: float | None
    repair: RepairResult
    greedy_spread: float | None  # the ProxLB-style pass at the same budget (valid or not)
    unit_greedy_spread: float | None
    notes: tuple[str, ...] = ()
    cost_proven: bool = False  # with status optimal: the migration cost is proven minimal too
    alternatives: tuple[np.ndarray, ...] = ()  # the other valid candidates, best first (when no safe order exists)


def variable_count(problem: Problem) -> int:
    per_guest = problem.rules.allowed.sum(axis=1)
    return int(per_guest[per_guest > 1].sum())


def solver_settings(problem: Problem) -> SolverSettings:
    return SolverSettings(workers=problem.settings.workers, seed=problem.settings.seed)


def optimize(problem: Problem, deadline: Deadline, repaired: RepairResult | None = None,
             starts: tuple[np.ndarray, ...] = ()) -> Outcome:
    """The best placement within the deadline. `repaired`: the repair of this problem, when known (the
    points of a trade-off curve share one); `starts`: more valid placements to start from (the plan of
    a smaller budget is valid for every larger one)."""
    reserve = deadline.share(SEQUENCING_SHARE, at_least=0.3, at_most=3.0)
    search = deadline.sub(deadline.remaining() - reserve)
    notes: list[str] = []
    if repaired is None:
        repaired = find_repair(problem, search, notes)
    base, problem = problem, problem.with_repair(repaired.allowance_moves,
                                                 tightened_limits(problem, *repaired.placements()))
    for placement in repaired.placements():
        _assert_valid(problem, placement, "repair")
    _progress("repair", problem, repaired.placement, deadline)

    candidates = list(repaired.placements())
    candidates += [p for p in starts if not check.violations(problem, p)]
    proxlb = proxlb_greedy(problem, problem.budget).placement
    if not check.violations(problem, proxlb):
        candidates.append(proxlb)
    floors = budget_bounds(problem)
    bound = weighted_bound(problem, floors)
    incumbent_time = search.sub(search.share(INCUMBENT_SHARE))
    # The fair comparator exactly as it runs alone: the unit greedy from the deterministic heuristic repair,
    # with that repair's limits (never looser than this problem's) and allowance.
    fair_start = repaired.heuristic if repaired.heuristic is not None else repaired.placement
    fair_problem = base.with_repair(repaired.allowance_moves, tightened_limits(base, fair_start))
    fair = unit_greedy(fair_problem, fair_start, incumbent_time.sub(incumbent_time.share(0.6)))
    _progress("unit greedy", problem, fair, deadline)
    banded = band_search(problem, repaired.placement, incumbent_time.sub(incumbent_time.share(0.6)), floor=bound)
    _progress("band search", problem, banded, deadline)
    candidates += [fair, banded]
    local = improve(problem, _best(problem, candidates), incumbent_time).placement
    _progress("local search", problem, local, deadline)
    candidates.append(local)
    best = _best(problem, candidates)
    for name, placement in (("unit greedy", fair), ("band search", banded), ("local search", local)):
        _assert_valid(problem, placement, name)

    # Ordering and replaying a plan takes time in proportion to its moves: keep that much for it too (the
    # fixed share is too little for thousands of moves).
    ordering = SEQUENCING_SECONDS_PER_MOVE * check.move_count(problem, best)
    cpsat_time = search.sub(deadline.remaining() - max(reserve, ordering))
    placement, status, bound, cost_proven = _cpsat(problem, best, floors, bound, cpsat_time, notes)
    _progress("CP-SAT", problem, placement, deadline)
    candidates.append(placement)
    final = _best(problem, candidates)
    if final is not candidates[-1] and status == "optimal":
        cost_proven = False  # a heuristic plan tied or beat CP-SAT's: its cost is not the proven one
    found = check.spread(problem, final)
    if found - bound <= problem.settings.optimality_tolerance + 1e-9:
        # A proven lower bound within the tolerance of the plan found, by whichever search: optimal.
        status = "optimal"
    others = sorted((p for p in candidates if p is not final and not check.violations(problem, p)),
                    key=lambda p: check.score(problem, p))
    return Outcome(problem=problem, placement=final, status=status, bound=min(bound, found), repair=repaired,
                   greedy_spread=check.spread(problem, proxlb), unit_greedy_spread=check.spread(problem, fair),
                   notes=tuple(notes), cost_proven=status == "optimal" and cost_proven,
                   alternatives=tuple(_distinct(others)))


def _distinct(placements: list[np.ndarray]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for p in placements:
        if not any(np.array_equal(p, q) for q in out):
            out.append(p)
    return out


def _progress(stage: str, problem: Problem, placement: np.ndarray, deadline: Deadline) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s: spread %.2f pp, %d moves, %.2f s of %.0f s used", stage, check.spread(problem, placement),
                  check.move_count(problem, placement), deadline.elapsed(), deadline.seconds)


# ----------------------------------------------------------------------------- (a) repair


def find_repair(problem: Problem, deadline: Deadline, notes: list[str]) -> RepairResult:
    # The heuristic is not cut short by the deadline: without a repair there is no plan at all, and it
    # takes about a second on 64 × 10,000 — a time limit shorter than that is overrun rather than fail.
    heuristic = repair_heuristic(problem)
    if heuristic is not None and heuristic.proven_minimal:
        return heuristic
    restrict = None
    if variable_count(problem) > FULL_MODEL_MAX_VARS:
        restrict = _repair_neighbourhood(problem, heuristic)
    exact = None
    if restrict is None or int(restrict.sum()) <= FULL_MODEL_MAX_VARS + problem.cluster.n_guests:
        time_limit = deadline.share(REPAIR_SHARE, at_least=min(1.0, deadline.remaining()))
        exact = repair_exact(problem, solver_settings(problem), time_limit, heuristic, restrict)
    options = [r for r in (heuristic, exact) if r is not None]
    if not options:
        raise SolveTimeoutError(f"no placement that repairs every rule was found within the time limit of "
                                f"{problem.settings.time_limit:g} s (raise optimizer.time_limit or --time-limit)")
    best = min(options, key=lambda r: (int(r.excess.sum()), r.moves, check.spread(problem, r.placement)))
    if not best.excess_proven and any(r.excess_proven for r in options):
        best = replace(best, excess_proven=True)  # CP-SAT proved that no placement is within every capacity
    if best.excess.any():
        notes.append(_excess_note(problem, best))
    if heuristic is not None and best is not heuristic:
        # CP-SAT's repair is the better start; the heuristic's (deterministic) sets the allowance.
        best = replace(best, heuristic=heuristic.placement, heuristic_moves=heuristic.moves)
    return best


def _repair_neighbourhood(problem: Problem, heuristic: RepairResult | None) -> np.ndarray:
    """bool[g, n]: where a large repair model lets guests go. The units that must move, or that the heuristic
    moved, may go to any node either of them touched; every other guest stays where it is."""
    rules, current = problem.rules, problem.current
    free = rules.mandatory.copy()
    for members in problem.units:
        if len(set(current[members].tolist())) > 1:
            free[members] = True
    if heuristic is not None:
        free |= heuristic.placement != current
    touched = set(current[free].tolist())
    if heuristic is not None:
        touched |= set(heuristic.placement[free].tolist())
    nodes = np.zeros(problem.cluster.n_nodes, dtype=bool)
    nodes[sorted(touched)] = True
    restrict = np.zeros_like(rules.allowed)
    restrict[np.arange(problem.cluster.n_guests), current] = True
    restrict[free] |= nodes[None, :] & rules.allowed[free]
    return restrict


def _excess_note(problem: Problem, repaired: RepairResult) -> str:
    c, hard = problem.cluster, problem.hard
    parts = [f"{c.node_names[n]} {hard.names[k]} {int(repaired.excess[n, k])} {hard.units[k]}"
             for n, k in zip(*np.nonzero(repaired.excess))]
    return ("still over capacity after the repair (no other node has room), never made worse: "
            + ", ".join(parts[:6]) + (" …" if len(parts) > 6 else ""))


# ----------------------------------------------------------------------------- (c) CP-SAT


def _cpsat(problem: Problem, best: np.ndarray, floors: dict[str, float], bound: float, deadline: Deadline,
           notes: list[str]) -> tuple[np.ndarray, str, float, bool]:
    """CP-SAT from the incumbent `best`: (placement, status, bound, cost proven)."""
    solver = solver_settings(problem)
    if variable_count(problem) > FULL_MODEL_MAX_VARS:
        placement, stats = large_neighbourhood_search(problem, solver, best, deadline)
        notes.append(f"large-neighbourhood search: {stats.iterations} CP-SAT sub-problems, "
                     f"{stats.improvements} improvements")
        return placement, "feasible", bound, False
    tolerance = spread_units(problem.settings.optimality_tolerance, problem)
    result = solve_lexicographic(problem, solver, BuildOptions(hint=best, spread_floor=floors),
                                 deadline.share(EXACT_SHARE), first_gap=tolerance)
    if result.infeasible:
        raise InternalError("CP-SAT found no plan although the repair is one; please report")
    bound = max(bound, spread_pp(result.bounds.get("spread", 0), problem))
    if not result.found:
        notes.append("CP-SAT found no better plan in time; the best heuristic plan is used")
        return best, "feasible", bound, False
    _agree(problem, result.placement, spread_pp(result.values["spread"], problem))
    placement = result.placement
    status = "optimal" if result.proven.get("spread") else "feasible"
    if status != "optimal" and deadline.remaining() > 1.0:
        # Not proven in its share of the time: neighbourhood search goes on from the best answer so far.
        start = _best(problem, [placement, best])
        improved, stats = large_neighbourhood_search(problem, solver, start, deadline)
        if check.score(problem, improved) < check.score(problem, placement):
            placement = improved
            notes.append(f"large-neighbourhood search improved the exact model's answer "
                         f"({stats.improvements} of {stats.iterations} sub-problems)")
    return placement, status, bound, result.proven.get("cost", False)


def _agree(problem: Problem, placement: np.ndarray, solver_spread: float) -> None:
    """The solver's own spread must bound the checker's recomputation (up to the 0.01 pp grid)."""
    _assert_valid(problem, placement, "CP-SAT")
    recomputed = check.spread(problem, placement)
    if recomputed > solver_spread + SPREAD_TOLERANCE + 1e-9:
        raise InternalError(f"CP-SAT spread {solver_spread:.4f} disagrees with the checker's {recomputed:.4f}")


# ----------------------------------------------------------------------------- helpers


def _best(problem: Problem, candidates: list[np.ndarray]) -> np.ndarray:
    """The best-scoring candidate; the earliest wins ties (the order is deterministic)."""
    scores = [check.score(problem, p) for p in candidates]
    return candidates[min(range(len(candidates)), key=lambda i: (scores[i], i))]


def _assert_valid(problem: Problem, placement: np.ndarray, who: str) -> None:
    found = check.violations(problem, placement)
    if found:
        raise InternalError(f"the checker rejected the {who} placement: {found[0].message}")
