"""build(cluster, rules, loads, options) → a CP-SAT model and its variables; nothing is solved here.

Placement booleans x[g, n] exist only where guest g may be after the plan and only for guests with
more than one such node; a guest with a single possible node is a constant load on it. Each rule
family in `families/` adds its constraints and returns objective terms. In explain mode every rule
instance sits behind its own literal (and pins and maintenance are encoded as constraints instead
of as the variables' domain) so that an infeasible model can name the rules in conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.rules import RuleSet


@dataclass(frozen=True)
class BuildOptions:
    max_migrations: int | None = None
    explain: bool = False
    hint: np.ndarray | None = None  # int[g] placement to start from
    restrict_to: np.ndarray | None = None  # bool[g, n]: further restriction of the domain (large-neighbourhood search)
    spread_floor: dict[str, float] | None = None  # proven lower bounds per resource (pp): a valid cut


@dataclass
class Context:
    """What the family encoders share while one model is built."""

    model: cp_model.CpModel
    cluster: Cluster
    rules: RuleSet
    loads: LoadModel
    options: BuildOptions
    domain: np.ndarray  # bool[g, n]: where a variable exists (or the one fixed node)
    x: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    fixed_node: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # -1 where variable
    vars_on_node: list[list[tuple[int, cp_model.IntVar]]] = field(default_factory=list)
    rule_literals: list[tuple[cp_model.IntVar, str]] = field(default_factory=list)

    def var(self, g: int, n: int):
        """x[g, n] as a linear expression: a variable, or the constant 1/0 for fixed guests."""
        if (g, n) in self.x:
            return self.x[(g, n)]
        return 1 if self.fixed_node[g] == n else 0

    def enforce(self, constraint: cp_model.Constraint, name: str) -> None:
        """Put a rule instance behind its own literal in explain mode (see explain.py)."""
        if not self.options.explain:
            return
        literal = self._literal(name)
        constraint.OnlyEnforceIf(literal)

    def _literal(self, name: str) -> cp_model.IntVar:
        for literal, existing in self.rule_literals:
            if existing == name:
                return literal
        literal = self.model.NewBoolVar(f"rule[{name}]")
        self.rule_literals.append((literal, name))
        return literal

    def fixed_load(self, demand: np.ndarray) -> np.ndarray:
        """int64[n]: the part of Σ demand[g] that fixed guests put on each node."""
        fixed = self.fixed_node >= 0
        return np.bincount(self.fixed_node[fixed], weights=demand[fixed], minlength=self.cluster.n_nodes).astype(np.int64)


@dataclass
class Built:
    ctx: Context
    primary_terms: list  # spread, in hundredths of a percentage point (weighted)
    secondary_terms: list  # migration cost and soft preferences
    primary_weight: int

    @property
    def model(self) -> cp_model.CpModel:
        return self.ctx.model


def _domain(cluster: Cluster, rules: RuleSet, options: BuildOptions) -> np.ndarray:
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


def build(cluster: Cluster, rules: RuleSet, loads: LoadModel, options: BuildOptions = BuildOptions()) -> Built:
    from proxlb_opt.cpsat import dominance
    from proxlb_opt.cpsat.families import FAMILIES  # families import Context from here

    model = cp_model.CpModel()
    domain = _domain(cluster, rules, options)
    ctx = Context(model=model, cluster=cluster, rules=rules, loads=loads, options=options, domain=domain)
    _placement_variables(ctx)
    primary: list = []
    secondary: list = []
    for family in FAMILIES:
        terms = family.encode(ctx)
        primary += terms.primary
        secondary += terms.secondary
    dominance.encode(ctx)
    weight = 1 + _secondary_upper_bound(ctx)
    model.Minimize(weight * sum(primary) + sum(secondary))
    if options.hint is not None:
        _add_hint(ctx, options.hint)
    return Built(ctx=ctx, primary_terms=primary, secondary_terms=secondary, primary_weight=weight)


def _placement_variables(ctx: Context) -> None:
    n_guests, n_nodes = ctx.cluster.n_guests, ctx.cluster.n_nodes
    counts = ctx.domain.sum(axis=1) if n_guests else np.zeros(0, dtype=int)
    ctx.fixed_node = np.where(counts == 1, ctx.domain.argmax(axis=1) if n_guests else 0, -1).astype(np.int64)
    ctx.vars_on_node = [[] for _ in range(n_nodes)]
    for g in np.flatnonzero(counts == 0):
        # Only possible under a neighbourhood restriction or in explain mode; keep the model honest.
        ctx.fixed_node[g] = ctx.cluster.guest_node[g]
        ctx.model.AddBoolOr([])
    for g in np.flatnonzero(counts > 1):
        g = int(g)
        row = []
        for n in np.flatnonzero(ctx.domain[g]):
            var = ctx.model.NewBoolVar(f"x[{g},{n}]")
            ctx.x[(g, int(n))] = var
            ctx.vars_on_node[n].append((g, var))
            row.append(var)
        ctx.model.AddExactlyOne(row)


def _secondary_upper_bound(ctx: Context) -> int:
    from proxlb_opt.cpsat.families.migrations import secondary_upper_bound

    return secondary_upper_bound(ctx)


def _add_hint(ctx: Context, hint: np.ndarray) -> None:
    for (g, n), var in ctx.x.items():
        ctx.model.AddHint(var, int(hint[g] == n))


def decode(built: Built, solver: cp_model.CpSolver) -> np.ndarray:
    """int64[g]: the node of every guest in the solver's current solution."""
    ctx = built.ctx
    placement = ctx.fixed_node.copy()
    for (g, n), var in ctx.x.items():
        if solver.BooleanValue(var):
            placement[g] = n
    return placement
