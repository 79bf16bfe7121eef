"""Infeasible → the named rules in conflict.

Rebuilds the model in explain mode (every rule instance behind its own literal), solves it with
all literals as assumptions and reads CP-SAT's sufficient set of assumptions for infeasibility:
a small set of rules that cannot all hold together.
"""

from __future__ import annotations

from proxlb_opt.check import LoadModel
from proxlb_opt.cluster import Cluster
from proxlb_opt.cpsat.build import BuildOptions, build
from proxlb_opt.errors import InfeasibleError
from proxlb_opt.rules import RuleSet
from ortools.sat.python import cp_model


def conflicting_rules(cluster: Cluster, rules: RuleSet, loads: LoadModel, max_migrations: int | None,
                      time_limit: float = 10.0) -> tuple[str, ...]:
    built = build(cluster, rules, loads, BuildOptions(max_migrations=max_migrations, explain=True))
    literals = built.ctx.rule_literals
    model = built.model
    model.ClearObjective()
    model.AddAssumptions([lit for lit, _ in literals])
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # cores are only reported by the single-worker search
    solver.parameters.max_time_in_seconds = time_limit
    status = solver.Solve(model)
    if status != cp_model.INFEASIBLE:
        return ()
    core = set(solver.SufficientAssumptionsForInfeasibility())
    return tuple(sorted(name for lit, name in literals if lit.Index() in core))


def infeasible_error(cluster: Cluster, rules: RuleSet, loads: LoadModel, max_migrations: int | None) -> InfeasibleError:
    names = conflicting_rules(cluster, rules, loads, max_migrations)
    if not names:
        return InfeasibleError("the rules cannot all hold together (no smaller conflict could be isolated)")
    return InfeasibleError("the rules cannot all hold together: " + "; ".join(names), conflicts=names)
