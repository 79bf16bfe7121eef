"""Migrations: the allowance on moved guests, the move count and the migration cost (GiB copied).

moved[g] = 1 − x[g, current node]. The allowance is `Problem.allowance`: the repair's moves plus the
budget, so mandatory moves are never blocked by the budget. Guests fixed away from their node (a
neighbourhood keeps the incumbent's moves) use the allowance too.

The `order` terms give every possible move a fixed rank from a hash of the guest's vmid and the
target's name. Minimized last, over the plans of equal spread and cost, they pick one of them the
same way on every run, whatever the solver's threads did (see solve.py).
"""

from __future__ import annotations

import zlib

from proxlb_opt.cpsat.context import Context, Terms

ORDER_RANKS = 251  # ranks 1..251: a prime, so rank sums of different move sets rarely coincide


def encode(ctx: Context) -> Terms:
    terms = Terms()
    movers = sorted({g for g, _ in ctx.x})
    for g in movers:
        terms.cost.append(int(ctx.loads.migration_cost[g]) * ctx.moved(g))
        terms.moves.append(ctx.moved(g))
    home = ctx.cluster.guest_node
    for (g, n), var in ctx.x.items():
        if n != home[g]:
            terms.order.append(_rank(int(ctx.cluster.guest_vmid[g]), ctx.cluster.node_names[n]) * var)
    fixed = ctx.fixed_node >= 0
    spent = int((fixed & (ctx.fixed_node != ctx.cluster.guest_node)).sum())
    allowance = None if ctx.options.repair else ctx.problem.allowance
    if allowance is not None and len(movers) + spent > allowance:
        ctx.enforce(ctx.model.Add(sum(terms.moves) <= allowance - spent), "migration budget (max_migrations)")
    return terms


def _rank(vmid: int, node: str) -> int:
    return 1 + zlib.crc32(f"{vmid}@{node}".encode()) % ORDER_RANKS
