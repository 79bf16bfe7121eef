"""best-node: where a new guest of a given shape fits best. Filter, then score; no CP-SAT needed.

The new guest joins the cluster (its tags bring their rules: pins, affinity and anti-affinity
groups), is lifted off the node it was added on, and every node is asked the feasibility module's
question "may it go there now?" (online, not in maintenance, inside its pins, every hard limit, its
groups). Score: the cluster spread after placing the guest there, then that node's own percent, then
the name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from proxlb_opt.cluster import Cluster, with_guest
from proxlb_opt.config import Settings
from proxlb_opt.errors import InfeasibleError
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.problem import build_problem

NEW_VMID = 999_999_999


def rank_nodes(cluster: Cluster, settings: Settings, guest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every node with fits / spread after / reason, best first. `guest` is a model-file guest entry."""
    base = build_problem(cluster, settings)
    if base.eligible_nodes.size == 0:
        raise InfeasibleError("no node fits: no online node outside maintenance can take a new guest")
    entry = {"vmid": NEW_VMID, "name": "new-guest", "status": "running", **guest,
             "node": base.cluster.node_names[int(base.eligible_nodes[0])]}
    grown = build_problem(with_guest(base.cluster, entry), settings)
    # The limits are today's: the new guest on the node it was added to must not raise that node's limit.
    problem = replace(grown, loads=grown.loads.with_limits(base.hard.limit))
    g = problem.cluster.n_guests - 1
    occ = Occupancy(problem)
    occ.lift(g)
    ranking = [_candidate(occ, g, n) for n in range(problem.cluster.n_nodes)]
    return sorted(ranking, key=lambda r: (not r["fits"], r["spread_after"] if r["spread_after"] is not None else 1e9,
                                          r["percent_after"] if r["percent_after"] is not None else 1e9, r["node"]))


def _candidate(occ: Occupancy, g: int, n: int) -> dict[str, Any]:
    problem = occ.problem
    name = problem.cluster.node_names[n]
    reason = occ.why_not([g], n)
    if reason:
        return {"node": name, "fits": False, "spread_after": None, "percent_after": None, "reason": reason}
    spread = occ.spread_if([g], n)
    balance = problem.balance
    node_pct = float((100.0 * (occ.balance[n] + balance.demand[g]) / balance.cap[n]) @ balance.weights)
    return {"node": name, "fits": True, "spread_after": round(spread, 3), "percent_after": round(node_pct, 2),
            "reason": None}
