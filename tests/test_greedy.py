import numpy as np

from proxlb_opt import check
from proxlb_opt.greedy import greedy_placement
from proxlb_opt.planner import make_plan, prepare
from tests.builders import cluster, fast, guest, node


def test_greedy_stops_within_balanciness():
    c = cluster([node("a"), node("b")], [guest(i, "a", "4G") for i in range(1, 9)])
    s = fast(balanciness=10)
    cl, rules, loads = prepare(c, s)
    result = greedy_placement(cl, rules, loads, s)
    assert result.balancing_moves > 0
    assert check.spread(cl, loads, rules, result.placement) <= 10 + 100 * 4 / 64


def test_greedy_respects_budget():
    c = cluster([node("a"), node("b"), node("c")], [guest(i, "a", "2G") for i in range(1, 12)])
    s = fast()
    cl, rules, loads = prepare(c, s)
    assert greedy_placement(cl, rules, loads, s, max_migrations=2).balancing_moves == 2


def test_greedy_drains_maintenance_without_capacity_check():
    # ProxLB sends maintenance guests to the lowest node even when it overflows: the checker flags it.
    c = cluster([node("a", "64G"), node("b", "8G")], [guest(1, "a", "6G"), guest(2, "a", "6G")])
    s = fast(maintenance_nodes=("a",))
    result = make_plan(c, s, "greedy")
    assert result.status == "greedy" and any(v.rule == "capacity" for v in result.violations)
    assert (result.placement == 1).all()


def test_greedy_smallest_groups_first_and_ignore():
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "16G", tags=["plb_affinity_big"]), guest(2, "a", "16G", tags=["plb_affinity_big"]),
                 guest(3, "a", "2G"), guest(4, "a", "1G", tags=["plb_ignore_x"])])
    s = fast()
    cl, rules, loads = prepare(c, s)
    result = greedy_placement(cl, rules, loads, s, max_migrations=1)
    assert np.flatnonzero(result.placement != cl.guest_node).tolist() == [2]  # the single 2G guest first
