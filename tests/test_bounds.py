"""The band relaxation: a lower bound on the spread any plan within the allowance reaches."""

from dataclasses import replace

from proxlb_opt.bounds import budget_bound, repair_reserved
from proxlb_opt.planner import make_plan
from tests.builders import cluster, fast, guest, node, problem


def _skewed():
    return cluster([node(n, "128G") for n in "abcd"], [guest(i, "a", f"{2 + i % 5}G") for i in range(1, 31)])


def test_budget_bound_is_a_lower_bound():
    c, s = _skewed(), fast()
    for budget in (0, 2, 4):
        bound = budget_bound(problem(c, replace(s, max_migrations=budget)))
        achieved = make_plan(c, replace(s, max_migrations=budget, balanciness=0)).spread_after
        assert bound <= achieved + 1e-6
    assert budget_bound(problem(c, replace(s, max_migrations=None))) == 0.0
    assert budget_bound(problem(c, replace(s, max_migrations=0))) > 0  # nothing may move: today's spread


def test_budget_bound_keeps_the_band_around_the_mean():
    # a holds one 50G guest, b and c fifty 1G guests each, d nothing (100G nodes, mean 37.5 %). With one
    # move, d could reach 50 % by taking the big guest, and a band at 50 % would need no move from b or c;
    # but the load is conserved, so the band must contain 37.5 % and b and c cannot both get down to it.
    small = [guest(1000 + 100 * k + i, node_name, "1G", memory_used="1G") for k, node_name in enumerate("bc")
             for i in range(50)]
    c = cluster([node(n, "100G") for n in "abcd"], [guest(1, "a", "50G", memory_used="50G"), *small])
    s = fast(max_migrations=1, balanciness=0.0, overprovisioning=True)
    bound = budget_bound(problem(c, s))
    assert bound >= 12.0
    assert bound <= make_plan(c, s).spread_after + 1e-6


def test_budget_bound_counts_incoming_guests_once():
    # a holds a 20G guest and forty 1G guests (60 % of 100G), b and c nothing; two moves. Alone, b and c
    # could each reach 20 % with the one 20G guest; together their incoming guests are distinct, so with
    # two moves they gain at most 21G between them.
    guests = [guest(1, "a", "20G", memory_used="20G")] + [guest(10 + i, "a", "1G", memory_used="1G")
                                                         for i in range(40)]
    c = cluster([node(n, "100G") for n in "abc"], guests)
    s = fast(max_migrations=2, balanciness=0.0, overprovisioning=True)
    bound = budget_bound(problem(c, s))
    assert bound >= 28.0
    assert bound <= make_plan(c, s).spread_after + 1e-6


def test_mandatory_guests_use_their_share_of_the_allowance():
    # Two guests must leave a maintenance node; with a repair of 2 moves and budget 0, nothing else may move.
    c = cluster([node(n, "100G") for n in "abc"],
                [guest(1, "a", "10G", memory_used="10G"), guest(2, "a", "10G", memory_used="10G"),
                 guest(3, "b", "40G", memory_used="40G")])
    p = problem(c, fast(max_migrations=0, maintenance_nodes=("a",))).with_repair(2)
    # b at 40 %, c at 0 % before; c can get both small guests (20 %) at best: spread ≥ 20 pp.
    assert budget_bound(p) >= 19.8


def test_repair_moves_are_kept_apart_from_the_balancing_pool():
    # a holds six 10G guests (60 %); an affinity pair is split over b and c (1 % each). The repair joins
    # the pair with one move, and budget 0 leaves no move for a: the spread stays about 60 pp. Counting
    # the repair move as a free optional move (the plain count) would let a shed a guest.
    busy = [guest(i, "a", "10G", memory_used="10G") for i in range(1, 7)]
    pair = [guest(10 + i, n, "1G", memory_used="1G", tags=["plb_affinity_web"]) for i, n in enumerate("bc")]
    c = cluster([node(n, "100G") for n in "abc"], busy + pair)
    s = fast(max_migrations=0, balanciness=0.0)
    result = make_plan(c, s)
    p = result.problem
    assert p.repair_moves == 1
    assert repair_reserved(p).budget == 0
    assert budget_bound(p) >= 57.0
    assert budget_bound(p) <= result.spread_after + 1e-6


def test_neighbourhood_search_plan_within_tolerance_of_a_proven_bound_is_optimal(monkeypatch):
    import proxlb_opt.optimizer as optimizer

    monkeypatch.setattr(optimizer, "FULL_MODEL_MAX_VARS", 0)  # force large-neighbourhood search
    c = cluster([node(n, "64G") for n in "ab"], [guest(i, "a", "4G", memory_used="4G") for i in range(1, 9)])
    loose = make_plan(c, fast(max_migrations=None, balanciness=0.0, optimality_tolerance=0.05))
    assert loose.spread_after <= 0.05 and loose.status == "optimal" and not loose.cost_proven
    uneven = cluster([node(n, "64G") for n in "ab"], [guest(1, "a", "5G", memory_used="5G"),
                                                      guest(2, "a", "4G", memory_used="4G")])
    exact = make_plan(uneven, fast(max_migrations=None, balanciness=0.0, optimality_tolerance=0.0))
    assert exact.spread_after > 0 and exact.status == "feasible"  # no proof that 1G apart is the best
