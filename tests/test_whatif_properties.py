"""Capacity what-if against brute force on tiny random clusters (≤ 4 nodes, ≤ 8 guests, rules included):
N+1 (fits, and the fewest guests left without a home), how many new guests of a shape fit with their rules,
and the rolling maintenance order (every step valid; the exhaustive order is the best on its simulation).

The brute force enumerates placements and asks only the checker (check.violations, the spec) about each;
the engine under test is the greedy + counting proofs + CP-SAT pipeline of whatif.py and rolling.py.
"""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

from proxlb_opt import check, whatif
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InfeasibleError, InputError
from proxlb_opt.planner import limits
from proxlb_opt.plan import replay
from proxlb_opt.problem import build_problem
from proxlb_opt.rolling import _State, _simulate_step, rolling
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.planner import time_model
from tests.builders import fast
from tests.strategies import build, cluster_dicts

TINY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.slow


def _base(data, **overrides):
    try:
        return build_problem(build(data), fast(**overrides))
    except InfeasibleError:
        return None


# ----------------------------------------------------------------------------- N+1


def _fewest_homeless(base, failed: int, ha_only: bool) -> int:
    """Brute force: the fewest restarted guests without a home over every assignment of them to the surviving
    nodes, each judged by the checker (the scenario without the homeless ones, for partial placements)."""
    scenario = whatif.failure_scenario(base, (failed,), ha_only)
    movers = [int(g) for g in scenario.movers]
    survivors = [int(n) for n in np.flatnonzero(scenario.problem.rules.eligible)]
    vmid = scenario.problem.cluster.guest_vmid
    for size in range(len(movers) + 1):
        for homeless in itertools.combinations(movers, size):
            if homeless:
                smaller = whatif.failure_scenario(base, (failed,), ha_only,
                                                  also_keep_out=frozenset(int(vmid[g]) for g in homeless))
                keep = ~np.isin(vmid, [vmid[g] for g in homeless])
                problem, rest = smaller.problem, [g for g in movers if g not in homeless]
                index = {int(v): i for i, v in enumerate(problem.cluster.guest_vmid)}
                rest_small = [index[int(vmid[g])] for g in rest]
                start = scenario.problem.current[keep]
            else:
                problem, rest_small, start = scenario.problem, movers, scenario.problem.current
            for targets in itertools.product(survivors, repeat=len(rest_small)):
                placement = np.array(start, dtype=np.int64)
                placement[rest_small] = targets
                if not check.violations(problem, placement):
                    return size
    return len(movers)


