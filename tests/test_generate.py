"""benchmarks/generate.py: determinism, validity, realism, rule satisfiability, speed and the CLI."""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict

import numpy as np
import pytest
import yaml

from benchmarks.generate import generate_cluster, load_catalog, main, reference_cluster, to_yaml
from proxlb_opt import check
from proxlb_opt.cluster import cluster_from_dict, cluster_to_dict, load_model
from proxlb_opt.config import Settings
from proxlb_opt.planner import make_plan
from proxlb_opt.problem import build_problem
from proxlb_opt.rules import derive_rules

GIB = 1024


def assigned(c, values) -> np.ndarray:
    return np.bincount(c.guest_node, weights=values, minlength=c.n_nodes)


def tag_groups(c, prefix: str) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for g, tags in enumerate(c.guest_tags):
        for t in tags:
            if t.startswith(prefix):
                groups[t].append(g)
    return dict(groups)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_model_and_different_seed_different_model():
    first = generate_cluster(8, 300, 11)
    assert generate_cluster(8, 300, 11) == first
    assert generate_cluster(8, 300, 12) != first
    assert generate_cluster(8, 300, 11, rules=False) != first


def test_no_global_random_state_is_used():
    np.random.seed(0)
    a = generate_cluster(5, 60, 3)
    np.random.seed(999)
    np.random.random(10)
    assert generate_cluster(5, 60, 3) == a


# ----------------------------------------------------------------------------- validity


@pytest.mark.parametrize("n_nodes,n_guests,seed,rules,maintenance,extra", [
    (1, 0, 1, True, False, {}),
    (1, 25, 2, True, False, {}),
    (2, 30, 3, True, True, {}),
    (3, 40, 4, True, False, {}),
    (5, 60, 5, True, True, {}),
    (8, 300, 6, False, False, {}),
    (16, 800, 7, True, True, {}),
    (24, 1500, 8, True, False, {}),
    (6, 120, 9, True, False, {"fill": 0.9, "imbalance": 1.0}),  # as full and uneven as it gets
    (10, 400, 10, True, True, {"fill": 0.9, "imbalance": 1.0}),
])
def test_valid_and_within_capacity(n_nodes, n_guests, seed, rules, maintenance, extra):
    data = generate_cluster(n_nodes, n_guests, seed, rules=rules, maintenance=maintenance, **extra)
    c = cluster_from_dict(data, source="<generated>")
    assert (c.n_nodes, c.n_guests) == (n_nodes, n_guests)
    assert len(set(c.guest_vmid.tolist())) == n_guests and len(set(c.guest_names)) == n_guests
    # The planner's default hard limits hold before any plan.
    assert (assigned(c, c.guest_mem_mib) <= c.node_mem_mib).all()
    assert (assigned(c, c.guest_cpu_milli) <= 2 * c.node_cpu_milli).all()
    assert (c.node_mem_used_mib <= c.node_mem_mib).all()
    assert (c.node_disk_used_mib <= c.node_disk_mib).all()
    # Host overhead of about 4 GiB on top of the running guests' used memory.
    overhead = c.node_mem_used_mib - assigned(c, np.where(c.guest_running, c.guest_mem_used_mib, 0))
    assert ((overhead >= 3 * GIB) & (overhead <= 5 * GIB)).all()
    assert bool(c.node_maintenance[0]) == maintenance and not c.node_maintenance[1:].any()
    # Round trip through the compact YAML writer (pure-Python parsing is slow: small clusters only) and JSON.
    if n_guests <= 800:
        assert yaml.safe_load(to_yaml(data, ["header"])) == data
    assert json.loads(json.dumps(data)) == data
    derive_rules(c, Settings())  # every tag and HA rule is usable


