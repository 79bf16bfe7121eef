"""The spec, independent of any solver: loads, percentages, spread, hard limits and rule violations.

`load_model(cluster, settings)` fixes the integer arithmetic of the planning problem (what each
guest adds to its node, node base loads, capacities, hard limits); `violations(...)` and
`evaluate(...)` judge any placement against it with plain numpy. Every solver answer and every
greedy answer is judged here; the CP-SAT encoders read the same LoadModel but never this code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxlb_opt.cluster import Cluster
from proxlb_opt.config import RESOURCES, Settings
from proxlb_opt.rules import RuleSet

#: Percentages inside the model are integers in hundredths of a percentage point.
PERCENT_SCALE = 100 * 100
GIB_MIB = 1024


@dataclass(frozen=True)
class HardLimit:
    """load[n] = base[n] + Σ demand[g] over guests on n must stay ≤ limit[n]."""

    name: str
    demand: np.ndarray  # int64[g]
    base: np.ndarray  # int64[n]
    limit: np.ndarray  # int64[n], never below the load before the plan ("must not get worse")
    unit: str


@dataclass(frozen=True, eq=False)
class LoadModel:
    """Integer load arithmetic of one planning problem."""

    resources: tuple[str, ...]  # balanced resources, in RESOURCES order
    weights: tuple[int, ...]  # one per balanced resource
    demand: np.ndarray  # int64[g, r] over all RESOURCES (memory MiB, cpu milli, disk MiB)
    base: np.ndarray  # int64[n, r]
    capacity: np.ndarray  # int64[n, r], ≥ 1
    hard_limits: tuple[HardLimit, ...]
    migration_cost: np.ndarray  # int64[g]: ≈ GiB copied by a migration, at least 1
    mode: str

    def resource_index(self, resource: str) -> int:
        return RESOURCES.index(resource)


def load_model(cluster: Cluster, settings: Settings) -> LoadModel:
    c = cluster
    running = c.guest_running.astype(np.int64)
    local = c.guest_local_disk.astype(np.int64)
    if settings.mode == "assigned":
        demand = np.stack([c.guest_mem_mib, c.guest_cpu_milli, c.guest_disk_mib * local], axis=1)
        base = np.zeros((c.n_nodes, 3), dtype=np.int64)
    else:
        demand = np.stack([c.guest_mem_used_mib * running, c.guest_cpu_used_milli * running,
                           c.guest_disk_used_mib * local], axis=1)
        reported = np.stack([c.node_mem_used_mib, c.node_cpu_used_milli, c.node_disk_used_mib], axis=1)
        base = np.maximum(0, reported - _sum_by_node(c, demand))
    demand = demand.astype(np.int64)
    size = np.stack([c.node_mem_mib, c.node_cpu_milli, c.node_disk_mib], axis=1).astype(np.int64)
    capacity = np.maximum(1, size - reserve_matrix(c, settings))

    if settings.method == "multi":
        resources = tuple(r for r in RESOURCES if settings.weights.get(r, 0) > 0)
        weights = tuple(int(settings.weights[r]) for r in resources)
    else:
        resources, weights = (settings.method,), (1,)
    return LoadModel(
        resources=resources, weights=weights, demand=_ro(demand), base=_ro(base.astype(np.int64)),
        capacity=_ro(capacity), hard_limits=_hard_limits(c, settings, capacity), mode=settings.mode,
        migration_cost=_ro(_migration_cost(c)),
    )


def reserve_matrix(cluster: Cluster, settings: Settings) -> np.ndarray:
    """int64[n, r]: ProxLB's node_resource_reserve (GiB for memory/disk, cores for cpu) in model units."""
    out = np.zeros((cluster.n_nodes, 3), dtype=np.int64)
    defaults = settings.node_resource_reserve.get("defaults", {})
    scale = {"memory": GIB_MIB, "cpu": 1000, "disk": GIB_MIB}
    for n, name in enumerate(cluster.node_names):
        spec = {**defaults, **settings.node_resource_reserve.get(name, {})}
        for r, resource in enumerate(RESOURCES):
            out[n, r] = int(round(spec.get(resource, 0) * scale[resource]))
    return out


def _sum_by_node(c: Cluster, per_guest: np.ndarray, placement: np.ndarray | None = None) -> np.ndarray:
    placement = c.guest_node if placement is None else placement
    out = np.zeros((c.n_nodes, per_guest.shape[1]), dtype=np.int64)
    np.add.at(out, np.asarray(placement, dtype=np.int64), per_guest)
    return out


def _hard_limits(c: Cluster, settings: Settings, capacity: np.ndarray) -> tuple[HardLimit, ...]:
    running = c.guest_running.astype(np.int64)
    local = c.guest_local_disk.astype(np.int64)
    mem_used = c.guest_mem_used_mib * running
    reported_mem_base = np.maximum(0, c.node_mem_used_mib - np.bincount(c.guest_node, mem_used, c.n_nodes).astype(np.int64))
    disk_used = c.guest_disk_used_mib * local
    reported_disk_base = np.maximum(0, c.node_disk_used_mib - np.bincount(c.guest_node, disk_used, c.n_nodes).astype(np.int64))
    zeros = np.zeros(c.n_nodes, dtype=np.int64)
    specs = [
        ("used memory", mem_used, reported_mem_base, capacity[:, 0], "MiB"),
        ("local disk", disk_used, reported_disk_base, capacity[:, 2], "MiB"),
    ]
    if not settings.overprovisioning:
        specs.append(("assigned memory", c.guest_mem_mib.astype(np.int64), zeros, capacity[:, 0], "MiB"))
        vcpu_limit = np.floor(c.node_cpu_milli * settings.cpu_overcommit).astype(np.int64)
        specs.append(("assigned vCPUs", c.guest_cpu_milli.astype(np.int64), zeros, vcpu_limit, "milli-cores"))
    limits = []
    for name, demand, base, limit, unit in specs:
        current = base + np.bincount(c.guest_node, demand, c.n_nodes).astype(np.int64)
        limits.append(HardLimit(name=name, demand=_ro(demand.astype(np.int64)), base=_ro(base),
                                limit=_ro(np.maximum(limit, current)), unit=unit))
    return tuple(limits)


