"""Service rounds over days of the simulator's virtual clock: no pointless or repeated moves.

Five rounds of an unchanged cluster move nothing after the first; a guest moved by hand between rounds
is left where it was put for the cooldown; load that drifts back and forth around the balanciness moves
no guest back and forth.
"""

from __future__ import annotations

from proxlb_opt.config import settings_from_dict
from proxlb_opt.service import one_round
from proxlb_opt.simulator import SimulatorServer
from tests.builders import cluster, guest, node
from tests.integration.conftest import FAST, api_section
from tests.simulator.helpers import client, wait_task

HOUR = 3600.0


def _settings(sim: SimulatorServer, balanciness: float, **optimizer):
    return settings_from_dict({
        "proxmox_api": api_section(sim),
        "balancing": {"enable": True, "balanciness": balanciness, "balance_types": ["vm", "ct"], "parallel": True},
        "optimizer": {"poll_interval": 0.02, "workers": 1, "time_limit": 5, **optimizer}})


def _round(sim: SimulatorServer, settings, moves: list):
    outcome = one_round(settings, False, lambda event: None, clock=sim.now)
    assert outcome.error is None, outcome.error
    moves += [(s.guest, s.source, s.target) for s in outcome.result.plan.steps][:outcome.done]
    return outcome


def _evenly_loaded():
    """Three 64G nodes; the big guests can be arranged almost evenly."""
    guests = [guest(100 + i, "pve1", f"{4 + (i % 3) * 2}G", name=f"g{i}") for i in range(12)]
    return cluster([node(n, "64G") for n in ("pve1", "pve2", "pve3")], guests)


def test_five_rounds_of_an_unchanged_cluster_move_nothing_after_the_first():
    with SimulatorServer(_evenly_loaded(), time_scale=FAST) as sim:
        settings = _settings(sim, 10)
        first = _round(sim, settings, [])
        assert first.done > 0
        for _ in range(4):
            sim.advance(12 * HOUR)
            later = _round(sim, settings, [])
            assert later.migrations == 0 and later.result.status == "balanced"


def test_a_guest_moved_by_hand_stays_where_it_was_put_for_the_cooldown():
    with SimulatorServer(_evenly_loaded(), time_scale=FAST) as sim:
        settings = _settings(sim, 5, cooldown="24h")
        _round(sim, settings, [])
        placement = sim.state.placement()
        # The admin moves a guest onto the busiest node, which puts the cluster over the balanciness.
        usage = {n: sim.state.node_usage(n).mem_used_mib for n in ("pve1", "pve2", "pve3")}
        busiest = max(usage, key=usage.get)
        vmid = next(v for v, n in sorted(placement.items()) if n != busiest)
        api = client(sim)
        wait_task(api, api.nodes(placement[vmid]).qemu(vmid).migrate.post(target=busiest, online=1))
        sim.advance(12 * HOUR)
        second = _round(sim, settings, [])
        assert sim.state.placement()[vmid] == busiest  # left where the admin put it
        assert vmid in second.result.held
        sim.advance(25 * HOUR)  # the cooldown (24 h after the move was noticed) is over
        assert vmid not in one_round(settings, True, lambda e: None, clock=sim.now).result.held


def test_load_drifting_around_the_balanciness_moves_nothing_back_and_forth():
    with SimulatorServer(_evenly_loaded(), time_scale=FAST) as sim:
        settings = _settings(sim, 8, cooldown="24h")
        moves: list = []
        _round(sim, settings, moves)
        drifting = sorted(sim.state.placement())[0]
        full = sim.state.guest(drifting).mem_mib
        for day in range(6):
            # One guest's memory swings between a quarter and all of its size, every 12 hours.
            sim.state.set_usage(drifting, memory_used_mib=full if day % 2 == 0 else full // 4)
            sim.advance(12 * HOUR)
            _round(sim, settings, moves)
        there_and_back = {(g, s, t) for g, s, t in moves} & {(g, t, s) for g, s, t in moves}
        assert not there_and_back, there_and_back
