"""The benchmark harness (`make bench`): proxlb-opt vs ProxLB 2.3.0 vs proxlb-solver 0.1.1 on generated clusters.

For every instance (benchmarks/generate.py, fixed seeds; "rules" with plb_* tags, pools, HA rules, locks;
"plain" without; "maintenance" with the first node in maintenance), in this order:

1. proxlb-opt greedy, no budget (as ProxLB runs);
2. proxlb-opt cpsat at greedy's number of balancing moves (equal budget);
3. ProxLB 2.3.0 for real: own venv, own process, dry run with JSON against the PVE API simulator;
4. proxlb-opt cpsat at ProxLB's number of balancing moves, and the smallest budget at which cpsat
   reaches ProxLB's own final spread (bisection over budgets, short time limit);
5. proxlb-solver 0.1.1 at 10 s and 30 s, and proxlb-opt cpsat at the same time limit with a fifth of
   the solver's migrations as budget.

Every answer is judged by the same checker (benchmarks/competitors.py: `judge`). Results go to
`benchmarks/results/<date>-<name>.json` (raw), `latest.md` (tables, checks) and `latest.png` (chart).

    python -m benchmarks.run [--quick] [--sizes 16x800,32x3000] [--variants rules,plain,maintenance]
                             [--skip-proxlb] [--skip-solver] [--time-limit S] [--out DIR] [--name NAME]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.competitors import (Answer, Instance, judge, make_instance, min_budget_to_reach, run_proxlb,
                                    run_proxlb_opt, run_proxlb_solver)
from proxlb_opt import check
from proxlb_opt.config import DEFAULT_MAX_MIGRATIONS, DEFAULT_TIME_LIMIT, Settings
from proxlb_opt.problem import build_problem

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SEED = 1
SIZES = ((3, 30), (5, 60), (8, 80), (8, 200), (16, 800), (32, 3000), (64, 10000))
QUICK_SIZES = ((3, 30), (5, 60))
MAINTENANCE_SIZES = ((5, 60), (16, 800))
VARIANTS = ("rules", "plain", "maintenance")
SOLVER_LIMITS = (10.0, 30.0)
#: Sizes of check (c) and the figures of check (d).
SOLVER_CHECK_SIZES = ("16x800", "32x3000")
SPREAD_TOLERANCE = 0.01  # pp: percentages are integers in hundredths of a point inside the model
RSS_LIMIT_MIB = 2048.0


def default_time_limit(n_guests: int) -> float:
    """cpsat's time limit per size; its wall time adds greedy, descent and sequencing, so leave a margin."""
    if n_guests <= 200:
        return 10.0
    if n_guests <= 800:
        return 8.0
    if n_guests <= 3000:
        return 30.0
    return 45.0


def probe_time_limit(time_limit: float) -> float:
    """Time limit of each bisection probe (min budget to reach ProxLB's spread)."""
    return max(2.0, round(time_limit / 4, 1))


# ----------------------------------------------------------------------------- one instance


