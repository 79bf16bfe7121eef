"""The trade-off between spread and migrations: sampling the curve and choosing a budget from it (pure).

The curve spread(budget) is sampled at budgets 0, 1, 2, 4, 8, … by a `sample(budget)` function the
planner provides (a full plan at that budget, started from the plan of the largest smaller budget
sampled, so the curve never rises). Two uses:

* `--pareto` (`sample_curve`): every point, until more budget no longer helps (twice in a row), the
  spread reaches zero, or the budget covers every movable guest;
* `max_migrations: auto` (`choose_budget`): the budget that pays for itself. With a target spread (by
  default half the balanciness: balancing starts above the balanciness and aims below it, so a cluster
  that drifts just over the line is not moved back and forth), first the fewest migrations that reach
  it — bisection between the last sample above it and the first at or below, "fewest" being proven
  when the plan just below has a proven lower bound above the target (at least one move is made when one
  helps: the planner asks only when balancing is called for). From there, the budget grows
  while some larger sample still gains at least `min_gain_per_move` percentage points per extra
  migration on average: the chosen budget is the first after which no later sample is worth its
  migrations (the tangent to the sampled curve's lower convex hull with that slope). When no sample
  reaches the target, the start is the fewest sampled budget within `min_gain_per_move` pp of the lowest
  spread sampled (`_closest_to_target`): balancing was called for, and on a large cluster one migration
  gains a fraction of a point, so a per-move threshold alone would move nothing. On large clusters
  the samples are the planner's answers within their share of the time limit, or points of the unit
  greedy's path when a full plan does not fit its share (planner._Ladder), so the curve (and the
  choice) is an approximation of the true frontier; the notes say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

MAX_POINTS = 14


class Sample(Protocol):
    """What the curve needs of a plan at one budget."""

    spread_after: float
    bound: float | None

    @property
    def moves(self) -> int: ...


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


@dataclass(frozen=True)
class BudgetChoice:
    """How `max_migrations: auto` (or a target spread) chose the budget."""

    budget: int
    why: str  # one sentence
    sampled: tuple[tuple[int, float, int], ...]  # (budget, spread, migrations) of every sample, by budget
    fewest_proven: bool | None  # with a target reached: no smaller budget reaches it, proven (None: not reached)


def budgets(limit: int) -> list[int]:
    """0, 1, 2, 4, 8, … up to and including `limit`."""
    out, b = [0], 1
    while b < limit and len(out) < MAX_POINTS - 1:
        out.append(b)
        b *= 2
    out.append(limit)
    return sorted(set(out))


def sample_curve(sample: Callable[[int, int], Sample], movable: int, expired: Callable[[], bool]) -> list[int]:
    """The budgets `--pareto` samples: sample(budget, points still to come) for 0, 1, 2, 4, … (see module)."""
    candidates = budgets(max(1, movable))
    done: list[int] = []
    spreads: list[float] = []
    stalls = 0
    for i, b in enumerate(candidates):
        spreads.append(sample(b, len(candidates) - i).spread_after)
        done.append(b)
        stalls = stalls + 1 if len(spreads) > 1 and spreads[-1] >= spreads[-2] - 1e-6 else 0
        if stalls >= 2 or spreads[-1] <= 1e-6 or expired():
            break
    return done


def choose_budget(sample: Callable[[int, int], Sample], movable: int, expired: Callable[[], bool],
                  min_gain_per_move: float, target_spread: float | None) -> BudgetChoice:
    """The budget that pays for itself (see the module docstring). sample(budget, points still to come)."""
    results: dict[int, Sample] = {}

    def point(budget: int, left: int) -> Sample:
        if budget not in results:
            results[budget] = sample(budget, left)
        return results[budget]

    candidates = budgets(max(1, movable))
    reached: int | None = None
    for i, b in enumerate(candidates):
        result = point(b, len(candidates) - i + 1)
        if target_spread is not None and reached is None and result.spread_after <= target_spread + 1e-9:
            reached = b
        settled = target_spread is None or reached is not None  # a flat curve ends sampling only past the target
        if result.spread_after <= 1e-6 or expired() or (settled and _flat(results, min_gain_per_move)):
            break
    start, fewest_proven = 0, None
    if target_spread is not None and reached is not None:
        start, fewest_proven = _fewest_to_target(results, point, expired, reached, target_spread)
    elif target_spread is not None:
        start = _closest_to_target(results, min_gain_per_move)
    if start == 0 and 1 in results and results[1].spread_after < results[0].spread_after - 1e-6:
        # Balancing was called for (the planner asks only then): at least the move that helps most is made.
        start = 1
    order = sorted(results)
    chosen = _tangent(results, [b for b in order if b >= start], min_gain_per_move)
    sampled = tuple((b, results[b].spread_after, results[b].moves) for b in order)
    why = _why(results, chosen, start, target_spread, reached, min_gain_per_move)
    return BudgetChoice(chosen, why, sampled, fewest_proven)


def _flat(results: dict[int, Sample], min_gain: float) -> bool:
    """The last two segments of the curve each gained less than half the threshold per move: stop sampling."""
    order = sorted(results)
    if len(order) < 3:
        return False
    gains = []
    for a, b in zip(order[-3:], order[-2:]):
        extra = results[b].moves - results[a].moves
        gains.append((results[a].spread_after - results[b].spread_after) / max(1, extra))
    return all(g < 0.5 * min_gain for g in gains)


def _fewest_to_target(results: dict[int, Sample], point, expired, reached: int, target: float) -> tuple[int, bool]:
    """The smallest budget that reaches `target`, by bisection below `reached`, and whether "fewest" is proven
    (the budget just below has a proven lower bound above the target)."""
    lower = max([b for b in results if b < reached and results[b].spread_after > target + 1e-9], default=-1)
    upper = reached
    while upper - lower > 1 and not expired():
        middle = (lower + upper) // 2
        if point(middle, 2).spread_after <= target + 1e-9:
            upper = middle
        else:
            lower = middle
    below = results.get(upper - 1) if upper > 0 else None
    proven = upper == 0 or (below is not None and below.bound is not None and below.bound > target + 1e-9)
    return upper, proven


def _closest_to_target(results: dict[int, Sample], min_gain: float) -> int:
    """The target out of reach: the fewest sampled budget within `min_gain` pp of the lowest spread sampled.

    Balancing was called for (the spread is over the balanciness), so the plan goes as close to the target
    as the samples went; on a large cluster one migration moves the extreme nodes by a fraction of a point,
    and a per-move threshold alone would leave such a cluster as it is. The last `min_gain` pp are not
    chased: more migrations for less than one move's worth in total."""
    best = min(r.spread_after for r in results.values())
    return min(b for b, r in results.items() if r.spread_after <= best + min_gain + 1e-9)


def _tangent(results: dict[int, Sample], budgets_from: list[int], min_gain: float) -> int:
    """The first budget after which no later sample gains `min_gain` pp per extra migration on average."""
    for i, b in enumerate(budgets_from):
        here = results[b]
        worth = any(here.spread_after - results[later].spread_after >= min_gain * (results[later].moves - here.moves)
                    for later in budgets_from[i + 1:] if results[later].moves > here.moves)
        if not worth:
            return b
    return budgets_from[-1]


def _why(results, chosen: int, start: int, target: float | None, reached: int | None, min_gain: float) -> str:
    parts = []
    if target is not None:
        parts.append(f"the target of {target:g} pp needs budget {start} at the fewest" if reached is not None
                     else f"the target of {target:g} pp was not reached: budget {start} comes within {min_gain:g} "
                          f"pp of the lowest spread found ({min(r.spread_after for r in results.values()):.2f} pp)")
    parts.append(f"budget {chosen} ({results[chosen].spread_after:.2f} pp): one more migration would gain less "
                 f"than {min_gain:g} pp")
    return "; ".join(parts)
