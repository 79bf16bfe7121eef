"""PVE 9.2 through the simulator: its automatic HA rebalancing coexists, and negative node-affinity holds.

The simulator's HA manager acts as PVE's does (a strict rule a migration breaks is undone in its next
round), so a plan that broke a rule would be caught here, not only by our own checker.
"""

from __future__ import annotations

from proxlb_opt.cluster import HaRule
from proxlb_opt.config import settings_from_dict
from proxlb_opt.service import one_round
from proxlb_opt.simulator import SimulatorServer
from tests.integration.conftest import FAST, api_section, rebalance_cluster


def _settings(sim: SimulatorServer, **optimizer):
    return settings_from_dict({
        "proxmox_api": api_section(sim),
        "balancing": {"enable": True, "balanciness": 2, "balance_types": ["vm", "ct"], "parallel": True,
                      "max_job_validation": 60},
        "optimizer": {"poll_interval": 0.02, "workers": 1, "time_limit": 5, **optimizer}})


def test_guests_pve_rebalances_itself_are_left_to_it():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, pve_version="9.2.6",
                         crs="ha=dynamic,ha-auto-rebalance=1") as sim:
        outcome = one_round(_settings(sim), False, lambda event: None)
        assert outcome.error is None and outcome.done > 0
        assert sim.state.placement()[103] == "pve1"  # db01 is HA-managed with auto-rebalance: PVE's to move
        assert any("automatic HA rebalancing" in w for w in outcome.result.warnings)


def test_refusing_to_share_the_cluster_with_pves_rebalancer():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, pve_version="9.2.6",
                         crs="ha=dynamic,ha-auto-rebalance=1") as sim:
        before = sim.state.placement()
        outcome = one_round(_settings(sim, pve_rebalancer="refuse"), False, lambda event: None)
        assert outcome.error is not None and "two balancers" in str(outcome.error)
        assert sim.state.placement() == before


def test_strict_negative_node_affinity_is_kept_and_pves_ha_manager_agrees():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, pve_version="9.2.6") as sim:
        # db01 (HA) must never run on pve2 or pve3: it stays on pve1 however loaded pve1 is.
        sim.state.set_ha_rules([HaRule("db-not-2-3", "node-affinity", (103,), affinity="negative", strict=True,
                                       node_priorities=(("pve2", 0), ("pve3", 0)))])
        sim.advance(60)
        outcome = one_round(_settings(sim), False, lambda event: None)
        assert outcome.error is None and outcome.done > 0
        moved = {s.guest for s in outcome.result.plan.steps}
        assert outcome.result.cluster.guest_index(103) not in moved
        sim.advance(600)  # the HA manager's rounds: nothing of ours is undone
        assert sim.state.placement()[103] == "pve1"
        assert not any("relocate service 'vm:103'" in message for _, message in sim.state.ha_log())


def test_non_strict_negative_node_affinity_is_avoided():
    with SimulatorServer(rebalance_cluster(), time_scale=FAST, pve_version="9.2.6") as sim:
        sim.state.set_ha_rules([HaRule("db-avoid-2", "node-affinity", (103,), affinity="negative", strict=False,
                                       node_priorities=(("pve2", 0),))])
        sim.advance(60)
        outcome = one_round(_settings(sim), False, lambda event: None)
        assert outcome.error is None
        assert sim.state.placement()[103] != "pve2"