def bench_instance(inst: Instance, args: argparse.Namespace, competitor_python: Path | None, workdir: Path,
                   log: Callable[[str], None]) -> dict:
    settings = Settings()
    problem = build_problem(inst.cluster, settings)
    cl, rules = problem.cluster, problem.rules
    limit = args.time_limit or default_time_limit(inst.n_guests)
    record: dict[str, Any] = {
        "instance": inst.name, "size": inst.size, "variant": inst.variant, "seed": inst.seed,
        "n_nodes": inst.n_nodes, "n_guests": inst.n_guests, "time_limit": limit,
        "spread_before": round(check.spread(problem, cl.guest_node), 4),
        "mandatory_guests": int(rules.mandatory.sum()), "runs": {},
    }
    runs = record["runs"]

    def add(key: str, answer: Answer | Callable[[], Answer], **extra: Any) -> dict:
        if callable(answer):
            try:
                answer = answer()
            except Exception as exc:  # a harness-side crash is recorded, it does not end the benchmark
                answer = Answer(key, error=f"harness error: {exc.__class__.__name__}: {exc}")
        judged = judge(inst, settings, answer)
        judged.update(extra)
        runs[key] = judged
        shown = (f"spread {judged['spread']:.2f} pp, {judged['migrations']} moves, {judged['violations']} violations, "
                 f"safe order {judged['capacity_safe_order']}" if judged["ok"] else f"FAILED: {judged['error']}")
        wall = judged["wall_s"] if judged["wall_s"] is not None else judged["process_s"]
        log(f"  {key:<22} {shown} ({wall or 0:.1f} s, {judged['peak_rss_mib'] or 0:.0f} MiB)")
        return judged

    greedy = add("greedy", lambda: run_proxlb_opt(inst, "greedy", None, limit), budget=None)
    greedy_budget = greedy["balancing_moves"] if greedy["ok"] else None
    cpsat_main = add("cpsat@greedy", lambda: run_proxlb_opt(inst, "cpsat", greedy_budget, limit), budget=greedy_budget)
    if inst.n_nodes <= 8 and inst.n_guests <= 80:
        # What `proxlb-opt plan` does out of the box (budget 25, 10 s): the plan check (d) judges.
        default_limit = args.time_limit or DEFAULT_TIME_LIMIT
        add("cpsat-default", lambda: run_proxlb_opt(inst, "cpsat", DEFAULT_MAX_MIGRATIONS, default_limit),
            budget=DEFAULT_MAX_MIGRATIONS, time_limit=default_limit)

    if competitor_python is not None and not args.skip_proxlb:
        proxlb = add("proxlb", lambda: run_proxlb(inst, settings, competitor_python, timeout=args.proxlb_timeout,
                                                  throttle=args.proxlb_throttle, workdir=workdir), budget=None)
        if proxlb["ok"]:
            budget = proxlb["balancing_moves"]
            if budget == greedy_budget and cpsat_main["ok"]:
                runs["cpsat@proxlb"] = dict(cpsat_main, budget=budget, same_as="cpsat@greedy")
                log(f"  {'cpsat@proxlb':<22} same budget as greedy's: the cpsat@greedy run is used")
            else:
                add("cpsat@proxlb", lambda: run_proxlb_opt(inst, "cpsat", budget, limit), budget=budget)
            if not args.quick:
                found = add("cpsat-min-budget",
                            lambda: min_budget_to_reach(inst, proxlb["spread"], budget, probe_time_limit(limit)),
                            target_spread=proxlb["spread"], probe_time_limit=probe_time_limit(limit))
                found["budget"] = found["info"].get("budget")

    if competitor_python is not None and not args.skip_solver:
        for solver_limit in args.solver_limits:
            key = f"solver{solver_limit:g}s"
            solver = add(key, lambda: run_proxlb_solver(inst, settings, competitor_python, solver_limit,
                                                        timeout=solver_limit * 3 + args.solver_grace,
                                                        workdir=workdir),
                         time_limit=solver_limit)
            if solver["ok"] and solver["migrations"]:
                # A fifth of its balancing moves (moves that drain maintenance or repair rules are free for both).
                budget = solver["balancing_moves"] // 5
                add(f"cpsat@{key}/5", lambda: run_proxlb_opt(inst, "cpsat", budget, solver_limit), budget=budget,
                    time_limit=solver_limit)
    return record


# ----------------------------------------------------------------------------- checks


def _proof(run: dict | None) -> str:
    if not _ok(run):
        return "no answer"
    return (f"status {run['info'].get('status')}, gap {_fmt(run.get('gap'))} pp, migration cost proven "
            f"{'yes' if run['info'].get('cost_proven') else 'no'}, {_fmt(run.get('wall_s'))} s")


