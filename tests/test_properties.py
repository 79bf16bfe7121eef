"""Properties over random clusters: every plan passes the checker and replay; cpsat ≤ greedy."""

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from proxlb_opt import check
from proxlb_opt.errors import InfeasibleError, UnsafePlanError
from proxlb_opt.greedy import greedy_placement
from proxlb_opt.plan import replay
from proxlb_opt.planner import limits, make_plan, prepare
from tests.builders import fast
from tests.strategies import build, cluster_dicts

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(data=cluster_dicts(), budget=st.sampled_from([None, 0, 1, 3]), maintenance=st.booleans(),
       parallel=st.sampled_from([1, 2, 4]), per_node=st.sampled_from([1, 2]))
def test_every_plan_passes_checker_and_replay(data, budget, maintenance, parallel, per_node):
    """Replay re-checks capacity (with double occupancy) and anti-affinity at every wave."""
    c = build(data)
    s = fast(max_migrations=budget, time_limit=3.0, maintenance_nodes=("n0",) if maintenance else (),
             parallel=parallel > 1, parallel_jobs=parallel, max_incoming_per_node=per_node,
             max_outgoing_per_node=per_node)
    try:
        result = make_plan(c, s)
    except (InfeasibleError, UnsafePlanError) as exc:
        assert str(exc)  # a named reason, never an empty message
        return
    assert not check.violations(result.cluster, result.rules, result.loads, result.placement, budget)
    assert not replay(result.cluster, result.rules, result.loads, result.plan, limits(s))
    assert np.array_equal(result.plan.final_placement, result.placement)
    if result.status == "balanced":
        assert result.plan.steps == ()


@PROPERTY_SETTINGS
@given(data=cluster_dicts(), budget=st.sampled_from([0, 1, 2, 4]))
def test_cpsat_never_worse_than_greedy_at_equal_budget(data, budget):
    c = build(data)
    s = fast(max_migrations=budget, time_limit=3.0)
    try:
        cluster, rules, loads = prepare(c, s)
        result = make_plan(c, s)
    except (InfeasibleError, UnsafePlanError):
        return
    greedy = greedy_placement(cluster, rules, loads, s, budget).placement
    if check.violations(cluster, rules, loads, greedy, budget):
        return  # greedy broke a rule: no valid comparison (the checker reports it)
    assert result.spread_after <= check.spread(cluster, loads, rules, greedy) + 1e-6


@PROPERTY_SETTINGS
@given(data=cluster_dicts(max_nodes=4, max_guests=10), budget=st.sampled_from([0, 1, 2, 3]))
def test_budget_bound_never_exceeds_the_optimum(data, budget):
    """The band relaxation is a lower bound: CP-SAT's proven optimum (tiny instances) never beats it."""
    from proxlb_opt.search import budget_bound

    c = build(data)
    s = fast(max_migrations=budget, time_limit=5.0, balanciness=0.0)
    try:
        cluster, rules, loads = prepare(c, s)
        result = make_plan(c, s)
    except (InfeasibleError, UnsafePlanError):
        return
    assert budget_bound(cluster, rules, loads, budget) <= result.spread_after + 1e-6


def _grid_spread(cluster, rules, loads, placement):
    """The spread as the CP-SAT model measures it: max percent rounded up, min rounded down, in 0.01 pp."""
    load = check.node_loads(cluster, loads, placement)
    total = 0
    for resource, weight in zip(loads.resources, loads.weights):
        r = loads.resource_index(resource)
        eligible = np.flatnonzero(rules.eligible)
        scaled = check.PERCENT_SCALE * load[eligible, r]
        cap = loads.capacity[eligible, r]
        total += weight * int((-(-scaled // cap)).max() - (scaled // cap).min())
    return total


def _brute_force(cluster, rules, loads, budget):
    """Every valid placement of a tiny cluster as (spread, migration cost, placement, model spread)."""
    import itertools

    found = []
    for combo in itertools.product(range(cluster.n_nodes), repeat=cluster.n_guests):
        placement = np.asarray(combo, dtype=np.int64)
        if check.violations(cluster, rules, loads, placement, budget):
            continue
        moved = placement != np.asarray(cluster.guest_node)
        found.append((check.spread(cluster, loads, rules, placement), int(loads.migration_cost[moved].sum()), placement,
                      _grid_spread(cluster, rules, loads, placement)))
    return found



@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cluster_dicts(max_nodes=3, max_guests=6), budget=st.sampled_from([1, 2, 3]),
       tolerance=st.sampled_from([0.0, 0.05, 2.0]))
def test_lexicographic_solve_against_exhaustive_search(data, budget, tolerance):
    """The two-phase solve, hinted with the costliest placement of best spread: a spread reported optimal
    is within the tolerance (plus the model's 0.01 pp grid) of the best, and a cost reported proven is
    the least of any placement the model measures no wider."""
    from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic

    c = build(data)
    s = fast(max_migrations=budget, balanciness=0.0)
    try:
        cluster, rules, loads = prepare(c, s)
    except InfeasibleError:
        return
    everything = _brute_force(cluster, rules, loads, budget)
    if not everything:
        return
    best_spread = min(entry[0] for entry in everything)
    costliest = max((entry for entry in everything if entry[0] <= best_spread + 1e-9), key=lambda e: e[1])[2]
    result = solve_lexicographic(cluster, rules, loads, SolverSettings(workers=1, max_migrations=budget),
                                 hint=costliest, time_limit=5.0, tolerance_pp=tolerance)
    assert result.placement is not None and not check.violations(cluster, rules, loads, result.placement, budget)
    spread = check.spread(cluster, loads, rules, result.placement)
    if result.status == "optimal":
        assert spread <= best_spread + tolerance + 0.03
    if result.cost_proven:
        # Phase 2 admits every placement whose model spread is at most the one found.
        cost = int(loads.migration_cost[check.moved_mask(cluster, result.placement)].sum())
        found_grid = _grid_spread(cluster, rules, loads, result.placement)
        assert all(cost <= entry[1] for entry in everything if entry[3] <= found_grid)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cluster_dicts(max_nodes=3, max_guests=6), budget=st.sampled_from([1, 2, 3]),
       tolerance=st.sampled_from([0.0, 0.05, 2.0]))
def test_optimal_means_within_tolerance_of_exhaustive_search(data, budget, tolerance):
    """"optimal" is checked against every placement: the spread is within the tolerance of the best one
    (plus the model's 0.01 pp grid), and a proven cost is the least of any placement with a smaller spread."""
    c = build(data)
    s = fast(max_migrations=budget, time_limit=5.0, balanciness=0.0, optimality_tolerance=tolerance)
    try:
        cluster, rules, loads = prepare(c, s)
        result = make_plan(c, s)
    except (InfeasibleError, UnsafePlanError):
        return
    if result.status != "optimal":
        return
    everything = _brute_force(result.cluster, result.rules, result.loads, budget)
    best_spread = min(entry[0] for entry in everything)
    assert result.spread_after <= best_spread + tolerance + 0.03
    if result.cost_proven:
        plan_cost = int(result.loads.migration_cost[check.moved_mask(result.cluster, result.placement)].sum())
        strictly_better = [entry[1] for entry in everything if entry[0] <= result.spread_after - 0.03]
        assert all(plan_cost <= cost for cost in strictly_better)
