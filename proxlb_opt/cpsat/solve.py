"""The one place that maps CP-SAT's status to results or errors.

`solve_placement` builds, solves and decodes; it returns a SolveResult with the placement, the
status (optimal / feasible), the solver's bound on the spread and wall time. `solve_lexicographic`
solves the same model in two phases (the spread, then the migration cost at that spread), which
proves optimality far sooner than one weighted objective. INFEASIBLE becomes an
InfeasibleError naming the rules in conflict (explain.py); no solution in time becomes None so the
caller can fall back to a valid incumbent.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.check import PERCENT_SCALE, LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.cpsat.build import BuildOptions, Built, build, decode
from proxlb_opt.errors import InternalError
from proxlb_opt.rules import RuleSet


@dataclass(frozen=True)
class SolverSettings:
    time_limit: float = 10.0
    workers: int = 0  # 0: the machine's core count, at least 2
    seed: int = 7
    max_migrations: int | None = None


@dataclass(frozen=True)
class SolveResult:
    placement: np.ndarray | None  # None: no solution within the time limit
    status: str  # "optimal" | "feasible" | "unknown"
    objective_spread: float | None  # spread (pp, weighted) per the solver's own objective
    bound_spread: float  # lower bound on the weighted spread, percentage points
    seconds: float
    infeasible: bool = False
    cost_proven: bool = False  # solve_lexicographic: the migration cost is proven minimal for the spread found


#: CP-SAT's portfolio needs several differently configured workers to shine; on 2 cores 8 time-shared
#: workers still found better plans than 2 (8×80 at a 13-move budget: 1.37 vs 3.95 pp in 10 s).
DEFAULT_WORKERS = 8


def worker_count(requested: int) -> int:
    return requested if requested > 0 else max(DEFAULT_WORKERS, min(16, os.cpu_count() or 1))


def make_solver(settings: SolverSettings, time_limit: float | None = None) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.max_time_in_seconds = float(time_limit if time_limit is not None else settings.time_limit)
    params.num_workers = worker_count(settings.workers)
    params.random_seed = settings.seed
    params.log_search_progress = False
    return solver


def solve_placement(cluster: Cluster, rules: RuleSet, loads: LoadModel, settings: SolverSettings,
                    hint: np.ndarray | None = None, restrict_to: np.ndarray | None = None,
                    time_limit: float | None = None, spread_floor: dict[str, float] | None = None) -> SolveResult:
    start = time.perf_counter()
    built = build(cluster, rules, loads, BuildOptions(max_migrations=settings.max_migrations, hint=hint,
                                                      restrict_to=restrict_to, spread_floor=spread_floor))
    solver = make_solver(settings, time_limit)
    status = solver.Solve(built.model)
    seconds = time.perf_counter() - start
    return _result(built, solver, status, seconds, loads)


def solve_lexicographic(cluster: Cluster, rules: RuleSet, loads: LoadModel, settings: SolverSettings,
                        hint: np.ndarray | None, time_limit: float, tolerance_pp: float,
                        spread_floor: dict[str, float] | None = None,
                        restrict_to: np.ndarray | None = None) -> SolveResult:
    """Phase 1 minimizes the spread alone and stops once it is proven within `tolerance_pp`; phase 2
    keeps the spread at most what phase 1 found and minimizes the migration cost (and soft preferences).

    One weighted objective (weight · spread + cost) makes the solver prove both at once and was 2–3×
    slower to prove the spread (8×80 at a 14-move budget: 28 vs 9 s on 2 workers, 56 vs 25 s on 8).
    The phases also let a spread proven within the tolerance be reported as optimal when the cost
    proof runs out of time; `cost_proven` is true only when phase 2 itself ended OPTIMAL.
    """
    start = time.perf_counter()
    deadline = start + time_limit
    built = build(cluster, rules, loads, BuildOptions(max_migrations=settings.max_migrations, hint=hint,
                                                      restrict_to=restrict_to, spread_floor=spread_floor))
    spread = sum(built.primary_terms) if built.primary_terms else 0
    built.model.Minimize(spread)
    solver = make_solver(settings, time_limit)
    solver.parameters.absolute_gap_limit = tolerance_pp * PERCENT_SCALE / 100 * sum(loads.weights)
    status = solver.Solve(built.model)
    first = _result(built, solver, status, time.perf_counter() - start, loads, primary_weight=1)
    if first.placement is None or not built.secondary_terms:
        # Nothing to minimize after the spread: the cost is proven whenever the spread is.
        return replace(first, cost_proven=first.placement is not None and status == cp_model.OPTIMAL)
    remaining = deadline - time.perf_counter()
    if remaining < 0.1:
        return first
    built.model.Add(spread <= int(round(solver.ObjectiveValue())))
    built.model.Minimize(sum(built.secondary_terms))
    built.model.ClearHints()
    for (g, n), var in built.ctx.x.items():
        built.model.AddHint(var, int(first.placement[g] == n))
    second_solver = make_solver(settings, remaining)
    second = second_solver.Solve(built.model)
    if second not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return replace(first, seconds=time.perf_counter() - start)
    return replace(first, placement=decode(built, second_solver), seconds=time.perf_counter() - start,
                   cost_proven=second == cp_model.OPTIMAL)


def _weighted_spread(value: float, loads: LoadModel) -> float:
    return value / PERCENT_SCALE * 100 / sum(loads.weights)


def _result(built: Built, solver: cp_model.CpSolver, status: int, seconds: float, loads: LoadModel,
            primary_weight: int | None = None) -> SolveResult:
    if status == cp_model.MODEL_INVALID:
        raise InternalError(f"CP-SAT rejected the model as invalid: {built.model.Validate()[:200]}")
    if status == cp_model.INFEASIBLE:
        return SolveResult(None, "infeasible", None, 0.0, seconds, infeasible=True)
    weight = built.primary_weight if primary_weight is None else primary_weight
    bound = _weighted_spread(solver.BestObjectiveBound() // weight, loads)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(None, "unknown", None, max(0.0, bound), seconds)
    primary = sum(solver.Value(t) for t in built.primary_terms) if built.primary_terms else 0
    return SolveResult(
        placement=decode(built, solver),
        status="optimal" if status == cp_model.OPTIMAL else "feasible",
        objective_spread=_weighted_spread(primary, loads),
        bound_spread=max(0.0, bound),
        seconds=seconds,
    )
