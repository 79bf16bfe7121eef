"""build(problem, options) → a CP-SAT model and its variables; nothing is solved here.

Placement booleans x[g, n] exist only where guest g may be after the plan and only for guests with
more than one such node; a guest with a single possible node is a constant load on it. Each rule
family in `families/` adds its constraints and returns objective terms by kind (spread, cost, moves,
excess); solve.py sets the objective. In explain mode every rule instance sits behind its own literal
(and pins and maintenance are encoded as constraints instead of as the variables' domain) so that an
infeasible model can name the rules in conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.cpsat import dominance
from proxlb_opt.cpsat.context import BuildOptions, Context, Terms
from proxlb_opt.cpsat.families import FAMILIES
from proxlb_opt.problem import Problem


@dataclass
class Built:
    ctx: Context
    terms: Terms

    @property
    def model(self) -> cp_model.CpModel:
        return self.ctx.model


def _domain(problem: Problem, options: BuildOptions) -> np.ndarray:
    cluster, rules = problem.cluster, problem.rules
    if options.explain:
        # Pins and maintenance become named constraints; the domain is every online node.
        domain = np.tile(np.asarray(cluster.node_online, dtype=bool), (cluster.n_guests, 1))
        for g in np.flatnonzero(~rules.movable):
            domain[g] = False
            domain[g, cluster.guest_node[g]] = True
    else:
        domain = rules.allowed.copy()
    if options.restrict_to is not None:
        domain &= options.restrict_to
    return domain


def build(problem: Problem, options: BuildOptions = BuildOptions(), model: cp_model.CpModel | None = None) -> Built:
    """The model of `problem`; into `model` when given (several scenarios linked in one model, cpsat/robust.py)."""
    model = cp_model.CpModel() if model is None else model
    ctx = Context(model=model, problem=problem, options=options, domain=_domain(problem, options))
    terms = Terms()
    terms.unplaced += _placement_variables(ctx)
    for family in FAMILIES:
        terms.add(family.encode(ctx))
    dominance.encode(ctx)
    if options.hint is not None:
        add_hint(ctx, options.hint)
    return Built(ctx=ctx, terms=terms)


def _placement_variables(ctx: Context) -> list:
    """x[g, n] for every guest with a choice; returns the unplaced terms of optional guests."""
    n_guests, n_nodes = ctx.cluster.n_guests, ctx.cluster.n_nodes
    counts = ctx.domain.sum(axis=1) if n_guests else np.zeros(0, dtype=int)
    optional = np.zeros(n_guests, dtype=bool) if ctx.options.optional is None else np.asarray(ctx.options.optional, bool)
    ctx.fixed_node = np.where(counts == 1, ctx.domain.argmax(axis=1) if n_guests else 0, -1).astype(np.int64)
    ctx.fixed_node[optional] = -1
    ctx.vars_on_node = [[] for _ in range(n_nodes)]
    unplaced = []
    for g in np.flatnonzero(optional):
        row = _placement_row(ctx, int(g))
        if len(row) > 1:
            ctx.model.AddAtMostOne(row)
        unplaced.append(1 - sum(row) if row else 1)
    counts = np.where(optional, -1, counts)
    for g in np.flatnonzero(counts == 0):
        # Only possible under a neighbourhood restriction or in explain mode; keep the model honest.
        ctx.fixed_node[g] = ctx.cluster.guest_node[g]
        ctx.model.AddBoolOr([])
    for g in np.flatnonzero(counts > 1):
        ctx.model.AddExactlyOne(_placement_row(ctx, int(g)))
    return unplaced


def _placement_row(ctx: Context, g: int) -> list:
    """Guest g's placement literals x[g, n], one per node of its domain, registered with the context."""
    row = []
    for n in np.flatnonzero(ctx.domain[g]):
        var = ctx.model.NewBoolVar(f"x[{g},{n}]")
        ctx.x[(g, int(n))] = var
        ctx.vars_on_node[n].append((g, var))
        row.append(var)
    return row


def add_hint(ctx: Context, hint: np.ndarray) -> None:
    ctx.model.ClearHints()
    for (g, n), var in ctx.x.items():
        ctx.model.AddHint(var, int(hint[g] == n))


def decode(built: Built, solver: cp_model.CpSolver) -> np.ndarray:
    """int64[g]: the node of every guest in the solver's current solution (−1: an optional guest on none)."""
    ctx = built.ctx
    placement = ctx.fixed_node.copy()
    for (g, n), var in ctx.x.items():
        if solver.BooleanValue(var):
            placement[g] = n
    return placement
