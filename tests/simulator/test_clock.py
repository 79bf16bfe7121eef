"""The virtual clock: explicit advances, run-time speed changes, and service-like runs over days in seconds."""

from __future__ import annotations

import time

import pytest
from proxmoxer import ResourceException

from proxlb_opt.simulator import Faults, SimulatorServer
from proxlb_opt.simulator.state import SimState
from tests.simulator.helpers import client, small_cluster, task_status

DAY = 86_400.0


def test_time_scale_changes_keep_the_time_passed():
    state = SimState(small_cluster(), time_scale=0, start_time=1_000_000.0)
    state.advance(10)
    state.set_time_scale(1e5)
    time.sleep(0.01)
    fast = state.now()
    assert fast >= 1_000_010.0 + 1000.0 - 1e-6  # at least 0.01 real s × 1e5
    state.set_time_scale(0)
    frozen = state.now()
    time.sleep(0.01)
    assert state.now() == frozen >= fast
    assert state.time_scale == 0
    with pytest.raises(ValueError):
        state.set_time_scale(-1)


def test_advance_to_runs_everything_due_in_order():
    state = SimState(small_cluster(), time_scale=0)
    upid = state.migrate("pve1", 100, "qemu", {"target": "pve2", "online": "1"}, "root@pam")
    start = state.now()
    state.advance_to(start + 3)
    assert state.task(upid).status == "running"
    state.advance_to(start + 2)  # the past: nothing happens
    state.advance_to(start + 7)
    assert state.task(upid).exitstatus == "OK" and state.task(upid).endtime == int(start + 7)


def test_rounds_over_days_run_in_seconds():
    """A service-style loop: each simulated day a fresh login, a migration, polling; tickets last 2 h."""
    with SimulatorServer(small_cluster(), time_scale=0.0, faults=Faults(ticket_lifetime_s=7200)) as sim:
        start = sim.now()
        node = "pve1"
        stale = None
        for day in range(7):
            api = client(sim)
            target = "pve2" if node == "pve1" else "pve1"
            upid = api.nodes(node).qemu(100).migrate.post(target=target, online=1)
            sim.advance(60)
            assert task_status(api, upid)["exitstatus"] == "OK"
            node = target
            stale = api
            sim.advance(DAY - 60)
        assert sim.now() - start == pytest.approx(7 * DAY)
        with pytest.raises(ResourceException) as err:
            stale.nodes.get()  # a day-old ticket
        assert err.value.status_code == 401
        api = client(sim)
        assert len(api.nodes("pve1").tasks.get(source="all")) + len(api.nodes("pve2").tasks.get(source="all")) == 7
        uptime = next(n["uptime"] for n in api.nodes.get() if n["node"] == "pve1")
        assert uptime >= 12 * DAY + 7 * DAY  # nodes were up 12 days at the start
        week = api.nodes("pve1").rrddata.get(timeframe="week")
        assert week[-1]["time"] >= start + 7 * DAY - 1800
