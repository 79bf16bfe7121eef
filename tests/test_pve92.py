"""PVE 9.2: its own automatic HA rebalancing is left alone (or refused), and it survives a model round trip."""

import pytest

from proxlb_opt.cluster import cluster_from_dict, cluster_to_dict
from proxlb_opt.errors import InputError
from proxlb_opt.planner import make_plan
from tests.builders import cluster, fast, guest, node


def _skewed(crs=None):
    c = cluster([node("a"), node("b")], [guest(1, "a", "16G", ha=True), guest(2, "a", "16G", ha=True),
                                         guest(3, "a", "4G", ha=True, auto_rebalance=False), guest(4, "a", "4G")])
    if crs is None:
        return c
    data = cluster_to_dict(c)
    data["crs"] = crs
    return cluster_from_dict(data)


def test_ha_guests_pve_rebalances_are_left_to_it():
    result = make_plan(_skewed({"ha": "dynamic", "ha-auto-rebalance": 1}), fast(balanciness=0))
    moved = {int(result.cluster.guest_vmid[s.guest]) for s in result.plan.steps}
    assert moved <= {3, 4}  # 1 and 2 are PVE's; 3 opted out of PVE's rebalancing; 4 is not HA-managed
    assert any("automatic HA rebalancing" in w for w in result.warnings)


def test_without_pve_rebalancing_everything_may_move():
    result = make_plan(_skewed({"ha": "static"}), fast(balanciness=0))
    assert not any("automatic HA rebalancing" in w for w in result.warnings)
    assert {int(result.cluster.guest_vmid[s.guest]) for s in result.plan.steps} & {1, 2}


def test_refuse_says_why_in_one_line():
    with pytest.raises(InputError, match="two balancers"):
        make_plan(_skewed("ha=dynamic,ha-auto-rebalance=1"), fast(pve_rebalancer="refuse"))


def test_crs_and_opt_out_round_trip():
    c = _skewed({"ha": "dynamic", "ha-auto-rebalance": True})
    again = cluster_from_dict(cluster_to_dict(c))
    assert again.pve_rebalances and not again.guest_auto_rebalance[2] and again.guest_auto_rebalance[0]
