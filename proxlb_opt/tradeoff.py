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
from proxlb_opt.problem import build_problem

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