def _ok(run: dict | None) -> bool:
    return bool(run and run.get("ok"))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def compute_checks(records: list[dict]) -> list[dict]:
    """The issue's "done means" checks: PASS (True), FAIL (False) or N/A (None) with their numbers."""
    checks = []

    # (a) never worse than greedy or ProxLB at an equal migration budget.
    lines, failures, compared = [], 0, 0
    for rec in records:
        for ours, theirs in (("cpsat@greedy", "greedy"), ("cpsat@proxlb", "proxlb")):
            a, b = rec["runs"].get(ours), rec["runs"].get(theirs)
            if not _ok(b):
                continue
            compared += 1
            if not _ok(a):
                failures += 1
                lines.append(f"{rec['instance']}: {ours} failed ({a and a.get('error')})")
                continue
            invalid = b["violations"] > 0
            worse = a["spread"] > b["spread"] + SPREAD_TOLERANCE
            if worse and not invalid:
                failures += 1
            note = f" ({theirs} breaks {b['violations']} rules)" if invalid else ""
            lines.append(f"{rec['instance']}: {ours} {a['spread']:.2f} pp vs {theirs} {b['spread']:.2f} pp at "
                         f"{a.get('budget')} balancing moves{note}{' WORSE' if worse else ''}")
    checks.append({"check": "a", "title": "cpsat never worse than greedy or ProxLB at equal migration budget",
                   "passed": None if not compared else failures == 0,
                   "summary": f"{compared - failures}/{compared} comparisons not worse "
                              f"(a competitor placement that breaks rules is not a valid target)",
                   "details": lines})

    # (b1) median spread ratio at ProxLB's number of migrations; greedy's as a supplementary figure.
    def ratios(ours: str, theirs: str) -> list[tuple[str, float]]:
        out = []
        for rec in records:
            a, b = rec["runs"].get(ours), rec["runs"].get(theirs)
            if _ok(a) and _ok(b) and b["balancing_moves"] and b["spread"] > 0:
                out.append((rec["instance"], a["spread"] / b["spread"]))
        return out

    vs_proxlb, vs_greedy = ratios("cpsat@proxlb", "proxlb"), ratios("cpsat@greedy", "greedy")
    med_p, med_g = _median([r for _, r in vs_proxlb]), _median([r for _, r in vs_greedy])
    checks.append({"check": "b1", "title": "median cpsat spread ≤ 0.5 × ProxLB's at the same number of migrations",
                   "passed": None if med_p is None else med_p <= 0.5,
                   "summary": (f"median ratio vs ProxLB 2.3.0: {_fmt(med_p)} over {len(vs_proxlb)} instances; "
                               f"vs proxlb-opt's ProxLB-style greedy: {_fmt(med_g)} over {len(vs_greedy)}"),
                   "details": [f"{name}: {r:.3f}" for name, r in vs_proxlb]})

    # (b2) migrations cpsat needs to reach ProxLB's own final spread, relative to ProxLB's.
    need = []
    for rec in records:
        found, theirs = rec["runs"].get("cpsat-min-budget"), rec["runs"].get("proxlb")
        if _ok(theirs) and theirs["migrations"]:
            if _ok(found):
                need.append((rec["instance"], found["migrations"] / theirs["migrations"],
                             f"{found['migrations']} vs {theirs['migrations']}"))
            elif found is not None:
                need.append((rec["instance"], math.inf, f"not reached ({found['error']})"))
    med_n = _median([r for _, r, _ in need])
    checks.append({"check": "b2", "title": "median migrations cpsat needs to reach ProxLB's final spread "
                                           "≤ 0.5 × ProxLB's migrations",
                   "passed": None if med_n is None else med_n <= 0.5,
                   "summary": f"median ratio {_fmt(med_n)} over {len(need)} instances",
                   "details": [f"{name}: {r:.3f} ({text})" for name, r, text in need]})

    # (c) vs proxlb-solver at the same time limit: lower spread with at most a fifth of its migrations.
    lines, results = [], []
    for rec in records:
        if rec["size"] not in SOLVER_CHECK_SIZES:
            continue
        for key in sorted(k for k in rec["runs"] if k.startswith("solver")):
            solver, ours = rec["runs"][key], rec["runs"].get(f"cpsat@{key}/5")
            if not _ok(solver):
                lines.append(f"{rec['instance']} {key}: proxlb-solver produced no placement ({solver['error']}); "
                             f"cpsat@greedy: {_fmt(rec['runs'].get('cpsat@greedy', {}).get('spread'))} pp")
                continue
            passed = (_ok(ours) and ours["spread"] < solver["spread"]
                      and ours["balancing_moves"] <= solver["balancing_moves"] / 5)
            results.append(passed)
            lines.append(f"{rec['instance']} {key}: cpsat {_fmt(ours and ours.get('spread'))} pp with "
                         f"{ours and ours.get('balancing_moves')} balancing moves ({ours and ours.get('migrations')} "
                         f"in all) vs solver {solver['spread']:.2f} pp with {solver['balancing_moves']} "
                         f"({solver['migrations']}) ({solver['violations']} violations) {'ok' if passed else 'NOT MET'}")
    checks.append({"check": "c", "title": "vs proxlb-solver at the same time limit (16x800, 32x3000): lower spread "
                                          "with ≤ 1/5 of its migrations",
                   "passed": None if not results else all(results),
                   "summary": f"{sum(results)}/{len(results)} comparisons met where the solver produced a placement; "
                              f"{sum(1 for line in lines if 'no placement' in line)} runs where it produced none",
                   "details": lines})

    # (d) speed and memory; proven optimality for small instances.
    lines, results = [], []
    for rec in records:
        run = rec["runs"].get("cpsat@greedy")
        if rec["size"] == "16x800":
            ok = _ok(run) and run["wall_s"] <= 10.0
            results.append(ok)
            lines.append(f"{rec['instance']}: {_fmt(run and run.get('wall_s'))} s wall (≤ 10) "
                         f"{'ok' if ok else 'NOT MET'}")
        if rec["size"] == "64x10000":
            ok = _ok(run) and run["wall_s"] <= 60.0 and run["peak_rss_mib"] <= RSS_LIMIT_MIB
            results.append(ok)
            lines.append(f"{rec['instance']}: {_fmt(run and run.get('wall_s'))} s wall (≤ 60), peak RSS "
                         f"{_fmt(run and run.get('peak_rss_mib'), 0)} MiB (≤ {RSS_LIMIT_MIB:.0f}) "
                         f"{'ok' if ok else 'NOT MET'}")
        if rec["n_nodes"] <= 8 and rec["n_guests"] <= 80:
            # Judged: the plan as `proxlb-opt plan` makes it by default. Shown too: the equal-budget runs.
            default = rec["runs"].get("cpsat-default")
            ok = _ok(default) and default["info"].get("status") == "optimal" and default["wall_s"] <= 10.0
            results.append(ok)
            lines.append(f"{rec['instance']}, default settings: {_proof(default)} {'ok' if ok else 'NOT MET'}")
            for key in ("cpsat@greedy", "cpsat@proxlb"):
                other = rec["runs"].get(key)
                if other is not None and not other.get("same_as"):
                    lines.append(f"{rec['instance']}, {key} (budget {other.get('budget')}; not judged): "
                                 f"{_proof(other)}")
    checks.append({"check": "d", "title": "16x800 ≤ 10 s; 64x10000 ≤ 60 s and ≤ 2 GiB; up to 8x80 the default plan proven "
                                          "optimal (within the 0.05 pp tolerance) in ≤ 10 s",
                   "passed": None if not results else all(results),
                   "summary": f"{sum(results)}/{len(results)} met", "details": lines})
    return checks


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "N/A"}[passed]


