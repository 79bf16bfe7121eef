"""Hard capacity: for every hard limit and node, Σ demand · x ≤ limit − base − fixed load."""

from __future__ import annotations

from proxlb_opt.cpsat.families import Terms


def encode(ctx) -> Terms:
    for limit in ctx.loads.hard_limits:
        room = limit.limit - limit.base - ctx.fixed_load(limit.demand)
        for n, on_node in enumerate(ctx.vars_on_node):
            name = f"capacity of {ctx.cluster.node_names[n]} ({limit.name})"
            terms = [(int(limit.demand[g]), var) for g, var in on_node if limit.demand[g] > 0]
            if not terms:
                if room[n] < 0:  # guests with a single possible node already overfill it
                    ctx.enforce(ctx.model.AddBoolOr([]), name)
                continue
            if sum(d for d, _ in terms) <= room[n]:
                continue  # cannot be exceeded whatever lands here: no constraint needed
            ctx.enforce(ctx.model.Add(sum(d * var for d, var in terms) <= int(room[n])), name)
    return Terms()
