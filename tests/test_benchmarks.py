"""The benchmark harness: its scoring path on tiny generated instances, no network and no competitor venv.

The harness runs proxlb-opt's planner in child processes and judges every answer with the same checker;
these tests run it for cpsat, greedy and the unit greedy (`run.py --quick --skip-proxlb --skip-solver` on
3x30-rules, 3x30-maintenance and 10x150-hard, with a budget sweep of budgets 0 and none at --quick's 2 s:
each run is a child process of ~0.7 s start-up, so the test keeps to these) and re-derive the judged
figures from the recorded moves, test the sweep's checks (e–i) on hand-made records,
and test the judge, the process runner and the competitor adapters (ProxLB's JSON, proxlb-solver's cluster
mapping) on hand-made inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as bench_run
from benchmarks.competitors import (Answer, judge, make_instance, parse_proxlb_json, proxlb_moves, run_child,
                                    solver_cluster, unit_greedy_order)
from benchmarks.generate import generate_cluster
from proxlb_opt import check
from proxlb_opt.cluster import cluster_from_dict
from proxlb_opt.config import Settings
from proxlb_opt.greedy import unit_greedy
from proxlb_opt.plan import Limits
from proxlb_opt.problem import build_problem
from proxlb_opt.repair import repair_heuristic, tightened_limits

JUDGED_FIELDS = {"competitor", "ok", "error", "timed_out", "wall_s", "process_s", "peak_rss_mib", "info", "spread",
                 "migrations", "balancing_moves", "gib_moved", "local_disk_gib_moved", "violations",
                 "violation_messages", "capacity_safe_order", "order_problems", "bound", "gap", "moves"}


QUICK_INSTANCES = ["3x30-rules", "3x30-maintenance", "10x150-hard"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = bench_run.main(["--quick", "--skip-proxlb", "--skip-solver", "--instances", ",".join(QUICK_INSTANCES),
                           "--sweep-budgets", "0,none", "--out", str(out), "--name", "test"])
    assert code == 0
    raw = sorted(out.glob("*-test.json"))
    assert len(raw) == 1
    return out, json.loads(raw[0].read_text(encoding="utf-8"))


def _placement_from_moves(cluster, moves):
    placement = np.array(cluster.guest_node, dtype=np.int64)
    for vmid, source, target in moves:
        g = cluster.guest_index(vmid)
        assert cluster.node_names[placement[g]] == source
        placement[g] = cluster.node_index(target)
    return placement


def _model(rec):
    shape = rec.get("shape", "mild")
    return generate_cluster(rec["n_nodes"], rec["n_guests"], rec["seed"], rules=rec["variant"] != "plain",
                            maintenance=rec["variant"] == "maintenance", shape=shape)


def test_quick_run_writes_raw_json_markdown_and_chart(quick_run):
    out, doc = quick_run
    assert [rec["instance"] for rec in doc["instances"]] == QUICK_INSTANCES
    assert [rec["shape"] for rec in doc["instances"]] == ["mild", "mild", "hard"]
    assert {"date", "environment", "checks", "instances", "total_seconds", "command"} <= set(doc)
    text = (out / "latest.md").read_text(encoding="utf-8")
    assert "| instance |" in text and "3x30-maintenance" in text and "## Checks" in text
    assert "## Budget sweep" in text and "### 10x150-hard" in text
    for name in ("latest.png", "latest-sweep.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_records_have_the_judged_fields_and_consistent_figures(quick_run):
    _, doc = quick_run
    settings = Settings()
    for rec in doc["instances"]:
        assert set(rec["runs"]) == {"greedy", "cpsat@greedy", "cpsat@25", "cpsat-auto"}
        p = build_problem(cluster_from_dict(_model(rec)), settings).with_budget(None)
        cl, rules = p.cluster, p.rules
        assert rec["spread_before"] == pytest.approx(check.spread(p, cl.guest_node), abs=1e-3)
        for key, run in rec["runs"].items():
            assert JUDGED_FIELDS <= set(run), key
            assert run["ok"] and run["error"] is None and not run["timed_out"]
            assert run["peak_rss_mib"] > 10 and run["process_s"] >= run["wall_s"] >= 0
            placement = _placement_from_moves(cl, run["moves"])
            # Every figure re-derived from the recorded moves with the checker agrees with the record.
            assert run["spread"] == pytest.approx(check.spread(p, placement), abs=1e-3)
            assert run["migrations"] == len(run["moves"]) == int((placement != cl.guest_node).sum())
            assert run["violations"] == len(check.violations(p, placement))
            moved = placement != cl.guest_node
            assert run["balancing_moves"] == int((moved & ~rules.mandatory).sum())
            ram = np.where(cl.guest_running, cl.guest_mem_used_mib, 0)[moved].sum() / 1024
            assert run["gib_moved"] == pytest.approx(ram, abs=0.01)
        greedy, cpsat = rec["runs"]["greedy"], rec["runs"]["cpsat@greedy"]
        assert cpsat["budget"] == greedy["balancing_moves"]
        assert cpsat["violations"] == 0 and cpsat["capacity_safe_order"] is True and cpsat["order_problems"] == []
        # A plan moves at most the repair's moves + the budget. On a hard shape the repair also moves guests that
        # are not obliged to move (to make room, to relieve a node over capacity), so only there may the judged
        # balancing moves (movers not obliged to move) exceed the budget.
        assert cpsat["migrations"] <= cpsat["info"]["repair_moves"] + cpsat["budget"]
        if rec["shape"] == "mild":
            assert cpsat["balancing_moves"] <= cpsat["budget"]
        assert cpsat["info"]["status"] in ("optimal", "feasible")
        assert cpsat["spread"] == pytest.approx(cpsat["info"]["reported_spread"], abs=1e-3)
        assert cpsat["bound"] is not None and cpsat["bound"] <= cpsat["spread"] + 0.02
        assert cpsat["gap"] == pytest.approx(max(0.0, cpsat["spread"] - cpsat["bound"]), abs=1e-3)
        assert cpsat["spread"] <= rec["spread_before"] + 1e-6
        if greedy["violations"] == 0:
            assert cpsat["spread"] <= greedy["spread"] + bench_run.SPREAD_TOLERANCE
        assert greedy["bound"] is None and greedy["capacity_safe_order"] in (True, False)


def test_the_budget_sweep_judges_every_budget_for_every_instance(quick_run):
    _, doc = quick_run
    settings = Settings()
    for rec in doc["instances"]:
        sweep = rec["sweep"]
        assert sweep["time_limit"] == bench_run.QUICK_SWEEP_TIME_LIMIT
        assert sweep["budgets"] == [0, None] and [row["budget"] for row in sweep["runs"]] == [0, None]
        p = build_problem(cluster_from_dict(_model(rec)), settings).with_budget(None)
        for row in sweep["runs"]:
            assert set(row) == {"budget", "cpsat", "unit-greedy", "greedy"}
            for kind in ("cpsat", "unit-greedy", "greedy"):
                run = row[kind]
                assert JUDGED_FIELDS <= set(run) and run["ok"], (rec["instance"], kind, run["error"])
                assert run["budget"] == row["budget"]
                placement = _placement_from_moves(p.cluster, run["moves"])
                assert run["spread"] == pytest.approx(check.spread(p, placement), abs=1e-3)
                assert run["violations"] == len(check.violations(p, placement))
                assert run["capacity_safe_order"] in (True, False)  # an empty order is an order too
            cpsat, fair = row["cpsat"], row["unit-greedy"]
            assert cpsat["time_limit"] == sweep["time_limit"] and cpsat["wall_s"] is not None
            assert cpsat["violations"] == 0 and cpsat["capacity_safe_order"] is True
            assert cpsat["info"]["status"] in ("optimal", "feasible", "balanced")
            if row["budget"] is not None:
                assert cpsat["migrations"] <= cpsat["info"]["repair_moves"] + row["budget"]
                assert fair["migrations"] <= fair["info"]["allowance"] == fair["info"]["repair_moves"] + row["budget"]
            # The unit greedy keeps every rule and carries out its moves one at a time, each guest at least once.
            assert fair["violations"] == 0 and fair["order_steps"] >= fair["migrations"]
            assert cpsat["spread"] <= fair["spread"] + bench_run.STRICT


def test_checks_are_reported_with_verdicts(quick_run):
    _, doc = quick_run
    by_name = {c["check"]: c for c in doc["checks"]}
    assert set(by_name) == {"a", "b1", "b2", "c", "d", "e", "f", "g", "h", "i"}
    assert by_name["a"]["passed"] is True  # cpsat is never worse than greedy at greedy's budget
    assert by_name["b2"]["passed"] is None and by_name["c"]["passed"] is None  # no ProxLB, no solver: not judged
    assert all(c["passed"] in (True, False, None) and c["summary"] for c in doc["checks"])
    assert by_name["e"]["passed"] is True and by_name["e"]["summary"].startswith("6/6 ")
    assert by_name["g"]["passed"] is True
    # Timing and quality figures are measured, not asserted: only that they were judged, with their numbers.
    assert by_name["f"]["passed"] is not None and "strict rises" in by_name["f"]["summary"]
    assert by_name["h"]["passed"] is not None and by_name["h"]["median"] is not None  # 10x150-hard is a hard shape
    assert set(by_name["h"]["per_budget"]) <= {"0", "none"}
    assert by_name["i"]["passed"] is not None and "median" in by_name["i"]["summary"]


# ----------------------------------------------------------------------------- the sweep's checks on made-up records


def _run(spread, wall=1.0, violations=0, safe=True, repair=0, budget=None, migrations=0, ok=True):
    return {"ok": ok, "error": None if ok else "boom", "timed_out": False, "spread": spread if ok else None,
            "violations": violations if ok else None, "violation_messages": [],
            "capacity_safe_order": safe if ok else None, "order_problems": [], "wall_s": wall, "process_s": wall + 1,
            "migrations": migrations if ok else None, "budget": budget,
            "info": {"repair_moves": repair, "status": "feasible"}}


def _record(name, shape, rows, time_limit=10.0):
    """rows: (budget, cpsat run, unit greedy spread, ProxLB-style greedy spread, its violations)."""
    return {"instance": name, "shape": shape, "variant": shape if shape != "mild" else "rules", "size": "9x99",
            "n_nodes": 9, "n_guests": 99, "spread_before": 50.0, "runs": {},
            "sweep": {"time_limit": time_limit, "budgets": [r[0] for r in rows],
                      "runs": [{"budget": b, "cpsat": dict(c, budget=b), "unit-greedy": _run(u, budget=b),
                                "greedy": _run(g, violations=v, budget=b)} for b, c, u, g, v in rows]}}


def _sweep_checks(records):
    return {c["check"]: c for c in bench_run.compute_checks(records)}


def test_sweep_checks_pass_on_a_clean_sweep():
    rec = _record("x-hard", "hard", [(0, _run(60.0, budget=0), 90.0, 95.0, 3), (5, _run(40.0), 80.0, 30.0, 2),
                                     (None, _run(1.0, wall=10.9), 2.0, 20.0, 0)])
    checks = _sweep_checks([rec])
    assert [checks[k]["passed"] for k in "efghi"] == [True, True, True, True, True]
    assert checks["g"]["summary"] == "4/4 comparisons not worse"  # ProxLB-style greedy valid at "none" only
    assert checks["h"]["median"] == pytest.approx(0.5) and checks["h"]["per_budget"]["0"] == pytest.approx(60 / 90)
    assert "max 10.90 s" in checks["i"]["summary"]
    assert [checks[k]["passed"] for k in ("a", "b1", "b2", "c", "d")] == [None] * 5  # nothing of theirs to judge


def test_sweep_checks_fail_where_they_should():
    rows = [(0, _run(60.0, violations=1), 90.0, 95.0, 1),  # (e) a broken rule
            (5, _run(60.04, migrations=9, repair=3), 55.0, 95.0, 1),  # (e) 9 > 3 + 5; (g) worse than unit greedy
            (10, _run(60.2, wall=11.2), 95.0, 95.0, 1),  # (f) +0.2 pp over 0's; (i) over 10 s + 1 s
            (None, _run(0.0), 0.0, 95.0, 1)]  # (h) the unit greedy at 0: listed, not counted
    checks = _sweep_checks([_record("y-enterprise", "enterprise", rows)])
    assert [checks[k]["passed"] for k in "efgi"] == [False, False, False, False]
    assert checks["e"]["summary"] == "2/4 runs valid"
    # Every pair of budgets: 0→10 and 5→10 rise past the tolerance, 0→5 (+0.04 pp) only strictly.
    assert "2 rises over it, 3 strict rises" in checks["f"]["summary"]
    assert any("WORSE" in line for line in checks["g"]["details"])
    assert "1 pairs with the unit greedy at 0 pp" in checks["h"]["summary"]
    assert checks["i"]["summary"].startswith("3/4 runs within")


def test_sweep_rise_within_the_tolerance_passes_and_is_still_counted():
    rows = [(0, _run(10.0), 20.0, 30.0, 1), (5, _run(10.03), 20.0, 30.0, 1)]
    check_f = _sweep_checks([_record("z-rules", "mild", rows)])["f"]
    assert check_f["passed"] is True and "0 rises over it, 1 strict rises" in check_f["summary"]
    assert _sweep_checks([_record("z-rules", "mild", rows)])["h"]["passed"] is None  # no hard shape


# ----------------------------------------------------------------------------- selection, budgets, the comparator


def _selection(*argv):
    parsed = {"instances": None, "sizes": None, "variants": None, "quick": False}
    it = iter(argv)
    for flag in it:
        if flag == "--quick":
            parsed["quick"] = True
        else:
            parsed[flag[2:]] = next(it)
    import argparse

    return [f"{n}x{g}-{v}" for n, g, v in bench_run.instances_to_run(argparse.Namespace(**parsed))]


def test_instance_selection_keeps_the_old_instances_first_and_adds_the_hard_shapes():
    full = _selection()
    assert full[:16] == ["3x30-rules", "3x30-plain", "5x60-rules", "5x60-plain", "5x60-maintenance", "8x80-rules",
                         "8x80-plain", "8x200-rules", "8x200-plain", "16x800-rules", "16x800-plain",
                         "16x800-maintenance", "32x3000-rules", "32x3000-plain", "64x10000-rules", "64x10000-plain"]
    assert full[16:] == ["40x750-hard", "100x1000-hard", "64x10000-hard", "12x400-enterprise"]
    assert _selection("--quick") == ["3x30-rules", "3x30-plain", "5x60-rules", "5x60-plain", "10x150-hard"]
    assert _selection("--variants", "hard,enterprise") == full[16:]
    assert _selection("--sizes", "40x750", "--variants", "hard") == ["40x750-hard"]
    assert _selection("--sizes", "16x800") == ["16x800-rules", "16x800-plain", "16x800-maintenance"]
    assert _selection("--sizes", "64x10000")[-1] == "64x10000-hard"
    assert _selection("--instances", "3x30-plain,10x150-hard") == ["3x30-plain", "10x150-hard"]
    with pytest.raises(ValueError):
        _selection("--sizes", "3x30", "--variants", "hard")  # the hard shapes need 5 nodes and 8 guests per node
    with pytest.raises(ValueError):
        _selection("--variants", "spiky")


def test_budgets_parse_with_none_as_unlimited():
    assert bench_run.parse_budgets("0,5,10,25,none") == bench_run.SWEEP_BUDGETS
    assert bench_run.parse_budgets(" 3 , Unlimited") == (3, None)
    with pytest.raises(ValueError):
        bench_run.parse_budgets("-1")
    assert bench_run.wall_limit(10.0) == pytest.approx(11.0) and bench_run.wall_limit(2.0) == pytest.approx(3.0)
    assert bench_run.wall_limit(30.0) == pytest.approx(33.0)


def test_unit_greedy_order_replays_its_moves_one_by_one(tmp_path):
    inst = make_instance(10, 150, 1, True, False, tmp_path, shape="hard")
    problem = build_problem(inst.cluster, Settings(max_migrations=5))
    repaired = repair_heuristic(problem)
    fair = problem.with_repair(repaired.moves, tightened_limits(problem, repaired.placement))
    placement = unit_greedy(fair, repaired.placement)
    steps = unit_greedy_order(problem, fair, repaired.placement, placement)
    repair_steps = int((repaired.placement != problem.current).sum())
    assert len(steps) >= int((placement != problem.current).sum()) and len(steps) > repair_steps
    judged = judge(inst, Settings(), Answer("unit greedy", placement=placement, waves=tuple((tuple(s),) for s in steps),
                                            limits=Limits(1, 1, 1)))
    assert judged["violations"] == 0 and judged["capacity_safe_order"] is True


# ----------------------------------------------------------------------------- the judge and the adapters


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_instance(3, 30, 1, True, False, tmp_path_factory.mktemp("inst"))


def test_judge_flags_broken_rules_and_an_unsafe_order(small):
    p = build_problem(small.cluster, Settings())
    cl, rules = p.cluster, p.rules
    group = next(a for a in rules.anti_affinities if len(a.members) >= 2 and all(rules.movable[g] for g in a.members))
    first, second = group.members[:2]
    placement = np.array(cl.guest_node, dtype=np.int64)
    placement[second] = placement[first]  # two anti-affinity members on one node
    waves = () if placement[second] == cl.guest_node[second] else (
        ((second, int(cl.guest_node[second]), int(placement[second])),),)
    judged = judge(small, Settings(), Answer("hand", placement=placement, waves=waves, limits=Limits(1, 1, 1)))
    assert judged["ok"] and judged["violations"] >= 1
    assert any("anti-affinity" in m for m in judged["violation_messages"])
    if waves:
        assert judged["capacity_safe_order"] is False

    # An order that does not lead to the placement is not a safe order either.
    other = np.array(cl.guest_node, dtype=np.int64)
    g = int(np.flatnonzero(rules.movable & (rules.allowed.sum(axis=1) > 1))[0])
    other[g] = int(np.flatnonzero(rules.allowed[g] & (np.arange(cl.n_nodes) != cl.guest_node[g]))[0])
    judged = judge(small, Settings(), Answer("hand", placement=other, waves=(), limits=Limits(1, 1, 1)))
    assert judged["migrations"] == 1 and judged["capacity_safe_order"] is False
    failed = judge(small, Settings(), Answer("crashed", error="boom"))
    assert not failed["ok"] and failed["spread"] is None and failed["error"] == "boom"


def test_run_child_measures_peak_memory_and_stops_at_the_timeout():
    grow = "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('done')"
    done = run_child([sys.executable, "-c", grow], timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "done" and not done.timed_out
    assert done.peak_rss_mib >= 190
    slow = run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert slow.timed_out and slow.returncode is None and slow.wall_s < 10


def test_proxlb_json_is_parsed_from_its_mixed_output(small):
    cl = small.cluster
    g = 0
    source = cl.node_names[cl.guest_node[g]]
    target = next(n for n in cl.node_names if n != source)
    guests = {cl.guest_names[h]: {"id": int(cl.guest_vmid[h]), "node_current": cl.node_names[cl.guest_node[h]],
                                  "node_target": cl.node_names[cl.guest_node[h]]} for h in range(cl.n_guests)}
    guests[cl.guest_names[g]]["node_target"] = target
    stdout = ("2026-01-01 00:00:00,000 - ProxLB - INFO - Using config path: x.yaml\n"
              + json.dumps({"groups": {}, "guests": guests, "nodes": {}}, indent=4)
              + "\nDaemon mode not active - stopping.\n")
    placement, order, problems = proxlb_moves(cl, parse_proxlb_json(stdout))
    assert problems == [] and order == [[g, int(cl.guest_node[g]), cl.node_index(target)]]
    assert int((placement != cl.guest_node).sum()) == 1
    with pytest.raises(ValueError):
        parse_proxlb_json("2026 - ProxLB - CRITICAL - no API\n")


def test_solver_cluster_maps_nodes_guests_and_rules(small):
    p = build_problem(small.cluster, Settings())
    cl, rules = p.cluster, p.rules
    data = solver_cluster(small.cluster, Settings())
    assert {"name", "description", "balancing", "nodes", "vms", "constraints", "expect"} <= set(data)
    assert [n["name"] for n in data["nodes"]] == list(cl.node_names)
    assert len(data["vms"]) == cl.n_guests
    vm = data["vms"][0]
    assert vm["memory"] == int(cl.guest_mem_mib[0]) * 1024 * 1024 and vm["node"] == cl.node_names[cl.guest_node[0]]
    cons = data["constraints"]
    assert len(cons["affinity"]) == sum(1 for a in rules.affinities if len(a.members) > 1)
    assert len(cons["anti_affinity"]) == sum(1 for a in rules.anti_affinities if len(a.members) > 1)
    assert sorted(cons["ignore"]) == sorted(str(int(v)) for v in cl.guest_vmid[~rules.movable])
    assert len(cons["pin"]) == len(rules.pins)
    assert all(isinstance(n["storage_free"]["local"], int) for n in data["nodes"])
    json.dumps(data)  # what the driver reads


def test_default_time_limits_leave_room_for_the_wall_time_checks():
    assert bench_run.default_time_limit(80) <= 10
    assert bench_run.default_time_limit(800) < 10
    assert bench_run.default_time_limit(10000) < 60
    assert Path(bench_run.RESULTS_DIR).name == "results"


def test_reports_can_be_rewritten_from_the_raw_file(quick_run, tmp_path):
    out, doc = quick_run
    raw = next(out.glob("*-test.json"))
    copy = tmp_path / raw.name
    copy.write_text(raw.read_text(encoding="utf-8"), encoding="utf-8")
    assert bench_run.main(["--from-json", str(copy), "--out", str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "latest.md").read_text(encoding="utf-8")
    assert again == (out / "latest.md").read_text(encoding="utf-8")
    assert (tmp_path / "again" / "latest.png").stat().st_size > 5000
