"""Builders for small clusters in tests: terse node/guest specs with sensible defaults."""

from __future__ import annotations

from typing import Any

import numpy as np

from proxlb_opt.cluster import Cluster, cluster_from_dict
from proxlb_opt.config import Settings
from proxlb_opt.problem import Problem, build_problem


def node(name: str, memory: str = "64G", cpus: int = 16, **extra: Any) -> dict:
    return {"name": name, "cpus": cpus, "memory": memory, "disk": extra.pop("disk", "1T"), **extra}


def guest(vmid: int, node_name: str, memory: str = "8G", **extra: Any) -> dict:
    return {"vmid": vmid, "name": extra.pop("name", f"g{vmid}"), "node": node_name, "memory": memory,
            "cpus": extra.pop("cpus", 2), **extra}


def cluster(nodes: list[dict], guests: list[dict], ha_rules: list[dict] | None = None) -> Cluster:
    data: dict[str, Any] = {"version": 1, "cluster": "test", "nodes": nodes, "guests": guests}
    if ha_rules:
        data["ha_rules"] = ha_rules
    return cluster_from_dict(data, source="<test>")


def problem(c: Cluster, settings: Settings | None = None) -> Problem:
    return build_problem(c, settings or Settings(workers=1))


def placement_of(c: Cluster, result_placement: np.ndarray) -> dict[int, str]:
    """vmid → node name, for readable assertions."""
    return {int(c.guest_vmid[g]): c.node_names[int(n)] for g, n in enumerate(result_placement)}


def fast(**overrides: Any) -> Settings:
    """Deterministic, quick settings for tests: one worker, short time limit."""
    base = dict(workers=1, time_limit=5.0, balanciness=1.0)
    base.update(overrides)
    return Settings(**base)
