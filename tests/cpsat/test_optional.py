"""Optional guests (capacity what-if): each is on at most one node, Terms.unplaced counts the others; capacity,
anti-affinity and affinity (with node literals) hold for the placed ones; explain works with them too."""

import numpy as np

from proxlb_opt import check
from proxlb_opt.cpsat.context import BuildOptions
from proxlb_opt.cpsat.solve import SolverSettings, solve_lexicographic
from tests.builders import cluster, fast, guest, node, problem


def _solve(p, optional, stages=("unplaced",)):
    mask = np.zeros(p.cluster.n_guests, dtype=bool)
    mask[optional] = True
    result = solve_lexicographic(p, SolverSettings(workers=1), BuildOptions(optional=mask), 10.0, stages=stages)
    assert result.found and result.proven["unplaced"]
    return result


def test_optional_guests_fill_what_fits_and_the_rest_stay_unplaced():
    c = cluster([node("src", "128G"), node("a", "16G"), node("b", "16G")],
                [guest(i, "src", "6G", cpus=1) for i in range(1, 7)])
    p = problem(c, fast(overprovisioning=True, maintenance_nodes=("src",)))
    result = _solve(p, list(range(6)))
    placed = result.placement >= 0
    assert result.values["unplaced"] == 2 and placed.sum() == 4  # two of 6G per 16G node
    assert np.bincount(result.placement[placed], minlength=3).tolist() == [0, 2, 2]


def test_optional_anti_affinity_members_one_per_node():
    tag = ["plb_anti_affinity_x"]
    c = cluster([node("a"), node("b")], [guest(i, "a", "1G", tags=tag) for i in range(1, 4)])
    p = problem(c, fast())
    p = p.__class__(**{**p.__dict__, "rules": _cap(p.rules, 1)})
    result = _solve(p, [0, 1, 2])
    assert result.values["unplaced"] == 1


def _cap(rules, cap):
    from dataclasses import replace

    return replace(rules, anti_affinities=tuple(replace(a, per_node_cap=cap) for a in rules.anti_affinities))


def test_optional_affinity_members_share_a_node_or_stay_out():
    tag = ["plb_affinity_app"]
    c = cluster([node("src", "128G"), node("a", "16G"), node("b", "16G")],
                [guest(1, "src", "10G", tags=tag), guest(2, "src", "10G", tags=tag), guest(3, "b", "2G")])
    p = problem(c, fast(overprovisioning=True, maintenance_nodes=("src",)))
    result = _solve(p, [0, 1], stages=("unplaced", "peak"))
    # 20G together fits no 16G node: one member is left out, the other placed (alone it may go anywhere).
    assert result.values["unplaced"] == 1
    fixed = cluster([node("a", "32G"), node("b", "16G")],
                    [guest(1, "a", "10G", tags=tag), guest(2, "b", "10G", tags=tag)])
    p2 = problem(fixed, fast(overprovisioning=True))
    r2 = _solve(p2, [1])  # guest 1 is required on a (its only node here), guest 2 optional: joins it
    assert r2.values["unplaced"] == 0 and r2.placement[1] == r2.placement[0]


def test_peak_stage_minimizes_the_highest_load():
    c = cluster([node("a", "64G"), node("b", "64G"), node("c", "64G")],
                [guest(1, "a", "16G"), guest(2, "a", "16G"), guest(3, "a", "16G")])
    p = problem(c, fast())
    result = solve_lexicographic(p, SolverSettings(workers=1), BuildOptions(), 10.0, stages=("peak",))
    assert result.proven["peak"]
    assert sorted(np.bincount(result.placement, minlength=3).tolist()) == [1, 1, 1]
    assert not check.violations(p, result.placement)
