"""Properties over random clusters (rules often broken at the start): every plan passes the checker and
replay; a plan exists whenever a repair does; the spread never rises with the budget; never worse than
either greedy; the feasibility module agrees with the checker; "optimal" holds against brute force."""

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from proxlb_opt import check
from proxlb_opt.bounds import budget_bound
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic, spread_units
from proxlb_opt.deadline import Deadline
from proxlb_opt.errors import InfeasibleError, UnsafePlanError
from proxlb_opt.feasibility import Occupancy
from proxlb_opt.greedy import proxlb_greedy, unit_greedy
from proxlb_opt.plan import replay
from proxlb_opt.planner import limits, make_plan, plan_problem
from proxlb_opt.repair import repair_exact, repair_heuristic, tightened_limits
from tests.builders import fast, problem
from tests.strategies import build, cluster_dicts

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: The CP-SAT model measures percentages on a 0.01 pp grid (max rounded up, min rounded down).
GRID = 0.03


def _repairable(p) -> bool:
    """Whether any placement keeps every rule (CP-SAT on the repair model, exact on these sizes)."""
    try:
        return repair_exact(p, SolverSettings(workers=1), 5.0, hint=None) is not None
    except InfeasibleError:
        return False


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
    assert not check.violations(result.problem, result.placement)
    assert not replay(result.problem, result.plan, limits(s))
    assert np.array_equal(result.plan.final_placement, result.placement)
    if result.status == "balanced":
        assert result.plan.steps == ()


@PROPERTY_SETTINGS
@given(data=cluster_dicts(), budget=st.sampled_from([None, 0, 2, 5]), maintenance=st.booleans())
def test_a_plan_exists_whenever_a_repair_exists(data, budget, maintenance):
    c = build(data)
    s = fast(max_migrations=budget, time_limit=3.0, balanciness=0.0, maintenance_nodes=("n0",) if maintenance else ())
    try:
        p = problem(c, s)
    except InfeasibleError:
        return  # a guest with no node at all (pinned to the maintenance node): named before any search
    if not _repairable(p):
        return
    try:
        result = make_plan(c, s)
    except UnsafePlanError as exc:
        # The placement exists; only its order is blocked (a full cluster without a parking node): named.
        assert exc.blockers
        return
    assert not check.violations(result.problem, result.placement)


@PROPERTY_SETTINGS
@given(data=cluster_dicts(max_nodes=4, max_guests=9))
def test_spread_never_rises_with_the_budget(data):
    """Independent runs, each proven optimal (tolerance 0) on these sizes: non-increasing up to the grid."""
    c = build(data)
    spreads = []
    for budget in (0, 1, 2, 4, None):
        try:
            result = make_plan(c, fast(max_migrations=budget, time_limit=5.0, balanciness=0.0, optimality_tolerance=0))
        except (InfeasibleError, UnsafePlanError):
            return
        if result.status != "optimal":
            return
        spreads.append(result.spread_after)
    assert all(later <= earlier + GRID for earlier, later in zip(spreads, spreads[1:]))


@PROPERTY_SETTINGS
@given(data=cluster_dicts())
def test_spread_never_rises_along_a_budget_ladder(data):
    """Each budget starting from the previous one's plan (as --pareto does): non-increasing, exactly."""
    c = build(data)
    try:
        p = problem(c, fast(time_limit=2.0, balanciness=0.0))
    except InfeasibleError:
        return
    previous = None
    for budget in (0, 1, 3, 6, None):
        try:
            result = plan_problem(p.with_budget(budget), "cpsat", Deadline(2.0),
                                  repaired=None if previous is None else previous.repair,
                                  starts=() if previous is None else (previous.placement,))
        except (InfeasibleError, UnsafePlanError):
            return
        if previous is not None:
            assert result.spread_after <= previous.spread_after + 1e-9
        previous = result


@PROPERTY_SETTINGS
@given(data=cluster_dicts(), budget=st.sampled_from([0, 1, 2, 4, None]))
def test_never_worse_than_either_greedy_at_equal_budget(data, budget):
    c = build(data)
    try:
        result = make_plan(c, fast(max_migrations=budget, time_limit=3.0, balanciness=0.0))
    except (InfeasibleError, UnsafePlanError):
        return
    if result.status == "balanced" or result.repair is None:
        return
    p = result.problem  # after the repair: the allowance and limits of the plan
    # The fair comparator as the benchmark runs it: the unit greedy from the (deterministic) heuristic repair.
    base = problem(c, fast(max_migrations=budget, balanciness=0.0)).with_budget(result.problem.budget)
    heuristic = repair_heuristic(base)
    if heuristic is not None:
        comparator = base.with_repair(heuristic.moves, tightened_limits(base, heuristic.placement))
        fair = unit_greedy(comparator, heuristic.placement)
        assert not check.violations(comparator, fair)
        if not result.notes or "no capacity-safe order" not in " ".join(result.notes):
            assert result.spread_after <= check.spread(p, fair) + 1e-6
    proxlb = proxlb_greedy(p, budget).placement
    if not check.violations(p, proxlb):  # a greedy plan that breaks a rule is no valid comparison
        assert result.spread_after <= check.spread(p, proxlb) + 1e-6


FAMILY_OF = {"ignore": "domain", "maintenance": "domain", "offline": "domain", "pin": "domain",
             "capacity": "capacity", "affinity": "affinity", "anti-affinity": "anti-affinity", "budget": "budget"}


