"""The planning pipeline: cluster → Problem → placement (optimizer.py) → diff → sequence → replay → PlanResult.

`make_plan(cluster, settings, deadline=...)` is pure (no I/O) and returns a PlanResult that the CLI
reports and `apply` executes. Every placement it returns has passed `check.violations`, every plan
`plan.replay`; a disagreement raises InternalError. When the chosen moves have no safe order, the
guests that blocked it are kept in place and the placement is searched again, on the same deadline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from proxlb_opt import check
from proxlb_opt.cluster import Cluster
from proxlb_opt.config import AUTO, Settings
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InfeasibleError, InternalError, SolveTimeoutError, UnsafePlanError
from proxlb_opt.greedy import GreedyPath, proxlb_greedy, unit_greedy_path
from proxlb_opt.optimizer import FULL_MODEL_MAX_VARS, Outcome, optimize, variable_count
from proxlb_opt.plan import Limits, Plan, TimeModel, check_plan, diff, sequence
from proxlb_opt.problem import Problem, build_problem
from proxlb_opt.repair import RepairResult, needs_repair, tightened_limits
from proxlb_opt.tradeoff import BudgetChoice, CurvePoint, choose_budget, sample_curve
from proxlb_opt.triggers import balance_reasons, pressure_warnings

SEQUENCING_RETRIES = 3
#: Other valid placements of the same search tried when the best one has no safe order.
ALTERNATIVES = 4
#: Share of the time left that the budget ladder's one unlimited unit-greedy run may take.
GREEDY_PATH_SHARE = 0.4
#: The ladder is starved (see _Ladder) when a full plan overran its share by this many seconds and the
#: time left is less than STARVED_PACE × the points still to come × that plan's time.
STARVED_MIN_OVERRUN_S = 0.1
STARVED_PACE = 1.0
log = logging.getLogger("proxlb_opt.planner")


@dataclass(frozen=True, eq=False)
class PlanResult:
    problem: Problem
    algorithm: str
    status: str  # optimal | feasible | balanced | greedy
    placement: np.ndarray
    plan: Plan
    spread_before: float
    spread_after: float
    spread_per_resource_before: dict[str, float]
    spread_per_resource_after: dict[str, float]
    bound: float | None
    solve_seconds: float
    sequence_seconds: float
    greedy_spread: float | None = None
    unit_greedy_spread: float | None = None
    violations: tuple[check.Violation, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    cost_proven: bool = False  # status optimal and the migration cost proven minimal at that spread
    repair: RepairResult | None = None  # the repair stage's answer (cpsat only)
    held: dict[int, str] = field(default_factory=dict)  # vmid → why it was kept where it is (cooldown, by hand)
    budget_choice: BudgetChoice | None = None  # how `max_migrations: auto` chose the budget

    @property
    def moves(self) -> int:
        return self.plan.guests_moved

    @property
    def budget(self) -> int | None:
        """The budget this plan was made with (auto: the one it chose)."""
        return self.problem.budget

    @property
    def cluster(self) -> Cluster:
        return self.problem.cluster

    @property
    def settings(self) -> Settings:
        return self.problem.settings

    @property
    def rules(self):
        return self.problem.rules

    @property
    def loads(self):
        return self.problem.loads

    @property
    def gap(self) -> float | None:
        return None if self.bound is None else max(0.0, self.spread_after - self.bound)

    @property
    def mandatory_moves(self) -> int:
        """Moves the repair needed (outside the budget); the plan may do them with other guests."""
        moves = self.problem.repair_moves if self.repair is None else self.repair.moves
        return min(moves, self.plan.guests_moved)

    @property
    def memory_moved_mib(self) -> int:
        moved = check.moved_mask(self.problem, self.placement)
        return int(np.where(self.cluster.guest_running, self.cluster.guest_mem_used_mib, 0)[moved].sum())


def time_model(settings: Settings) -> TimeModel:
    return TimeModel(bandwidth_mib_s=settings.migration_bandwidth_mib_s, dirty_rate_factor=settings.dirty_rate_factor)


def limits(settings: Settings) -> Limits:
    return Limits(parallel=settings.parallel_limit, incoming_per_node=settings.max_incoming_per_node,
                  outgoing_per_node=settings.max_outgoing_per_node)


def needs_action(problem: Problem) -> bool:
    """False when nothing calls for balancing (triggers.py) and no rule or capacity needs repairing."""
    if needs_repair(problem):
        return True
    return bool(balance_reasons(problem))


def make_plan(cluster: Cluster, settings: Settings, algorithm: str | None = None,
              deadline: Deadline | None = None, held: dict[int, str] | None = None) -> PlanResult:
    """Plan with the settings' budget and time limit; `deadline` is the command's (default: starts now).

    `held` (vmid → reason) keeps guests where they are unless they must move (the service's cooldown and
    guests moved by hand; see history.py)."""
    algorithm = algorithm or settings.algorithm
    deadline = deadline or Deadline(settings.time_limit)
    problem = build_problem(cluster, settings)
    if settings.max_migrations == AUTO:
        problem = problem.with_budget(None)  # the budget is chosen below (plan_problem, auto)
    held = {vmid: why for vmid, why in (held or {}).items() if problem.cluster.guest_index(vmid) is not None}
    kept = [problem.cluster.guest_index(vmid) for vmid in held]
    kept = [g for g in kept if problem.rules.movable[g] and not problem.rules.mandatory[g]]
    if kept:
        problem = problem.keep_in_place(kept)
    auto = settings.max_migrations == AUTO
    return replace(plan_problem(problem, algorithm, deadline, auto=auto), held=held)


def plan_problem(problem: Problem, algorithm: str, deadline: Deadline, repaired: RepairResult | None = None,
                 starts: tuple[np.ndarray, ...] = (), auto: bool = False) -> PlanResult:
    """One plan for a Problem; with `auto`, at the budget that pays for itself (`tradeoff.choose_budget`)."""
    current = problem.current
    before = check.spread(problem, current)
    start = time.perf_counter()
    reasons = balance_reasons(problem)
    if not reasons and not needs_repair(problem):
        return _result(problem, algorithm, "balanced", current, None, start, before, deadline)
    if not reasons and problem.budget != 0:
        # Nothing calls for balancing (within balanciness, below the thresholds, nothing hot): only what
        # must change changes (rules, maintenance, capacity), as ProxLB does not balance then either.
        problem = problem.with_budget(0)
    elif auto and algorithm != "greedy":
        return _auto(problem, deadline)
    if algorithm == "greedy":
        greedy = proxlb_greedy(problem, problem.budget)
        found = tuple(check.violations(problem.with_budget(None), greedy.placement))
        return _result(problem.with_budget(None), algorithm, "greedy", greedy.placement, None, start, before,
                       deadline, violations=found)
    return _optimize(problem, start, before, deadline, repaired, starts)


def _auto(problem: Problem, deadline: Deadline) -> PlanResult:
    """The plan at the budget that pays for itself: the curve is sampled by full plans at budgets 0, 1, 2, 4, …,
    each starting from the largest smaller budget's plan and sharing the deadline (see tradeoff.py). When a
    sample's fixed costs alone overrun its share of the time (a large cluster), the rest of the curve is read
    off the unit greedy's path and the chosen budget gets one full plan with all the time left."""
    settings = problem.settings
    target = settings.target_spread if settings.target_spread is not None else settings.balanciness / 2
    plans = _Ladder(problem, deadline, path_when_starved=True)
    choice = choose_budget(plans.sample, int(problem.rules.movable.sum()), deadline.expired,
                           settings.min_gain_per_move, target)
    result = plans.results.get(choice.budget) or plans.full_plan(choice.budget, deadline)
    note = f"max_migrations auto: {choice.why}"
    if plans.path_from is not None:
        note += (f" (budgets from {plans.path_from} on were read off the unit greedy's path, a valid plan at each, "
                 f"as full plans did not fit their share of the time; the chosen one was then optimized)")
    elif variable_count(problem) > FULL_MODEL_MAX_VARS:
        note += " (the curve was sampled with each budget's share of the time limit: an approximation)"
    return replace(result, budget_choice=choice, notes=result.notes + (note,))


