import pytest

from proxlb_opt.errors import InfeasibleError, ModelError
from tests.builders import cluster, guest, node
from tests.cpsat.conftest import moved, where


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


def test_strict_negative_node_affinity_keeps_guests_off_the_listed_nodes(plan):
    # PVE 9.2.6: a strict negative node-affinity rule: vm 1 may run anywhere but on b (where it sits today).
    c = cluster([node("a"), node("b"), node("c")], [guest(1, "b", "4G"), guest(2, "a", "4G")],
                ha_rules=[{"rule": "not-b", "type": "node-affinity", "resources": "vm:1", "nodes": "b",
                           "affinity": "negative", "strict": True}])
    result = plan(c, max_migrations=0)
    assert where(result)[1] != "b" and result.plan.steps[0].reason == "pin"


def test_non_strict_negative_node_affinity_is_a_soft_avoidance(plan):
    # Two equally good targets for the only move; the rule makes the planner avoid c.
    c = cluster([node("a", "64G"), node("b", "64G"), node("c", "64G")],
                [guest(1, "a", "8G"), guest(2, "a", "8G"), guest(5, "a", "8G"), guest(3, "b", "8G"),
                 guest(4, "c", "8G")],
                ha_rules=[{"rule": "avoid-c", "type": "node-affinity", "resources": "vm:1,vm:2,vm:5", "nodes": "c",
                           "affinity": "negative", "strict": False}])
    result = plan(c, max_migrations=1, balanciness=0)
    assert len(moved(result)) == 1 and result.spread_after < result.spread_before
    assert all(where(result)[g] != "c" for g in (1, 2, 5))


def test_negative_node_affinity_survives_a_model_round_trip():
    from proxlb_opt.cluster import cluster_from_dict, cluster_to_dict

    c = cluster([node("a"), node("b")], [guest(1, "a", "4G")],
                ha_rules=[{"rule": "r", "type": "node-affinity", "resources": "vm:1", "nodes": "b",
                           "affinity": "negative", "strict": True}])
    again = cluster_from_dict(cluster_to_dict(c))
    assert again.ha_rules[0].affinity == "negative" and again.ha_rules[0].strict
