import pytest

from proxlb_opt.errors import InfeasibleError, ModelError
from tests.builders import cluster, guest, node
from tests.cpsat.conftest import where


def test_pinned_guest_stays_in_its_set(plan):
    c = cluster([node("a"), node("b"), node("c")],
                [guest(1, "a", "20G", tags=["plb_pin_a", "plb_pin_b"]), guest(2, "a", "20G", tags=["plb_pin_a"]),
                 guest(3, "a", "20G")])
    w = where(plan(c))
    assert w[1] in ("a", "b") and w[2] == "a"


def test_unknown_pin_node_names_guest_and_tag(plan):
    c = cluster([node("a")], [guest(7, "a", tags=["plb_pin_nowhere"])])
    with pytest.raises(ModelError, match=r"vm:7 \(g7\): tag plb_pin_nowhere names unknown node 'nowhere'"):
        plan(c)


def test_guest_outside_pin_must_move(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", tags=["plb_pin_b"])])
    result = plan(c, max_migrations=0)
    assert where(result)[1] == "b" and result.plan.steps[0].reason == "pin"


def test_pin_to_maintenance_node_is_infeasible(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", tags=["plb_pin_a"])])
    with pytest.raises(InfeasibleError, match="has no node it may run on.*a is in maintenance"):
        plan(c, maintenance_nodes=("a",))


def test_ha_strict_node_affinity(plan):
    c = cluster([node("a"), node("b"), node("c")], [guest(1, "a", "30G"), guest(2, "a", "30G")],
                ha_rules=[{"rule": "r", "type": "node-affinity", "resources": "vm:1,vm:2", "nodes": "a,b",
                           "strict": True}])
    w = where(plan(c))
    assert set(w.values()) == {"a", "b"}


def test_soft_preference_breaks_ties(plan):
    # Both b and c give the same spread; the non-strict HA rule prefers c.
    c = cluster([node("a"), node("b"), node("c")], [guest(1, "a", "8G"), guest(2, "a", "8G"), guest(3, "a", "8G")],
                ha_rules=[{"rule": "pref", "type": "node-affinity", "resources": "vm:1", "nodes": "c:2,a:1",
                           "strict": False}])
    w = where(plan(c))
    assert len(set(w.values())) == 3 and w[1] == "c"
