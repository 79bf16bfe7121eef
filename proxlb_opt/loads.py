"""The integer load arithmetic of a planning problem: what each guest adds to its node, and the limits.

`load_model(cluster, settings)` fixes, once, in integers: the balance demand of every guest and the
base load of every node per resource (memory MiB, CPU milli-cores, local disk MiB), each node's
capacity for the percentages, and the hard limits a placement must keep (used memory, local disk,
and without overprovisioning assigned memory and vCPUs). Every planner, the CP-SAT encoders and the
independent checker read this one LoadModel; none of them recomputes a load.

A hard limit carries two figures per node: `capacity`, what the configuration allows, and `limit`,
what a plan must keep. `limit` is never below the node's load before the plan: a node that is
already over its capacity may not get worse. Over the physical limits (used memory and local disk,
reserves included: `relieve`) the repair (repair.py) also brings it down as far as the other nodes
have room and then tightens `limit` to what it reached. Over the administrative ones (assigned memory
and vCPUs without overprovisioning) it is left as it is: ProxLB never forces those moves either, and
assigned memory above a node's size is often deliberate (ballooning); a plan only never adds to it.

`mode: psi` balances pressure instead of use (FORMULATION.md, "Pressure (mode psi)"): a node's load
is its measured pressure (PVE 9 PSI `some`, in hundredths of a percent, so 100 % is the capacity),
split over its running guests in proportion to their own pressure; a guest carries its share when it
moves. The hard limits stay those of used memory and local disk (and, without overprovisioning,
assigned memory and vCPUs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from proxlb_opt.cluster import PSI_FIGURES, PSI_SCALE, Cluster
from proxlb_opt.config import RESOURCES, Settings

#: Percentages inside the model are integers in hundredths of a percentage point.
PERCENT_SCALE = 100 * 100
GIB_MIB = 1024


@dataclass(frozen=True)
class HardLimit:
    """load[n] = base[n] + Σ demand[g] over guests on n must stay ≤ limit[n]."""

    name: str
    demand: np.ndarray  # int64[g]
    base: np.ndarray  # int64[n]
    capacity: np.ndarray  # int64[n]: what the configuration allows
    limit: np.ndarray  # int64[n]: what a plan must keep: ≥ capacity, and ≥ the load before the plan
    unit: str
    relieve: bool = False  # a node over this capacity is relieved by the repair (physical limits)

    def load(self, placement: np.ndarray, n_nodes: int) -> np.ndarray:
        """int64[n]: this limit's load of every node under `placement`."""
        return self.base + np.bincount(placement, self.demand, n_nodes).astype(np.int64)


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

    @property
    def columns(self) -> list[int]:
        """Indices into RESOURCES of the balanced resources."""
        return [RESOURCES.index(r) for r in self.resources]

    def with_limits(self, limits: np.ndarray) -> "LoadModel":
        """The same model with each hard limit's `limit` replaced by limits[:, k] (int64[n, k])."""
        return replace(self, hard_limits=tuple(replace(lim, limit=_ro(limits[:, k].astype(np.int64)))
                                               for k, lim in enumerate(self.hard_limits)))


def load_model(cluster: Cluster, settings: Settings) -> LoadModel:
    c = cluster
    running = c.guest_running.astype(np.int64)
    local = c.guest_local_disk.astype(np.int64)
    if settings.mode == "psi":
        demand, base = pressure_shares(c)
    elif settings.mode == "assigned":
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
    # Pressure is a share of time: 100 % is every node's capacity, whatever its size.
    balance_capacity = np.full_like(capacity, 100 * PSI_SCALE) if settings.mode == "psi" else capacity

    if settings.method == "multi":
        resources = tuple(r for r in RESOURCES if settings.weights.get(r, 0) > 0)
        weights = tuple(int(settings.weights[r]) for r in resources)
    else:
        resources, weights = (settings.method,), (1,)
    return LoadModel(
        resources=resources, weights=weights, demand=_ro(demand), base=_ro(base.astype(np.int64)),
        capacity=_ro(balance_capacity), hard_limits=_hard_limits(c, settings, capacity), mode=settings.mode,
        migration_cost=_ro(_migration_cost(c)),
    )


def pressure_shares(c: Cluster) -> tuple[np.ndarray, np.ndarray]:
    """(demand int64[g, r], base int64[n, r]) of mode psi, in hundredths of a percent of stalled time.

    A node's figure is its `some` pressure (the hour mean), per resource (memory, cpu, io for disk). It is
    split over the running guests on the node in proportion to their own `some` pressure; what is left
    (rounding, and all of it when no guest reports pressure: the host's own processes) is the node's
    base, which stays. So the load of every node before the plan is its measured pressure, and a guest
    takes its share along when it moves: a first-order model, since pressure does not add up exactly.
    """
    some = PSI_FIGURES.index("some")
    node_figure = c.node_psi[:, :, some].astype(np.int64)  # [n, r]
    weight = c.guest_psi[:, :, some].astype(np.int64) * c.guest_running[:, None]  # [g, r]
    total = np.zeros_like(node_figure)
    np.add.at(total, np.asarray(c.guest_node, dtype=np.int64), weight)
    on_node_figure = node_figure[c.guest_node]  # [g, r]
    on_node_total = total[c.guest_node]
    demand = np.where(on_node_total > 0, on_node_figure * weight // np.maximum(on_node_total, 1), 0)
    base = node_figure - _sum_by_node(c, demand)
    return demand.astype(np.int64), np.maximum(0, base)


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


def _sum_by_node(c: Cluster, per_guest: np.ndarray) -> np.ndarray:
    out = np.zeros((c.n_nodes, per_guest.shape[1]), dtype=np.int64)
    np.add.at(out, np.asarray(c.guest_node, dtype=np.int64), per_guest)
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
        ("used memory", mem_used, reported_mem_base, capacity[:, 0], "MiB", True),
        ("local disk", disk_used, reported_disk_base, capacity[:, 2], "MiB", True),
    ]
    if not settings.overprovisioning:
        specs.append(("assigned memory", c.guest_mem_mib.astype(np.int64), zeros, capacity[:, 0], "MiB", False))
        vcpu_limit = np.floor(c.node_cpu_milli * settings.cpu_overcommit).astype(np.int64)
        specs.append(("assigned vCPUs", c.guest_cpu_milli.astype(np.int64), zeros, vcpu_limit, "milli-cores", False))
    limits = []
    for name, demand, base, cap, unit, relieve in specs:
        current = base + np.bincount(c.guest_node, demand, c.n_nodes).astype(np.int64)
        limits.append(HardLimit(name=name, demand=_ro(demand.astype(np.int64)), base=_ro(base),
                                capacity=_ro(cap.astype(np.int64)), limit=_ro(np.maximum(cap, current)), unit=unit,
                                relieve=relieve))
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
