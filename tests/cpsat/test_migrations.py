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



def test_idle_guests_are_stopped_diskless_and_free_of_rules():
    from proxlb_opt.cpsat.dominance import idle_guests
    from tests.builders import problem

    c = cluster([node("a"), node("b")], [
        guest(1, "a", "8G", status="stopped"),  # no balanced load: idle
        guest(2, "a", "8G", status="stopped", local_disk=True, disk="32G", disk_used="32G"),  # its disk counts
        guest(3, "a", "8G", status="stopped", tags=["plb_anti_affinity_x"]),  # a group rule may need it
        guest(4, "b", "8G", tags=["plb_anti_affinity_x"]),
        guest(5, "b", "8G"),  # running: its memory counts
    ])
    assert [int(c.guest_vmid[g]) for g in np.flatnonzero(idle_guests(problem(c)))] == [1]


def test_idle_guest_stays_while_its_node_could_take_it_back(plan):
    # Plenty of assigned-memory room everywhere: moving the stopped guest would only cost budget.
    c = cluster([node("a"), node("b")], [guest(1, "a", "8G", status="stopped"), guest(2, "a", "8G"),
                                         guest(3, "a", "4G")])
    assert moved(plan(c, max_migrations=2)) == {3}


def test_idle_guest_may_move_to_free_a_hard_limit(plan):
    # Overprovisioning off: b's assigned memory (40G stopped guest) leaves no room for a 30G guest from a.
    # Sending the stopped guest to c makes room, and it is cheaper than the other 2-move plan of the same
    # spread (c's 20G guest to b, a 30G guest to c). The cut allows it because b could not take it back.
    c = cluster([node("a", "64G"), node("b", "64G"), node("c", "64G")], [
        guest(1, "b", "40G", status="stopped"),
        guest(2, "a", "30G", memory_used="30G"), guest(3, "a", "30G", memory_used="30G"),
        guest(4, "c", "20G", memory_used="20G"),
    ])
    result = plan(c, max_migrations=2, balanciness=0.0)
    assert 1 in moved(result) and len(moved(result)) == 2 and result.spread_after < result.spread_before


def test_cost_is_not_called_proven_when_phase_two_had_no_time():
    from proxlb_opt.cpsat.context import BuildOptions
    from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic
    from tests.builders import fast, problem

    c = cluster([node("a"), node("b")], [guest(i, "a", "4G") for i in range(1, 5)])
    # Under 0.05 s left after phase 1, phase 2 (the cost) never starts; phase 1 alone proves the spread.
    result = solve_lexicographic(problem(c, fast(max_migrations=2)), SolverSettings(workers=1), BuildOptions(),
                                 time_limit=0.04)
    assert result.found and "cost" not in result.proven