@dataclass(frozen=True)
class _PathPoint:
    """A point of the curve read off the greedy path: what `tradeoff.Sample` needs."""

    spread_after: float
    moves: int
    bound: float | None = None


class _Ladder:
    """Plans at increasing budgets, each started from the largest smaller budget's plan and from the unit
    greedy's path cut at its allowance, one deadline.

    The path (one unlimited unit-greedy run from the first plan's repair) gives every budget a valid start
    at the greedy's level for the cost of one run: on a large, lopsided cluster each budget's share of the
    time is too short for a search of its own, and without it every sample would stay at the repair. With
    `path_when_starved`, once a full plan overruns its share (its fixed costs, such as sequencing thousands of
    moves, exceed the share) and the points still to come would not fit the time left at that pace, later
    samples are the path's points instead of full plans, leaving the rest of the time to the chosen one."""

    def __init__(self, problem: Problem, deadline: Deadline, path_when_starved: bool = False):
        self.problem, self.deadline = problem, deadline
        self.results: dict[int, PlanResult] = {}
        self.path: GreedyPath | None = None
        self.path_when_starved = path_when_starved
        self.starved = False
        self.path_from: int | None = None  # the first budget read off the path

    def sample(self, budget: int, left: int) -> PlanResult | _PathPoint:
        below = [b for b in self.results if b < budget]
        previous = self.results[max(below)] if below else None
        if self.starved and previous is not None and previous.repair is not None:
            self.path_from = budget if self.path_from is None else self.path_from
            placement = self._greedy_start(previous.repair, budget)[0]
            return _PathPoint(spread_after=check.spread(self.problem, placement),
                              moves=check.move_count(self.problem, placement))
        starts: tuple[np.ndarray, ...] = ()
        if previous is not None:
            starts = (previous.placement,) + self._greedy_start(previous.repair, budget)
        seconds = self.deadline.remaining() / max(1, left)
        began = time.perf_counter()
        self.results[budget] = plan_problem(self.problem.with_budget(budget), "cpsat", self.deadline.sub(seconds),
                                            repaired=None if previous is None else previous.repair,
                                            starts=starts)
        elapsed = time.perf_counter() - began
        if (self.path_when_starved and previous is not None and self.path is not None
                and elapsed > seconds + STARVED_MIN_OVERRUN_S
                and self.deadline.remaining() < STARVED_PACE * (left - 1) * elapsed):
            self.starved = True
        return self.results[budget]

    def full_plan(self, budget: int, deadline: Deadline) -> PlanResult:
        """A full plan at a budget the curve read off the path: from the path and the largest plan below."""
        previous = self.results[max(b for b in self.results if b < budget)]
        starts = (previous.placement,) + self._greedy_start(previous.repair, budget)
        self.results[budget] = plan_problem(self.problem.with_budget(budget), "cpsat", deadline,
                                            repaired=previous.repair, starts=starts)
        return self.results[budget]

    def _greedy_start(self, repaired: RepairResult | None, budget: int) -> tuple[np.ndarray, ...]:
        """The greedy path's placement within the repair's moves + `budget` (computed on first use)."""
        if repaired is None:
            return ()
        if self.path is None:
            # The limits every later sample's problem has (optimizer.optimize, same repair).
            problem = self.problem.with_budget(None).with_repair(
                repaired.allowance_moves, tightened_limits(self.problem, *repaired.placements()))
            self.path = unit_greedy_path(problem, repaired.placement,
                                         self.deadline.sub(self.deadline.remaining() * GREEDY_PATH_SHARE))
        return (self.path.within(repaired.allowance_moves + budget),)


