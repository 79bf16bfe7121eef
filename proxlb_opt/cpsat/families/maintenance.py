"""Maintenance nodes receive nothing. Outside explain mode this is the variables' domain already."""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms


def encode(ctx: Context) -> Terms:
    if ctx.options.explain:
        for m in ctx.rules.maintenance:
            on_node = [var for g, var in ctx.vars_on_node[m.node]]
            if on_node:
                name = f"maintenance of {ctx.cluster.node_names[m.node]} ({m.source})"
                ctx.enforce(ctx.model.Add(sum(on_node) == 0), name)
    return Terms()
