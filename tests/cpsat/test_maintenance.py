from tests.builders import cluster, guest, node
from tests.cpsat.conftest import where


def test_everything_movable_leaves(plan):
    c = cluster([node("a"), node("b"), node("c")],
                [guest(i, "a", "4G") for i in range(1, 6)] + [guest(9, "b", "4G", lock="backup")])
    result = plan(c, maintenance_nodes=("a",), max_migrations=0)
    assert all(n != "a" for v, n in where(result).items())
    assert result.mandatory_moves == 5
    assert all(s.reason == "maintenance" for s in result.plan.steps)


def test_unmovable_guest_stays_with_warning(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", "4G", lock="backup"), guest(2, "a", "4G")])
    result = plan(c, maintenance_nodes=("a",))
    assert where(result) == {1: "a", 2: "b"}
    assert any("stays on maintenance node a" in w and "locked (backup)" in w for w in result.warnings)


def test_maintenance_node_not_in_spread_and_never_a_target(plan):
    c = cluster([node("a"), node("b"), node("c")],
                [guest(1, "b", "30G"), guest(2, "b", "20G"), guest(3, "c", "1G")])
    result = plan(c, maintenance_nodes=("a",))
    assert "a" not in where(result).values()


def test_ha_maintenance_flag_from_model(plan):
    c = cluster([node("a", maintenance=True), node("b")], [guest(1, "a", "4G")])
    assert where(plan(c)) == {1: "b"}
