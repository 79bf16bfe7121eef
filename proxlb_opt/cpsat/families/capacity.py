"""Hard capacity: for every hard limit and node, Σ demand · x ≤ limit − base − fixed load.

In the repair model a node already over a physical limit's capacity (used memory, local disk) gets
an excess variable e ≥ load − capacity (e ≥ 0), and Σ e is the repair's first objective: nodes over
capacity are brought back under it as far as the others have room. The limit itself (never below today's load)
stays a hard constraint in both models.
"""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms


def encode(ctx: Context) -> Terms:
    terms = Terms()
    for limit in ctx.loads.hard_limits:
        fixed = limit.base + ctx.fixed_load(limit.demand)
        for n, on_node in enumerate(ctx.vars_on_node):
            name = f"capacity of {ctx.cluster.node_names[n]} ({limit.name})"
            variable = [(int(limit.demand[g]), var) for g, var in on_node if limit.demand[g] > 0]
            most = int(fixed[n]) + sum(d for d, _ in variable)
            if not variable:
                if fixed[n] > limit.limit[n]:  # guests with a single possible node already overfill it
                    ctx.enforce(ctx.model.AddBoolOr([]), name)
            elif most > limit.limit[n]:
                load = sum(d * var for d, var in variable)
                ctx.enforce(ctx.model.Add(load <= int(limit.limit[n] - fixed[n])), name)
            if ctx.options.repair and limit.relieve and most > limit.capacity[n]:
                terms.excess.append(_excess(ctx, limit, n, variable, int(fixed[n]), most))
    return terms


def _excess(ctx: Context, limit, n: int, variable, fixed: int, most: int):
    """An integer ≥ load − capacity and ≥ 0, in the limit's unit scaled to about a GiB or a core."""
    scale = 1024 if limit.unit == "MiB" else 1000
    top = (max(0, min(most, int(limit.limit[n])) - int(limit.capacity[n])) + scale - 1) // scale
    excess = ctx.model.NewIntVar(0, top, f"excess[{limit.name},{n}]")
    load = fixed + sum(d * var for d, var in variable)
    ctx.model.Add(scale * excess >= load - int(limit.capacity[n]))
    return excess
