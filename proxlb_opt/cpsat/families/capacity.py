"""Hard capacity: for every hard limit and node, Σ demand · x ≤ limit − base − fixed load."""

from __future__ import annotations

from proxlb_opt.cpsat.families import Terms


def encode(ctx) -> Terms:
    for limit in ctx.loads.hard_limits:
        room = limit.limit - limit.base - ctx.fixed_load(limit.demand)
        for n, on_node in enumerate(ctx.vars_on_node):
            terms = [(int(limit.demand[g]), var) for g, var in on_node if limit.demand[g] > 0]
            if not terms:
                continue
            if sum(d for d, _ in terms) <= room[n]:
                continue  # cannot be exceeded whatever lands here: no constraint needed
            constraint = ctx.model.Add(sum(d * var for d, var in terms) <= int(room[n]))
            ctx.enforce(constraint, f"capacity of {ctx.cluster.node_names[n]} ({limit.name})")
    return Terms()
