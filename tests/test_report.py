"""report.py: the plan table at any width, the compact listing of huge plans, ProxLB's -j shape."""

import io
import time
from dataclasses import replace

import pytest
from rich.console import Console

from proxlb_opt.config import Settings
from proxlb_opt.planner import make_plan
from proxlb_opt.report import COMPACT_ABOVE, plan_dict, plan_renderable, proxlb_dict
from tests.builders import cluster, guest, node


def render(result, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, soft_wrap=False, highlight=False).print(plan_renderable(result, width),
                                                                               crop=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def long_names():
    names = [f"very-long-guest-name-for-the-{role}-{i:02d}.example.internal" for i, role in
             enumerate(["database", "frontend", "cache", "queue", "search", "mail"])]
    c = cluster([node("pve1", "64G"), node("pve2", "64G"), node("pve3", "64G")],
                [guest(100 + i, "pve1", "8G", name=name) for i, name in enumerate(names)])
    return make_plan(c, replace(Settings(), workers=1, time_limit=3))


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_names_are_never_cut_and_lines_fit(long_names, width):
    text = render(long_names, width)
    lines = text.splitlines()
    for m in plan_dict(long_names)["migrations"]:
        assert any(f"{m['vmid']} {m['name']}" in line for line in lines)
    # Only a line holding a name too long for the width with its wave number may be wider: it runs on.
    assert all(len(line) <= width or line.split()[-1] in long_names.cluster.guest_names for line in lines)


def test_narrow_widths_leave_out_the_least_useful_columns(long_names):
    wide = render(long_names, 160)
    narrow = render(long_names, 100)
    header = next(line for line in narrow.splitlines() if line.lstrip().startswith("wave"))
    assert "move" in header and "type" not in header
    assert "type" in next(line for line in wide.splitlines() if line.lstrip().startswith("wave"))
    tight = render(long_names, 70).splitlines()  # not even wave, guest and move side by side: two lines a move
    at = next(i for i, line in enumerate(tight) if "100 very-long-guest-name" in line)
    assert tight[at + 1].split() == ["pve1", "→", plan_dict(long_names)["migrations"][0]["to"] + ",", "balance,",
                                     "8.0", "GiB"]


@pytest.fixture(scope="module")
def huge():
    """2,000 small guests on one of ten nodes: well over a thousand moves."""
    c = cluster([node(f"pve{i}", "512G", cpus=64) for i in range(1, 11)],
                [guest(1000 + i, "pve1", "200M", name=f"guest-{i:04d}") for i in range(2000)])
    settings = replace(Settings(), max_migrations=None, algorithm="greedy", parallel=True, parallel_jobs=10,
                       max_incoming_per_node=4, max_outgoing_per_node=10)
    return make_plan(c, settings)


def test_huge_plans_render_quickly_and_compactly(huge):
    assert len(huge.plan.steps) > 1000 > COMPACT_ABOVE
    started = time.perf_counter()
    text = render(huge, 80)
    assert time.perf_counter() - started < 1.0
    lines = text.splitlines()
    assert "listed compactly" in text and max(len(line) for line in lines) <= 80
    assert all(f"{m['vmid']} {m['name']}" in text for m in plan_dict(huge)["migrations"])


def test_json_waves_count_from_one(huge):
    waves = [m["wave"] for m in plan_dict(huge)["migrations"]]
    assert min(waves) == 1 and max(waves) == huge.plan.waves


def test_proxlb_shape(long_names):
    data = proxlb_dict(long_names)
    assert list(data)[:5] == ["groups", "guests", "ha_rules", "nodes", "pools"]  # ProxLB's key order
    c = long_names.cluster
    assert set(data["guests"]) == set(c.guest_names) and set(data["nodes"]) == set(c.node_names)
    for name, entry in data["guests"].items():
        assert entry["name"] == name and {"total", "used"} <= set(entry["memory"])
        assert entry["memory"]["total"] == 8 * 1024 ** 3  # bytes, as ProxLB reports them
    moved = {m["name"]: m["to"] for m in data["proxlb_opt"]["migrations"]}
    assert {n: g["node_target"] for n, g in data["guests"].items() if g["node_target"] != g["node_current"]} == moved
    total_after = sum(n["memory"]["assigned"] for n in data["nodes"].values())
    assert total_after == 6 * 8 * 1024 ** 3
    assert data["nodes"]["pve1"]["memory"]["assigned"] < 6 * 8 * 1024 ** 3  # node figures after the plan