@PROPERTY_SETTINGS
@given(data=cluster_dicts(), seed=st.integers(0, 10_000), budget=st.sampled_from([None, 0, 2]))
def test_feasibility_module_agrees_with_the_checker(data, seed, budget):
    c = build(data)
    try:
        p = problem(c, fast(max_migrations=budget))
    except InfeasibleError:
        return
    rng = np.random.default_rng(seed)
    placement = np.where(rng.random(c.n_guests) < 0.5, rng.integers(0, c.n_nodes, c.n_guests), c.guest_node)
    occ = Occupancy(p, placement)
    assert {family for family, _ in occ.broken_rules()} == {FAMILY_OF[v.rule] for v in check.violations(p, placement)}
    # A single move the module allows from a valid placement leaves it valid, and one it refuses breaks a rule.
    if check.violations(p, placement):
        return
    for g in range(c.n_guests):
        if p.unit_of[g] < 0 or len(p.units[p.unit_of[g]]) > 1:
            continue
        for n in range(c.n_nodes):
            if n == placement[g]:
                continue
            after = placement.copy()
            after[g] = n
            assert occ.may_move([g], n) == (not check.violations(p.with_budget(None), after)), (g, n)


@PROPERTY_SETTINGS
@given(data=cluster_dicts(max_nodes=4, max_guests=10), budget=st.sampled_from([0, 1, 2, 3]))
def test_budget_bound_never_exceeds_the_optimum(data, budget):
    """The band relaxation is a lower bound: CP-SAT's proven optimum (tiny instances) never beats it."""
    c = build(data)
    s = fast(max_migrations=budget, time_limit=5.0, balanciness=0.0)
    try:
        result = make_plan(c, s)
    except (InfeasibleError, UnsafePlanError):
        return
    assert budget_bound(result.problem) <= result.spread_after + 1e-6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cluster_dicts(max_nodes=3, max_guests=7), budget=st.sampled_from([0, 1, 2]))
def test_budget_bound_never_exceeds_exhaustive_search(data, budget):
    """Both counts of the band relaxation (plain, and with the repair's moves kept apart) are lower bounds
    of the best spread over every valid placement within the allowance; CP-SAT's cut plays no part here."""
    c = build(data)
    s = fast(max_migrations=budget, time_limit=3.0, balanciness=0.0)
    try:
        p = make_plan(c, s).problem
    except (InfeasibleError, UnsafePlanError):
        return
    everything = _brute_force(p)
    if everything:
        assert budget_bound(p) <= min(entry[0] for entry in everything) + 1e-6


def _grid_spread(p, placement):
    """The spread as the CP-SAT model measures it: max percent rounded up, min rounded down, in 0.01 pp."""
    load = check.node_loads(p, placement)
    loads = p.loads
    total = 0
    for resource, weight in zip(loads.resources, loads.weights):
        r = loads.resource_index(resource)
        eligible = np.flatnonzero(p.rules.eligible)
        scaled = check.PERCENT_SCALE * load[eligible, r]
        cap = loads.capacity[eligible, r]
        total += weight * int((-(-scaled // cap)).max() - (scaled // cap).min())
    return total


def _brute_force(p):
    """Every valid placement of a tiny cluster as (spread, migration cost, placement, model spread)."""
    found = []
    for combo in itertools.product(range(p.cluster.n_nodes), repeat=p.cluster.n_guests):
        placement = np.asarray(combo, dtype=np.int64)
        if check.violations(p, placement):
            continue
        found.append((check.spread(p, placement), check.migration_cost(p, placement), placement,
                      _grid_spread(p, placement)))
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cluster_dicts(max_nodes=3, max_guests=6), budget=st.sampled_from([1, 2, 3]),
       tolerance=st.sampled_from([0.0, 0.05, 2.0]))
def test_lexicographic_solve_against_exhaustive_search(data, budget, tolerance):
    """The two-phase solve, hinted with the costliest placement of best spread: a spread reported optimal
    is within the tolerance (plus the model's 0.01 pp grid) of the best, and a cost reported proven is
    the least of any placement the model measures no wider."""
    c = build(data)
    try:
        p = problem(c, fast(max_migrations=budget, balanciness=0.0))
    except InfeasibleError:
        return
    everything = _brute_force(p)
    if not everything:
        return
    best_spread = min(entry[0] for entry in everything)
    costliest = max((entry for entry in everything if entry[0] <= best_spread + 1e-9), key=lambda e: e[1])[2]
    result = solve_lexicographic(p, SolverSettings(workers=1), BuildOptions(hint=costliest), 5.0,
                                 first_gap=spread_units(tolerance, p))
    assert result.found and not check.violations(p, result.placement)
    spread = check.spread(p, result.placement)
    if result.proven.get("spread"):
        assert spread <= best_spread + tolerance + GRID
    if result.proven.get("cost"):
        # Phase 2 admits every placement whose model spread is at most the one found.
        cost = check.migration_cost(p, result.placement)
        found_grid = _grid_spread(p, result.placement)
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
        result = make_plan(c, s)
    except (InfeasibleError, UnsafePlanError):
        return
    if result.status != "optimal":
        return
    everything = _brute_force(result.problem)
    best_spread = min(entry[0] for entry in everything)
    assert result.spread_after <= best_spread + tolerance + GRID
    if result.cost_proven:
        plan_cost = check.migration_cost(result.problem, result.placement)
        strictly_better = [entry[1] for entry in everything if entry[0] <= result.spread_after - GRID]
        assert all(plan_cost <= cost for cost in strictly_better)
