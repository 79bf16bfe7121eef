"""Pins (hard allowed sets) and node preferences (soft).

Outside explain mode a pin is already the domain of the guest's variables (no variable outside
the allowed set); in explain mode it is a named constraint. Preferences add 1 per priority step
below the guest's best node (and one more off the list) to the cost objective.
"""

from __future__ import annotations

from proxlb_opt.cpsat.context import Context, Terms

PREFERENCE_WEIGHT = 16  # one priority step weighs like copying 16 GiB


def encode(ctx: Context) -> Terms:
    if ctx.options.explain:
        for pin in ctx.rules.pins:
            outside = [ctx.x[(pin.guest, n)] for n in range(ctx.cluster.n_nodes)
                       if n not in pin.nodes and (pin.guest, n) in ctx.x]
            if outside:
                ctx.enforce(ctx.model.Add(sum(outside) == 0), f"{pin.source} of {ctx.cluster.guest_label(pin.guest)}")
    terms = Terms()
    for pref in ctx.rules.preferences:
        prios = dict(pref.priorities)
        top = max(prios.values(), default=0)
        worst = top - min(prios.values(), default=0) + 1
        for n in range(ctx.cluster.n_nodes):
            if (pref.guest, n) in ctx.x:
                penalty = (top - prios[n]) if n in prios else worst
                if penalty:
                    terms.cost.append(PREFERENCE_WEIGHT * penalty * ctx.x[(pref.guest, n)])
    return terms
