"""The benchmark harness: its scoring path on tiny generated instances, no network and no competitor venv.

The harness runs proxlb-opt's planner in child processes and judges every answer with the same checker;
these tests run it for cpsat and greedy (`run.py --quick --skip-proxlb --skip-solver`, in-process) and
re-derive the judged figures from the recorded moves, and test the judge, the process runner and the
competitor adapters (ProxLB's JSON, proxlb-solver's cluster mapping) on hand-made inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as bench_run
from benchmarks.competitors import (Answer, judge, make_instance, parse_proxlb_json, proxlb_moves, run_child,
                                    solver_cluster)
from benchmarks.generate import generate_cluster
from proxlb_opt import check
from proxlb_opt.cluster import cluster_from_dict
from proxlb_opt.config import Settings
from proxlb_opt.plan import Limits
from proxlb_opt.problem import build_problem

JUDGED_FIELDS = {"competitor", "ok", "error", "timed_out", "wall_s", "process_s", "peak_rss_mib", "info", "spread",
                 "migrations", "balancing_moves", "gib_moved", "local_disk_gib_moved", "violations",
                 "violation_messages", "capacity_safe_order", "order_problems", "bound", "gap", "moves"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = bench_run.main(["--quick", "--skip-proxlb", "--skip-solver", "--sizes", "3x30",
                           "--variants", "rules,plain,maintenance", "--out", str(out), "--name", "test"])
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


def test_quick_run_writes_raw_json_markdown_and_chart(quick_run):
    out, doc = quick_run
    assert [rec["instance"] for rec in doc["instances"]] == ["3x30-rules", "3x30-plain", "3x30-maintenance"]
    assert {"date", "environment", "checks", "instances", "total_seconds", "command"} <= set(doc)
    text = (out / "latest.md").read_text(encoding="utf-8")
    assert "| instance |" in text and "3x30-maintenance" in text and "## Checks" in text
    png = (out / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_records_have_the_judged_fields_and_consistent_figures(quick_run):
    _, doc = quick_run
    settings = Settings()
    for rec in doc["instances"]:
        assert set(rec["runs"]) == {"greedy", "cpsat@greedy", "cpsat-default"}
        model = generate_cluster(rec["n_nodes"], rec["n_guests"], rec["seed"], rules=rec["variant"] != "plain",
                                 maintenance=rec["variant"] == "maintenance")
        p = build_problem(cluster_from_dict(model), settings).with_budget(None)
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
        assert cpsat["balancing_moves"] <= cpsat["budget"]
        assert cpsat["info"]["status"] in ("optimal", "feasible")
        assert cpsat["spread"] == pytest.approx(cpsat["info"]["reported_spread"], abs=1e-3)
        assert cpsat["bound"] is not None and cpsat["bound"] <= cpsat["spread"] + 0.02
        assert cpsat["gap"] == pytest.approx(max(0.0, cpsat["spread"] - cpsat["bound"]), abs=1e-3)
        assert cpsat["spread"] <= rec["spread_before"] + 1e-6
        if greedy["violations"] == 0:
            assert cpsat["spread"] <= greedy["spread"] + bench_run.SPREAD_TOLERANCE
        assert greedy["bound"] is None and greedy["capacity_safe_order"] in (True, False)


def test_checks_are_reported_with_verdicts(quick_run):
    _, doc = quick_run
    by_name = {c["check"]: c for c in doc["checks"]}
    assert set(by_name) == {"a", "b1", "b2", "c", "d"}
    assert by_name["a"]["passed"] is True  # cpsat is never worse than greedy at greedy's budget
    assert by_name["b2"]["passed"] is None and by_name["c"]["passed"] is None  # no ProxLB, no solver: not judged
    assert all(c["passed"] in (True, False, None) and c["summary"] for c in doc["checks"])


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
