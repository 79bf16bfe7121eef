"""One CP-SAT model for "add these guests and stay N+1": the placement and every node failure, linked.

Stage 0 is the cluster with the new guests optional (a new guest on no node is one that does not fit).
For every failed node f there is a copy of the placement problem after f failed (built by the same
`build` and the same rule families, into the same CpModel): of the guests that restart from f at most
`allowed_unplaced` may stay without a home (today's proven minimum: the scenario must not get worse),
nothing else that already runs moves, and the new guests are linked to stage 0:

    placed_f[i] = placed_0[i]                       (a new guest exists in every scenario or in none)
    x_f[i, n] ≥ x_0[i, n]   for every node n ≠ f    (a new guest not on f stays where stage 0 put it)

so a new guest that stage 0 put on f restarts elsewhere in scenario f, and every other one weighs on
its node in scenario f too. A new guest that would not restart (a local disk) keeps x_f[i, n] = x_0[i, n]
for n ≠ f and is simply gone in scenario f when stage 0 put it on f. Minimizing stage 0's unplaced count then maximizes how many new guests fit
while every failure scenario still has a placement. Nothing is solved here (solve.solve_stages).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from proxlb_opt.cpsat.build import Built, build
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.problem import Problem


@dataclass(frozen=True)
class FailureCopy:
    """One failure scenario to link: its problem, the failed nodes, and the new guests' indices in it."""

    name: str
    problem: Problem
    failed: tuple[int, ...]
    new_guests: np.ndarray  # int[i]: scenario index of stage 0's i-th new guest
    new_restart: np.ndarray  # bool[i]: that new guest restarts after the failure (no local disk)
    displaced: np.ndarray  # int[]: guests that restart from the failed nodes (scenario indices)
    allowed_unplaced: int  # how many of `displaced` may stay without a home (today's proven minimum)


def build_robust(stage0: Problem, new_guests: np.ndarray, options: BuildOptions,
                 failures: list[FailureCopy]) -> tuple[Built, dict[str, Built]]:
    """Stage 0 (with `options`, whose `optional` should mark `new_guests`) and one linked copy per failure."""
    model = cp_model.CpModel()
    built0 = build(stage0, options, model)
    copies: dict[str, Built] = {}
    for copy in failures:
        optional = np.zeros(copy.problem.cluster.n_guests, dtype=bool)
        optional[copy.new_guests] = True
        optional[copy.displaced] = True
        built = build(copy.problem, BuildOptions(optional=optional), model)
        copies[copy.name] = built
        n_nodes = copy.problem.cluster.n_nodes
        homeless = [1 - sum(built.ctx.var(int(g), n) for n in range(n_nodes)) for g in copy.displaced]
        if homeless:
            model.Add(sum(homeless) <= copy.allowed_unplaced)
        for g0, gf, restarts in zip(np.asarray(new_guests).tolist(), copy.new_guests.tolist(), copy.new_restart):
            row0 = [built0.ctx.var(g0, n) for n in range(stage0.cluster.n_nodes)]
            rowf = [built.ctx.var(gf, n) for n in range(n_nodes)]
            if restarts:
                model.Add(sum(rowf) == sum(row0))
            for n in range(n_nodes):
                if n in copy.failed:
                    continue
                if not restarts:
                    model.Add(rowf[n] == row0[n])
                elif not (isinstance(row0[n], int) and row0[n] == 0):
                    model.Add(rowf[n] >= row0[n])
    return built0, copies


def order_identical(built: Built, guests: list[int]) -> None:
    """Symmetry: identical new guests are placed in order (a later one only when the earlier one is)."""
    ctx = built.ctx
    n_nodes = ctx.cluster.n_nodes
    for a, b in zip(guests, guests[1:]):
        placed_a = sum(ctx.var(a, n) for n in range(n_nodes))
        placed_b = sum(ctx.var(b, n) for n in range(n_nodes))
        built.model.Add(placed_a >= placed_b)
