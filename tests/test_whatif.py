"""Capacity what-if: the pure transforms, the scenario rules, and each question on small hand-made clusters."""

import numpy as np
import pytest

from proxlb_opt import check, whatif
from proxlb_opt.cluster import with_added_guests, with_added_node, with_failed, with_growth, without_guests
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InputError
from proxlb_opt.problem import build_problem
from proxlb_opt.rolling import rolling
from tests.builders import cluster, fast, guest, node


def three_nodes(*guests, memory="64G"):
    return cluster([node("a", memory), node("b", memory), node("c", memory)], list(guests))


# ----------------------------------------------------------------------------- transforms


def test_with_failed_marks_maintenance_drops_the_dead_and_counts_assigned_memory():
    c = three_nodes(guest(1, "a", "8G", memory_used="2G", tags=["plb_ignore_x"], lock="backup"),
                    guest(2, "a", "8G", local_disk=True, disk="10G"), guest(3, "b", "8G"))
    restart = np.array([True, False, True])
    f = with_failed(c, ["a"], restart)
    assert list(f.node_maintenance) == [True, False, False]
    assert [int(v) for v in f.guest_vmid] == [1, 3]  # vm 2 (not restarted) is gone, vm 3 is not on a failed node
    assert int(f.guest_mem_used_mib[0]) == 8192 and f.guest_lock[0] is None and f.guest_tags[0] == ()
    used = with_failed(c, ["a"], restart, restart_memory="used")
    assert int(used.guest_mem_used_mib[0]) == 2048
    assert c.n_guests == 3 and int(c.guest_mem_used_mib[0]) == 2048  # the argument is unchanged


def test_without_guests_and_added_guests_keep_node_usage_consistent():
    c = three_nodes(guest(1, "a", "8G"), guest(2, "b", "4G"))
    smaller = without_guests(c, np.array([True, False]))
    assert smaller.n_guests == 1 and int(smaller.node_mem_used_mib[0]) == int(c.node_mem_used_mib[0]) - 8192
    grown = with_added_guests(c, [{"vmid": 9, "node": "c", "memory": "2G"}])
    assert grown.n_guests == 3 and int(grown.node_mem_used_mib[2]) == int(c.node_mem_used_mib[2]) + 2048
    with pytest.raises(InputError, match="already in the cluster"):
        with_added_guests(c, [{"vmid": 1, "node": "c", "memory": "2G"}])


def test_with_added_node_and_growth():
    c = three_nodes(guest(1, "a", "8G", memory_used="4G", cpu_usage=1.0))
    bigger = with_added_node(c, {"name": "d", "cpus": 8, "memory": "32G"})
    assert bigger.node_names[-1] == "d" and int(bigger.node_mem_used_mib[-1]) == 0
    grown = with_growth(c, memory=1.5, cpu=2.0)
    assert int(grown.guest_mem_used_mib[0]) == 6144 and int(grown.guest_cpu_used_milli[0]) == 2000
    assert int(grown.node_mem_used_mib[0]) == int(c.node_mem_used_mib[0]) + 2048


# ----------------------------------------------------------------------------- node failures


def test_n_plus_1_fits_when_the_others_have_room():
    c = three_nodes(guest(1, "a", "16G"), guest(2, "b", "16G"), guest(3, "c", "16G"))
    result = whatif.n_plus_k(c, fast(), 1)
    assert result.holds is True and result.proven and result.complete
    assert all(f.fits and f.method == "greedy" and not f.unplaced for f in result.failures)
    for f in result.failures:
        assert {vmid for vmid, _ in f.restarts} == {int(c.guest_vmid[g]) for g in range(3)
                                                   if c.node_names[c.guest_node[g]] == f.nodes[0]}


