"""The trade-off curve: best spread found for migration budgets 0, 1, 2, 4, 8, … (pure).

Each point is a full planning run at that budget (`planner.make_plan`), so every point is a
checked, replayed plan. The curve stops when more budget no longer helps (twice in a row), when
the spread reaches zero, or when the budget covers every movable guest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from proxlb_opt.cluster import Cluster
from proxlb_opt.config import Settings
from proxlb_opt.planner import PlanResult, make_plan

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


def pareto_curve(cluster: Cluster, settings: Settings) -> list[CurvePoint]:
    movable = None
    points: list[CurvePoint] = []
    stalls = 0
    b, candidates = 0, None
    while True:
        result = make_plan(cluster, replace(settings, max_migrations=b, balanciness=0.0), "cpsat")
        if movable is None:
            movable = int(result.rules.movable.sum())
            candidates = budgets(max(1, movable))
        points.append(_point(b, result))
        if len(points) > 1 and points[-1].spread >= points[-2].spread - 1e-6:
            stalls += 1
        else:
            stalls = 0
        nxt = [c for c in candidates if c > b]
        if not nxt or stalls >= 2 or points[-1].spread <= 1e-6:
            return points
        b = nxt[0]


def _point(budget: int, result: PlanResult) -> CurvePoint:
    return CurvePoint(budget=budget, spread=round(result.spread_after, 3),
                      bound=None if result.bound is None else round(result.bound, 3),
                      migrations=result.plan.guests_moved, mandatory=result.mandatory_moves,
                      memory_moved_mib=result.memory_moved_mib, status=result.status,
                      seconds=round(result.solve_seconds + result.sequence_seconds, 2))
