"""Large-neighbourhood search: CP-SAT on small sub-problems around the incumbent, for big clusters.

From the incumbent, each round frees the guests of a few of the most and least loaded nodes (plus a
few random ones), keeps everything else where it is, and lets CP-SAT re-solve that sub-problem with
the incumbent as hint; a better answer (spread, then migration cost) that the checker accepts
replaces the incumbent. Many short sub-problems beat a few long ones here (measured on 32×2000:
18 × 0.6 s > 4 × 3 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt import check
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.solve import SolverSettings, solve_weighted
from proxlb_opt.deadline import Deadline
from proxlb_opt.problem import Problem


@dataclass(frozen=True)
class SearchStats:
    iterations: int
    improvements: int


def large_neighbourhood_search(problem: Problem, solver: SolverSettings, incumbent: np.ndarray, deadline: Deadline,
                               max_free_guests: int = 250, sub_seconds: float = 0.6,
                               max_width: int = 2) -> tuple[np.ndarray, SearchStats]:
    rng = np.random.default_rng(solver.seed)
    best = np.array(incumbent, dtype=np.int64)
    best_score = check.score(problem, best)
    eligible = problem.eligible_nodes
    width = max(1, min(max_width, len(eligible) // 4))
    iterations = improvements = 0
    balance = problem.balance
    size = (balance.demand / np.maximum(1.0, balance.cap.mean(axis=0))).sum(axis=1)
    last = 0.25  # seconds the last sub-problem took, model building included: never start one that cannot end
    while deadline.remaining() > last + 0.05 and len(eligible) >= 2:
        started = deadline.elapsed()
        iterations += 1
        nodes = _pick_nodes(problem, best, width, rng)
        restrict = _neighbourhood(problem, best, nodes, max_free_guests, rng, size)
        time_limit = min(max(0.2, deadline.remaining() - 0.1), sub_seconds)
        result = solve_weighted(problem, solver, BuildOptions(hint=best, restrict_to=restrict), time_limit)
        last = max(0.25, deadline.elapsed() - started)
        if result.found:
            candidate_score = check.score(problem, result.placement)
            if candidate_score < best_score and not check.violations(problem, result.placement):
                best, best_score = result.placement, candidate_score
                improvements += 1
                continue
        width = width + 1 if width < len(eligible) // 2 else max(1, len(eligible) // 4)
    return best, SearchStats(iterations, improvements)


def _pick_nodes(problem: Problem, placement: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    eligible = problem.eligible_nodes
    pct = check.node_percent(problem, placement)[:, problem.loads.columns]
    weighted = pct[eligible] @ problem.balance.weights
    order = eligible[np.argsort(weighted, kind="stable")]
    chosen = set(order[:width].tolist()) | set(order[-width:].tolist())
    for r in range(pct.shape[1]):
        chosen.add(int(eligible[np.argmax(pct[eligible, r])]))
        chosen.add(int(eligible[np.argmin(pct[eligible, r])]))
    rest = [int(n) for n in eligible if n not in chosen]
    if rest:
        chosen |= set(rng.choice(rest, size=min(len(rest), max(1, width // 2)), replace=False).tolist())
    return np.array(sorted(chosen), dtype=np.int64)


def _neighbourhood(problem: Problem, placement: np.ndarray, nodes: np.ndarray, max_free: int,
                   rng: np.random.Generator, demand_size: np.ndarray) -> np.ndarray:
    """bool[g, n]: free guests on `nodes` may go to any of `nodes` or back home; all others stay."""
    cluster, rules = problem.cluster, problem.rules
    g_all = np.arange(cluster.n_guests)
    restrict = np.zeros((cluster.n_guests, cluster.n_nodes), dtype=bool)
    restrict[g_all, placement] = True
    # Guests on the chosen nodes, and guests moved away from them (bringing one home frees allowance).
    on_selected = (np.isin(placement, nodes) | np.isin(cluster.guest_node, nodes)) & rules.movable
    free = np.flatnonzero(on_selected)
    if free.size > max_free:
        # Keep the guests that matter: those already moved (they hold the allowance) and the largest ones;
        # fill the rest at random so that repeated neighbourhoods differ.
        moved = free[placement[free] != cluster.guest_node[free]]
        largest = free[np.argsort(-demand_size[free], kind="stable")][: max_free // 2]
        keep = np.union1d(moved, largest)[:max_free]
        rest = np.setdiff1d(free, keep)
        extra = rng.choice(rest, size=min(rest.size, max(0, max_free - keep.size)), replace=False) if rest.size else []
        free = np.sort(np.union1d(keep, extra)).astype(np.int64)
    node_mask = np.zeros(cluster.n_nodes, dtype=bool)
    node_mask[nodes] = True
    for members in problem.units:  # a unit moves as a whole or not at all
        if members.size > 1 and np.isin(members, free).any():
            free = np.union1d(free, members)
    restrict[free] |= node_mask
    restrict[free, cluster.guest_node[free]] = True
    return restrict