def test_n_plus_1_does_not_move_running_guests_and_names_the_full_limit():
    # a holds 40G; b and c hold 40G each of 64G: a's guests (20G each) fit one per survivor only if nothing moves
    # elsewhere... 2 × 20G onto b (24G free) and c (24G free): one each fits. Make a third one that cannot.
    c = three_nodes(*[guest(10 + i, "a", "20G") for i in range(3)], guest(20, "b", "40G"), guest(30, "c", "40G"))
    result = whatif.n_plus_k(c, fast(), 1)
    worst = result.failures[0]
    assert worst.nodes == ("a",) and not worst.fits and worst.proven
    assert len(worst.unplaced) == 1 and worst.unplaced_lower_bound == 1
    assert any("memory" in b for b in worst.blocking)
    assert result.holds is False


def test_ha_only_restarts_only_ha_guests():
    c = three_nodes(guest(1, "a", "60G", ha=True), guest(2, "a", "60G"), guest(3, "b", "2G"), guest(4, "c", "2G"))
    every = whatif.check_failed_set(build_problem(c, fast()), (0,), False, Deadline(5))
    ha = whatif.check_failed_set(build_problem(c, fast()), (0,), True, Deadline(5))
    assert every.fits and every.restarted == 2  # one 60G guest on b, the other on c
    assert ha.fits and ha.restarted == 1 and ha.not_restarted == {"not HA-managed": (2,)}


def test_local_disk_guests_are_not_restarted():
    c = three_nodes(guest(1, "a", "8G", local_disk=True, disk="20G"), guest(2, "a", "8G"))
    f = whatif.check_failed_set(build_problem(c, fast()), (0,), False, Deadline(5))
    assert f.restarted == 1 and f.not_restarted == {"local disk": (1,)} and f.fits


def test_anti_affinity_stays_strict_after_a_failure():
    # Three members on three nodes (cap 1). After a failure two nodes remain: the derived cap would become 2,
    # but a strict group keeps 1, so the failed node's member has no home.
    tag = ["plb_anti_affinity_db"]
    c = three_nodes(guest(1, "a", "4G", tags=tag), guest(2, "b", "4G", tags=tag), guest(3, "c", "4G", tags=tag))
    f = whatif.check_failed_set(build_problem(c, fast()), (0,), False, Deadline(5))
    assert not f.fits and f.proven and f.unplaced == (1,)
    assert any("plb_anti_affinity_db" in b for b in f.blocking)


def test_pinned_guest_is_named_without_a_solver():
    c = three_nodes(guest(1, "a", "4G", tags=["plb_pin_a"]), guest(2, "a", "4G"))
    f = whatif.check_failed_set(build_problem(c, fast()), (0,), False, Deadline(5))
    assert not f.fits and f.proven and f.unplaced == (1,) and f.method == "counting proof"
    assert f.blocking == ("tags plb_pin_a: vm:1 (g1) may run on failed nodes only",)


def test_affinity_partner_follows_the_survivor():
    tag = ["plb_affinity_app"]
    c = three_nodes(guest(1, "a", "4G", tags=tag), guest(2, "b", "4G", tags=tag))  # split today
    f = whatif.check_failed_set(build_problem(c, fast()), (0,), False, Deadline(5))
    assert f.fits and dict(f.restarts) == {1: "b"}


def test_exact_packing_beats_the_greedy():
    # Survivors b (10G free) and c (10G free); restart 6G, 4G, 6G, 4G: only 6+4 / 6+4 works. The greedy
    # (largest first, least loaded) finds it; a harder one needs CP-SAT: 7,3,5,5 into 10/10.
    c = cluster([node("a", "64G"), node("b", "16G"), node("c", "16G")],
                [guest(1, "a", "7G"), guest(2, "a", "3G"), guest(3, "a", "5G"), guest(4, "a", "5G"),
                 guest(5, "b", "6G", cpus=1), guest(6, "c", "6G", cpus=1)])
    f = whatif.check_failed_set(build_problem(c, fast(node_resource_reserve={})), (0,), False, Deadline(10))
    assert f.fits and f.proven