# ----------------------------------------------------------------------------- reports

RUN_LABELS = {
    "greedy": "proxlb-opt greedy (no budget)",
    "cpsat@greedy": "proxlb-opt cpsat @ greedy's budget",
    "cpsat-default": "proxlb-opt cpsat, default budget (25)",
    "proxlb": "ProxLB 2.3.0 (real, dry run)",
    "cpsat@proxlb": "proxlb-opt cpsat @ ProxLB's budget",
    "cpsat-min-budget": "proxlb-opt cpsat, fewest moves to ProxLB's spread",
    "solver10s": "proxlb-solver 0.1.1, 10 s",
    "cpsat@solver10s/5": "proxlb-opt cpsat 10 s @ 1/5 of solver's balancing moves",
    "solver30s": "proxlb-solver 0.1.1, 30 s",
    "cpsat@solver30s/5": "proxlb-opt cpsat 30 s @ 1/5 of solver's balancing moves",
}


def _label(key: str) -> str:
    return RUN_LABELS.get(key, key)


def markdown(doc: dict) -> str:
    out = [f"# proxlb-opt benchmark — {doc['date']}", "",
           f"Machine: {doc['environment']['cpus']} CPUs, {doc['environment']['platform']}; Python "
           f"{doc['environment']['python']}; proxlb-opt commit {doc['environment'].get('commit') or 'n/a'}. "
           f"Instances from `benchmarks/generate.py`, seed {SEED}. Command: `{doc['command']}`; "
           f"total {doc['total_seconds'] / 60:.1f} min.", "",
           "Spread: max − min node memory used (percentage points) over eligible nodes, recomputed by "
           "`proxlb_opt.check` for every answer. Budget: balancing moves allowed (moves that repair a broken "
           "rule or drain a maintenance node are outside it). Safe order: `plan.replay` of the competitor's own "
           "order, a live migration holding memory on both nodes. Wall: planning time (ProxLB: its whole dry "
           "run, API reads included, throttling pauses skipped). RSS: the planning process's peak. "
           "Gap: spread − proven lower bound (cpsat only). \"optimal\": the spread is proven within the "
           "optimality tolerance (0.05 pp by default) of the best possible at that budget; \"+cost\": the "
           "migration cost is proven minimal at that spread too.", "",
           "| instance | before pp | run | budget | spread pp | moves | GiB moved | violations | safe order | "
           "wall s | peak RSS MiB | status / gap pp |",
           "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for rec in doc["instances"]:
        for key, run in rec["runs"].items():
            if run["ok"]:
                status = (run["info"].get("status") or "") + (" +cost" if run["info"].get("cost_proven") else "")
                gap = f" / {run['gap']:.2f}" if run.get("gap") is not None else ""
                safe = {True: "yes", False: "NO", None: "n/a"}[run["capacity_safe_order"]]
                out.append(f"| {rec['instance']} | {rec['spread_before']:.2f} | {_label(key)} | "
                           f"{_fmt(run.get('budget'))} | {run['spread']:.2f} | {run['migrations']} | "
                           f"{run['gib_moved']:.1f} | {run['violations']} | {safe} | {_fmt(run['wall_s'], 1)} | "
                           f"{_fmt(run['peak_rss_mib'], 0)} | {status.lower()}{gap} |")
            else:
                error = (run["error"] or "").splitlines()[0][:90].replace("|", "/")
                out.append(f"| {rec['instance']} | {rec['spread_before']:.2f} | {_label(key)} | "
                           f"{_fmt(run.get('budget'))} | — | — | — | — | — | {_fmt(run['wall_s'] or run['process_s'], 1)} | "
                           f"{_fmt(run['peak_rss_mib'], 0)} | **{'timed out' if run['timed_out'] else 'failed'}**: "
                           f"{error} |")
    out += ["", "## Checks", ""]
    for c in doc["checks"]:
        out.append(f"- **{verdict(c['passed'])}** ({c['check']}) {c['title']}: {c['summary']}")
        out += [f"  - {line}" for line in c["details"]]
    out += ["", "Raw figures: the JSON file of the same date; how each figure is computed: `benchmarks/README.md`.", ""]
    return "\n".join(out)


def chart(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = doc["instances"]
    names = [rec["instance"] for rec in records]
    keys = [k for k in RUN_LABELS if any(k in rec["runs"] for rec in records) and k != "cpsat-min-budget"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(12, 0.9 * len(names) + 7), 9), sharex=True)
    markers = "osD^vP*Xh"
    for i, key in enumerate(keys):
        xs, spreads, moves = [], [], []
        for x, rec in enumerate(records):
            run = rec["runs"].get(key)
            if _ok(run):
                xs.append(x + (i - len(keys) / 2) * 0.06)
                spreads.append(max(run["spread"], 0.01))
                moves.append(max(run["migrations"], 0.8))
        top.scatter(xs, spreads, marker=markers[i % len(markers)], label=_label(key), s=36)
        bottom.scatter(xs, moves, marker=markers[i % len(markers)], s=36)
    top.scatter(range(len(records)), [max(rec["spread_before"], 0.01) for rec in records], marker="_", s=300,
                color="black", label="before")
    top.set_yscale("log")
    top.set_ylabel("spread after (pp, log; < 0.01 drawn at 0.01)")
    top.set_title(f"proxlb-opt vs ProxLB 2.3.0 vs proxlb-solver 0.1.1 — {doc['date']}")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    bottom.set_yscale("log")
    bottom.set_ylabel("migrations (log)")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.set_xticks(range(len(names)))
    bottom.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        nodes, guests = part.lower().strip().split("x")
        out.append((int(nodes), int(guests)))
    return tuple(out)


def instances_to_run(args: argparse.Namespace) -> list[tuple[int, int, bool, bool]]:
    sizes = parse_sizes(args.sizes) if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    variants = args.variants.split(",") if args.variants else (("rules", "plain") if args.quick else VARIANTS)
    out = []
    for n_nodes, n_guests in sizes:
        for variant in variants:
            if variant == "maintenance" and not args.sizes and (n_nodes, n_guests) not in MAINTENANCE_SIZES:
                continue
            out.append((n_nodes, n_guests, variant != "plain", variant == "maintenance"))
    return out


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=BENCH_DIR.parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    from importlib.metadata import version

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "ortools": version("ortools"), "proxlb_opt": version("proxlb-opt"), "commit": commit,
            "cpsat_workers": Settings().workers}