def pareto_curve(cluster: Cluster, settings: Settings, deadline: Deadline | None = None) -> list[CurvePoint]:
    """The best spread found for budgets 0, 1, 2, 4, …, sharing one deadline (see tradeoff.py)."""
    deadline = deadline or Deadline(settings.time_limit)
    problem = build_problem(cluster, replace(settings, balanciness=0.0))
    plans = _Ladder(problem, deadline)
    done = sample_curve(plans.sample, int(problem.rules.movable.sum()), deadline.expired)
    return [_point(b, plans.results[b]) for b in done]


def _point(budget: int, result: PlanResult) -> CurvePoint:
    return CurvePoint(budget=budget, spread=round(result.spread_after, 3),
                      bound=None if result.bound is None else round(result.bound, 3),
                      migrations=result.plan.guests_moved, mandatory=result.mandatory_moves,
                      memory_moved_mib=result.memory_moved_mib, status=result.status,
                      seconds=round(result.solve_seconds + result.sequence_seconds, 2))


def _optimize(problem: Problem, start: float, before: float, deadline: Deadline, repaired: RepairResult | None,
              starts: tuple[np.ndarray, ...]) -> PlanResult:
    """The best placement that has a safe order. When the best has none, equally good candidates of the
    same search are tried; when none of them has one either, the guests that blocked the order are kept
    in place and the placement is searched again, on the same deadline. A re-solved plan is kept only
    when no worse candidate of the first search (a start among them) has a safe order and a lower spread:
    a plan never gets worse than a valid start because of an order."""
    notes: list[str] = []
    base = problem
    unsafe: UnsafePlanError | None = None
    first: Outcome | None = None
    for attempt in range(SEQUENCING_RETRIES + 1):
        try:
            outcome = optimize(problem, deadline, repaired, starts)
        except (InfeasibleError, SolveTimeoutError):
            if unsafe is None:
                raise
            return _fallback(first, start, before, deadline, notes, unsafe)
        first = first or outcome
        # Equally good placements (within the optimality tolerance) are tried before any re-solve.
        best = check.spread(outcome.problem, outcome.placement) + base.settings.optimality_tolerance + 1e-9
        equal = [p for p in outcome.alternatives if check.spread(outcome.problem, p) <= best][:ALTERNATIVES]
        result = _first_orderable(outcome, [outcome.placement] + equal, first.bound, start, before, deadline,
                                  tuple(notes + list(outcome.notes)), exact=attempt == 0)
        if isinstance(result, PlanResult):
            if attempt:
                older = _first_orderable(first, list(first.alternatives), first.bound, start, before, deadline,
                                         first.notes, exact=False)
                if isinstance(older, PlanResult) and check.score(base, older.placement) < check.score(
                        base, result.placement):
                    return older
            return result
        unsafe = unsafe or result
        optional = [g for g in unsafe.guests if not base.rules.mandatory[g]]
        if attempt == SEQUENCING_RETRIES or not optional:
            return _fallback(first, start, before, deadline, notes, unsafe)
        # Feed the conflict back: the guests whose moves had no safe order stay where they are.
        problem = problem.keep_in_place(optional)
        repaired, starts = None, ()  # both may move the guests now kept in place
        notes.append(f"re-solved keeping {len(optional)} guest(s) in place whose moves had no safe order")
    raise SolveTimeoutError("no capacity-safe plan found")  # pragma: no cover - the loop returns or raises


