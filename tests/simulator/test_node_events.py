"""Nodes changing mid-run (faults' NodeEvent and the state's setters): HA maintenance and what the HA manager
does to the guests there, and nodes going offline and coming back."""

from __future__ import annotations

from typing import Iterator

import pytest
from proxmoxer import ProxmoxAPI, ResourceException

from proxlb_opt.simulator import Faults, NodeEvent, SimulatorServer
from tests.simulator.helpers import client, ha_cluster, task_status

HA_GUESTS = (100, 102, 103, 104, 105, 110)  # the HA guests on pve1 in ha_cluster()


@pytest.fixture
def ha_sim() -> Iterator[SimulatorServer]:
    # failback on (PVE's default), so that guests return when maintenance ends
    with SimulatorServer(ha_cluster(), time_scale=0.0, pve_version="9.2", ha_failback=True) as server:
        yield server


@pytest.fixture
def ha_api(ha_sim) -> ProxmoxAPI:
    return client(ha_sim)


def _lrm(api, node) -> str:
    return next(e["status"] for e in api.cluster.ha.status.current.get() if e.get("id") == f"lrm:{node}")


def test_maintenance_after_n_migrate_calls_evacuates_ha_guests(ha_sim, ha_api):
    ha_sim.faults = Faults(node_events=(NodeEvent("pve1", "maintenance", after_migrations=2),))
    ha_api.nodes("pve2").qemu(106).migrate.post(target="pve3", online=1)
    assert "maintenance mode" not in _lrm(ha_api, "pve1")
    ha_api.nodes("pve1").qemu(120).migrate.post(target="pve2", online=1)  # the 2nd call switches it on
    assert _lrm(ha_api, "pve1").startswith("pve1 (maintenance mode, watchdog active, ")
    node = next(n for n in ha_api.cluster.resources.get(type="node") if n["node"] == "pve1")
    assert node["hastate"] == "maintenance"
    ha_sim.advance(600)
    placement = ha_sim.state.placement()
    assert all(placement[v] != "pve1" for v in HA_GUESTS)
    assert placement[104] == "pve2" and placement[105] == "pve2"  # strict rules hold: pinned, not-pve3
    assert placement[100] != placement[101] and placement[102] == placement[103]  # apart / together
    [relocate] = [t for t in ha_sim.state.tasks() if t.vmid == 110]
    assert relocate.type == "vzmigrate" and relocate.user == "root@pam"  # containers move in restart mode
    assert ha_sim.state.is_running(110)


def test_maintenance_at_a_moment_leaves_plain_guests_and_ends(ha_sim, ha_api):
    start = ha_sim.now()
    ha_sim.faults = Faults(node_events=(NodeEvent("pve1", "maintenance", at=start + 100),
                                        NodeEvent("pve1", "active", at=start + 1000)))
    ha_sim.advance(99)
    assert "maintenance mode" not in _lrm(ha_api, "pve1")
    ha_sim.advance(600)
    assert "maintenance mode" in _lrm(ha_api, "pve1")
    placement = ha_sim.state.placement()
    assert placement[120] == "pve1"  # not HA-managed: left for the rebalancer to move
    assert all(placement[v] != "pve1" for v in HA_GUESTS)
    ha_sim.advance(1000)
    assert "maintenance mode" not in _lrm(ha_api, "pve1")
    placement = ha_sim.state.placement()
    # Back to the node they left, except the positive pair: PVE keeps it where the pair is.
    assert [placement[v] for v in (100, 104, 105, 110)] == ["pve1"] * 4
    assert placement[102] == placement[103] != "pve1"


def test_ha_migration_to_a_node_in_maintenance_is_ignored(ha_sim, ha_api):
    ha_sim.state.set_maintenance("pve3")
    upid = ha_api.nodes("pve2").qemu(106).migrate.post(target="pve3", online=1)
    ha_sim.advance(600)
    assert task_status(ha_api, upid)["exitstatus"] == "OK"  # the request was only queued
    assert ha_sim.state.placement()[106] == "pve2" and ha_sim.state.guest(106).hastate == "started"
    assert any(m == "crm command error - node not online: migrate vm:106 pve3" for _, m in ha_sim.state.ha_log())
    ha_api.nodes("pve1").qemu(120).migrate.post(target="pve3", online=1)  # plain guests may go there
    ha_sim.advance(600)
    assert ha_sim.state.placement()[120] == "pve3"


def test_node_goes_offline_mid_run_and_comes_back(ha_sim, ha_api):
    start = ha_sim.now()
    ha_sim.faults = Faults(node_events=(NodeEvent("pve3", "offline", at=start + 30),
                                        NodeEvent("pve3", "online", at=start + 90)))
    assert ha_api.nodes("pve3").status.get()["uptime"] > 0
    ha_sim.advance(30)
    with pytest.raises(ResourceException) as err:
        ha_api.nodes("pve3").status.get()
    assert (err.value.status_code, err.value.content) == (595, "No route to host")
    assert next(n for n in ha_api.nodes.get() if n["node"] == "pve3")["status"] == "offline"
    assert "old timestamp - dead?" in _lrm(ha_api, "pve3")
    status = ha_api.nodes("pve1").qemu(120).migrate.post(target="pve3", online=1)
    ha_sim.advance(10)
    assert task_status(ha_api, status)["exitstatus"] == "migration aborted"
    ha_sim.advance(60)
    assert ha_api.nodes("pve3").status.get()["uptime"] > 0


def test_events_are_dropped_when_faults_change(ha_sim, ha_api):
    ha_sim.faults = Faults(node_events=(NodeEvent("pve2", "offline", at=ha_sim.now() + 10),))
    ha_sim.faults = Faults()  # replaced before the moment: the event never fires
    ha_sim.advance(60)
    assert ha_api.nodes("pve2").status.get()


def test_node_event_values_are_checked():
    with pytest.raises(ValueError):
        NodeEvent("pve1", "exploded", at=1.0)
    with pytest.raises(ValueError):
        NodeEvent("pve1", "offline")  # neither a count nor a moment
    with pytest.raises(ValueError):
        NodeEvent("pve1", "offline", after_migrations=1, at=1.0)
