"""Dominance cuts: constraints that only remove plans some other valid plan beats or ties.

An "idle" guest puts no load on any balanced resource (a stopped guest without local disk), is in
no group rule, has no node preference and need not move. Moving it cannot change the spread; it only
spends budget and migration cost, or frees room under a hard limit (assigned memory or vCPUs when
overprovisioning is off). So in a plan where an idle guest has moved although its node could take
it back under every hard limit, sending it back gives the same spread, one move less and a lower
cost. The cut "moved ⇒ its node could not take it back" therefore keeps every optimal plan.

When idle guests count under no hard limit (overprovisioning on, or nothing assigned) the cut fixes
them at home and removes a large symmetry: otherwise the solver must prove, for every subset of them,
that spending budget on them is pointless. On 8×80 at a 14-move budget that took the spread-only
proof from 25 s to 9–23 s (2 workers). When they count under assigned-memory limits the cut is
weaker; it made no measurable difference there, but it never removes an optimal plan.
"""

from __future__ import annotations

import numpy as np

from proxlb_opt.problem import Problem


def idle_guests(problem: Problem) -> np.ndarray:
    """bool[g]: guests whose move changes no balanced load (see the module docstring)."""
    rules, loads = problem.rules, problem.loads
    idle = rules.movable & ~rules.mandatory & ~loads.demand.any(axis=1)
    for group in (*rules.affinities, *rules.anti_affinities):
        idle[list(group.members)] = False
    for preference in rules.preferences:
        idle[preference.guest] = False
    return idle


def encode(ctx) -> None:
    """Add the cut for every idle guest that has a placement variable on its own node.

    Not in the repair model: there, moving an idle guest off a node over its capacity lowers the excess.
    """
    if ctx.options.explain or ctx.options.repair:
        return
    home = np.asarray(ctx.cluster.guest_node, dtype=np.int64)
    fixed: dict[str, np.ndarray] = {}  # per hard limit: base + the guests fixed on each node, computed once
    for g in np.flatnonzero(idle_guests(ctx.problem)):
        g = int(g)
        if (g, int(home[g])) not in ctx.x or ctx.is_optional(g):
            continue  # fixed (by its domain or a neighbourhood): nothing to cut
        stay = ctx.x[(g, int(home[g]))]
        binding = [limit for limit in ctx.loads.hard_limits if limit.demand[g] > 0]
        if not binding:
            ctx.model.Add(stay == 1)  # moving it changes nothing at all
            continue
        full = []
        for limit in binding:
            if limit.name not in fixed:
                fixed[limit.name] = limit.base + ctx.fixed_load(limit.demand)
            is_full = ctx.model.NewBoolVar(f"full[{limit.name},{g}]")
            load = _limit_load(ctx, limit, int(home[g]), int(fixed[limit.name][home[g]]))
            ctx.model.Add(load >= int(limit.limit[home[g]] - limit.demand[g]) + 1).OnlyEnforceIf(is_full)
            full.append(is_full)
        ctx.model.AddBoolOr([stay, *full])


def _limit_load(ctx, limit, n: int, fixed: int):
    return fixed + sum(int(limit.demand[h]) * var for h, var in ctx.vars_on_node[n] if limit.demand[h])
