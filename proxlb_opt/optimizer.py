"""Choosing the placement: greedy incumbent, CP-SAT search from it, and the never-worse guarantee.

The greedy plan (ProxLB's pass at the same migration budget) is computed first. When the checker
accepts it, it is the CP-SAT hint and the fallback: the answer is never worse than greedy at the
same budget, and a time-out still yields a valid plan. Comparison is lexicographic: spread first,
then migration cost, exactly as the CP-SAT objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt import check
from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings
from proxlb_opt.cpsat.explain import infeasible_error
from proxlb_opt.cpsat.solve import SolverSettings, solve_placement
from proxlb_opt.errors import InternalError, SolveTimeoutError
from proxlb_opt.greedy import greedy_placement
from proxlb_opt.planner import SPREAD_TOLERANCE
from proxlb_opt.rules import RuleSet


@dataclass(frozen=True)
class Outcome:
    placement: np.ndarray
    status: str  # optimal | feasible
    bound: float | None
    greedy_spread: float | None
    notes: tuple[str, ...] = ()


def _score(cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray) -> tuple[float, int]:
    spread = round(check.spread(cluster, loads, rules, placement), 6)
    return spread, check.migration_cost(loads, cluster, placement) + check.preference_penalty(rules, placement)


def optimize_placement(cluster: Cluster, rules: RuleSet, loads: LoadModel, settings: Settings,
                       restrict_to: np.ndarray | None = None) -> Outcome:
    budget = settings.max_migrations
    greedy = greedy_placement(cluster, rules, loads, settings, budget).placement
    greedy_ok = not check.violations(cluster, rules, loads, greedy, budget)
    if restrict_to is not None and greedy_ok:
        greedy_ok = bool(restrict_to[np.arange(cluster.n_guests), greedy].all())
    greedy_spread = check.spread(cluster, loads, rules, greedy)
    hint = greedy if greedy_ok else np.asarray(cluster.guest_node)
    solver_settings = SolverSettings(time_limit=settings.time_limit, workers=settings.workers, seed=settings.seed,
                                     max_migrations=budget)
    result = solve_placement(cluster, rules, loads, solver_settings, hint=hint, restrict_to=restrict_to)
    if result.infeasible:
        raise infeasible_error(cluster, rules, loads, budget)
    notes: list[str] = []
    if result.placement is None:
        if not greedy_ok:
            raise SolveTimeoutError(f"no valid placement found within the time limit of {settings.time_limit:g} s "
                                    f"(raise optimizer.time_limit or --time-limit)")
        notes.append("CP-SAT found no solution in time; the greedy plan is used")
        return Outcome(greedy, "feasible", result.bound_spread, greedy_spread, tuple(notes))

    _agree(cluster, rules, loads, result.placement, result.objective_spread)
    placement, status = result.placement, result.status
    if greedy_ok and _score(cluster, rules, loads, greedy) < _score(cluster, rules, loads, placement):
        placement, status = greedy, "feasible"
        notes.append("the greedy plan scored better within the time limit and is used")
    return Outcome(placement, status, result.bound_spread, greedy_spread, tuple(notes))


def _agree(cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray, solver_spread: float | None) -> None:
    """The solver's own spread must match the checker's recomputation (up to the 0.01 pp grid)."""
    found = check.violations(cluster, rules, loads, placement)
    if found:
        raise InternalError(f"CP-SAT returned a placement the checker rejects: {found[0].message}")
    if solver_spread is None:
        return
    recomputed = check.spread(cluster, loads, rules, placement)
    if recomputed > solver_spread + SPREAD_TOLERANCE + 1e-9:  # the solver's hi/lo must bound the true spread
        raise InternalError(f"CP-SAT spread {solver_spread:.4f} disagrees with the checker's {recomputed:.4f}")
