"""The heuristic layer: repair + descent incumbents, LNS, and the budget relaxation bound."""

import time

import numpy as np

from proxlb_opt import check
from proxlb_opt.cpsat.solve import SolverSettings
from proxlb_opt.planner import prepare
from proxlb_opt.search import budget_bound, large_neighbourhood_search, repair_and_descend, score
from tests.builders import cluster, fast, guest, node


def _skewed(rules=True):
    guests = [guest(i, "a", f"{2 + i % 5}G") for i in range(1, 31)]
    if rules:
        guests[0]["tags"] = ["plb_anti_affinity_x"]
        guests[1]["tags"] = ["plb_anti_affinity_x"]  # both on a: broken today
        guests[2]["tags"] = ["plb_affinity_y"]
        guests.append(guest(99, "b", "2G", tags=["plb_affinity_y"]))  # split group
        guests[3]["tags"] = ["plb_pin_a"]
    return cluster([node(n, "128G") for n in "abcd"], guests)


def test_repair_fixes_broken_rules_and_descent_balances():
    c = _skewed()
    s = fast(max_migrations=10)
    cl, rules, loads = prepare(c, s)
    placement = repair_and_descend(cl, rules, loads, 10, time.perf_counter() + 5)
    assert placement is not None
    assert check.violations(cl, rules, loads, placement, 10) == []
    assert check.spread(cl, loads, rules, placement) < check.spread(cl, loads, rules, cl.guest_node) / 2


def test_descent_respects_budget_exactly():
    c = _skewed(rules=False)
    cl, rules, loads = prepare(c, fast())
    for budget in (0, 1, 5):
        placement = repair_and_descend(cl, rules, loads, budget, time.perf_counter() + 5)
        assert int((placement != cl.guest_node).sum()) <= budget


def test_lns_never_worsens_the_incumbent():
    c = _skewed()
    cl, rules, loads = prepare(c, fast(max_migrations=6))
    start = repair_and_descend(cl, rules, loads, 6, time.perf_counter() + 1)
    best, stats = large_neighbourhood_search(cl, rules, loads, SolverSettings(workers=1, max_migrations=6), start,
                                             time.perf_counter() + 3)
    assert score(cl, rules, loads, best) <= score(cl, rules, loads, start)
    assert check.violations(cl, rules, loads, best, 6) == [] and stats.iterations >= 1


def test_budget_bound_is_a_lower_bound():
    c = _skewed(rules=False)
    s = fast()
    cl, rules, loads = prepare(c, s)
    from proxlb_opt.planner import make_plan
    from dataclasses import replace
    for budget in (0, 2, 4):
        bound = budget_bound(cl, rules, loads, budget)
        achieved = make_plan(c, replace(s, max_migrations=budget, balanciness=0)).spread_after
        assert bound <= achieved + 1e-6
    assert budget_bound(cl, rules, loads, None) == 0.0
    assert budget_bound(cl, rules, loads, 0) > 0  # nothing may move: today's spread is the floor


def test_budget_bound_keeps_the_band_around_the_mean():
    # a holds one 50G guest, b and c fifty 1G guests each, d nothing (100G nodes, mean 37.5 %). With one
    # move, d could reach 50 % by taking the big guest, and a band at 50 % would need no move from b or c;
    # but the load is conserved, so the band must contain 37.5 % and b and c cannot both get down to it.
    small = [guest(1000 + 100 * k + i, node_name, "1G", memory_used="1G") for k, node_name in enumerate("bc") for i in range(50)]
    c = cluster([node(n, "100G") for n in "abcd"], [guest(1, "a", "50G", memory_used="50G"), *small])
    s = fast(max_migrations=1, balanciness=0.0, overprovisioning=True)
    cl, rules, loads = prepare(c, s)
    bound = budget_bound(cl, rules, loads, 1)
    assert bound >= 12.0
    from proxlb_opt.planner import make_plan

    assert bound <= make_plan(c, s).spread_after + 1e-6


def test_budget_bound_counts_incoming_guests_once():
    # a holds a 20G guest and forty 1G guests (60 % of 100G), b and c nothing; two moves. Alone, b and c
    # could each reach 20 % with the one 20G guest; together their incoming guests are distinct, so with
    # two moves they gain at most 21G between them.
    guests = [guest(1, "a", "20G", memory_used="20G")] + [guest(10 + i, "a", "1G", memory_used="1G")
                                                         for i in range(40)]
    c = cluster([node(n, "100G") for n in "abc"], guests)
    s = fast(max_migrations=2, balanciness=0.0, overprovisioning=True)
    cl, rules, loads = prepare(c, s)
    bound = budget_bound(cl, rules, loads, 2)
    assert bound >= 28.0
    from proxlb_opt.planner import make_plan

    assert bound <= make_plan(c, s).spread_after + 1e-6


def test_neighbourhood_search_plan_within_tolerance_of_a_proven_bound_is_optimal(monkeypatch):
    import proxlb_opt.optimizer as optimizer
    from proxlb_opt.planner import make_plan

    monkeypatch.setattr(optimizer, "FULL_MODEL_MAX_VARS", 0)  # force large-neighbourhood search
    c = cluster([node(n, "64G") for n in "ab"], [guest(i, "a", "4G", memory_used="4G") for i in range(1, 9)])
    loose = make_plan(c, fast(max_migrations=None, balanciness=0.0, optimality_tolerance=0.05))
    assert loose.spread_after <= 0.05 and loose.status == "optimal" and not loose.cost_proven
    uneven = cluster([node(n, "64G") for n in "ab"], [guest(1, "a", "5G", memory_used="5G"),
                                                      guest(2, "a", "4G", memory_used="4G")])
    exact = make_plan(uneven, fast(max_migrations=None, balanciness=0.0, optimality_tolerance=0.0))
    assert exact.spread_after > 0 and exact.status == "feasible"  # no proof that 1G apart is the best
