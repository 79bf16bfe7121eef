"""Affinity: all members of a group on one node. Every member's row of x equals the first member's."""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms


def encode(ctx: Context) -> Terms:
    for group in ctx.rules.affinities:
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
