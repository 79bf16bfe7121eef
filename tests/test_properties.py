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
