import numpy as np

from proxlb_opt import check
from proxlb_opt.greedy import proxlb_greedy, unit_greedy, unit_greedy_path
from proxlb_opt.planner import make_plan
from proxlb_opt.repair import repair_heuristic
from tests.builders import cluster, fast, guest, node, problem


def test_greedy_stops_within_balanciness():
    c = cluster([node("a"), node("b")], [guest(i, "a", "4G") for i in range(1, 9)])
    p = problem(c, fast(balanciness=10))
    result = proxlb_greedy(p)
    assert result.balancing_moves > 0
    assert check.spread(p, result.placement) <= 10 + 100 * 4 / 64


def test_greedy_respects_budget():
    c = cluster([node("a"), node("b"), node("c")], [guest(i, "a", "2G") for i in range(1, 12)])
    assert proxlb_greedy(problem(c, fast()), max_migrations=2).balancing_moves == 2


def test_greedy_drains_maintenance_without_capacity_check():
    # ProxLB sends maintenance guests to the lowest node even when it overflows: the checker flags it.
    c = cluster([node("a", "64G"), node("b", "8G")], [guest(1, "a", "6G"), guest(2, "a", "6G")])
    result = make_plan(c, fast(maintenance_nodes=("a",)), "greedy")
    assert result.status == "greedy" and any(v.rule == "capacity" for v in result.violations)
    assert (result.placement == 1).all()


def test_greedy_smallest_groups_first_and_ignore():
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "16G", tags=["plb_affinity_big"]), guest(2, "a", "16G", tags=["plb_affinity_big"]),
                 guest(3, "a", "2G"), guest(4, "a", "1G", tags=["plb_ignore_x"])])
    result = proxlb_greedy(problem(c, fast()), max_migrations=1)
    assert np.flatnonzero(result.placement != c.guest_node).tolist() == [2]  # the single 2G guest first


# ----------------------------------------------------------------------------- unit greedy


def _start(p):
    return repair_heuristic(p).placement


def test_unit_greedy_moves_a_whole_affinity_group():
    # The group (2 × 8G) is the best single step from a to b; it moves as one and keeps its rule.
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "8G", tags=["plb_affinity_web"]), guest(2, "a", "8G", tags=["plb_affinity_web"]),
                 guest(3, "a", "16G"), guest(4, "b", "4G")])
    p = problem(c, fast(max_migrations=None))
    placement = unit_greedy(p, _start(p))
    assert not check.violations(p, placement)
    assert placement[0] == placement[1]
    assert check.spread(p, placement) < check.spread(p, c.guest_node)


def test_unit_greedy_keeps_hard_limits_and_anti_affinity():
    # b has the room but holds the anti-affinity partner; c is small: the greedy must not break either rule.
    c = cluster([node("a", "64G"), node("b", "64G"), node("c", "16G")],
                [guest(1, "a", "12G", tags=["plb_anti_affinity_db"]), guest(2, "b", "4G", tags=["plb_anti_affinity_db"]),
                 guest(3, "a", "20G"), guest(4, "a", "20G")])
    p = problem(c, fast(max_migrations=None))
    placement = unit_greedy(p, _start(p))
    assert not check.violations(p, placement)
    assert placement[0] != placement[1]


def test_unit_greedy_respects_the_allowance():
    c = cluster([node("a"), node("b"), node("c")], [guest(i, "a", "2G") for i in range(1, 12)])
    p = problem(c, fast(max_migrations=3))
    placement = unit_greedy(p, _start(p))
    assert check.move_count(p, placement) == 3 and not check.violations(p, placement)


def test_unit_greedy_starts_from_the_repair():
    # A guest pinned to b sits on a: the repair moves it first; the greedy then balances the rest.
    c = cluster([node("a"), node("b"), node("c")], [guest(1, "a", "8G", tags=["plb_pin_b"]), guest(2, "a", "8G"),
                                                    guest(3, "a", "8G")])
    p = problem(c, fast(max_migrations=1)).with_repair(1)
    placement = unit_greedy(p, _start(p))
    assert placement[0] == 1 and not check.violations(p, placement)
    assert check.spread(p, placement) == 0.0


def test_greedy_path_gives_a_valid_plan_at_every_allowance():
    # One unlimited run: cut at any allowance it is a valid placement within it, the spread falls as the
    # allowance grows, and the whole path is the unlimited greedy's answer.
    c = cluster([node(n) for n in "abcd"],
                [guest(i, "a", f"{1 + i % 4}G", tags=["plb_affinity_web"] if i in (1, 2) else []) for i in range(1, 25)])
    p = problem(c, fast(max_migrations=None))
    start = _start(p)
    path = unit_greedy_path(p, start)
    assert len(path.targets) > 3
    assert np.array_equal(path.final, unit_greedy(p, start))
    spreads = []
    for allowance in range(0, max(path.moves) + 2):
        placement = path.within(allowance)
        assert check.move_count(p, placement) <= allowance
        assert not check.violations(p.with_budget(allowance), placement)
        spreads.append(check.spread(p, placement))
    assert all(b <= a + 1e-9 for a, b in zip(spreads, spreads[1:]))
    assert np.array_equal(path.within(10_000), path.final)
    assert np.array_equal(path.within(0), start)