def _first_orderable(outcome: Outcome, placements: list[np.ndarray], bound: float | None, start: float,
                     before: float, deadline: Deadline, notes: tuple, exact: bool) -> PlanResult | UnsafePlanError:
    """The first of `placements` that has a safe order, as a plan; else the first ordering error."""
    tolerance = outcome.problem.settings.optimality_tolerance
    error: UnsafePlanError | None = None
    for rank, placement in enumerate(placements[:ALTERNATIVES + 1]):
        try:
            result = _result(outcome.problem, "cpsat", outcome.status, placement, bound, start, before, deadline,
                             greedy_spread=outcome.greedy_spread, notes=notes)
        except UnsafePlanError as exc:
            error = error or exc
            continue
        best = exact and rank == 0 and placement is outcome.placement
        optimal = bound is not None and result.spread_after - bound <= tolerance + 1e-9
        status = outcome.status if best else ("optimal" if optimal else "feasible")
        if not best:
            result = replace(result, notes=result.notes + (
                "the best placement found had no capacity-safe order; the best one that has one is used",))
        return replace(result, status=status, cost_proven=outcome.cost_proven and best,
                       unit_greedy_spread=outcome.unit_greedy_spread, repair=outcome.repair)
    return error if error is not None else UnsafePlanError("no capacity-safe order found")


