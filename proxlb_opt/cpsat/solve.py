"""The one place that runs CP-SAT and maps its status to results.

`solve_lexicographic` minimizes objective kinds one after the other on one model (the spread, then
the migration cost at that spread; or for the repair: the excess over capacity, then the number of
moves): each stage keeps the previous stages' values. Phases prove optimality far sooner than one
weighted objective (8×80 at a 14-move budget: the spread alone proved in 9 s against 28 s on 2
workers). The first stage may stop within an absolute tolerance (the spread's `optimality_tolerance`).
`solve_weighted` minimizes one weighted sum (spread first, cost as tie-breaker) for the many short
sub-problems of neighbourhood search. INFEASIBLE is reported, never raised here: the caller names
the rules in conflict (explain.py). No solution in time gives `placement=None`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.cpsat.build import Built, add_hint, build, decode
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.families.pinning import PREFERENCE_WEIGHT
from proxlb_opt.errors import InputError, InternalError
from proxlb_opt.loads import PERCENT_SCALE
from proxlb_opt.problem import Problem

#: CP-SAT's portfolio needs several differently configured workers to shine; on 2 cores 8 time-shared
#: workers still found better plans than 2 (8×80 at a 13-move budget: 1.37 vs 3.95 pp in 10 s).
DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class SolverSettings:
    workers: int = 0  # 0: DEFAULT_WORKERS, or the core count when higher (at most 16)
    seed: int = 7


@dataclass(frozen=True)
class SolveResult:
    placement: np.ndarray | None  # None: no solution within the time limit (or infeasible)
    infeasible: bool
    values: dict[str, int] = field(default_factory=dict)  # objective value reached, per stage
    bounds: dict[str, int] = field(default_factory=dict)  # proven lower bound, per stage
    proven: dict[str, bool] = field(default_factory=dict)  # the stage ended OPTIMAL (within its gap limit)
    seconds: float = 0.0
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # solve_stages(decode_also=…): other placements

    @property
    def found(self) -> bool:
        return self.placement is not None


def worker_count(requested: int) -> int:
    return requested if requested > 0 else max(DEFAULT_WORKERS, min(16, os.cpu_count() or 1))


def make_solver(settings: SolverSettings, time_limit: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.max_time_in_seconds = max(0.01, float(time_limit))
    params.num_workers = worker_count(settings.workers)
    params.random_seed = settings.seed
    params.log_search_progress = False
    return solver


def spread_pp(value: float, problem: Problem) -> float:
    """A spread objective value (hundredths of a point × weights) in percentage points."""
    return value / PERCENT_SCALE * 100 / sum(problem.loads.weights)


def spread_units(pp: float, problem: Problem) -> int:
    return int(pp * PERCENT_SCALE / 100 * sum(problem.loads.weights))


def solve_lexicographic(problem: Problem, settings: SolverSettings, options: BuildOptions, time_limit: float,
                        stages: tuple[str, ...] = ("spread", "cost", "order"), first_gap: int = 0) -> SolveResult:
    """Minimize each kind of `stages` in turn, keeping the earlier ones at the values reached.

    `first_gap` is an absolute gap limit for the first stage (in its own units). A later stage runs
    only while time is left; its answer replaces the earlier one only when the solver found one.
    The "order" stage runs only when every earlier stage was proven: among the plans proven equally
    good it picks the one with the least rank sum, so that runs repeat (threads find equal plans in
    any order; one rank sum is almost always held by one plan only).
    """
    start = time.perf_counter()
    built = build(problem, options)
    result = solve_stages(built, settings, time_limit - (time.perf_counter() - start), stages, first_gap)
    return SolveResult(result.placement, result.infeasible, result.values, result.bounds, result.proven,
                       time.perf_counter() - start, result.extra)


def solve_stages(built: Built, settings: SolverSettings, time_limit: float, stages: tuple[str, ...],
                 first_gap: int = 0, decode_also: dict[str, Built] | None = None) -> SolveResult:
    """`solve_lexicographic` on a model that is already built (several scenarios linked in one model).

    The placement is decoded from `built`; every model named in `decode_also` (built into the same
    CpModel) is decoded too, into `extra`, from the same solution."""
    start = time.perf_counter()
    deadline = start + time_limit
    values, bounds, proven = {}, {}, {}
    placement = None
    extra: dict[str, np.ndarray] = {}
    for i, kind in enumerate(stages):
        expr = _expression(built, kind)
        remaining = deadline - time.perf_counter()
        if i > 0 and (remaining < 0.05 or placement is None):
            break
        if kind == "order" and not all(proven.values()):
            break
        built.model.Minimize(expr)
        solver = make_solver(settings, remaining)
        if i == 0 and first_gap > 0:
            solver.parameters.absolute_gap_limit = float(first_gap)
        status = solver.Solve(built.model)
        if status == cp_model.MODEL_INVALID:
            raise _invalid_model(built)
        if status == cp_model.INFEASIBLE:
            if i == 0:
                return SolveResult(None, True, seconds=time.perf_counter() - start)
            break  # cannot happen (the previous answer satisfies it); keep that answer
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if i == 0:
                bounds[kind] = int(solver.BestObjectiveBound())
            break
        placement = decode(built, solver)
        extra = {name: decode(other, solver) for name, other in (decode_also or {}).items()}
        values[kind] = int(round(solver.ObjectiveValue()))
        bounds[kind] = int(solver.BestObjectiveBound())
        if kind != "order":
            proven[kind] = status == cp_model.OPTIMAL
        built.model.Add(expr <= values[kind])  # later stages keep this one
        add_hint(built.ctx, placement)
    return SolveResult(placement, False, values, bounds, proven, time.perf_counter() - start, extra)


def _invalid_model(built) -> Exception:
    """CP-SAT refused the model. An integer overflow comes from the sizes in the input (a guest or a growth
    beyond anything a cluster holds, the model's integers are 64-bit): an input error, exit 2. Anything
    else is ours: internal, exit 70."""
    why = built.model.Validate()
    if "overflow" in why.lower() or "kint64max" in why:
        return InputError("the cluster's sizes are too large for the solver's 64-bit arithmetic "
                          "(check the sizes in the model, --growth or the added guests and nodes)")
    return InternalError(f"CP-SAT rejected the model as invalid: {why[:200]}")


def solve_weighted(problem: Problem, settings: SolverSettings, options: BuildOptions,
                   time_limit: float) -> SolveResult:
    """One objective: W · spread + cost, W larger than any cost, so the spread comes first."""
    start = time.perf_counter()
    built = build(problem, options)
    spread = _expression(built, "spread")
    cost = _expression(built, "cost")
    weight = 1 + _cost_upper_bound(built)
    built.model.Minimize(weight * spread + cost)
    solver = make_solver(settings, time_limit)
    status = solver.Solve(built.model)
    if status == cp_model.MODEL_INVALID:
        raise _invalid_model(built)
    if status == cp_model.INFEASIBLE:
        return SolveResult(None, True, seconds=time.perf_counter() - start)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(None, False, seconds=time.perf_counter() - start)
    placement = decode(built, solver)
    value = int(sum(solver.Value(t) for t in built.terms.spread)) if built.terms.spread else 0
    return SolveResult(placement, False, {"spread": value}, {"spread": int(solver.BestObjectiveBound()) // weight},
                       {"spread": status == cp_model.OPTIMAL}, time.perf_counter() - start)


def _expression(built: Built, kind: str):
    terms = getattr(built.terms, kind)
    return sum(terms) if terms else 0


def _cost_upper_bound(built: Built) -> int:
    """Largest value the cost terms can take: every variable guest moved, every preference at its worst."""
    ctx = built.ctx
    movers = sorted({g for g, _ in ctx.x})
    total = int(sum(int(ctx.loads.migration_cost[g]) for g in movers))
    total += sum(PREFERENCE_WEIGHT * pref.worst for pref in ctx.rules.preferences)
    return total