def run(args: argparse.Namespace) -> dict:
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    competitor_python = None
    if not (args.skip_proxlb and args.skip_solver):
        from benchmarks.setup_competitors import CompetitorSetupError, ensure_competitor_venv

        try:
            competitor_python = ensure_competitor_venv()
        except CompetitorSetupError as exc:
            log(f"error: {exc}")
            raise SystemExit(1)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    date = dt.date.today().isoformat()
    name = args.name or ("quick" if args.quick else "full" if not args.sizes else "subset")
    raw_path = out_dir / f"{date}-{name}.json"
    doc: dict[str, Any] = {"date": date, "name": name, "command": " ".join(["python -m benchmarks.run", *args.argv]),
                           "environment": environment(), "seed": SEED, "instances": [], "checks": [],
                           "total_seconds": 0.0}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="proxlb-opt-bench-") as tmp:
        workdir = Path(tmp)
        for n_nodes, n_guests, rules, maintenance in instances_to_run(args):
            inst = make_instance(n_nodes, n_guests, SEED, rules, maintenance, workdir)
            log(f"{inst.name}: {inst.cluster.n_nodes} nodes, {inst.cluster.n_guests} guests")
            try:
                doc["instances"].append(bench_instance(inst, args, competitor_python, workdir, log))
            except Exception as exc:  # recorded; the other instances still run
                log(f"  harness error: {exc.__class__.__name__}: {exc}")
                doc.setdefault("harness_errors", []).append({"instance": inst.name, "error": repr(exc)})
            doc["total_seconds"] = time.perf_counter() - start
            raw_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")  # progress survives a crash
    doc["checks"] = compute_checks(doc["instances"])
    doc["total_seconds"] = time.perf_counter() - start
    raw_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    text = markdown(doc)
    (out_dir / "latest.md").write_text(text, encoding="utf-8")
    chart(doc, out_dir / "latest.png")
    print(text)
    log(f"wrote {raw_path}, {out_dir / 'latest.md'}, {out_dir / 'latest.png'}")
    return doc