def _migration_cost(c: Cluster) -> np.ndarray:
    """GiB a migration copies (RAM of running guests, local disk), rounded up, at least 1."""
    mem = np.where(c.guest_running, c.guest_mem_used_mib, 0)
    disk = np.where(c.guest_local_disk, c.guest_disk_used_mib, 0)
    return 1 + (mem + disk + GIB_MIB - 1) // GIB_MIB


def _ro(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


# ----------------------------------------------------------------------------- evaluation


def node_loads(cluster: Cluster, loads: LoadModel, placement: np.ndarray) -> np.ndarray:
    """int64[n, r]: balance load of each node under `placement`."""
    return loads.base + _sum_by_node(cluster, loads.demand, placement)


def node_percent(cluster: Cluster, loads: LoadModel, placement: np.ndarray) -> np.ndarray:
    """float[n, r]: 100 · load / capacity."""
    return 100.0 * node_loads(cluster, loads, placement) / loads.capacity


def spread_per_resource(cluster: Cluster, loads: LoadModel, rules: RuleSet, placement: np.ndarray) -> dict[str, float]:
    """Max − min percent over eligible nodes, per balanced resource, in percentage points."""
    percent = node_percent(cluster, loads, placement)
    eligible = np.flatnonzero(rules.eligible)
    out = {}
    for resource in loads.resources:
        column = percent[eligible, loads.resource_index(resource)]
        out[resource] = float(column.max() - column.min()) if column.size > 1 else 0.0
    return out


def spread(cluster: Cluster, loads: LoadModel, rules: RuleSet, placement: np.ndarray) -> float:
    """The balancing figure: the weighted mean of the per-resource spreads (the spread itself for one method)."""
    per = spread_per_resource(cluster, loads, rules, placement)
    total_weight = sum(loads.weights)
    return sum(w * per[r] for r, w in zip(loads.resources, loads.weights)) / total_weight


def moved_mask(cluster: Cluster, placement: np.ndarray) -> np.ndarray:
    return np.asarray(placement) != np.asarray(cluster.guest_node)


def migration_cost(loads: LoadModel, cluster: Cluster, placement: np.ndarray) -> int:
    return int(loads.migration_cost[moved_mask(cluster, placement)].sum())


@dataclass(frozen=True)
class Violation:
    rule: str  # family: capacity, affinity, anti-affinity, pin, maintenance, ignore, budget
    message: str


def violations(cluster: Cluster, rules: RuleSet, loads: LoadModel, placement: np.ndarray,
               max_migrations: int | None = None) -> list[Violation]:
    """Everything wrong with `placement` (int[g] node indices); empty means valid."""
    c = cluster
    placement = np.asarray(placement, dtype=np.int64)
    if placement.shape != (c.n_guests,) or (placement.size and (placement.min() < 0 or placement.max() >= c.n_nodes)):
        return [Violation("placement", "placement does not put every guest on a known node")]
    found: list[Violation] = []
    found += _domain_violations(c, rules, placement)
    found += _capacity_violations(c, loads, placement)
    found += _group_violations(c, rules, placement)
    if max_migrations is not None:
        counted = int((moved_mask(c, placement) & ~rules.budget_free).sum())
        if counted > max_migrations:
            found.append(Violation("budget", f"{counted} balancing migrations exceed the budget of {max_migrations}"))
    return found


def _domain_violations(c: Cluster, rules: RuleSet, placement: np.ndarray) -> list[Violation]:
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
            found.append(Violation("pin", f"{c.guest_label(g)} placed on {c.node_names[node]}, outside "
                                          f"{'; '.join(rules.pin_sources(g))}"))
    return found


def _capacity_violations(c: Cluster, loads: LoadModel, placement: np.ndarray) -> list[Violation]:
    found = []
    for limit in loads.hard_limits:
        load = limit.base + np.bincount(placement, limit.demand, c.n_nodes).astype(np.int64)
        for n in np.flatnonzero(load > limit.limit):
            found.append(Violation("capacity", f"{c.node_names[n]}: {limit.name} {int(load[n])} {limit.unit} "
                                               f"exceeds {int(limit.limit[n])} {limit.unit}"))
    return found


def _group_violations(c: Cluster, rules: RuleSet, placement: np.ndarray) -> list[Violation]:
    found = []
    for group in rules.affinities:
        nodes = sorted({c.node_names[placement[g]] for g in group.members})
        if len(nodes) > 1:
            found.append(Violation("affinity", f"{group.source}: members split over {', '.join(nodes)}"))
    for group in rules.anti_affinities:
        counts = np.bincount(placement[list(group.members)], minlength=c.n_nodes)
        for n in np.flatnonzero(counts > group.per_node_cap):
            found.append(Violation("anti-affinity", f"{group.source}: {int(counts[n])} members on {c.node_names[n]} "
                                                    f"(at most {group.per_node_cap})"))
    return found


def preference_penalty(rules: RuleSet, placement: np.ndarray) -> int:
    """Soft node preferences: 0 on a top-priority node, +1 per priority step below, +1 more off the list."""
    total = 0
    for pref in rules.preferences:
        prios = dict(pref.priorities)
        top = max(prios.values(), default=0)
        node = int(placement[pref.guest])
        total += (top - prios[node]) if node in prios else (top - min(prios.values(), default=0) + 1)
    return total