def test_node_shapes_and_guest_mix_are_realistic():
    c = cluster_from_dict(generate_cluster(16, 800, 1))
    cores, mem_gib = c.node_cpu_milli // 1000, c.node_mem_mib // GIB
    assert ((cores >= 16) & (cores <= 128)).all() and ((mem_gib >= 64) & (mem_gib <= 1024)).all()
    assert len(set(zip(cores.tolist(), mem_gib.tolist()))) <= 2
    assert 0.18 <= c.guest_is_ct.mean() <= 0.32
    assert 0.05 <= (~c.guest_running).mean() <= 0.15
    assert 0.23 <= c.guest_local_disk.mean() <= 0.37
    # Containers are smaller than VMs; sizes are the Azure flavours (VMs) or derived from them (CTs).
    assert c.guest_mem_mib[c.guest_is_ct].mean() < c.guest_mem_mib[~c.guest_is_ct].mean()
    flavours = set(zip(load_catalog().flavor_vcpus.tolist(), load_catalog().flavor_mem_mib.tolist()))
    vms = ~c.guest_is_ct
    assert set(zip((c.guest_cpu_milli[vms] // 1000).tolist(), c.guest_mem_mib[vms].tolist())) <= flavours
    # Used memory is a host-RSS fraction (0.35-0.95) of assigned for running guests, 0 when stopped.
    run = c.guest_running
    ratio = c.guest_mem_used_mib[run] / c.guest_mem_mib[run]
    assert ratio.min() >= 0.3 and ratio.max() <= 0.96 and 0.4 < np.median(ratio) < 0.7
    assert (c.guest_mem_used_mib[~run] == 0).all() and (c.guest_cpu_used_milli[~run] == 0).all()
    assert (c.guest_cpu_used_milli <= c.guest_cpu_milli).all()


def test_fill_and_imbalance_parameters():
    def figures(**kw):
        c = cluster_from_dict(generate_cluster(16, 800, 4, **kw))
        fill = assigned(c, c.guest_mem_mib).sum() / c.node_mem_mib.sum()
        used = 100 * c.node_mem_used_mib / c.node_mem_mib
        return fill, used.max() - used.min()

    fill, spread = figures()
    assert 0.55 <= fill <= 0.75
    assert spread >= 20  # some nodes much fuller than others
    low_fill, _ = figures(fill=0.35)
    assert 0.25 <= low_fill <= 0.45
    _, even_spread = figures(imbalance=0.0)
    assert even_spread < spread / 2


def test_bad_arguments_are_rejected():
    for args, kw in [((0, 10, 1), {}), ((3, -1, 1), {}), ((1, 10, 1), {"maintenance": True}),
                     ((3, 10, 1), {"fill": 0}), ((3, 10, 1), {"imbalance": 2})]:
        with pytest.raises(ValueError):
            generate_cluster(*args, **kw)


# ----------------------------------------------------------------------------- rules


def test_rules_are_present_and_consistent():
    c = cluster_from_dict(generate_cluster(16, 800, 1))
    n = c.n_guests
    affinity = tag_groups(c, "plb_affinity_")
    assert affinity
    for members in affinity.values():
        assert 2 <= len(members) <= 4
        assert len({int(c.guest_node[g]) for g in members}) == 1  # placed together initially
    anti = tag_groups(c, "plb_anti_affinity_")
    assert anti
    respected = 0
    for members in anti.values():
        assert 2 <= len(members) <= c.n_nodes
        respected += len({int(c.guest_node[g]) for g in members}) == len(members)
    assert respected >= len(anti) / 2  # mostly already respected
    pinned = 0
    for g, tags in enumerate(c.guest_tags):
        pins = [t[len("plb_pin_"):] for t in tags if t.startswith("plb_pin_")]
        if pins:
            pinned += 1
            assert 1 <= len(pins) <= 2 and set(pins) <= set(c.node_names)
            assert c.node_names[int(c.guest_node[g])] in pins
    assert 0.02 <= pinned / n <= 0.04
    ignored = sum(any(t.startswith("plb_ignore") for t in tags) for tags in c.guest_tags)
    assert 0.01 <= ignored / n <= 0.03
    assert 2 <= sum(lock is not None for lock in c.guest_lock) <= 5
    assert {rule.type for rule in c.ha_rules} == {"node-affinity", "resource-affinity"}
    for rule in c.ha_rules:
        assert all(c.guest_index(v) is not None and c.guest_ha[c.guest_index(v)] for v in rule.vmids)
    # Rule groups are disjoint, so no combination of them contradicts another.
    seen: set[int] = set()
    for members in list(affinity.values()) + list(anti.values()):
        assert not seen & set(members)
        seen |= set(members)


def test_no_rules_means_no_rules():
    c = cluster_from_dict(generate_cluster(8, 300, 2, rules=False))
    assert not any(t.startswith("plb_") for tags in c.guest_tags for t in tags)
    assert not any(c.guest_lock) and not c.guest_template.any() and not c.ha_rules


def test_maintenance_node_can_be_drained():
    c = cluster_from_dict(generate_cluster(6, 150, 3, maintenance=True))
    assert c.node_maintenance[0] and (c.guest_node == 0).sum() > 0
    rules = derive_rules(c, Settings())
    assert not rules.eligible[0]
    on_first = c.guest_node == 0
    assert rules.movable[on_first].all()  # nothing unmovable is stranded there
    elsewhere = rules.eligible
    free = c.node_mem_mib[elsewhere].sum() - assigned(c, c.guest_mem_mib)[elsewhere].sum()
    assert assigned(c, c.guest_mem_mib)[0] < free


@pytest.mark.timeout(90)
@pytest.mark.parametrize("n_nodes,n_guests,seed,maintenance", [
    (5, 60, 2, True),
    (6, 120, 3, False),
    (3, 30, 4, True),
])
def test_generated_rules_are_satisfiable(n_nodes, n_guests, seed, maintenance):
    c = cluster_from_dict(generate_cluster(n_nodes, n_guests, seed, maintenance=maintenance))
    settings = Settings(time_limit=2, workers=1)
    result = make_plan(c, settings, "cpsat")
    assert result.status in ("optimal", "feasible")
    assert not result.violations
    assert check.violations(result.problem, result.placement) == []
    assert not result.warnings  # nothing had to be relaxed
    if maintenance:
        assert not ((result.placement == 0) & result.rules.movable).any()
    else:
        assert result.spread_after <= result.spread_before + 1e-6


# ----------------------------------------------------------------------------- speed and CLI


def test_large_cluster_is_fast():
    start = time.perf_counter()
    data = generate_cluster(64, 10_000, 1)
    elapsed = time.perf_counter() - start
    assert len(data["nodes"]) == 64 and len(data["guests"]) == 10_000
    assert elapsed < 15, f"64 x 10000 took {elapsed:.1f} s"
    c = cluster_from_dict(data)
    assert (assigned(c, c.guest_cpu_milli) <= 2 * c.node_cpu_milli).all()
    assert (assigned(c, c.guest_mem_mib) <= c.node_mem_mib).all()


def test_cli_writes_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert main(["--nodes", "4", "--guests", "50", "--seed", "9", "--maintenance", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("#") and "--nodes 4 --guests 50 --seed 9 --maintenance" in text
    expected = cluster_from_dict(generate_cluster(4, 50, 9, maintenance=True))
    assert cluster_to_dict(load_model(out)) == cluster_to_dict(expected)
    assert "4 nodes" in capsys.readouterr().err

    as_json = tmp_path / "c.json"
    assert main(["--nodes", "3", "--guests", "20", "--seed", "1", "--no-rules", "-o", str(as_json)]) == 0
    assert json.loads(as_json.read_text()) == generate_cluster(3, 20, 1, rules=False)


def test_cli_rejects_impossible_requests(capsys):
    assert main(["--nodes", "1", "--guests", "10", "--maintenance"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# ----------------------------------------------------------------------------- hard shapes


def judge(c, placement) -> list[check.Violation]:
    """proxlb_opt's own checker with ProxLB's defaults (no overprovisioning), as the planner prepares it."""
    return check.violations(build_problem(c, Settings()).with_budget(None), placement)


def kinds(violations) -> Counter:
    return Counter(v.rule for v in violations)


def used_pct(c) -> np.ndarray:
    return 100 * c.node_mem_used_mib / c.node_mem_mib


def unmovable(c) -> np.ndarray:
    ignored = np.array([any(t.startswith("plb_ignore") for t in tags) for tags in c.guest_tags])
    return ignored | np.array([lock is not None for lock in c.guest_lock]) | c.guest_template


def pins_of(c, g: int) -> set[int]:
    return {c.node_index(t[len("plb_pin_"):]) for t in c.guest_tags[g] if t.startswith("plb_pin_")}


def pair(n_nodes: int, n_guests: int, seed: int = 1, **kw):
    """(start cluster, reference cluster) of one hard instance."""
    start = cluster_from_dict(generate_cluster(n_nodes, n_guests, seed, **kw), source="<start>")
    return start, cluster_from_dict(reference_cluster(n_nodes, n_guests, seed, **kw), source="<reference>")


@pytest.fixture(scope="module")
def lopsided():
    """The 40 x 750 hard instance of the harness (and of models/lopsided-40.yaml)."""
    return pair(40, 750, shape="hard")


def test_hard_shapes_are_deterministic_and_seeded():
    for shape, n_nodes, n_guests in (("hard", 20, 300), ("enterprise", 12, 400)):
        first = generate_cluster(n_nodes, n_guests, 5, shape=shape)
        assert generate_cluster(n_nodes, n_guests, 5, shape=shape) == first
        assert generate_cluster(n_nodes, n_guests, 6, shape=shape) != first
        assert reference_cluster(n_nodes, n_guests, 5, shape=shape) == reference_cluster(n_nodes, n_guests, 5,
                                                                                        shape=shape)


def test_the_mild_shape_is_the_default():
    mild = generate_cluster(8, 80, 1)
    assert generate_cluster(8, 80, 1, shape="mild") == mild
    assert generate_cluster(8, 80, 1, fill=0.65) == mild


def test_reference_differs_from_the_start_only_in_placement_and_node_usage():
    data = generate_cluster(20, 300, 2, shape="hard")
    ref = reference_cluster(20, 300, 2, shape="hard")
    placement_keys = {"node"}
    usage_keys = {"memory_used", "cpu_usage", "disk_used"}
    assert [{k: v for k, v in g.items() if k not in placement_keys} for g in data["guests"]] == \
        [{k: v for k, v in g.items() if k not in placement_keys} for g in ref["guests"]]
    assert [{k: v for k, v in n.items() if k not in usage_keys} for n in data["nodes"]] == \
        [{k: v for k, v in n.items() if k not in usage_keys} for n in ref["nodes"]]
    assert data["ha_rules"] == ref["ha_rules"] and data["cluster"] == ref["cluster"]
    assert [g["node"] for g in data["guests"]] != [g["node"] for g in ref["guests"]]


@pytest.mark.parametrize("n_nodes,n_guests,tiers", [
    (40, 750, {128: 16, 256: 14, 512: 10}),
    (100, 1000, {128: 40, 256: 35, 512: 25}),
    (64, 10_000, {128: 26, 256: 22, 512: 16}),
    (5, 60, {128: 2, 256: 2, 512: 1}),
])
def test_hard_nodes_come_in_tiers_with_threads_proportionate_to_memory(n_nodes, n_guests, tiers):
    data = generate_cluster(n_nodes, n_guests, 1, shape="hard")
    mem_gib = np.array([int(n["memory"].rstrip("G")) for n in data["nodes"]])
    threads = np.array([n["cpus"] for n in data["nodes"]])
    assert dict(Counter(mem_gib.tolist())) == tiers
    assert (np.diff(mem_gib) >= 0).all()  # the old small nodes first
    per_gib = threads / mem_gib
    assert per_gib.min() >= 1 / 4 and per_gib.max() <= 1.3 * per_gib.min()  # proportionate (1.25x, in steps of 8)
    assert len(set(threads.tolist())) > len(tiers)  # a newer batch in some tier


@pytest.mark.parametrize("shape,n_nodes,n_guests", [("hard", 40, 750), ("hard", 100, 1000), ("enterprise", 12, 400)])
def test_hard_used_memory_is_strongly_skewed(shape, n_nodes, n_guests):
    c, _ = pair(n_nodes, n_guests, shape=shape)
    used = used_pct(c)
    hot, cold = used >= 95, used < 25
    assert hot.sum() == round(n_nodes / 5)  # a fifth of the nodes at >= 95 % ...
    assert used.max() <= 98.6  # ... of physical RAM, never beyond
    assert round(n_nodes / 3) - 1 <= cold.sum() <= round(n_nodes / 3) + n_nodes // 10  # about a third below 25 %
    assert np.isin(c.guest_node, np.flatnonzero(hot)).mean() >= 0.5  # most guests are piled on the hot nodes
    assert (used[~hot & ~cold] < 90).all()


def test_hard_start_breaks_every_rule_family(lopsided):
    c, ref = lopsided
    found = judge(c, c.guest_node)
    assert {"affinity", "anti-affinity", "pin"} <= set(kinds(found))
    messages = " | ".join(v.message for v in found)
    # HA rules: strict node-affinity (a pin), negative and positive resource-affinity, each broken once.
    assert "HA rule only-" in messages and "keep-ha-pair-apart" in messages and "keep-ha-pair-together" in messages
    split = [len({int(c.guest_node[g]) for g in members}) for members in tag_groups(c, "plb_affinity_").values()]
    assert max(split) in (2, 3) and set(split) <= {1, 2, 3}
    joined = [np.bincount(c.guest_node[members]).max() for members in tag_groups(c, "plb_anti_affinity_").values()]
    assert max(joined) >= 2
    # Against the reference's limits (not relaxed to the over-full start) capacity is broken too.
    assert {"affinity", "anti-affinity", "pin", "capacity"} <= set(kinds(judge(ref, c.guest_node)))


def test_hard_start_is_over_committed_on_the_hot_nodes(lopsided):
    c, ref = lopsided
    over = assigned(c, c.guest_mem_mib) > c.node_mem_mib
    assert over.any() and (used_pct(c)[over] >= 95).all()
    vcpus_over = assigned(c, c.guest_cpu_milli) > 2 * c.node_cpu_milli
    assert (used_pct(c)[vcpus_over] >= 95).all()  # every other node stays within its limits
    capacity = [v.message for v in judge(ref, c.guest_node) if v.rule == "capacity"]
    over_names = {c.node_names[n] for n in np.flatnonzero(over)}
    assert {m.split(":")[0] for m in capacity if "assigned memory" in m} == over_names


def test_hard_broken_pins_point_at_full_big_nodes(lopsided):
    c, ref = lopsided
    biggest = c.node_mem_mib.max()
    full = assigned(c, c.guest_mem_mib) > c.node_mem_mib
    away = 0
    for g in range(c.n_guests):
        pins = pins_of(c, g)
        if not pins:
            continue
        assert all(c.node_mem_mib[n] == biggest for n in pins)  # pinned to big nodes
        assert int(ref.guest_node[g]) in pins
        if int(c.guest_node[g]) not in pins:
            away += 1
            assert all(full[n] and used_pct(c)[n] >= 95 for n in pins)  # a repair must make room first
    assert away >= 1


def test_hard_unmovable_guests_stay_put(lopsided):
    c, ref = lopsided
    fixed = unmovable(c)
    assert fixed.sum() >= 10
    assert (c.guest_node[fixed] == ref.guest_node[fixed]).all()
    legacy = np.array([any(t == "plb_ignore_legacy" for t in tags) for tags in c.guest_tags])
    assert legacy.any() and (used_pct(c)[c.guest_node[legacy]] >= 95).all()  # on the hot nodes, for good


def assert_reference_is_valid(c, ref) -> None:
    assert judge(c, ref.guest_node) == []  # judged as the planner would, from the start
    assert judge(ref, ref.guest_node) == []  # and against limits that are not relaxed to the start
    # The hard limits with overprovisioning off, spelled out.
    assert (assigned(ref, ref.guest_mem_mib) <= ref.node_mem_mib).all()
    assert (assigned(ref, ref.guest_cpu_milli) <= 2 * ref.node_cpu_milli).all()
    assert (ref.node_mem_used_mib <= ref.node_mem_mib).all()
    assert (ref.node_disk_used_mib <= ref.node_disk_mib).all()
    # The start is physically possible: used memory and local disk within the node.
    assert (c.node_mem_used_mib <= c.node_mem_mib).all() and (c.node_disk_used_mib <= c.node_disk_mib).all()


@pytest.mark.parametrize("shape,n_nodes,n_guests,seed,rules", [
    ("hard", 40, 750, 1, True),
    ("hard", 5, 60, 2, True),
    ("hard", 8, 100, 3, True),
    ("hard", 20, 300, 4, True),
    ("hard", 100, 1000, 5, True),
    ("hard", 20, 300, 6, False),
    ("enterprise", 12, 400, 1, True),
    ("enterprise", 6, 60, 7, True),
    ("enterprise", 30, 900, 8, True),  # more guests than Bitbrains has VMs: rows repeat
])
def test_hard_reference_placement_is_valid_and_the_start_is_not(shape, n_nodes, n_guests, seed, rules):
    c, ref = pair(n_nodes, n_guests, seed, shape=shape, rules=rules)
    assert (c.n_nodes, c.n_guests) == (n_nodes, n_guests)
    assert_reference_is_valid(c, ref)
    broken = set(kinds(judge(ref, c.guest_node)))
    assert "capacity" in broken
    if rules:
        assert {"affinity", "anti-affinity", "pin"} <= broken
        derive_rules(c, Settings())  # and every tag and HA rule is usable
    else:
        assert not any(t.startswith("plb_") for tags in c.guest_tags for t in tags) and not c.ha_rules


@pytest.mark.slow
def test_largest_hard_instance_is_valid_skewed_and_broken():
    c, ref = pair(64, 10_000, shape="hard")
    assert_reference_is_valid(c, ref)
    assert {"affinity", "anti-affinity", "pin", "capacity"} <= set(kinds(judge(ref, c.guest_node)))
    used = used_pct(c)
    assert (used >= 95).sum() == 13 and 20 <= (used < 25).sum() <= 27
    over = (assigned(c, c.guest_mem_mib) > c.node_mem_mib) | (assigned(c, c.guest_cpu_milli) > 2 * c.node_cpu_milli)
    assert (used[over] >= 95).all()
    assert np.isin(c.guest_node, np.flatnonzero(used >= 95)).mean() >= 0.45


def test_enterprise_shape_is_bitbrains_vms_on_identical_nodes():
    c, _ = pair(12, 400, shape="enterprise")
    assert len(set(c.node_mem_mib.tolist())) == 1 and len(set(c.node_cpu_milli.tolist())) == 1
    assert c.node_mem_mib[0] % (64 * GIB) == 0
    assert not c.guest_is_ct.any()
    cat = load_catalog()
    trace = set(zip(cat.util_cores.tolist(), ((cat.util_mem_mib + 64) // 128 * 128).clip(512).tolist()))
    assert set(zip((c.guest_cpu_milli // 1000).tolist(), c.guest_mem_mib.tolist())) <= trace
    fill = c.guest_mem_mib.sum() / c.node_mem_mib.sum()
    assert 0.65 <= fill <= 0.8


def test_hard_shape_arguments_are_checked():
    for args, kw in [((40, 750, 1), {"shape": "lopsided"}), ((40, 750, 1), {"shape": "hard", "maintenance": True}),
                     ((4, 400, 1), {"shape": "hard"}), ((10, 50, 1), {"shape": "hard"}),
                     ((10, 200, 1), {"shape": "hard", "fill": 0.9}),
                     ((10, 200, 1), {"shape": "enterprise", "fill": 0.5})]:
        with pytest.raises(ValueError):
            generate_cluster(*args, **kw)
    with pytest.raises(ValueError, match="hard shapes"):
        reference_cluster(8, 80, 1, shape="mild")


def test_cli_writes_a_hard_shape_with_its_figures(tmp_path, capsys):
    out = tmp_path / "h.yaml"
    assert main(["--nodes", "20", "--guests", "300", "--seed", "3", "--shape", "hard", "-o", str(out)]) == 0
    header = out.read_text().split("\nversion:", 1)[0]
    assert "--shape hard" in header and "Hard shape" in header
    assert re.search(r"# 4 nodes at >= 95 % used memory hold \d+ % of the guests", header)
    assert re.search(r"broken at the start: \d+ affinity, \d+ anti-affinity, \d+ pin", header)
    expected = cluster_from_dict(generate_cluster(20, 300, 3, shape="hard"))
    assert cluster_to_dict(load_model(out)) == cluster_to_dict(expected)
    assert "256 GiB x 7" in capsys.readouterr().err