def _fallback(first: Outcome | None, start: float, before: float, deadline: Deadline, notes: list[str],
              unsafe: UnsafePlanError) -> PlanResult:
    """When re-solving found nothing orderable: the best orderable candidate of the first search, or the error."""
    if first is not None:
        result = _first_orderable(first, list(first.alternatives), first.bound, start, before, deadline,
                                  first.notes, exact=False)
        if isinstance(result, PlanResult):
            return result
    raise unsafe


def _result(problem: Problem, algorithm: str, status: str, placement: np.ndarray, bound: float | None, start: float,
            before: float, deadline: Deadline, violations: tuple = (), greedy_spread: float | None = None,
            notes: tuple = ()) -> PlanResult:
    if status != "greedy":
        found = check.violations(problem, placement)
        if found:
            raise InternalError(f"the checker rejected the {algorithm} placement: {found[0].message}")
    seq_start = time.perf_counter()
    settings = problem.settings
    steps = diff(problem, placement, time_model(settings))
    if violations:
        # A greedy plan that breaks rules is shown as it is, in its own order: it is the baseline, not ours.
        plan = _unsequenced(steps, placement)
    else:
        exact = min(2.0, max(0.0, 0.5 * deadline.remaining()))
        plan = sequence(problem, steps, limits(settings), exact_time_limit=exact)
        check_plan(problem, plan, limits(settings))
    sequence_seconds = time.perf_counter() - seq_start
    log.debug("sequencing: %d moves (%d parking hops) in %d waves, predicted %.0f s, ordered in %.3f s",
              len(plan.steps), plan.parking_hops, plan.waves, plan.predicted_seconds, sequence_seconds)
    spread_after = check.spread(problem, placement)
    if bound is not None:
        # The solver's bound lives on its 0.01 pp grid; the true spread may sit just below it.
        bound = min(bound, spread_after)
    return PlanResult(
        problem=problem, algorithm=algorithm, status=status, placement=placement, plan=plan,
        spread_before=before, spread_after=spread_after,
        spread_per_resource_before=check.spread_per_resource(problem, problem.current),
        spread_per_resource_after=check.spread_per_resource(problem, placement),
        bound=bound, solve_seconds=seq_start - start, sequence_seconds=sequence_seconds,
        greedy_spread=greedy_spread, violations=tuple(violations), notes=notes + _reason_notes(problem),
        warnings=tuple(settings.warnings) + pressure_warnings(problem) + tuple(problem.rules.warnings),
    )


def _reason_notes(problem: Problem) -> tuple[str, ...]:
    """Why a plan balances, when it is not just the spread over balanciness (the usual case)."""
    return tuple(f"balancing because {reason}" for reason in balance_reasons(problem)
                 if not reason.startswith("spread "))


def _unsequenced(steps, placement: np.ndarray) -> Plan:
    clock, out = 0.0, []
    for i, s in enumerate(steps):
        out.append(replace(s, wave=i, start_s=clock, end_s=clock + s.seconds))
        clock += s.seconds
    return Plan(steps=tuple(out), final_placement=np.asarray(placement).copy())
