"""Sequencing: waves, double occupancy, swaps with parking, blocked swaps, limits, time model, replay."""

import numpy as np
import pytest

from proxlb_opt.errors import UnsafePlanError
from proxlb_opt.plan import Limits, Step, TimeModel, diff, replay, sequence
from proxlb_opt.planner import make_plan
from tests.builders import cluster, fast, guest, node, problem

TM = TimeModel()


def _swap_cluster(third_node_memory: str):
    return cluster([node("a", "32G"), node("b", "32G"), node("c", third_node_memory)],
                   [guest(1, "a", "28G"), guest(2, "b", "28G")])


def _swap_steps(c, target):
    p = problem(c, fast())
    return p, diff(p, np.array(target), TM)


def test_swap_of_full_nodes_uses_a_parking_hop():
    p, steps = _swap_steps(_swap_cluster("32G"), [1, 0])
    cl = p.cluster
    plan = sequence(p, steps, Limits())
    assert plan.parking_hops == 1
    hops = [(s.guest, cl.node_names[s.source], cl.node_names[s.target], s.hop) for s in plan.steps]
    assert hops[0][1:] == ("a", "c", 1) or hops[0][1:] == ("b", "c", 1)
    assert all(s.via == 2 for s in plan.steps if s.hop)
    assert plan.final_placement.tolist() == [1, 0]
    assert replay(p, plan, Limits()) == []


def test_swap_without_room_is_reported_blocked_with_guests_named():
    p, steps = _swap_steps(_swap_cluster("8G"), [1, 0])
    with pytest.raises(UnsafePlanError) as err:
        sequence(p, steps, Limits())
    message = str(err.value)
    assert "vm:1 (g1) cannot enter b until vm:2 (g2) leaves" in message
    assert "vm:2 (g2) cannot enter a until vm:1 (g1) leaves" in message
    assert len(err.value.blockers) == 2


def test_live_migration_holds_memory_on_both_nodes():
    # b can take g1 (20G) only after g2 (20G) has left: two waves, never one.
    c = cluster([node("a", "32G"), node("b", "32G"), node("c", "64G")],
                [guest(1, "a", "20G"), guest(2, "b", "20G"), guest(3, "c", "1G")])
    p = problem(c, fast())
    steps = diff(p, np.array([1, 2, 2]), TM)
    plan = sequence(p, steps, Limits(parallel=4, incoming_per_node=2, outgoing_per_node=2))
    wave_of = {s.guest: s.wave for s in plan.steps}
    assert wave_of[0] > wave_of[1]


def test_replay_catches_overlap_and_limits():
    c = cluster([node("a", "32G"), node("b", "32G")], [guest(1, "a", "20G"), guest(2, "b", "20G")])
    p = problem(c, fast())
    from proxlb_opt.plan import Plan
    bad = Plan(steps=(Step(0, 0, 1, "balance", 10.0, wave=0), Step(1, 1, 0, "balance", 10.0, wave=0)),
               final_placement=np.array([1, 0]))
    problems = replay(p, bad, Limits(parallel=2, incoming_per_node=1, outgoing_per_node=1))
    assert any("used memory" in x for x in problems)
    assert any("exceed the parallel limit" in x for x in replay(p, bad, Limits(parallel=1)))


def test_anti_affinity_partners_never_meet_mid_plan():
    # x1 on a must go to b where x2 still is; x2 goes to c. x1 may only start once x2 has left b.
    c = cluster([node("a"), node("b"), node("c")],
                [guest(1, "a", "4G", tags=["plb_anti_affinity_x"]), guest(2, "b", "4G", tags=["plb_anti_affinity_x"]),
                 guest(3, "c", "4G")])
    p = problem(c, fast())
    steps = diff(p, np.array([1, 2, 2]), TM)
    plan = sequence(p, steps, Limits(parallel=4, incoming_per_node=4, outgoing_per_node=4), exact_time_limit=1.0)
    wave_of = {s.guest: s.wave for s in plan.steps}
    assert wave_of[0] > wave_of[1]
    assert replay(p, plan, Limits(parallel=4, incoming_per_node=4, outgoing_per_node=4)) == []


def test_parallel_limits_and_wave_timing():
    c = cluster([node(f"n{i}", "64G") for i in range(4)], [guest(i, "n0", "4G") for i in range(1, 9)])
    s = fast(parallel=True, parallel_jobs=3, max_incoming_per_node=1, max_outgoing_per_node=3)
    result = make_plan(c, s)
    by_wave = {}
    for st in result.plan.steps:
        by_wave.setdefault(st.wave, []).append(st)
    for wave, steps in by_wave.items():
        assert len(steps) <= 3 and len({x.target for x in steps}) == len(steps)
        assert len({x.start_s for x in steps}) == 1
    assert result.plan.predicted_seconds == pytest.approx(
        sum(max(x.seconds for x in steps) for steps in by_wave.values()))


def test_time_model():
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "8G", memory_used="4G"), guest(2, "a", "4G", type="ct"),
                 guest(3, "a", "4G", status="stopped", local_disk=True, disk="10G", disk_used="10G")])
    tm = TimeModel(bandwidth_mib_s=1024, dirty_rate_factor=1.5)
    assert tm.seconds(c, 0) == pytest.approx(5 + 4 * 1.5)
    assert tm.seconds(c, 1) == pytest.approx(15) and tm.downtime(c, 1) == pytest.approx(15)
    assert tm.seconds(c, 2) == pytest.approx(2 + 10) and tm.downtime(c, 0) == 0


def test_exact_waves_not_longer_than_heuristic():
    c = cluster([node(f"n{i}", "64G") for i in range(4)],
                [guest(i, "n0", f"{2 + (i % 4) * 4}G") for i in range(1, 10)])
    s = fast(parallel=True, parallel_jobs=2, max_incoming_per_node=1, max_outgoing_per_node=2, max_migrations=None)
    result = make_plan(c, s)
    heuristic = sequence(result.problem, list(diff(result.problem, result.placement, TM)),
                         Limits(parallel=2, incoming_per_node=1, outgoing_per_node=2))
    assert result.plan.predicted_seconds <= heuristic.predicted_seconds + 1e-9


def test_no_ping_pong_between_runs():
    """Planning the cluster a plan produced gives "balanced, nothing to do" (no guest moves back and forth)."""
    from pathlib import Path

    from proxlb_opt.cluster import load_model, with_placement

    c = load_model(Path(__file__).resolve().parents[1] / "models" / "demo.yaml")
    s = fast(time_limit=5, balanciness=5)
    first = make_plan(c, s)
    assert first.plan.steps and first.spread_after <= 5
    moved = with_placement(first.cluster, first.placement)
    second = make_plan(moved, s)
    assert second.status == "balanced" and second.plan.steps == ()


def test_unorderable_anti_affinity_swap_is_resolved_by_keeping_guests_in_place():
    """Found by the generator: a full anti-affinity group (one member per node) cannot swap members."""
    from benchmarks.generate import generate_cluster
    from proxlb_opt.cluster import cluster_from_dict

    c = cluster_from_dict(generate_cluster(6, 21, 230))
    result = make_plan(c, fast(time_limit=3, balanciness=10))
    assert result.plan.steps and result.spread_after < result.spread_before
    assert replay(result.problem, result.plan, Limits()) == []
