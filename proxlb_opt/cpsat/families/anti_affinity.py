"""Anti-affinity: one at-most-k per group and node (never pairwise), k = the group's per-node cap."""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms


def encode(ctx: Context) -> Terms:
    for group in ctx.rules.anti_affinities:
        for n in range(ctx.cluster.n_nodes):
            fixed = sum(1 for g in group.members if ctx.fixed_node[g] == n)
            free = [ctx.x[(g, n)] for g in group.members if (g, n) in ctx.x]
            if len(free) + fixed <= group.per_node_cap:
                continue
            room = group.per_node_cap - fixed
            if room < 0:  # guests with a single possible node already break the group here
                ctx.enforce(ctx.model.AddBoolOr([]), group.source)
                continue
            constraint = ctx.model.AddAtMostOne(free) if room == 1 else ctx.model.Add(sum(free) <= room)
            ctx.enforce(constraint, group.source)
    return Terms()
