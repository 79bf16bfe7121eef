"""Run proxlb-solver 0.1.1 through its public Python API, inside the competitor venv.

    .proxlb-venv/bin/python benchmarks/drivers/solver_run.py CLUSTER.json TIME_LIMIT_S > result.json

CLUSTER.json holds the keyword arguments of `proxlb_solver.Cluster` (written by
benchmarks/competitors.py from a proxlb-opt cluster). The driver validates it into the solver's own
pydantic model, calls `proxlb_solver.solve(cluster, time_limit_s)` with the solver's default
settings, then its planner (`proxlb_solver.planner.plan_migrations`) for the order in which the
solver would execute the moves, and prints one JSON object on stdout. This file belongs to
proxlb-opt's benchmark; it calls proxlb-solver as a black box and contains none of its code.
"""

import json
import sys
import time


def main() -> None:
    path, time_limit = sys.argv[1], float(sys.argv[2])
    t_import = time.perf_counter()
    from proxlb_solver import Cluster, solve
    from proxlb_solver.planner import plan_migrations

    with open(path, encoding="utf-8") as handle:
        cluster = Cluster.model_validate(json.load(handle))
    t0 = time.perf_counter()
    solution = solve(cluster, time_limit_s=time_limit)
    t1 = time.perf_counter()
    out = {
        "import_seconds": t0 - t_import,
        "solve_seconds": t1 - t0,
        "feasible": solution.feasible,
        "status": solution.stats.status,
        "load_gap": solution.stats.load_gap,
        "objective": solution.stats.objective,
        "solver_wall_ms": solution.stats.wall_time_ms,
        "placements": solution.placements,
        "migrations": [[m.vm, m.source, m.target] for m in solution.migrations],
    }
    print(json.dumps({"progress": "solved", "solve_seconds": t1 - t0}), file=sys.stderr, flush=True)
    try:
        plan = plan_migrations(cluster, solution)
        out["plan"] = {
            "steps": [[[m.vm, m.source, m.target] for m in step.migrations] for step in plan.steps],
            "path_feasible": plan.path_feasible,
            "temp_moves": list(plan.temp_moves),
            "pve_deferred": list(plan.pve_deferred),
            "unbreakable_cycle": list(plan.unbreakable_cycle),
        }
    except Exception as exc:  # the planner is part of what is measured: its failure is a result
        out["plan"] = {"error": f"{exc.__class__.__name__}: {exc}"}
    out["plan_seconds"] = time.perf_counter() - t1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