#: Roomy clusters (mostly "fits") and tight ones (small nodes: guests left without a home, CP-SAT needed).
CLUSTERS = st.one_of(cluster_dicts(max_nodes=4, max_guests=8),
                     cluster_dicts(max_nodes=4, max_guests=8, node_memory_gib=(8, 12, 16)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CLUSTERS, ha_only=st.booleans())
def test_n_plus_1_against_brute_force(data, ha_only):
    base = _base(data)
    assume(base is not None and base.eligible_nodes.size >= 2)
    result = whatif.n_plus_k(base.cluster, base.settings, 1, ha_only, Deadline(30))
    assert result.complete
    for f in result.failures:
        failed = base.cluster.node_names.index(f.nodes[0])
        fewest = _fewest_homeless(base, failed, ha_only)
        assert f.proven, f
        assert f.fits == (fewest == 0)
        assert len(f.unplaced) == fewest, (f, fewest)
        assert f.unplaced_lower_bound <= fewest
        event(f"fits={f.fits} method={f.method}")


# ----------------------------------------------------------------------------- room


def _most_copies(base, shape, tags, cap: int = 12) -> int:
    """Brute force: the most identical new guests over every distribution of them over the nodes (copies are
    identical, so counts per node are all that matter), each judged by the checker."""
    eligible = [base.cluster.node_names[int(n)] for n in base.eligible_nodes]
    best = 0
    for m in range(1, cap + 1):
        found = False
        for split in itertools.combinations_with_replacement(eligible, m):
            scenario = whatif.new_guest_scenario(base, [(shape, m)], tags, nodes=list(split))
            if not check.violations(scenario.problem, scenario.problem.current):
                found = True
                break
        if not found:
            return best
        best = m
    return best


TAG_CHOICES = st.sampled_from([(), ("plb_anti_affinity_x",), ("plb_anti_affinity_new",), ("plb_affinity_a",),
                               ("plb_pin_n0",), ("plb_pin_n1", "plb_anti_affinity_new")])


@TINY
@given(data=CLUSTERS, cores=st.sampled_from([1, 2]),
       memory=st.sampled_from(["6G", "8G", "12G"]), tags=TAG_CHOICES)
def test_room_against_brute_force(data, cores, memory, tags):
    base = _base(data)
    assume(base is not None and base.eligible_nodes.size >= 1)
    shape = whatif.parse_shape(f"{cores}c{memory}")
    try:
        result = whatif.room(base.cluster, base.settings, shape, tags, deadline=Deadline(20))
    except InputError:
        return  # a pin to a node the random cluster does not have
    assume(result.total < 12)
    assert result.exact
    assert result.total == _most_copies(base, shape, tags)
    event(f"method={result.method} total={'0' if not result.total else '>0'}")
    assert result.lower_bound <= result.total <= result.upper_bound


# ----------------------------------------------------------------------------- rolling


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CLUSTERS)
def test_rolling_order_is_valid_and_the_search_is_exhaustive(data):
    base = _base(data, max_migrations=0)
    assume(base is not None and base.eligible_nodes.size >= 2)
    try:
        r = rolling(base.cluster, base.settings, deadline=Deadline(30))
    except InfeasibleError:
        return
    eligible = [base.cluster.node_names[int(n)] for n in base.eligible_nodes]
    assert sorted(r.nodes) == sorted(eligible)
    state = base.cluster
    for step in r.steps:
        if step.result is None:
            assert step.problem  # named
            break
        res = step.result
        assert np.array_equal(res.problem.current, state.guest_node)  # each step starts where the last ended
        assert not check.violations(res.problem, res.placement)
        assert not replay(res.problem, res.plan, limits(base.settings))
        n = state.node_names.index(step.node)
        stays = set(step.stays)
        left = [int(state.guest_vmid[g]) for g in np.flatnonzero(res.placement == n) if res.problem.rules.movable[g]]
        assert not left and all(s.target != n for s in res.plan.steps)
        assert set(int(state.guest_vmid[g]) for g in np.flatnonzero(res.placement == n)) >= stays
        from proxlb_opt.cluster import with_placement

        state = with_placement(res.problem.cluster, res.placement)
    event(f"complete={r.complete} order={r.order_method}")
    if r.complete:
        assert r.migrations >= r.lower_bound
    if r.order_method == "exhaustive":
        # No order does better on the simulation the search used.
        nodes = [base.cluster.node_names.index(n) for n in r.nodes]
        outside = base.rules.eligible.copy()
        outside[nodes] = False
        times = time_model(base.settings)

        def simulated(order):
            st_, done = _State(Occupancy(base), 0, 0.0, 0), set()
            for n in order:
                step = _simulate_step(base, st_, n, done, outside, times)
                if step is None:
                    return None
                st_, done = step[0], done | {n}
            return st_.moves

        costs = [c for c in (simulated(p) for p in itertools.permutations(nodes)) if c is not None]
        if costs:
            assert r.simulated_migrations == min(costs)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cluster_dicts(max_nodes=4, max_guests=6, node_memory_gib=(16, 32)), memory=st.sampled_from(["4G", "8G"]),
       tags=st.sampled_from([(), ("plb_anti_affinity_new",)]))
def test_room_keeping_n_plus_1_keeps_every_failure_as_good(data, memory, tags):
    base = _base(data)
    assume(base is not None and base.eligible_nodes.size >= 2)
    shape = whatif.parse_shape(f"1c{memory}")
    plain = whatif.room(base.cluster, base.settings, shape, tags, deadline=Deadline(20))
    kept = whatif.room(base.cluster, base.settings, shape, tags, keep_n_plus_1=True, deadline=Deadline(30))
    assert kept.total <= plain.total
    event(f"exact={kept.exact} fewer={kept.total < plain.total}")
    today = {f.nodes: f for f in whatif.n_plus_k(base.cluster, base.settings, 1, deadline=Deadline(20)).failures}
    nodes = [n for n, count in kept.per_node.items() for _ in range(count)]
    after = whatif.new_guest_scenario(base, [(shape, kept.total)], tags, nodes=nodes).problem.cluster
    for f in whatif.n_plus_k(after, base.settings, 1, deadline=Deadline(20)).failures:
        before = today[f.nodes]
        if before.proven:
            assert f.proven and len(f.unplaced) <= len(before.unplaced), (f, before)
