import pytest

from proxlb_opt.errors import InfeasibleError
from tests.builders import cluster, guest, node
from tests.cpsat.conftest import moved, where


def test_group_stays_together_when_balancing(plan):
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "10G", tags=["plb_affinity_web"]), guest(2, "a", "10G", tags=["plb_affinity_web"]),
                 guest(3, "a", "10G"), guest(4, "a", "10G")])
    w = where(plan(c))
    assert w[1] == w[2]
    assert plan(c).spread_after == pytest.approx(0.0)


def test_split_group_is_joined_outside_budget(plan):
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "4G", tags=["plb_affinity_db"]), guest(2, "b", "4G", tags=["plb_affinity_db"])])
    result = plan(c, max_migrations=0)
    assert where(result)[1] == where(result)[2]
    assert result.mandatory_moves == 1 and [s.reason for s in result.plan.steps] == ["affinity"]


def test_group_too_big_for_any_node_is_infeasible(plan):
    c = cluster([node("a", "16G"), node("b", "16G")],
                [guest(1, "a", "10G", tags=["plb_affinity_big"]), guest(2, "b", "10G", tags=["plb_affinity_big"])])
    with pytest.raises(InfeasibleError, match="tag plb_affinity_big"):
        plan(c)


def test_ha_positive_resource_affinity(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", "4G"), guest(2, "b", "4G"), guest(3, "a", "8G")],
                ha_rules=[{"rule": "together", "type": "resource-affinity", "resources": "vm:1,vm:2",
                           "affinity": "positive"}])
    w = where(plan(c))
    assert w[1] == w[2]


def test_objective_moves_cheaper_side(plan):
    # Joining a split group: moving the small member is cheaper than the big one.
    c = cluster([node("a", "128G"), node("b", "128G"), node("c", "128G")],
                [guest(1, "a", "2G", tags=["plb_affinity_x"]), guest(2, "b", "32G", tags=["plb_affinity_x"]),
                 guest(3, "a", "30G"), guest(4, "c", "32G")])
    result = plan(c, balanciness=50)
    assert moved(result) == {1}
