"""Pins (hard allowed sets) and node preferences (soft).

Outside explain mode a pin is already the domain of the guest's variables (no variable outside
the allowed set); in explain mode it is a named constraint. Preferences add 1 per priority step
below the guest's best node (and one more off the list), or 1 on a node a negative rule avoids, to the
cost objective, as the declaration scores it (rules.NodePreference.penalty).
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
        for n in range(ctx.cluster.n_nodes):
            if (pref.guest, n) in ctx.x:
                penalty = pref.penalty(n)
                if penalty:
                    terms.cost.append(PREFERENCE_WEIGHT * penalty * ctx.x[(pref.guest, n)])
    return terms