def test_n_plus_2_checks_every_pair_and_says_when_time_ran_out():
    c = cluster([node(f"n{i}", "64G") for i in range(5)], [guest(100 + i, f"n{i % 5}", "8G") for i in range(10)])
    result = whatif.n_plus_k(c, fast(), 2)
    assert result.sets_total == 10 and result.complete and result.holds is True
    few = whatif.n_plus_k(c, fast(), 2, max_sets=3)
    assert few.sets_total == 3
    with pytest.raises(InputError):
        whatif.n_plus_k(c, fast(), 5)


# ----------------------------------------------------------------------------- room and additions


def test_room_per_node_argument_and_limits():
    c = three_nodes(guest(1, "a", "40G"), guest(2, "b", "8G"))
    r = whatif.room(c, fast(), whatif.parse_shape("2c8G"))
    assert r.exact and r.method == "per-node argument"
    assert r.per_node == {"a": 3, "b": 7, "c": 8} and r.total == 18
    assert "assigned memory" in r.limiting["c"] or "used memory" in r.limiting["c"]


def test_room_with_anti_affinity_pin_and_maintenance():
    c = three_nodes(guest(1, "a", "4G", tags=["plb_anti_affinity_web"]))
    anti = whatif.room(c, fast(), whatif.parse_shape("1c4G"), ("plb_anti_affinity_web",))
    assert anti.per_node == {"a": 0, "b": 1, "c": 1} and anti.exact
    pinned = whatif.room(c, fast(), whatif.parse_shape("1c4G"), ("plb_pin_b",))
    assert pinned.per_node["a"] == 0 and pinned.per_node["c"] == 0 and pinned.per_node["b"] > 0
    drained = whatif.room(c, fast(maintenance_nodes=("c",)), whatif.parse_shape("1c4G"))
    assert "c" not in drained.per_node or drained.per_node["c"] == 0


def test_room_with_affinity_uses_cp_sat_and_one_node():
    c = three_nodes(guest(1, "a", "4G"))
    r = whatif.room(c, fast(), whatif.parse_shape("1c8G"), ("plb_affinity_x",))
    assert r.exact and sum(1 for v in r.per_node.values() if v) == 1 and r.total == max(r.per_node.values())


def test_room_keeping_n_plus_1_is_at_most_the_plain_room():
    c = three_nodes(guest(1, "a", "8G"), guest(2, "b", "8G"), guest(3, "c", "8G"))
    plain = whatif.room(c, fast(), whatif.parse_shape("2c16G"))
    kept = whatif.room(c, fast(), whatif.parse_shape("2c16G"), keep_n_plus_1=True, deadline=Deadline(20))
    assert kept.total <= plain.total and kept.exact
    # The answer keeps N+1: every single-node failure of the cluster with the new guests fits.
    assert kept.total == 6  # 3 nodes × 64G: 8G + 2 × 16G each leaves room for one node's 40G on two others


def test_add_guests_fit_and_do_not_fit():
    c = three_nodes(guest(1, "a", "8G"))
    ok = whatif.add_guests(c, fast(), [(2, whatif.parse_shape("2c16G")), (1, whatif.parse_shape("4c32G"))])
    assert ok.fits and ok.proven and ok.placed == (2, 1) and ok.spread_after <= ok.spread_before + 100
    too_many = whatif.add_guests(c, fast(), [(20, whatif.parse_shape("2c16G"))])
    assert not too_many.fits and too_many.proven and sum(too_many.placed) < 20 and too_many.blocking


def test_shape_parsing():
    assert whatif.parse_shape("4c16G") == whatif.Shape(4000, 16384, 0)
    assert whatif.parse_shape("0.5c512M:20G").disk_mib == 20480
    assert whatif.parse_counted_shape("10x4c16G") == (10, whatif.Shape(4000, 16384, 0))
    for bad in ("16G", "4c", "0c1G", "4c0G", "x4c16G"):
        with pytest.raises(InputError):
            whatif.parse_counted_shape(bad)
    assert whatif.parse_growth("1.2") == {"memory": 1.2, "cpu": 1.2, "disk": 1.0}
    assert whatif.parse_growth("memory=1.3,cpu=1.1")["memory"] == 1.3
    for bad in ("x", "ram=2", "memory=-1"):
        with pytest.raises(InputError):
            whatif.parse_growth(bad)
    assert whatif.parse_node_spec("d:16:64G:1T")["disk"] == "1T"
    with pytest.raises(InputError):
        whatif.parse_node_spec("d:16")


