"""What-if capacity analysis (pure): drain nodes, and count how many more guests of a shape fit.

* `drain`: plan the cluster as if the named nodes were in maintenance, with no migration budget:
  do all guests fit on the rest, which moves would it take, how balanced would it end up?
* `headroom`: per eligible node, how many more guests of one shape fit every hard limit
  (used and, without overprovisioning, assigned memory; vCPUs; local disk), and in total.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from proxlb_opt.bestnode import NEW_VMID
from proxlb_opt.cluster import Cluster, with_guest
from proxlb_opt.config import Settings
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InfeasibleError, InputError
from proxlb_opt.planner import PlanResult, make_plan
from proxlb_opt.problem import build_problem


@dataclass(frozen=True)
class DrainOutcome:
    nodes: tuple[str, ...]
    fits: bool
    result: PlanResult | None
    reason: str = ""


def drain(cluster: Cluster, settings: Settings, nodes: tuple[str, ...], deadline: Deadline | None = None) -> DrainOutcome:
    unknown = [n for n in nodes if n not in cluster.node_names]
    if unknown:
        raise InputError(f"--drain: unknown node {unknown[0]!r} (nodes: {', '.join(cluster.node_names)})")
    scenario = replace(settings, maintenance_nodes=tuple(settings.maintenance_nodes) + tuple(nodes),
                       max_migrations=None, balanciness=0.0)
    try:
        return DrainOutcome(nodes, True, make_plan(cluster, scenario, "cpsat", deadline=deadline))
    except InfeasibleError as exc:
        return DrainOutcome(nodes, False, None, str(exc))


@dataclass(frozen=True)
class Headroom:
    per_node: dict[str, int]  # eligible node → how many more fit
    limiting: dict[str, str]  # node → the hard limit that binds first

    @property
    def total(self) -> int:
        return sum(self.per_node.values())


def headroom(cluster: Cluster, settings: Settings, guest: Mapping[str, Any]) -> Headroom:
    base = build_problem(cluster, settings)
    eligible = base.eligible_nodes
    if eligible.size == 0:
        return Headroom({}, {})
    probe = build_problem(with_guest(base.cluster, {"vmid": NEW_VMID, "name": "probe", "status": "running", **guest,
                                                     "node": base.cluster.node_names[int(eligible[0])]}), settings)
    need = probe.hard.demand[-1]
    load = base.hard.load(base.current)
    per_node, limiting = {}, {}
    for n in eligible:
        best, why = None, ""
        for k, name in enumerate(base.hard.names):
            if need[k] <= 0:
                continue
            room = max(0, int(base.hard.limit[n, k] - load[n, k])) // int(need[k])
            if best is None or room < best:
                best, why = room, name
        node = base.cluster.node_names[int(n)]
        per_node[node] = int(best if best is not None else 0)
        limiting[node] = why
    return Headroom(per_node, limiting)
