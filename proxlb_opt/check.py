"""The spec, independent of any solver or search: loads, percentages, spread and everything a placement breaks.

`violations(problem, placement)` and `spread(problem, placement)` judge any placement with plain numpy,
rule family by rule family, straight from the declarations in the RuleSet and the LoadModel. Every
answer of every planner is judged here before it is shown. The fast, incremental questions the
searches ask ("may this unit go to that node now?") live in feasibility.py; a property test keeps the
two in agreement, and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt.loads import PERCENT_SCALE  # noqa: F401  (re-exported: the model's percent unit)
from proxlb_opt.problem import Problem

#: Rule families as the checker names them (the `rule` of a Violation).
FAMILIES = ("placement", "ignore", "maintenance", "offline", "pin", "capacity", "affinity", "anti-affinity", "budget")


@dataclass(frozen=True)
class Violation:
    rule: str  # one of FAMILIES
    message: str


# ----------------------------------------------------------------------------- evaluation


def node_loads(problem: Problem, placement: np.ndarray) -> np.ndarray:
    """int64[n, r]: balance load of each node under `placement`, over all RESOURCES."""
    loads = problem.loads
    out = loads.base.copy()
    np.add.at(out, np.asarray(placement, dtype=np.int64), loads.demand)
    return out


def node_percent(problem: Problem, placement: np.ndarray) -> np.ndarray:
    """float[n, r]: 100 · load / capacity over all RESOURCES."""
    return 100.0 * node_loads(problem, placement) / problem.loads.capacity


def spread_per_resource(problem: Problem, placement: np.ndarray) -> dict[str, float]:
    """Max − min percent over eligible nodes, per balanced resource, in percentage points."""
    percent = node_percent(problem, placement)
    eligible = np.flatnonzero(problem.rules.eligible)
    out = {}
    for resource in problem.loads.resources:
        column = percent[eligible, problem.loads.resource_index(resource)]
        out[resource] = float(column.max() - column.min()) if column.size > 1 else 0.0
    return out


def spread(problem: Problem, placement: np.ndarray) -> float:
    """The balancing figure: the weighted mean of the per-resource spreads (the spread itself for one method)."""
    per = spread_per_resource(problem, placement)
    loads = problem.loads
    return sum(w * per[r] for r, w in zip(loads.resources, loads.weights)) / sum(loads.weights)


def moved_mask(problem: Problem, placement: np.ndarray) -> np.ndarray:
    return np.asarray(placement) != np.asarray(problem.cluster.guest_node)


def move_count(problem: Problem, placement: np.ndarray) -> int:
    """Guests that end on another node (what the migration allowance limits)."""
    return int(moved_mask(problem, placement).sum())


def migration_cost(problem: Problem, placement: np.ndarray) -> int:
    return int(problem.loads.migration_cost[moved_mask(problem, placement)].sum())


def preference_penalty(problem: Problem, placement: np.ndarray) -> int:
    """Soft node preferences, each as its declaration scores a node (rules.NodePreference.penalty)."""
    return sum(pref.penalty(int(placement[pref.guest])) for pref in problem.rules.preferences)


Score = tuple[float, int]


def score(problem: Problem, placement: np.ndarray) -> Score:
    """What every planner minimizes, lexicographically: the spread, then migration cost + preferences."""
    return (round(spread(problem, placement), 6),
            migration_cost(problem, placement) + preference_penalty(problem, placement))


# ----------------------------------------------------------------------------- violations


def violations(problem: Problem, placement: np.ndarray, check_allowance: bool = True) -> list[Violation]:
    """Everything wrong with `placement` (int[g] node indices); empty means valid."""
    c = problem.cluster
    placement = np.asarray(placement, dtype=np.int64)
    if placement.shape != (c.n_guests,) or (placement.size and (placement.min() < 0 or placement.max() >= c.n_nodes)):
        return [Violation("placement", "placement does not put every guest on a known node")]
    found: list[Violation] = []
    found += _domain_violations(problem, placement)
    found += _capacity_violations(problem, placement)
    found += _affinity_violations(problem, placement)
    found += _anti_affinity_violations(problem, placement)
    if check_allowance and problem.allowance is not None:
        moved = move_count(problem, placement)
        if moved > problem.allowance:
            found.append(Violation("budget", f"{moved} migrations exceed the allowance of {problem.allowance} "
                                             f"({problem.repair_moves} for the repair + budget {problem.budget})"))
    return found


def _domain_violations(problem: Problem, placement: np.ndarray) -> list[Violation]:
    c, rules = problem.cluster, problem.rules
    found = []
    bad = np.flatnonzero(~rules.allowed[np.arange(c.n_guests), placement])
    maintenance_nodes = {m.node for m in rules.maintenance}
    for g in bad:
        node = int(placement[g])
        if not rules.movable[g]:
            found.append(Violation("ignore", f"{c.guest_label(g)} cannot move but was placed on {c.node_names[node]}"))
        elif node in maintenance_nodes:
            found.append(Violation("maintenance", f"{c.guest_label(g)} placed on maintenance node {c.node_names[node]}"))
        elif not c.node_online[node]:
            found.append(Violation("offline", f"{c.guest_label(g)} placed on offline node {c.node_names[node]}"))
        else:
            sources = rules.pin_sources(g) or ["its affinity group's anchor"]
            found.append(Violation("pin", f"{c.guest_label(g)} placed on {c.node_names[node]}, outside "
                                          f"{'; '.join(sources)}"))
    return found


def _capacity_violations(problem: Problem, placement: np.ndarray) -> list[Violation]:
    c = problem.cluster
    found = []
    for limit in problem.loads.hard_limits:
        load = limit.load(placement, c.n_nodes)
        for n in np.flatnonzero(load > limit.limit):
            found.append(Violation("capacity", f"{c.node_names[n]}: {limit.name} {int(load[n])} {limit.unit} "
                                               f"exceeds {int(limit.limit[n])} {limit.unit}"))
    return found


def _affinity_violations(problem: Problem, placement: np.ndarray) -> list[Violation]:
    c = problem.cluster
    found = []
    for group in problem.rules.affinities:
        nodes = sorted({c.node_names[placement[g]] for g in group.members})
        if len(nodes) > 1:
            found.append(Violation("affinity", f"{group.source}: members split over {', '.join(nodes)}"))
    return found


def _anti_affinity_violations(problem: Problem, placement: np.ndarray) -> list[Violation]:
    c = problem.cluster
    found = []
    for group in problem.rules.anti_affinities:
        counts = np.bincount(placement[list(group.members)], minlength=c.n_nodes)
        for n in np.flatnonzero(counts > group.per_node_cap):
            found.append(Violation("anti-affinity", f"{group.source}: {int(counts[n])} members on {c.node_names[n]} "
                                                    f"(at most {group.per_node_cap})"))
    return found
