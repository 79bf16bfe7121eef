"""Affinity: all members of a group on one node. Every member's row of x equals the first member's.

A group with optional members (capacity what-if, BuildOptions.optional) gets a node literal y[n] per
node instead: at most one is 1 (exactly one when a member must be placed), every placed member sits on
it (x[g, n] ≤ y[n] for optional members, x[g, n] = y[n] for the others). Members left without a node
then do not hold the others back.
"""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms


def encode(ctx: Context) -> Terms:
    for group in ctx.rules.affinities:
        if any(ctx.is_optional(g) for g in group.members):
            _encode_with_node_literals(ctx, group)
            continue
        leader, *others = group.members
        nodes = sorted({n for g in group.members for n in range(ctx.cluster.n_nodes) if ctx.domain[g, n]})
        for g in others:
            for n in nodes:
                a, b = ctx.var(leader, n), ctx.var(g, n)
                if isinstance(a, int) and isinstance(b, int):
                    if a != b:  # two fixed members on different nodes: this group cannot hold
                        ctx.enforce(ctx.model.AddBoolOr([]), group.source)
                    continue
                ctx.enforce(ctx.model.Add(a == b), group.source)
    return Terms()


def _encode_with_node_literals(ctx: Context, group) -> None:
    nodes = range(ctx.cluster.n_nodes)
    y = [ctx.model.NewBoolVar(f"affinity[{group.name},{n}]") for n in nodes]
    required = any(not ctx.is_optional(g) for g in group.members)
    ctx.enforce(ctx.model.Add(sum(y) == 1) if required else ctx.model.AddAtMostOne(y), group.source)
    for g in group.members:
        for n in nodes:
            x = ctx.var(g, n)
            if ctx.is_optional(g):
                if not isinstance(x, int):
                    ctx.enforce(ctx.model.AddImplication(x, y[n]), group.source)
            else:
                ctx.enforce(ctx.model.Add(y[n] == x), group.source)
