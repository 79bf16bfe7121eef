"""The repair stage: every rule holds afterwards, with few moves; making room; over-capacity relief."""

import numpy as np
import pytest

from proxlb_opt import check
from proxlb_opt.cpsat.solve import SolverSettings
from proxlb_opt.errors import InfeasibleError
from proxlb_opt.planner import make_plan
from proxlb_opt.repair import lower_bound_moves, needs_repair, repair_exact, repair_heuristic
from tests.builders import cluster, fast, guest, node, problem


def _broken():
    guests = [guest(i, "a", f"{2 + i % 5}G") for i in range(1, 31)]
    guests[0]["tags"] = ["plb_anti_affinity_x"]
    guests[1]["tags"] = ["plb_anti_affinity_x"]  # both on a: broken today
    guests[2]["tags"] = ["plb_affinity_y"]
    guests.append(guest(99, "b", "2G", tags=["plb_affinity_y"]))  # split group
    guests[3]["tags"] = ["plb_pin_c"]  # off its pin
    return cluster([node(n, "128G") for n in "abcd"], guests)


def test_heuristic_repairs_every_rule_with_the_fewest_moves():
    p = problem(_broken(), fast())
    assert needs_repair(p)
    result = repair_heuristic(p)
    assert result is not None and check.violations(p.with_budget(None), result.placement) == []
    # One partner leaves a, one affinity member joins the other, the pinned guest goes to c: three moves.
    assert result.moves == 3 == lower_bound_moves(p) + 1
    assert not needs_repair(problem(cluster_after(p, result.placement), fast()))


def cluster_after(p, placement):
    from proxlb_opt.cluster import with_placement

    return with_placement(p.cluster, placement)


def test_make_room_on_a_full_pinned_node():
    # g1 is pinned to b, which is full: one guest has to leave b first (to c), then g1 fits.
    c = cluster([node("a", "32G"), node("b", "32G"), node("c", "32G")],
                [guest(1, "a", "16G", tags=["plb_pin_b"]), guest(2, "b", "16G"), guest(3, "b", "16G")])
    p = problem(c, fast(max_migrations=0))
    result = repair_heuristic(p)
    assert result is not None and result.moves == 2
    assert result.placement[0] == 1 and check.violations(p.with_budget(None), result.placement) == []
    plan = make_plan(c, fast(max_migrations=0))
    assert plan.placement[0] == 1 and plan.plan.guests_moved == 2 and plan.mandatory_moves == 2


def test_exact_repair_proves_the_fewest_moves():
    p = problem(_broken(), fast())
    exact = repair_exact(p, SolverSettings(workers=1), 5.0, hint=repair_heuristic(p))
    assert exact is not None and exact.proven_minimal and exact.moves == 3


RESERVE = {"defaults": {"memory": 16}}  # GiB kept free: 64G nodes have 48G of capacity


def test_used_memory_over_capacity_is_relieved_as_far_as_others_have_room():
    # a uses 56G of its 48G capacity (64G less the reserve): one 8G guest moving to b fixes it.
    c = cluster([node("a", "64G"), node("b", "64G")],
                [guest(i, "a", "8G") for i in range(1, 8)] + [guest(9, "b", "8G")])
    p = problem(c, fast(max_migrations=0, node_resource_reserve=RESERVE))
    assert needs_repair(p)
    result = repair_heuristic(p)
    assert result is not None and result.moves == 1 and not result.excess.any()
    plan = make_plan(c, fast(max_migrations=0, balanciness=90, node_resource_reserve=RESERVE))
    assert plan.plan.guests_moved == 1 and [s.reason for s in plan.plan.steps] == ["capacity"]


def test_used_memory_over_capacity_that_cannot_be_fixed_is_never_made_worse():
    # Both nodes are over their 48G; nothing can be relieved, and no plan may add to either.
    c = cluster([node("a", "64G"), node("b", "64G")],
                [guest(i, "a", "8G") for i in range(1, 8)] + [guest(10 + i, "b", "10G") for i in range(5)])
    s = fast(max_migrations=5, balanciness=0, node_resource_reserve=RESERVE)
    result = make_plan(c, s)
    k = result.problem.hard.names.index("used memory")
    before = result.problem.hard.load(c.guest_node)[:, k]
    assert (result.problem.hard.load(result.placement)[:, k] <= before).all()
    assert any("over capacity" in n for n in result.notes)


def test_assigned_memory_over_capacity_is_never_forced_to_move():
    # Overprovisioning off: a has 80G assigned on 64G. As in ProxLB, nothing is forced to move for that
    # (ballooning makes it common); plans never add to it.
    c = cluster([node("a", "64G"), node("b", "64G")],
                [guest(i, "a", "16G", memory_used="2G") for i in range(1, 6)] + [guest(9, "b", "8G", memory_used="2G")])
    p = problem(c, fast(max_migrations=0))
    assert not needs_repair(p)


def test_unrepairable_rules_are_named():
    c = cluster([node("a", "16G"), node("b", "16G")],
                [guest(1, "a", "10G", tags=["plb_affinity_big"]), guest(2, "b", "10G", tags=["plb_affinity_big"])])
    with pytest.raises(InfeasibleError, match="plb_affinity_big"):
        make_plan(c, fast())


def test_anchored_group_gathers_on_the_unmovable_member():
    # g1 is locked on a: its affinity partner must come to a, not the other way round.
    c = cluster([node("a"), node("b")], [guest(1, "a", "4G", tags=["plb_affinity_x"], lock="backup"),
                                         guest(2, "b", "4G", tags=["plb_affinity_x"])])
    result = make_plan(c, fast(max_migrations=0))
    assert result.placement.tolist() == [0, 0]
    assert np.flatnonzero(result.placement != c.guest_node).tolist() == [1]
