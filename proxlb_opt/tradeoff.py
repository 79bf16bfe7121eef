"""The trade-off curve: the best spread found for migration budgets 0, 1, 2, 4, 8, … (pure).

Each point is a full planning run at that budget, so every point is a checked, replayed plan. The
points share one repair (the same mandatory moves) and one deadline, split evenly over the budgets
still to come; each point starts from the previous point's placement, which is valid for every
larger budget, so the spread never rises along the curve. The curve stops when more budget no
longer helps (twice in a row), when the spread reaches zero, or when the budget covers every
movable guest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings
from proxlb_opt.deadline import Deadline
from proxlb_opt.planner import PlanResult, plan_problem
from proxlb_opt.problem import Problem, build_problem

MAX_POINTS = 14


@dataclass(frozen=True)
class CurvePoint:
    budget: int
    spread: float
    bound: float | None
    migrations: int
    mandatory: int
    memory_moved_mib: int
    status: str
    seconds: float


def budgets(limit: int) -> list[int]:
    """0, 1, 2, 4, 8, … up to and including `limit`."""
    out, b = [0], 1
    while b < limit and len(out) < MAX_POINTS - 1:
        out.append(b)
        b *= 2
    out.append(limit)
    return sorted(set(out))


def pareto_curve(cluster: Cluster, settings: Settings, deadline: Deadline | None = None) -> list[CurvePoint]:
    deadline = deadline or Deadline(settings.time_limit)
    problem = build_problem(cluster, replace(settings, balanciness=0.0))
    candidates = budgets(max(1, int(problem.rules.movable.sum())))
    points: list[CurvePoint] = []
    previous: PlanResult | None = None
    stalls = 0
    for i, b in enumerate(candidates):
        share = deadline.sub(deadline.remaining() / (len(candidates) - i))
        starts = () if previous is None else (previous.placement,)
        repaired = None if previous is None else previous.repair
        result = plan_problem(problem.with_budget(b), "cpsat", share, repaired=repaired, starts=starts)
        points.append(_point(b, result))
        stalls = stalls + 1 if len(points) > 1 and points[-1].spread >= points[-2].spread - 1e-6 else 0
        if stalls >= 2 or points[-1].spread <= 1e-6 or deadline.expired():
            break
        previous = result
    return points


def _point(budget: int, result: PlanResult) -> CurvePoint:
    return CurvePoint(budget=budget, spread=round(result.spread_after, 3),
                      bound=None if result.bound is None else round(result.bound, 3),
                      migrations=result.plan.guests_moved, mandatory=result.mandatory_moves,
                      memory_moved_mib=result.memory_moved_mib, status=result.status,
                      seconds=round(result.solve_seconds + result.sequence_seconds, 2))


# ----------------------------------------------------------------------------- a budget that pays for itself


@dataclass(frozen=True)
class BudgetChoice:
    """How `max_migrations: auto` (or a target spread) chose the budget."""

    budget: int
    why: str  # one sentence
    points: tuple[CurvePoint, ...]  # the sampled curve, budgets 0, 1, 2, 4, …
    fewest_proven: bool | None  # with a target: "no smaller budget reaches it" is proven (None: no target)


def auto_plan(problem: Problem, deadline: Deadline, min_gain_per_move: float,
              target_spread: float | None) -> tuple[PlanResult, BudgetChoice]:
    """The plan at the budget that pays for itself, and how it was chosen.

    The curve spread(budget) is sampled at budgets 0, 1, 2, 4, …, each point starting from the previous
    point's plan (so it never rises) and sharing the deadline. With `target_spread`, the budget is the
    fewest moves that reach it (bisection between the last sample above it and the first at or below);
    then, and without a target, it grows while a later sample still gains at least `min_gain_per_move`
    percentage points per extra migration on average — the first point after which no later point is
    worth its migrations (the tangent of the curve's lower convex hull with that slope).
    """
    results: dict[int, PlanResult] = {}
    order: list[int] = []

    def point(budget: int, share: float) -> PlanResult:
        if budget not in results:
            below = [b for b in order if b < budget]
            previous = results[max(below)] if below else None
            results[budget] = plan_problem(problem.with_budget(budget), "cpsat", deadline.sub(share),
                                           repaired=None if previous is None else previous.repair,
                                           starts=() if previous is None else (previous.placement,))
            order.append(budget)
            order.sort()
        return results[budget]

    candidates = budgets(max(1, int(problem.rules.movable.sum())))
    reached: int | None = None
    for i, b in enumerate(candidates):
        result = point(b, deadline.remaining() / (len(candidates) - i + 1))
        if target_spread is not None and reached is None and result.spread_after <= target_spread + 1e-9:
            reached = b
        settled = target_spread is None or reached is not None  # sampling stops on a flat curve only past the target
        if result.spread_after <= 1e-6 or deadline.remaining() <= 0.0 or (
                settled and _flat(results, order, min_gain_per_move)):
            break
    fewest_proven: bool | None = None
    start = 0
    if target_spread is not None and reached is not None:
        start, fewest_proven = _fewest_to_target(results, order, point, deadline, reached, target_spread)
    chosen = _tangent(results, [b for b in order if b >= start], min_gain_per_move)
    points = tuple(_point(b, results[b]) for b in order)
    return results[chosen], BudgetChoice(chosen, _why(results, chosen, start, target_spread, reached,
                                                      min_gain_per_move), points, fewest_proven)


def _moves(result: PlanResult) -> int:
    return result.plan.guests_moved


def _flat(results: dict[int, PlanResult], order: list[int], min_gain: float) -> bool:
    """The last two segments of the curve each gained less than half the threshold per move: stop sampling."""
    if len(order) < 3:
        return False
    gains = []
    for a, b in zip(order[-3:], order[-2:]):
        extra = _moves(results[b]) - _moves(results[a])
        gains.append((results[a].spread_after - results[b].spread_after) / max(1, extra))
    return all(g < 0.5 * min_gain for g in gains)


def _fewest_to_target(results, order, point, deadline: Deadline, reached: int, target: float) -> tuple[int, bool]:
    """The smallest budget that reaches `target`, by bisection below `reached`; and whether "fewest" is proven
    (the budget just below has a proven lower bound above the target)."""
    lower = max([b for b in order if b < reached and results[b].spread_after > target + 1e-9], default=-1)
    upper = reached
    while upper - lower > 1 and deadline.remaining() > 0:
        middle = (lower + upper) // 2
        if point(middle, deadline.remaining() / 4).spread_after <= target + 1e-9:
            upper = middle
        else:
            lower = middle
    below = results.get(upper - 1) if upper > 0 else None
    proven = upper == 0 or (below is not None and below.bound is not None and below.bound > target + 1e-9)
    return upper, proven


def _tangent(results: dict[int, PlanResult], budgets_from: list[int], min_gain: float) -> int:
    """The first budget after which no later sample gains `min_gain` pp per extra migration on average."""
    for i, b in enumerate(budgets_from):
        here = results[b]
        worth = any((here.spread_after - results[later].spread_after)
                    >= min_gain * max(1, _moves(results[later]) - _moves(here))
                    for later in budgets_from[i + 1:] if _moves(results[later]) > _moves(here))
        if not worth:
            return b
    return budgets_from[-1]


def _why(results, chosen: int, start: int, target: float | None, reached: int | None, min_gain: float) -> str:
    spread = results[chosen].spread_after
    parts = []
    if target is not None:
        parts.append(f"the fewest migrations that reach the target of {target:g} pp need budget {start}"
                     if reached is not None else f"the target of {target:g} pp was not reached")
    parts.append(f"budget {chosen} ({spread:.2f} pp): one more migration would gain less than {min_gain:g} pp")
    return "; ".join(parts)
