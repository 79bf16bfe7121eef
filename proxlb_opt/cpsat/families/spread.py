"""Spread: per balanced resource, hi ≥ every eligible node's percent ≥ lo; minimize Σ weight · (hi − lo).

The `peak` terms (Σ weight · hi) let a capacity what-if minimize the highest load instead.

Percent is in hundredths of a percentage point and never divided inside the model:
P · load[n] ≤ capacity[n] · hi is linear because capacity is a constant. A proven lower bound on a
resource's spread (the budget relaxation) may be added as the cut hi − lo ≥ bound.
"""

from __future__ import annotations

import numpy as np

from proxlb_opt.cpsat.context import Context, Terms
from proxlb_opt.loads import PERCENT_SCALE


def encode(ctx: Context) -> Terms:
    terms = Terms()
    eligible = np.flatnonzero(ctx.rules.eligible)
    if eligible.size < 2:
        return terms
    loads = ctx.loads
    for resource, weight in zip(loads.resources, loads.weights):
        r = loads.resource_index(resource)
        demand = loads.demand[:, r]
        const = loads.base[:, r] + ctx.fixed_load(demand)
        cap = loads.capacity[:, r]
        top = int(max(1, np.max(PERCENT_SCALE * (loads.base[:, r] + demand.sum()) // cap) + 1))
        hi = ctx.model.NewIntVar(0, top, f"hi[{resource}]")
        lo = ctx.model.NewIntVar(0, top, f"lo[{resource}]")
        for n in eligible:
            load = int(PERCENT_SCALE * const[n]) + sum(int(PERCENT_SCALE * demand[g]) * var
                                                        for g, var in ctx.vars_on_node[n] if demand[g])
            ctx.model.Add(load <= int(cap[n]) * hi)
            ctx.model.Add(load >= int(cap[n]) * lo)
        floor = (ctx.options.spread_floor or {}).get(resource, 0.0)
        if floor > 0:
            # A proven relaxation bound (bounds.budget_bounds) as a cut: the solver's bound starts there.
            ctx.model.Add(hi - lo >= int(floor * PERCENT_SCALE / 100))
        terms.spread.append(weight * (hi - lo))
        terms.peak.append(weight * hi)
    return terms
