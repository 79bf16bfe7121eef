"""Measure the spread-vs-migrations curves that `max_migrations: auto` chooses from, to pick `min_gain_per_move`.

For each instance, the curve is sampled at budgets 0, 1, 2, 4, … as the planner samples it (each point a
full plan started from the previous one) but with a fixed time per point, then the choice rule
(`tradeoff.choose_budget`, with the default target of half the balanciness) is replayed for several
thresholds. Output: a Markdown table (instance, threshold → chosen budget, migrations, spread, memory
moved) and the raw curves as JSON.

    python -m benchmarks.gain_curves [--per-point 4] [--out benchmarks/results/DATE-gain-curves.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from benchmarks.generate import generate_cluster
from proxlb_opt.cluster import cluster_from_dict, load_model
from proxlb_opt.config import Settings
from proxlb_opt.deadline import Deadline
from proxlb_opt.planner import _Ladder
from proxlb_opt.problem import build_problem
from proxlb_opt.tradeoff import choose_budget

THRESHOLDS = (0.25, 0.5, 1.0, 2.0, 4.0)
ROOT = Path(__file__).resolve().parents[1]


def instances():
    yield "demo", load_model(ROOT / "models" / "demo.yaml")
    yield "homelab", load_model(ROOT / "models" / "homelab.yaml")
    yield "enterprise-16", load_model(ROOT / "models" / "enterprise-16.yaml")
    for nodes, guests in ((3, 30), (5, 60), (8, 80), (8, 200), (16, 800)):
        for rules in (True, False):
            yield f"{nodes}x{guests}-{'rules' if rules else 'plain'}", cluster_from_dict(
                generate_cluster(nodes, guests, 1, rules=rules))
    yield "40x750-hard", load_model(ROOT / "models" / "lopsided-40.yaml")
    yield "12x400-enterprise", cluster_from_dict(generate_cluster(12, 400, 1, shape="enterprise"))


class _Fixed:
    """Samples a curve once, each point with its own fixed time, then replays choices from the samples."""

    def __init__(self, problem, per_point: float):
        self.problem, self.per_point = problem, per_point
        self.ladder = _Ladder(problem, Deadline(3600.0))

    def sample(self, budget: int, left: int):
        if budget not in self.ladder.results:
            self.ladder.deadline = Deadline(self.per_point)
            self.ladder.sample(budget, 1)
        return self.ladder.results[budget]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-point", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows, raw = [], {}
    for name, cluster in instances():
        problem = build_problem(cluster, Settings()).with_budget(None)
        fixed = _Fixed(problem, args.per_point)
        movable = int(problem.rules.movable.sum())
        target = problem.settings.balanciness / 2
        raw[name] = {"spread_before": None, "choices": {}}
        for threshold in sorted(THRESHOLDS, reverse=True):
            choice = choose_budget(fixed.sample, movable, lambda: False, threshold, target)
            result = fixed.ladder.results[choice.budget]
            raw[name]["choices"][threshold] = {"budget": choice.budget, "moves": result.moves,
                                               "spread": round(result.spread_after, 2),
                                               "gib": round(result.memory_moved_mib / 1024, 1)}
            rows.append((name, threshold, choice.budget, result.moves, result.spread_after,
                         result.memory_moved_mib / 1024))
        curve = sorted(fixed.ladder.results.items())
        raw[name]["spread_before"] = round(curve[0][1].spread_before, 2)
        raw[name]["curve"] = [(b, round(r.spread_after, 2), r.moves) for b, r in curve]
        print(f"{name}: before {raw[name]['spread_before']} pp; curve {raw[name]['curve']}", file=sys.stderr)
    print("| instance | min_gain_per_move | budget | migrations | spread after | memory moved |")
    print("|---|---|---|---|---|---|")
    for name, threshold, budget, moves, spread, gib in rows:
        print(f"| {name} | {threshold:g} | {budget} | {moves} | {spread:.2f} pp | {gib:.1f} GiB |")
    out = args.out or ROOT / "benchmarks" / "results" / f"{dt.date.today().isoformat()}-gain-curves.json"
    out.write_text(json.dumps({"date": dt.date.today().isoformat(), "per_point_s": args.per_point,
                               "instances": raw}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