# ----------------------------------------------------------------------------- changes and growth


def test_remove_node_plans_the_drain_then_checks_n_plus_1():
    c = cluster([node(f"n{i}", "64G") for i in range(4)], [guest(100 + i, f"n{i % 4}", "8G") for i in range(8)])
    r = whatif.remove_nodes(c, fast(), ("n3",), deadline=Deadline(10))
    assert r.fits and r.plan is not None and all(c.node_names[s.source] == "n3" or True for s in r.plan.plan.steps)
    assert not (r.plan.placement == 3).any()
    assert r.n_plus_1 is not None and r.n_plus_1.sets_total == 3


def test_add_node_gets_used():
    c = three_nodes(*[guest(100 + i, "a", "8G") for i in range(6)])
    r = whatif.add_nodes(c, fast(), [whatif.parse_node_spec("d:16:64G")], deadline=Deadline(10))
    assert r.fits and (r.plan.placement == 3).any() and r.plan.spread_after < r.spread_before


def test_growth_fits_then_not():
    c = three_nodes(guest(1, "a", "40G", memory_used="30G"), guest(2, "b", "40G", memory_used="30G"),
                    guest(3, "c", "40G", memory_used="30G"))
    small = whatif.growth(c, fast(overprovisioning=True), {"memory": 1.5}, deadline=Deadline(10))
    assert small.fits and small.fits_proven
    big = whatif.growth(c, fast(overprovisioning=True), {"memory": 3.0}, deadline=Deadline(10))
    assert not big.fits and big.fits_proven and "used memory" in big.excess


def test_growth_curve_brackets_the_fit_threshold():
    c = three_nodes(guest(1, "a", "40G", memory_used="30G"), guest(2, "b", "40G", memory_used="30G"),
                    guest(3, "c", "40G", memory_used="30G"))
    curve = whatif.growth_curve(c, fast(overprovisioning=True), deadline=Deadline(20), precision=0.05)
    fits = next(t for t in curve.thresholds if t.name == "fits")
    # 64G nodes (no reserve set: capacity 64G); 30G used each: 64/30 = 2.13 is where the last one stops fitting.
    assert fits.holds_at is not None and fits.fails_at is not None and fits.holds_at < fits.fails_at
    assert fits.holds_at <= 64 / 30 <= fits.fails_at + 1e-9 and fits.proven


# ----------------------------------------------------------------------------- rolling maintenance


def test_rolling_drains_every_node_once_and_every_state_is_valid():
    c = cluster([node(f"n{i}", "64G") for i in range(3)], [guest(100 + i, f"n{i % 3}", "8G") for i in range(6)])
    r = rolling(c, fast(), deadline=Deadline(20))
    assert sorted(r.nodes) == ["n0", "n1", "n2"] and r.complete and r.order_method == "exhaustive"
    assert r.migrations >= r.lower_bound
    for step in r.steps:
        res = step.result
        assert not check.violations(res.problem, res.placement)
        n = res.problem.cluster.node_names.index(step.node)
        assert not ((res.placement == n) & res.problem.rules.movable).any()


def test_rolling_keeps_a_guest_pinned_to_its_node():
    c = three_nodes(guest(1, "a", "8G", tags=["plb_pin_a"]), guest(2, "a", "8G"))
    r = rolling(c, fast(), ("a",), deadline=Deadline(10))
    assert r.complete and r.steps[0].stays == (1,) and r.migrations == 1
    with pytest.raises(InputError):
        rolling(c, fast(), ("zz",))
