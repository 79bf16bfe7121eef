"""Migrations: the allowance on moved guests, the move count and the migration cost (GiB copied).

moved[g] = 1 − x[g, current node]. The allowance is `Problem.allowance`: the repair's moves plus the
budget, so mandatory moves are never blocked by the budget. Guests fixed away from their node (a
neighbourhood keeps the incumbent's moves) use the allowance too.
"""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms


def encode(ctx: Context) -> Terms:
    terms = Terms()
    movers = sorted({g for g, _ in ctx.x})
    for g in movers:
        terms.cost.append(int(ctx.loads.migration_cost[g]) * ctx.moved(g))
        terms.moves.append(ctx.moved(g))
    fixed = ctx.fixed_node >= 0
    spent = int((fixed & (ctx.fixed_node != ctx.cluster.guest_node)).sum())
    allowance = None if ctx.options.repair else ctx.problem.allowance
    if allowance is not None and len(movers) + spent > allowance:
        ctx.enforce(ctx.model.Add(sum(terms.moves) <= allowance - spent), "migration budget (max_migrations)")
    return terms
