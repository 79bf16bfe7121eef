"""best-node: where a new guest of a given shape fits best. Filter, then score; no CP-SAT needed.

Filter: the node is online and not in maintenance, allowed by the guest's pins, keeps every hard
limit with the guest added, and respects the guest's affinity / anti-affinity groups.
Score: the cluster spread after placing the guest there, then that node's own percent, then name.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from proxlb_opt import check
from proxlb_opt.cluster import Cluster, with_guest
from proxlb_opt.config import Settings
from proxlb_opt.errors import InputError
from proxlb_opt.planner import prepare
from proxlb_opt.rules import derive_rules

NEW_VMID = 999_999_999


def rank_nodes(cluster: Cluster, settings: Settings, guest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every node with fits / spread after / reason, best first. `guest` is a model-file guest entry."""
    base_cluster, base_rules, base_loads = prepare(cluster, settings)
    eligible = np.flatnonzero(base_rules.eligible)
    if eligible.size == 0:
        raise InputError("no online node outside maintenance can take a new guest")
    entry = {"vmid": NEW_VMID, "name": "new-guest", "status": "running", **guest,
             "node": base_cluster.node_names[int(eligible[0])]}
    grown = with_guest(base_cluster, entry)
    rules = derive_rules(grown, settings)
    loads = check.load_model(grown, settings)
    g = grown.n_guests - 1
    ranking = [_candidate(base_cluster, base_loads, base_rules, grown, rules, loads, g, n)
               for n in range(base_cluster.n_nodes)]
    return sorted(ranking, key=lambda r: (not r["fits"], r["spread_after"] if r["spread_after"] is not None else 1e9,
                                          r["percent_after"] if r["percent_after"] is not None else 1e9, r["node"]))


def _candidate(base_cluster, base_loads, base_rules, grown, rules, loads, g: int, n: int) -> dict[str, Any]:
    name = base_cluster.node_names[n]
    reason = _why_not(base_cluster, base_loads, base_rules, grown, rules, loads, g, n)
    if reason:
        return {"node": name, "fits": False, "spread_after": None, "percent_after": None, "reason": reason}
    placement = np.append(np.asarray(base_cluster.guest_node), n)
    # Percentages with the new guest: grown's loads but the base cluster's node usage.
    percent = 100.0 * (base_loads.base + _sum(grown, loads.demand, placement)) / base_loads.capacity
    columns = [loads.resource_index(r) for r in loads.resources]
    weights = np.array(loads.weights, dtype=float)
    eligible = np.flatnonzero(base_rules.eligible)
    spreads = [percent[eligible, c].max() - percent[eligible, c].min() if eligible.size > 1 else 0.0 for c in columns]
    spread = float(np.dot(spreads, weights) / weights.sum())
    node_pct = float(np.dot(percent[n, columns], weights) / weights.sum())
    return {"node": name, "fits": True, "spread_after": round(spread, 3), "percent_after": round(node_pct, 2),
            "reason": None}


def _sum(cluster: Cluster, demand: np.ndarray, placement: np.ndarray) -> np.ndarray:
    out = np.zeros((cluster.n_nodes, demand.shape[1]), dtype=np.int64)
    np.add.at(out, placement, demand)
    return out


def _why_not(base_cluster, base_loads, base_rules, grown, rules, loads, g: int, n: int) -> str | None:
    if not base_cluster.node_online[n]:
        return "offline"
    if not base_rules.eligible[n]:
        return "maintenance"
    if not rules.allowed[g, n]:
        return "outside the guest's pins"
    for base_limit, limit in zip(base_loads.hard_limits, loads.hard_limits):
        load = base_limit.base[n] + base_limit.demand[base_cluster.guest_node == n].sum() + limit.demand[g]
        if load > base_limit.limit[n]:
            return f"{limit.name} would exceed capacity"
    for group in rules.anti_affinities:
        if g in group.members:
            partners = sum(1 for m in group.members if m != g and grown.guest_node[m] == n)
            if partners + 1 > group.per_node_cap:
                return f"{group.source}: a partner runs there"
    for group in rules.affinities:
        if g in group.members:
            homes = {int(grown.guest_node[m]) for m in group.members if m != g}
            if homes and n not in homes:
                return f"{group.source}: the group runs elsewhere"
    return None
