import numpy as np

from tests.builders import cluster, guest, node
from tests.cpsat.conftest import moved


def _skewed():
    return cluster([node("a"), node("b"), node("c")], [guest(i, "a", "4G") for i in range(1, 13)])


def test_budget_bounds_balancing_moves(plan):
    for budget in (0, 1, 3):
        result = plan(_skewed(), max_migrations=budget)
        assert len(moved(result)) == budget


def test_more_budget_never_hurts(plan):
    spreads = [plan(_skewed(), max_migrations=b).spread_after for b in (0, 2, 4, 8)]
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] < spreads[0]


def test_prefers_fewer_gib_moved_at_equal_spread(plan):
    # One 8G guest or two 4G guests give the same spread; both cost about the same, but 1 + 8 GiB < 2 × (1 + 4).
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G"), guest(2, "a", "4G"), guest(3, "a", "4G")])
    assert moved(plan(c)) == {1}


def test_balanced_cluster_has_nothing_to_do(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G"), guest(2, "b", "8G")])
    result = plan(c)
    assert result.status == "balanced" and result.plan.steps == ()


def test_stopped_guests_do_not_count_in_used_mode(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G", status="stopped"), guest(2, "b", "1G")])
    result = plan(c, balanciness=5)
    assert np.array_equal(result.placement, c.guest_node) or result.spread_after <= result.spread_before
