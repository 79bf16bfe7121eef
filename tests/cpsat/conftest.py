"""Shared helpers for the per-family CP-SAT tests: plan a small cluster with deterministic settings."""

import numpy as np
import pytest

from proxlb_opt import check
from proxlb_opt.planner import make_plan
from tests.builders import fast, placement_of


@pytest.fixture
def plan():
    def run(c, **overrides):
        result = make_plan(c, fast(**overrides), overrides.pop("algorithm", None) if "algorithm" in overrides else None)
        assert not check.violations(result.problem, result.placement)
        return result
    return run


def where(result) -> dict[int, str]:
    return placement_of(result.cluster, result.placement)


def moved(result) -> set[int]:
    c = result.cluster
    return {int(c.guest_vmid[g]) for g in np.flatnonzero(result.placement != c.guest_node)}
