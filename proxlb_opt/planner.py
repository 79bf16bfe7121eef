"""The planning pipeline: cluster → rules → greedy → CP-SAT → check → diff → sequence → replay.

`make_plan(cluster, settings)` is pure (no I/O) and returns a PlanResult that the CLI reports
and `apply` executes. Every placement it returns has passed `check.violations`, every plan
`plan.replay`; a disagreement between solver and checker raises InternalError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from proxlb_opt import check
from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster, without_nodes
from proxlb_opt.config import Settings
from proxlb_opt.errors import InternalError, SolveTimeoutError, UnsafePlanError
from proxlb_opt.greedy import greedy_placement
from proxlb_opt.plan import Limits, Plan, TimeModel, check_plan, diff, sequence
from proxlb_opt.rules import RuleSet, derive_rules

#: Tolerance between the solver's own spread and the checker's: both use 0.01 pp resolution per resource.
SPREAD_TOLERANCE = 0.02
SEQUENCING_RETRIES = 3


@dataclass(frozen=True, eq=False)
class PlanResult:
    cluster: Cluster
    settings: Settings
    rules: RuleSet
    loads: LoadModel
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
    violations: tuple[check.Violation, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    cost_proven: bool = False  # status optimal and the migration cost proven minimal at that spread

    @property
    def gap(self) -> float | None:
        return None if self.bound is None else max(0.0, self.spread_after - self.bound)

    @property
    def mandatory_moves(self) -> int:
        moved = check.moved_mask(self.cluster, self.placement)
        return int((moved & self.rules.budget_free).sum())

    @property
    def memory_moved_mib(self) -> int:
        moved = check.moved_mask(self.cluster, self.placement)
        return int(np.where(self.cluster.guest_running, self.cluster.guest_mem_used_mib, 0)[moved].sum())


def prepare(cluster: Cluster, settings: Settings) -> tuple[Cluster, RuleSet, LoadModel]:
    """Apply ignore_nodes, derive the rules and the load model."""
    cluster = without_nodes(cluster, settings.ignore_nodes)
    rules = derive_rules(cluster, settings)
    return cluster, rules, check.load_model(cluster, settings)


def time_model(settings: Settings) -> TimeModel:
    return TimeModel(bandwidth_mib_s=settings.migration_bandwidth_mib_s, dirty_rate_factor=settings.dirty_rate_factor)


def limits(settings: Settings) -> Limits:
    return Limits(parallel=settings.parallel_limit, incoming_per_node=settings.max_incoming_per_node,
                  outgoing_per_node=settings.max_outgoing_per_node)


def sequencing_time_limit(settings: Settings) -> float:
    """Seconds the exact wave model may take: a small share of the placement time limit."""
    return min(2.0, max(0.2, 0.05 * settings.time_limit))


def needs_action(cluster: Cluster, rules: RuleSet, loads: LoadModel, settings: Settings) -> bool:
    """False when the spread is within balanciness and nothing is mandatory."""
    current = np.asarray(cluster.guest_node)
    if rules.budget_free.any():
        return True
    if check.violations(cluster, rules, loads, current):
        return True
    return check.spread(cluster, loads, rules, current) > settings.balanciness


def make_plan(cluster: Cluster, settings: Settings, algorithm: str | None = None) -> PlanResult:
    algorithm = algorithm or settings.algorithm
    cluster, rules, loads = prepare(cluster, settings)
    current = np.asarray(cluster.guest_node, dtype=np.int64)
    before = check.spread(cluster, loads, rules, current)
    start = time.perf_counter()
    if not needs_action(cluster, rules, loads, settings):
        return _result(cluster, settings, rules, loads, algorithm, "balanced", current, None, start, before)
    if algorithm == "greedy":
        greedy = greedy_placement(cluster, rules, loads, settings, settings.max_migrations)
        found = tuple(check.violations(cluster, rules, loads, greedy.placement))
        return _result(cluster, settings, rules, loads, algorithm, "greedy", greedy.placement, None, start, before,
                       violations=found)
    return _optimize(cluster, settings, rules, loads, start, before)


def _optimize(cluster: Cluster, settings: Settings, rules: RuleSet, loads: LoadModel, start: float,
              before: float) -> PlanResult:
    from proxlb_opt.optimizer import optimize_placement

    restrict: np.ndarray | None = None
    notes: list[str] = []
    for attempt in range(SEQUENCING_RETRIES + 1):
        outcome = optimize_placement(cluster, rules, loads, settings, restrict_to=restrict)
        try:
            result = _result(cluster, settings, rules, loads, "cpsat", outcome.status, outcome.placement,
                             outcome.bound, start, before, greedy_spread=outcome.greedy_spread,
                             notes=tuple(notes + list(outcome.notes)))
            return replace(result, cost_proven=outcome.cost_proven)
        except UnsafePlanError as unsafe:
            optional = [g for g in unsafe.guests if not rules.budget_free[g]]
            if attempt == SEQUENCING_RETRIES or not optional:
                raise
            # Feed the conflict back: the guests whose moves had no safe order stay where they are.
            restrict = _keep_in_place(cluster, rules, optional, restrict)
            notes.append(f"re-solved keeping {len(optional)} guest(s) in place whose moves had no safe order")
    raise SolveTimeoutError("no capacity-safe plan found")  # pragma: no cover - the loop returns or raises


def _keep_in_place(cluster: Cluster, rules: RuleSet, guests: list[int], restrict: np.ndarray | None) -> np.ndarray:
    mask = rules.allowed.copy() if restrict is None else restrict.copy()
    for g in guests:
        mask[g] = False
        mask[g, cluster.guest_node[g]] = True
    return mask


def _result(cluster: Cluster, settings: Settings, rules: RuleSet, loads: LoadModel, algorithm: str, status: str,
            placement: np.ndarray, bound: float | None, start: float, before: float,
            violations: tuple = (), greedy_spread: float | None = None, notes: tuple = ()) -> PlanResult:
    if status not in ("greedy",):
        found = check.violations(cluster, rules, loads, placement, settings.max_migrations)
        if found:
            raise InternalError(f"the checker rejected the {algorithm} placement: {found[0].message}")
    seq_start = time.perf_counter()
    tm = time_model(settings)
    steps = diff(cluster, rules, placement, tm)
    if violations:
        # A greedy plan that breaks rules is shown as it is, in its own order: it is the baseline, not ours.
        plan = _unsequenced(steps, placement)
    else:
        plan = sequence(cluster, rules, loads, steps, limits(settings),
                        exact_time_limit=sequencing_time_limit(settings))
        check_plan(cluster, rules, loads, plan, limits(settings))
    sequence_seconds = time.perf_counter() - seq_start
    spread_after = check.spread(cluster, loads, rules, placement)
    if bound is not None:
        # The solver's bound lives on its 0.01 pp grid; the true spread may sit just below it.
        bound = min(bound, spread_after)
    return PlanResult(
        cluster=cluster, settings=settings, rules=rules, loads=loads, algorithm=algorithm, status=status,
        placement=placement, plan=plan, spread_before=before,
        spread_after=spread_after,
        spread_per_resource_before=check.spread_per_resource(cluster, loads, rules, cluster.guest_node),
        spread_per_resource_after=check.spread_per_resource(cluster, loads, rules, placement),
        bound=bound, solve_seconds=seq_start - start,
        sequence_seconds=sequence_seconds, greedy_spread=greedy_spread, violations=tuple(violations),
        warnings=rules.warnings, notes=notes,
    )


def _unsequenced(steps, placement: np.ndarray) -> Plan:
    clock, out = 0.0, []
    for i, s in enumerate(steps):
        out.append(replace(s, wave=i, start_s=clock, end_s=clock + s.seconds))
        clock += s.seconds
    return Plan(steps=tuple(out), final_placement=np.asarray(placement).copy())
