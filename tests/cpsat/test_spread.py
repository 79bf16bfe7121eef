import pytest

from tests.builders import cluster, guest, node


def test_reaches_known_optimum_and_proves_it(plan):
    c = cluster([node("a", "100G"), node("b", "100G")],
                [guest(i, "a", f"{s}G") for i, s in enumerate((30, 20, 20, 10, 10, 10), start=1)])
    result = plan(c, max_migrations=None)
    assert result.spread_after == pytest.approx(0.0, abs=0.02)
    assert result.status == "optimal" and result.gap == pytest.approx(0.0, abs=0.02)


def test_multi_method_uses_weights(plan):
    c = cluster([node("a", "64G", cpus=8), node("b", "64G", cpus=8)],
                [guest(1, "a", "16G", cpus=1, cpu_usage=0.1), guest(2, "a", "1G", cpus=4, cpu_usage=4),
                 guest(3, "a", "1G", cpus=4, cpu_usage=4)])
    memory_only = plan(c, method="memory")
    cpu_heavy = plan(c, method="multi", weights={"memory": 1, "cpu": 4})
    assert cpu_heavy.spread_per_resource_after["cpu"] < memory_only.spread_per_resource_after.get("cpu", 101) or \
        cpu_heavy.spread_per_resource_after["cpu"] <= 12.5


def test_assigned_mode_counts_stopped_guests(plan):
    c = cluster([node("a"), node("b")], [guest(1, "a", "16G", status="stopped"), guest(2, "a", "16G")])
    result = plan(c, mode="assigned")
    assert result.spread_after == pytest.approx(0.0)
    used = plan(c, mode="used")
    assert used.spread_after <= 25.0 + 1e-6
