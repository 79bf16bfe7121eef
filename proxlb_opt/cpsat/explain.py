"""Infeasible → the named rules in conflict.

Rebuilds the model in explain mode (every rule instance behind its own literal), solves it with
all literals as assumptions and reads CP-SAT's sufficient set of assumptions for infeasibility:
a small set of rules that cannot all hold together.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from proxlb_opt.cpsat.build import build
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.errors import InfeasibleError
from proxlb_opt.problem import Problem


def conflicting_rules(problem: Problem, time_limit: float = 10.0, restrict_to=None) -> tuple[str, ...]:
    """The rules of a sufficient infeasible set; () when none was isolated in time. `restrict_to` (bool[g, n])
    narrows where guests may go, as in a scenario whose premise is not itself a rule (a failed node)."""
    built = build(problem, BuildOptions(explain=True, restrict_to=restrict_to))
    literals = built.ctx.rule_literals
    model = built.model
    model.ClearObjective()
    model.AddAssumptions([lit for lit, _ in literals])
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # cores are only reported by the single-worker search
    solver.parameters.max_time_in_seconds = max(0.1, time_limit)
    status = solver.Solve(model)
    if status != cp_model.INFEASIBLE:
        return ()
    core = set(solver.SufficientAssumptionsForInfeasibility())
    return tuple(sorted(name for lit, name in literals if lit.Index() in core))


def infeasible_error(problem: Problem, time_limit: float = 10.0) -> InfeasibleError:
    names = conflicting_rules(problem, time_limit)
    if not names:
        return InfeasibleError("the rules cannot all hold together (no smaller conflict could be isolated)")
    return InfeasibleError("the rules cannot all hold together: " + "; ".join(names), conflicts=names)
