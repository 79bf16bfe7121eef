"""The shipped model files (models/*.yaml) and their documentation (models/README.md)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from benchmarks.generate import generate_cluster, reference_cluster
from proxlb_opt import check
from proxlb_opt.cluster import (GUEST_KEYS, HA_RULE_KEYS, NODE_KEYS, TOP_KEYS, cluster_from_dict, cluster_to_dict,
                                load_model)
from proxlb_opt.config import Settings
from proxlb_opt.planner import make_plan
from proxlb_opt.problem import build_problem
from proxlb_opt.rules import derive_rules

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL_FILES = sorted(p for p in MODELS.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json"))
GIB = 1024
#: Models that start over their assigned-memory and vCPU limits on purpose (hard shapes): a plan repairs them.
OVER_COMMITTED = {"lopsided-40.yaml"}


@lru_cache(maxsize=None)
def model(path: Path):
    """Each model file is parsed once per session (clusters are immutable)."""
    return load_model(path)


def used_percent(c) -> np.ndarray:
    return 100 * c.node_mem_used_mib / c.node_mem_mib


def has_tag(c, prefix: str) -> bool:
    return any(t.startswith(prefix) for tags in c.guest_tags for t in tags)


def test_the_shipped_models_exist():
    assert {p.name for p in MODEL_FILES} >= {"demo.yaml", "homelab.yaml", "enterprise-16.yaml"}


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_every_model_loads_and_fits(path):
    c = model(path)
    assert c.n_nodes >= 1 and c.n_guests >= 1
    # Before any plan the planner's default hard limits hold, except in the over-committed models.
    within = ((np.bincount(c.guest_node, c.guest_mem_mib, c.n_nodes) <= c.node_mem_mib).all()
              and (np.bincount(c.guest_node, c.guest_cpu_milli, c.n_nodes) <= 2 * c.node_cpu_milli).all())
    assert within == (path.name not in OVER_COMMITTED)
    assert (c.node_mem_used_mib <= c.node_mem_mib).all()  # used memory is physical: always within
    assert path.read_text(encoding="utf-8").startswith("#"), "every model starts with a comment header"


# ----------------------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo():
    return model(MODELS / "demo.yaml")


def test_demo_shape_and_rule_families(demo):
    c = demo
    assert c.n_nodes == 5 and 50 <= c.n_guests <= 70
    assert c.guest_is_ct.any() and (~c.guest_is_ct).any() and (~c.guest_running).any()
    for prefix in ("plb_affinity_", "plb_anti_affinity_", "plb_pin_", "plb_ignore"):
        assert has_tag(c, prefix), prefix
    assert sum(lock is not None for lock in c.guest_lock) == 1
    assert len(c.ha_rules) == 1 and any(c.guest_pool)
    used = used_percent(c)
    assert used.max() >= 80 and used.min() <= 25  # clearly imbalanced


def test_demo_cpsat_beats_greedy(demo):
    settings = Settings()
    opt = make_plan(demo, settings, "cpsat")
    assert opt.spread_before > 50
    # max_migrations auto: the fewest moves that reach half the balanciness, then only moves worth 1 pp each.
    assert opt.spread_after < settings.balanciness / 2 and opt.plan.guests_moved <= 7
    assert opt.status in ("optimal", "feasible")
    assert not opt.violations
    assert check.violations(opt.problem, opt.placement) == []
    assert 0 < len(opt.plan.steps)

    greedy = make_plan(demo, settings, "greedy")
    assert not np.array_equal(greedy.placement, opt.placement)
    assert greedy.spread_after > opt.spread_after + 5
    assert greedy.violations  # ProxLB's pass splits the affinity group


# ----------------------------------------------------------------------------- homelab and enterprise


def test_homelab_is_a_small_realistic_cluster():
    c = model(MODELS / "homelab.yaml")
    assert c.n_nodes == 3 and 15 <= c.n_guests <= 25
    cores, mem_gib = c.node_cpu_milli // 1000, c.node_mem_mib // GIB
    assert ((cores >= 8) & (cores <= 16)).all() and ((mem_gib >= 32) & (mem_gib <= 64)).all()
    assert has_tag(c, "plb_pin_") and has_tag(c, "plb_anti_affinity_")
    result = make_plan(c, Settings(time_limit=3, workers=1), "cpsat")
    assert not result.violations and result.spread_after < result.spread_before


def test_enterprise_16_is_what_the_generator_makes():
    path = MODELS / "enterprise-16.yaml"
    header = path.read_text(encoding="utf-8").split("\nversion:", 1)[0]
    command = re.search(r"python -m benchmarks\.generate (.*)", header)
    assert command and command.group(1).split() == [
        "--nodes", "16", "--guests", "800", "--seed", "1", "-o", "models/enterprise-16.yaml"]
    c = model(path)
    assert (c.n_nodes, c.n_guests) == (16, 800)
    assert cluster_to_dict(c) == cluster_to_dict(cluster_from_dict(generate_cluster(16, 800, 1)))


def test_lopsided_40_is_what_the_generator_makes():
    path = MODELS / "lopsided-40.yaml"
    header = path.read_text(encoding="utf-8").split("\nversion:", 1)[0]
    command = re.search(r"python -m benchmarks\.generate (.*)", header)
    assert command and command.group(1).split() == [
        "--nodes", "40", "--guests", "750", "--seed", "1", "--shape", "hard", "-o", "models/lopsided-40.yaml"]
    c = model(path)
    assert (c.n_nodes, c.n_guests) == (40, 750)
    assert cluster_to_dict(c) == cluster_to_dict(cluster_from_dict(generate_cluster(40, 750, 1, shape="hard")))
    # It starts broken, and its reference placement is a valid answer.
    p = build_problem(c, Settings()).with_budget(None)
    assert check.violations(p, c.guest_node)
    reference = cluster_from_dict(reference_cluster(40, 750, 1, shape="hard")).guest_node
    assert check.violations(p, reference) == []


# ----------------------------------------------------------------------------- documentation


def test_readme_documents_every_field_and_model():
    text = (MODELS / "README.md").read_text(encoding="utf-8")
    for key in sorted(TOP_KEYS | NODE_KEYS | GUEST_KEYS | HA_RULE_KEYS):
        assert f"`{key}`" in text, key
    for prefix in ("plb_affinity_", "plb_anti_affinity_", "plb_ignore", "plb_pin_"):
        assert prefix in text
    for path in MODEL_FILES:
        assert f"`{path.name}`" in text, path.name


@pytest.mark.slow
def test_identical_demo_runs_give_one_plan(demo):
    """Runs that end by proof give the same plan. The time limit is generous so that the proof, not the
    machine's speed, ends each run (about 3 s each on 2 idle cores)."""
    plans = set()
    for _ in range(5):
        result = make_plan(demo, Settings(time_limit=60))
        assert result.status == "optimal" and result.cost_proven
        plans.add(tuple((s.guest, s.source, s.target, s.wave, s.hop) for s in result.plan.steps))
    assert len(plans) == 1