def rewrite(raw_path: Path, out_dir: Path) -> dict:
    """Checks, Markdown and chart again from a raw results file (e.g. after a change to the report)."""
    doc = json.loads(raw_path.read_text(encoding="utf-8"))
    doc["checks"] = compute_checks(doc["instances"])
    raw_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(doc)
    (out_dir / "latest.md").write_text(text, encoding="utf-8")
    chart(doc, out_dir / "latest.png")
    print(text)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only, a few seconds each (tests)")
    parser.add_argument("--sizes", help="comma-separated NODESxGUESTS, e.g. 16x800,32x3000")
    parser.add_argument("--variants", help="comma-separated: rules, plain, maintenance")
    parser.add_argument("--skip-proxlb", action="store_true", help="do not run ProxLB 2.3.0")
    parser.add_argument("--skip-solver", action="store_true", help="do not run proxlb-solver 0.1.1")
    parser.add_argument("--time-limit", type=float, help="cpsat time limit for every instance (default: by size)")
    parser.add_argument("--solver-limits", default=",".join(f"{v:g}" for v in SOLVER_LIMITS),
                        help="proxlb-solver time limits in seconds (default 10,30)")
    parser.add_argument("--solver-grace", type=float, default=120.0,
                        help="seconds past 3 × its time limit before proxlb-solver is stopped")
    parser.add_argument("--proxlb-timeout", type=float, default=1800.0)
    parser.add_argument("--proxlb-throttle", action="store_true",
                        help="keep ProxLB's 0.1 s pause before each per-guest API request (slow)")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="directory for the results")
    parser.add_argument("--name", help="name in the raw file's name (default: full, subset or quick)")
    parser.add_argument("--from-json", metavar="RAW",
                        help="run nothing: recompute the checks, latest.md and latest.png from a raw results file")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    args.solver_limits = tuple(float(v) for v in args.solver_limits.split(",") if v)
    if args.quick and args.time_limit is None:
        args.time_limit = 3.0
    if args.from_json:
        rewrite(Path(args.from_json), Path(args.out))
        return 0
    run(args)
    return 0  # a FAIL is a measured result, reported above; not an error of the harness


if __name__ == "__main__":
    raise SystemExit(main())
