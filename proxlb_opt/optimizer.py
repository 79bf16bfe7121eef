"""Choosing the placement: incumbents, CP-SAT (exact model or large-neighbourhood search), guarantees.

Two incumbents come first: the ProxLB-style greedy pass at the same migration budget and a
rule-aware repair + descent (search.py). The better valid one is the CP-SAT hint. A model with
few placement variables is solved whole (it can prove optimality); a larger one is improved by
large-neighbourhood search with CP-SAT sub-problems until the time limit. Whatever comes out, the
best valid placement among CP-SAT's, the descent's and greedy's is kept (spread first, then
migration cost), so the answer is never worse than greedy at the same budget, and a time-out still
yields a valid plan when any incumbent is valid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from proxlb_opt import check
from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings
from proxlb_opt.cpsat.explain import infeasible_error
from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic
from proxlb_opt.errors import InternalError, SolveTimeoutError
from proxlb_opt.greedy import greedy_placement
from proxlb_opt.planner import SPREAD_TOLERANCE
from proxlb_opt.rules import RuleSet
from proxlb_opt.search import budget_bounds, large_neighbourhood_search, repair_and_descend, score, weighted_bound

#: Above this many placement variables the whole model is not solved at once: LNS takes over.
FULL_MODEL_MAX_VARS = 6000
#: Share of the time limit the descent may use for the first incumbent.
DESCENT_SHARE = 0.15
#: Share of the time limit left for sequencing and replay after the placement search.
SEQUENCING_SHARE = 0.08
#: Share of the search time the whole model gets before neighbourhood search takes over (unless proven).
EXACT_SHARE = 0.85


@dataclass(frozen=True)
class Outcome:
    placement: np.ndarray
    status: str  # optimal | feasible
    bound: float | None
    greedy_spread: float | None
    notes: tuple[str, ...] = ()
    cost_proven: bool = False  # with status optimal: the migration cost is proven minimal too


def variable_count(rules: RuleSet, restrict_to: np.ndarray | None = None) -> int:
    domain = rules.allowed if restrict_to is None else rules.allowed & restrict_to
    per_guest = domain.sum(axis=1)
    return int(per_guest[per_guest > 1].sum())


def optimize_placement(cluster: Cluster, rules: RuleSet, loads: LoadModel, settings: Settings,
                       restrict_to: np.ndarray | None = None) -> Outcome:
    start = time.perf_counter()
    # The time limit covers the whole plan: keep a share for diffing, sequencing and replay.
    deadline = start + (1.0 - SEQUENCING_SHARE) * settings.time_limit
    budget = settings.max_migrations
    valid = lambda p: not check.violations(cluster, rules, loads, p, budget) and (  # noqa: E731
        restrict_to is None or bool(restrict_to[np.arange(cluster.n_guests), p].all()))

    greedy = greedy_placement(cluster, rules, loads, settings, budget).placement
    greedy_spread = check.spread(cluster, loads, rules, greedy)
    incumbents = [p for p in (greedy,) if valid(p)]
    descent_seconds = min(0.5 * settings.time_limit, max(DESCENT_SHARE * settings.time_limit, 1.0))
    descent = repair_and_descend(cluster, rules, loads, budget, start + descent_seconds)
    if descent is not None and valid(descent):
        incumbents.append(descent)
    best = min(incumbents, key=lambda p: score(cluster, rules, loads, p)) if incumbents else None
    solver = SolverSettings(time_limit=settings.time_limit, workers=settings.workers, seed=settings.seed,
                            max_migrations=budget)
    notes: list[str] = []
    floors = budget_bounds(cluster, rules, loads, budget)
    relaxation = weighted_bound(loads, floors)

    if restrict_to is not None or best is None or variable_count(rules, restrict_to) <= FULL_MODEL_MAX_VARS:
        remaining = max(0.5, deadline - time.perf_counter())
        whole_share = 1.0 if restrict_to is not None else EXACT_SHARE
        result = solve_lexicographic(cluster, rules, loads, solver,
                                     hint=best if best is not None else cluster.guest_node,
                                     time_limit=max(0.5, whole_share * remaining),
                                     tolerance_pp=settings.optimality_tolerance,
                                     spread_floor=floors if restrict_to is None else None, restrict_to=restrict_to)
        if result.infeasible:
            raise infeasible_error(cluster, rules, loads, budget)
        bound = max(result.bound_spread, relaxation)
        if result.placement is None:
            if best is None:
                raise SolveTimeoutError(f"no valid placement found within the time limit of {settings.time_limit:g} s "
                                        f"(raise optimizer.time_limit or --time-limit)")
            notes.append("CP-SAT found no solution in time; the best heuristic plan is used")
            return Outcome(best, "feasible", bound, greedy_spread, tuple(notes))
        _agree(cluster, rules, loads, result.placement, result.objective_spread)
        placement, status, cost_proven = result.placement, result.status, result.cost_proven
        if status != "optimal" and restrict_to is None and deadline - time.perf_counter() > 1.0:
            # Not proven in its share of the time: neighbourhood search goes on from the best answer so far.
            start_from = min([p for p in (placement, best) if p is not None], key=lambda p: score(cluster, rules, loads, p))
            improved, stats = large_neighbourhood_search(cluster, rules, loads, solver, start_from, deadline,
                                                         seed=settings.seed)
            if score(cluster, rules, loads, improved) < score(cluster, rules, loads, placement):
                placement = improved
                notes.append(f"large-neighbourhood search improved the exact model's answer "
                             f"({stats.improvements} of {stats.iterations} sub-problems)")
    else:
        placement, stats = large_neighbourhood_search(cluster, rules, loads, solver, best, deadline, seed=settings.seed)
        status, bound, cost_proven = "feasible", relaxation, False
        notes.append(f"large-neighbourhood search: {stats.iterations} CP-SAT sub-problems, "
                     f"{stats.improvements} improvements")

    if best is not None and score(cluster, rules, loads, best) < score(cluster, rules, loads, placement):
        # A better-scoring plan has no larger spread, so a spread proven within the tolerance stays proven.
        placement, cost_proven = best, False
        notes.append("a heuristic incumbent scored better within the time limit and is used")
    found_spread = check.spread(cluster, loads, rules, placement)
    if status != "optimal" and found_spread - bound <= settings.optimality_tolerance + 1e-9:
        # A proven lower bound (CP-SAT's or the budget relaxation) within the tolerance of the plan found,
        # by whichever search: that is what optimal within the tolerance means.
        status = "optimal"
    return Outcome(placement, status, bound, greedy_spread, tuple(notes), cost_proven=status == "optimal" and cost_proven)


def _agree(cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray, solver_spread: float | None) -> None:
    """The solver's own spread must bound the checker's recomputation (up to the 0.01 pp grid)."""
    found = check.violations(cluster, rules, loads, placement)
    if found:
        raise InternalError(f"CP-SAT returned a placement the checker rejects: {found[0].message}")
    if solver_spread is None:
        return
    recomputed = check.spread(cluster, loads, rules, placement)
    if recomputed > solver_spread + SPREAD_TOLERANCE + 1e-9:
        raise InternalError(f"CP-SAT spread {solver_spread:.4f} disagrees with the checker's {recomputed:.4f}")
