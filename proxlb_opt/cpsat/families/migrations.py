"""Migrations: the hard budget on balancing moves and the migration cost (GiB copied) to minimize.

moved[g] = 1 − x[g, current node]. Guests whose move is mandatory or repairs a rule
(`rules.budget_free`) are outside the budget, so maintenance evacuation is never blocked by it.
"""

from __future__ import annotations

from proxlb_opt.cpsat.families import Terms


def moved_expr(ctx, g: int):
    current = int(ctx.cluster.guest_node[g])
    stay = ctx.var(g, current)
    return 1 - stay


def encode(ctx) -> Terms:
    terms = Terms()
    movers = sorted({g for g, _ in ctx.x})
    for g in movers:
        cost = int(ctx.loads.migration_cost[g])
        terms.secondary.append(cost * moved_expr(ctx, g))
    budget = ctx.options.max_migrations
    if budget is not None:
        counted = [moved_expr(ctx, g) for g in movers if not ctx.rules.budget_free[g]]
        # Guests fixed away from their node (a neighbourhood keeps the incumbent's moves) use budget too.
        fixed = ctx.fixed_node >= 0
        spent = int((fixed & (ctx.fixed_node != ctx.cluster.guest_node) & ~ctx.rules.budget_free).sum())
        if len(counted) + spent > budget:
            ctx.enforce(ctx.model.Add(sum(counted) <= budget - spent), "migration budget (max_migrations)")
    return terms


def secondary_upper_bound(ctx) -> int:
    from proxlb_opt.cpsat.families.pinning import preference_upper_bound

    movers = sorted({g for g, _ in ctx.x})
    return int(sum(int(ctx.loads.migration_cost[g]) for g in movers)) + preference_upper_bound(ctx)
