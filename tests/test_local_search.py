"""Unit-move local search and large-neighbourhood search: valid, within the allowance, monotone in the budget."""

import numpy as np

from proxlb_opt import check
from proxlb_opt.cpsat.lns import large_neighbourhood_search
from proxlb_opt.cpsat.solve import SolverSettings
from proxlb_opt.deadline import Deadline
from proxlb_opt.local_search import improve
from proxlb_opt.repair import repair_heuristic
from tests.builders import cluster, fast, guest, node, problem


def _skewed(rules=True):
    guests = [guest(i, "a", f"{2 + i % 5}G") for i in range(1, 31)]
    if rules:
        guests[0]["tags"] = ["plb_anti_affinity_x"]
        guests[1]["tags"] = ["plb_anti_affinity_x"]
        guests[2]["tags"] = ["plb_affinity_y"]
        guests[4]["tags"] = ["plb_affinity_y"]
        guests[3]["tags"] = ["plb_pin_a"]
    return cluster([node(n, "128G") for n in "abcd"], guests)


def _search(c, budget):
    p = problem(c, fast(max_migrations=budget))
    start = repair_heuristic(p)
    p = p.with_repair(start.moves)
    return p, improve(p, start.placement, Deadline(5.0)).placement


def test_local_search_balances_and_keeps_every_rule():
    p, placement = _search(_skewed(), 10)
    assert check.violations(p, placement) == []
    assert check.spread(p, placement) < check.spread(p, p.current) / 2
    assert placement[2] == placement[4]  # the affinity group moved as one


def test_local_search_respects_the_allowance_exactly():
    for budget in (0, 1, 5):
        p, placement = _search(_skewed(rules=False), budget)
        assert check.move_count(p, placement) <= budget


def test_local_search_spread_never_rises_with_the_budget():
    spreads = [check.spread(*_search(_skewed(), b)) for b in (0, 1, 2, 4, 8, 16, None)]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(spreads, spreads[1:]))


def test_swaps_balance_when_no_single_move_fits():
    # a is full (48G of 48G), b holds 32G: a 16G guest moving to b only swaps the roles (same spread) and
    # nothing fits into a; swapping a 16G guest of a with an 8G guest of b balances them (40G each).
    c = cluster([node("a", "48G"), node("b", "48G")],
                [guest(1, "a", "16G"), guest(2, "a", "16G"), guest(3, "a", "16G"),
                 guest(4, "b", "8G"), guest(5, "b", "8G"), guest(6, "b", "16G")])
    p = problem(c, fast(max_migrations=None))
    placement = improve(p, p.current, Deadline(5.0)).placement
    assert check.violations(p, placement) == []
    assert check.spread(p, placement) < check.spread(p, p.current)


def test_lns_never_worsens_the_incumbent():
    p, start = _search(_skewed(), 6)
    best, stats = large_neighbourhood_search(p, SolverSettings(workers=1), start, Deadline(3.0))
    assert check.score(p, best) <= check.score(p, start)
    assert check.violations(p, best) == [] and stats.iterations >= 1
    assert isinstance(best, np.ndarray)
