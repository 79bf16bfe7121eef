"""What the rule-family encoders share while one CP-SAT model is built: options, variables, terms.

Kept apart from build.py so that the families (which need Context and Terms) and build.py (which
needs the families) import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.problem import Problem


@dataclass(frozen=True)
class BuildOptions:
    explain: bool = False
    hint: np.ndarray | None = None  # int[g] placement to start from
    restrict_to: np.ndarray | None = None  # bool[g, n]: further restriction of the domain (neighbourhood search)
    spread_floor: dict[str, float] | None = None  # proven lower bounds per resource (pp): a valid cut
    repair: bool = False  # the repair model: excess over capacity is allowed (and minimized), no allowance
    # bool[g]: guests that may also end on no node at all (capacity what-if: a guest left without a home).
    # They get variables on every node of their domain, at most one of which is 1; Terms.unplaced counts them.
    optional: np.ndarray | None = None


@dataclass
class Terms:
    """Objective terms by kind; solve.py decides the order in which they are minimized."""

    spread: list = field(default_factory=list)  # weighted spread, hundredths of a percentage point
    cost: list = field(default_factory=list)  # migration cost (GiB copied) and soft preferences
    moves: list = field(default_factory=list)  # 1 per moved guest
    excess: list = field(default_factory=list)  # repair model: load over a hard limit's capacity
    order: list = field(default_factory=list)  # a fixed pseudo-random rank per move: picks one of equal plans
    unplaced: list = field(default_factory=list)  # 1 per optional guest left on no node
    peak: list = field(default_factory=list)  # weighted highest percent of an eligible node (hundredths of a point)

    def add(self, other: "Terms") -> None:
        self.spread += other.spread
        self.cost += other.cost
        self.moves += other.moves
        self.excess += other.excess
        self.order += other.order
        self.unplaced += other.unplaced
        self.peak += other.peak


@dataclass
class Context:
    model: cp_model.CpModel
    problem: Problem
    options: BuildOptions
    domain: np.ndarray  # bool[g, n]: where a variable exists (or the one fixed node)
    x: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    fixed_node: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # -1 where variable
    vars_on_node: list[list[tuple[int, cp_model.IntVar]]] = field(default_factory=list)
    rule_literals: list[tuple[cp_model.IntVar, str]] = field(default_factory=list)

    @property
    def cluster(self):
        return self.problem.cluster

    @property
    def rules(self):
        return self.problem.rules

    @property
    def loads(self):
        return self.problem.loads

    def var(self, g: int, n: int):
        """x[g, n] as a linear expression: a variable, or the constant 1/0 for fixed guests."""
        if (g, n) in self.x:
            return self.x[(g, n)]
        return 1 if self.fixed_node[g] == n else 0

    def enforce(self, constraint: cp_model.Constraint, name: str) -> None:
        """Put a rule instance behind its own literal in explain mode (see explain.py)."""
        if not self.options.explain:
            return
        constraint.OnlyEnforceIf(self._literal(name))

    def _literal(self, name: str) -> cp_model.IntVar:
        for literal, existing in self.rule_literals:
            if existing == name:
                return literal
        literal = self.model.NewBoolVar(f"rule[{name}]")
        self.rule_literals.append((literal, name))
        return literal

    def is_optional(self, g: int) -> bool:
        optional = self.options.optional
        return optional is not None and bool(optional[g])

    def fixed_load(self, demand: np.ndarray) -> np.ndarray:
        """int64[n]: the part of Σ demand[g] that fixed guests put on each node."""
        fixed = self.fixed_node >= 0
        return np.bincount(self.fixed_node[fixed], weights=demand[fixed], minlength=self.cluster.n_nodes).astype(np.int64)

    def moved(self, g: int):
        """1 − x[g, its current node]: 1 when g ends elsewhere."""
        return 1 - self.var(g, int(self.cluster.guest_node[g]))
