"""cpsat vs the ProxLB-style greedy pass on generated clusters, at the same migration budget.

For each instance (seeded generator, benchmarks/generate.py): greedy runs first with no budget,
as ProxLB does; cpsat then gets a budget equal to the balancing moves greedy made. Both answers
are judged by the same independent checker. Figures: spread, migrations, GiB moved, wall time;
and for the sequencing: predicted plan duration in waves vs one migration at a time in the
planner's order, and the sequencing time as a share of the solve time.

    python -m benchmarks.compare [--sizes 5x60,16x800,32x2000] [--seeds 1,2] [--time-limit 15] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from benchmarks.generate import generate_cluster
from proxlb_opt import check
from proxlb_opt.cluster import cluster_from_dict
from proxlb_opt.config import Settings
from proxlb_opt.greedy import proxlb_greedy
from proxlb_opt.plan import Plan, diff, sequence
from proxlb_opt.planner import limits, make_plan, time_model
from proxlb_opt.problem import build_problem

DEFAULT_SIZES = "5x60,16x800,32x2000"


def _gib_moved(cluster, placement) -> float:
    moved = placement != cluster.guest_node
    return float(np.where(cluster.guest_running, cluster.guest_mem_used_mib, 0)[moved].sum()) / 1024


def _one_at_a_time(plan: Plan) -> float:
    return float(sum(s.seconds for s in plan.steps))


def run_instance(n_nodes: int, n_guests: int, seed: int, time_limit: float, parallel: int) -> dict:
    cluster = cluster_from_dict(generate_cluster(n_nodes, n_guests, seed), source=f"gen-{n_nodes}x{n_guests}-s{seed}")
    base = Settings(time_limit=time_limit, parallel=parallel > 1, parallel_jobs=parallel,
                    max_incoming_per_node=2, max_outgoing_per_node=2)
    problem = build_problem(cluster, base).with_budget(None)
    cl = problem.cluster

    start = time.perf_counter()
    greedy = proxlb_greedy(problem, None)
    greedy_seconds = time.perf_counter() - start
    greedy_violations = check.violations(problem, greedy.placement)

    settings = replace(base, max_migrations=greedy.balancing_moves)
    start = time.perf_counter()
    result = make_plan(cluster, settings, "cpsat")
    cpsat_wall = time.perf_counter() - start
    steps = diff(result.problem, result.placement, time_model(settings))
    start = time.perf_counter()
    heuristic = sequence(result.problem, list(steps), limits(settings))
    heuristic_seconds = time.perf_counter() - start
    start = time.perf_counter()
    exact = sequence(result.problem, list(steps), limits(settings), exact_time_limit=2.0)
    exact_seconds = time.perf_counter() - start
    return {
        "instance": f"{n_nodes}x{n_guests}", "seed": seed, "budget": greedy.balancing_moves,
        "spread_before": round(check.spread(problem, cl.guest_node), 2),
        "greedy": {"spread": round(check.spread(problem, greedy.placement), 2),
                   "migrations": int((greedy.placement != cl.guest_node).sum()),
                   "gib_moved": round(_gib_moved(cl, greedy.placement), 1), "seconds": round(greedy_seconds, 3),
                   "violations": len(greedy_violations)},
        "cpsat": {"spread": round(result.spread_after, 2), "migrations": int(result.plan.guests_moved),
                  "gib_moved": round(result.memory_moved_mib / 1024, 1), "seconds": round(cpsat_wall, 2),
                  "status": result.status, "bound": round(result.bound or 0.0, 2),
                  "solve_seconds": round(result.solve_seconds, 2), "sequence_seconds": round(result.sequence_seconds, 3),
                  "waves": result.plan.waves, "predicted_s": round(result.plan.predicted_seconds, 1),
                  "one_at_a_time_s": round(_one_at_a_time(result.plan), 1),
                  "heuristic_waves_s": round(heuristic.predicted_seconds, 1),
                  "heuristic_sequencing_s": round(heuristic_seconds, 3),
                  "exact_waves_s": round(exact.predicted_seconds, 1), "exact_sequencing_s": round(exact_seconds, 3)},
    }


def _table(rows: list[dict]) -> str:
    head = ("| instance | seed | before pp | budget | greedy pp | greedy moves | greedy GiB | greedy viol. | "
            "cpsat pp | cpsat moves | cpsat GiB | cpsat wall s | status | bound pp | cpsat ≤ greedy | ≤ ½ greedy |")
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        g, c = r["greedy"], r["cpsat"]
        lines.append(f"| {r['instance']} | {r['seed']} | {r['spread_before']} | {r['budget']} | {g['spread']} | "
                     f"{g['migrations']} | {g['gib_moved']} | {g['violations']} | {c['spread']} | {c['migrations']} | "
                     f"{c['gib_moved']} | {c['seconds']} | {c['status']} | {c['bound']} | "
                     f"{'yes' if c['spread'] <= g['spread'] + 1e-9 else 'NO'} | "
                     f"{'yes' if c['spread'] <= 0.5 * g['spread'] + 1e-9 else 'no'} |")
    return "\n".join(lines)


def _sequencing_table(rows: list[dict]) -> str:
    lines = ["| instance | seed | migrations | waves | predicted (waves) s | one at a time s | speed-up | "
             "sequencing s | solve s | sequencing / solve | heuristic waves s | CP-SAT waves s (≤ 2 s) |",
             "|" + "---|" * 12]
    for r in rows:
        c = r["cpsat"]
        speedup = c["one_at_a_time_s"] / c["predicted_s"] if c["predicted_s"] else 1.0
        share = c["sequence_seconds"] / c["solve_seconds"] if c["solve_seconds"] else 0.0
        lines.append(f"| {r['instance']} | {r['seed']} | {c['migrations']} | {c['waves']} | {c['predicted_s']} | "
                     f"{c['one_at_a_time_s']} | {speedup:.2f}× | {c['sequence_seconds']} | {c['solve_seconds']} | "
                     f"{100 * share:.1f} % | {c['heuristic_waves_s']} ({c['heuristic_sequencing_s']} s) | "
                     f"{c['exact_waves_s']} ({c['exact_sequencing_s']} s) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--time-limit", type=float, default=15.0)
    parser.add_argument("--parallel", type=int, default=4, help="parallel migrations for the sequencing figures")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        n_nodes, n_guests = (int(v) for v in size.lower().split("x"))
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(run_instance(n_nodes, n_guests, seed, args.time_limit, args.parallel))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(_table(rows))
    print()
    print(_sequencing_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
