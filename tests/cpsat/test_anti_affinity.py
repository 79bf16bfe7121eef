import numpy as np
import pytest

from proxlb_opt.errors import InfeasibleError
from tests.builders import cluster, guest, node
from tests.cpsat.conftest import where


def test_members_on_distinct_nodes(plan):
    c = cluster([node("a"), node("b"), node("c")],
                [guest(i, "a", "4G", tags=["plb_anti_affinity_dns"]) for i in (1, 2, 3)])
    w = where(plan(c))
    assert len({w[1], w[2], w[3]}) == 3


def test_more_members_than_nodes_caps_per_node(plan):
    c = cluster([node("a"), node("b")],
                [guest(i, "a", "2G", tags=["plb_anti_affinity_w"]) for i in range(1, 6)])
    result = plan(c)
    counts = np.bincount(result.placement, minlength=2)
    assert counts.max() <= 3  # ⌈5/2⌉
    assert any("at most 3 per node" in w for w in result.warnings)


def test_anti_affinity_against_pins_is_infeasible(plan):
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "2G", tags=["plb_anti_affinity_x", "plb_pin_a"]),
                 guest(2, "b", "2G", tags=["plb_anti_affinity_x", "plb_pin_a"])])
    with pytest.raises(InfeasibleError) as err:
        plan(c)
    assert "tag plb_anti_affinity_x" in str(err.value) and "plb_pin_a" in str(err.value)


def test_ha_negative_rule_and_objective(plan):
    c = cluster([node("a"), node("b")],
                [guest(1, "a", "8G"), guest(2, "a", "8G"), guest(3, "b", "2G")],
                ha_rules=[{"rule": "apart", "type": "resource-affinity", "resources": "vm:1,vm:2",
                           "affinity": "negative"}])
    result = plan(c, balanciness=100)  # balanced enough, but the violated rule must be repaired
    w = where(result)
    assert w[1] != w[2] and result.plan.steps[0].reason == "anti-affinity"
    assert len(result.plan.steps) == 1  # one move repairs it; no more than needed
